"""Recurrent layers on a CUDA GPU: tinyseq (CuPy) eager and CUDA-graph mode against cuDNN.

For each config (T, B, I, H) and each of RNN (tanh), GRU (reset after the product,
cuDNN's form) and LSTM (standard), in one process run on one card:

- tinyseq eager: ``ts.nn.Recurrent`` on ``cuda`` (fused kernels: one cuBLAS GEMM and one
  fused pointwise kernel per step);
- tinyseq graph: the same layer with ``tinyseq.fused.use_cuda_graphs(True)`` (each time
  loop captured once per shape and replayed);
- PyTorch ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` on the same card (cuDNN), same weights.

TF32 is off on both sides (PyTorch's two switches; CuPy's default, ``CUPY_TF32`` unset).
It prints inference and training-step times in ms (forward + backward including the
input and weight gradients; median of >= 10 timed runs after warm-up, each bracketed by
a device synchronisation), and tinyseq/cuDNN ratios, then checks the targets:

    LSTM and GRU training step, graph mode / cuDNN <= 1.0 at M, L and Long;
    eager / cuDNN <= 2.0 at M and L; at S <= 2.5 (eager and graph).

    python benchmarks/rnn_gpu.py                    # all configs (a few minutes)
    python benchmarks/rnn_gpu.py --configs M L --cells lstm
    python benchmarks/rnn_gpu.py --quick            # smoke run on tiny shapes
    python benchmarks/rnn_gpu.py --json out.json    # also write the figures

Without CuPy and a CUDA device it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tinyseq as ts
from tinyseq import backend, fused
from tinyseq.kernels import cuda_graph

CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "S": (50, 16, 128, 128),
    "M": (100, 64, 512, 512),
    "L": (100, 128, 1024, 1024),
    "Long": (1000, 16, 256, 256),
}
QUICK_CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "S": (6, 3, 8, 8),
    "M": (8, 4, 16, 16),
    "L": (8, 8, 32, 32),
    "Long": (40, 2, 8, 8),
}
# cell -> (torch class name, tinyseq options)
CELLS: dict[str, tuple[str, dict[str, Any]]] = {
    "rnn": ("RNN", {"nonlinearity": "tanh"}),
    "gru": ("GRU", {"reset_after": True}),
    "lstm": ("LSTM", {"variant": "standard"}),
}
# (cells, configs, implementation, limit on train-step ratio to cuDNN)
# where the PyTorch reference runs (the tests point it at the host to exercise the script)
TORCH_DEVICE = "cuda"

TARGETS = [
    (("lstm", "gru"), ("M", "L", "Long"), "graph", 1.0),
    (("lstm", "gru"), ("M", "L"), "eager", 2.0),
    (("lstm", "gru"), ("S",), "eager", 2.5),
    (("lstm", "gru"), ("S",), "graph", 2.5),
]


def median_ms(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, runs: int) -> float:
    """Median wall time of ``fn`` in ms, each run between two device synchronisations."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_one(
    torch: Any, cell: str, cfg: tuple[int, int, int, int], warmup: int, runs: int
) -> dict[str, float]:
    """Times (ms) of every implementation and mode for one cell and config."""
    T, B, n_in, H = cfg
    cls_name, options = CELLS[cell]
    xp = backend.get_device("cuda").xp
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((T, B, n_in)).astype(np.float32)
    w_host = rng.standard_normal((T, B, H)).astype(np.float32)

    def sync_cupy() -> None:
        xp.cuda.Device().synchronize()

    out: dict[str, float] = {}
    module = None
    if torch is not None:
        kwargs = {"nonlinearity": "tanh"} if cls_name == "RNN" else {}
        module = getattr(torch.nn, cls_name)(n_in, H, **kwargs)  # on the host: weights copied below
    if module is not None:
        from tinyseq import interop

        rec = interop.from_torch(module)
    else:
        rec = ts.nn.Recurrent(cell, n_in, H, **options)
    rec.to("cuda")
    x = ts.tensor(x_host, device="cuda")
    xg = ts.tensor(x_host, device="cuda", requires_grad=True)
    w = ts.tensor(w_host, device="cuda")

    def ts_infer() -> None:
        with ts.no_grad():
            rec(x)

    def ts_train() -> None:
        rec.zero_grad()
        xg.grad = None
        y, _ = rec(xg)
        (y * w).sum().backward()

    for mode in ("eager", "graph"):
        with fused.use_cuda_graphs(mode == "graph"):
            out[f"{mode}_infer"] = median_ms(ts_infer, sync_cupy, warmup, runs)
            out[f"{mode}_train"] = median_ms(ts_train, sync_cupy, warmup, runs)
    cuda_graph.clear_cache()

    if module is not None:
        dev = torch.device(TORCH_DEVICE)
        module = module.to(dev)
        xt = torch.tensor(x_host, device=dev)
        xtg = torch.tensor(x_host, device=dev, requires_grad=True)
        wt = torch.tensor(w_host, device=dev)

        def t_infer() -> None:
            with torch.no_grad():
                module(xt)

        def t_train() -> None:
            module.zero_grad(set_to_none=True)
            xtg.grad = None
            y, _ = module(xtg)
            (y * wt).sum().backward()

        sync = torch.cuda.synchronize if TORCH_DEVICE == "cuda" else (lambda: None)
        out["cudnn_infer"] = median_ms(t_infer, sync, warmup, runs)
        out["cudnn_train"] = median_ms(t_train, sync, warmup, runs)
    return out


def _torch_or_none() -> Any:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    return torch


def _ratio(a: float | None, b: float | None) -> str:
    return "   n/a" if a is None or b is None else f"{a / b:6.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--cells", nargs="+", choices=sorted(CELLS), default=list(CELLS))
    parser.add_argument("--runs", type=int, default=10, help="timed runs per measurement (>= 10)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few runs (smoke test)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    if not backend.cuda_is_available():
        print("rnn_gpu: no GPU — needs CuPy and a CUDA device (pip install -e '.[cuda13]'"
              " or '.[cuda12]'); nothing measured.", file=sys.stderr)
        return 2
    if os.environ.get("CUPY_TF32", "0") not in ("", "0"):
        print("rnn_gpu: CUPY_TF32 is set; unset it so both sides run full float32.", file=sys.stderr)
        return 2
    torch = _torch_or_none()
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    runs = 3 if args.quick else max(10, args.runs)
    warmup = 1 if args.quick else args.warmup
    xp = backend.get_device("cuda").xp
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"device: {name}; CuPy {xp.__version__}; "
          + (f"PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, TF32 off"
             if torch is not None else "PyTorch with CUDA not available: no cuDNN reference"))
    print("float32, ms (median); ratio = tinyseq / cuDNN\n")
    header = (f"{'config':6} {'cell':5} | {'cuDNN inf':>9} {'train':>7} | {'eager inf':>9} "
              f"{'train':>7} {'r_inf':>6} {'r_trn':>6} | {'graph inf':>9} {'train':>7} "
              f"{'r_inf':>6} {'r_trn':>6}")
    print(header)
    print("-" * len(header))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for cfg_name in args.configs:
        for cell in args.cells:
            r = bench_one(torch, cell, configs[cfg_name], warmup, runs)
            results.setdefault(cfg_name, {})[cell] = r
            ci, ct = r.get("cudnn_infer"), r.get("cudnn_train")
            ci_s = f"{ci:9.3f}" if ci is not None else f"{'n/a':>9}"
            ct_s = f"{ct:7.3f}" if ct is not None else f"{'n/a':>7}"
            print(
                f"{cfg_name:6} {cell:5} | {ci_s} {ct_s} | "
                f"{r['eager_infer']:9.3f} {r['eager_train']:7.3f} {_ratio(r['eager_infer'], ci)} "
                f"{_ratio(r['eager_train'], ct)} | {r['graph_infer']:9.3f} {r['graph_train']:7.3f} "
                f"{_ratio(r['graph_infer'], ci)} {_ratio(r['graph_train'], ct)}",
                flush=True,
            )
    status = 0
    if torch is not None and not args.quick:
        print("\ntargets (training step, tinyseq / cuDNN):")
        for cells, cfgs, impl, limit in TARGETS:
            for cfg_name in cfgs:
                for cell in cells:
                    r = results.get(cfg_name, {}).get(cell)
                    if r is None:
                        continue
                    ratio = r[f"{impl}_train"] / r["cudnn_train"]
                    ok = ratio <= limit
                    status |= 0 if ok else 1
                    print(f"  {cell:5} {cfg_name:5} {impl:5} {ratio:5.2f} <= {limit:.1f}  "
                          f"{'met' if ok else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "configs": {k: configs[k] for k in args.configs},
                       "ms": results}, f, indent=1)
    # status 1 = a target was missed (the figures are still valid)
    return status


if __name__ == "__main__":
    sys.exit(main())
