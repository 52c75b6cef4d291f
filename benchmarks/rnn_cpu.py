"""Recurrent layers on the CPU: tinyseq's fused kernels and step path against PyTorch.

For each config (T, B, I, H) and each of RNN (tanh), GRU (reset after the product,
PyTorch's form) and LSTM (standard), in one process run:

- tinyseq fused: ``ts.nn.Recurrent(cell, I, H)``, which runs the cell's fused kernel;
- tinyseq step path: the same layer with ``fused=False`` (one autograd graph per step);
- PyTorch CPU ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with the same weights and threads;
- with numba installed (the ``jit`` extra), tinyseq fused twice: with the compiled
  element-wise pass ("fused", the default) and without it ("numpy", ``use_jit(False)``);
- the GEMM floor: the fused layer's matrix products alone (the input product, one
  recurrent product per step; training adds the per-step dh products and the dx, dW_ih
  and dW_hh products), with no element-wise work: no element-wise change gets below it.

It prints inference and training-step times (forward + backward including the input
and weight gradients; median of the timed runs after warm-up), tinyseq/PyTorch, GFLOP/s
(GEMMs only: forward F = 2*T*B*(I+H)*g*H with g = 1, 3, 4 gates; a training step 3F),
and the memory a training forward keeps for backward, in bytes per T*B*H (tinyseq:
everything its forward left allocated, output included; PyTorch: the tensors autograd
saved plus the output). Then the Long config's time against the same layer at T=100
(linear in T means a ratio near 10), and a user-defined cell — the same LSTM written
as a plugin with no fused path — against that cell as a per-step PyTorch eager loop.
Last, the kernels generated from a cell's step (``tinyseq.kernels.generated``): the
built-in cells' generated kernels against their hand-written ones, the peephole LSTM and
minGRU plugins generated against their step path, the plugin LSTM generated against
PyTorch's fused LSTM, and the bytes the generated LSTM saves for backward.

    python benchmarks/rnn_cpu.py                       # everything (several minutes)
    python benchmarks/rnn_cpu.py --configs S M --cells lstm gru
    python benchmarks/rnn_cpu.py --quick               # smoke run on tiny shapes (CI)
    python benchmarks/rnn_cpu.py --threads 1           # both sides on one thread

Timing protocol: each implementation runs in blocks (warm-up runs, then timed runs);
blocks alternate which implementation goes first and pause briefly in between, because
BLAS worker threads keep spinning after a call and slow whatever runs next.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import tinyseq as ts
from tinyseq.cell import Cell, State, chunk, linear
from tinyseq.kernels import workspace
from tinyseq.kernels.columns import InputSteps
from tinyseq.kernels.generated import compile_cell, use_generated
from tinyseq.kernels.jit import jit_available, use_jit
from tinyseq.nn import Parameter
from tinyseq.nn.init import uniform_

CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "S": (50, 16, 128, 128),
    "B1": (100, 1, 512, 512),
    "M": (100, 64, 512, 512),
    "Long": (1000, 16, 256, 256),
}
QUICK_CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "S": (6, 3, 8, 8),
    "B1": (6, 1, 8, 8),
    "M": (8, 4, 16, 16),
    "Long": (40, 2, 8, 8),
}
# cell name -> (torch class, gates, tinyseq cell options)
CELLS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "rnn": ("RNN", 1, {"nonlinearity": "tanh"}),
    "gru": ("GRU", 3, {"reset_after": True}),
    "lstm": ("LSTM", 4, {"variant": "standard"}),
}
# saved-activation budgets, bytes per T*B*H in float32 (+10% allowed)
MEMORY_TARGET = {"rnn": 4, "gru": 20, "lstm": 28}
PAUSE_S = [0.1]  # between timing blocks (0 in --quick mode)
INTERLEAVE = [False]  # --interleave: take turns call by call (single-threaded runs)


# ---- a user-defined cell: the LSTM as a plugin author writes it (no fused path) -----------
class PluginLSTM(Cell):
    """LSTM (i, f, g, o) written with tinyseq ops only; the layer runs it step by step."""

    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        H = hidden_size
        bound = 1.0 / math.sqrt(H)
        self.weight_ih = Parameter(ts.zeros((4 * H, input_size)))
        self.weight_hh = Parameter(ts.zeros((4 * H, H)))
        self.bias = Parameter(ts.zeros((4 * H,)))
        for p in self.parameters():
            uniform_(p, -bound, bound)

    def input_projection(self, x: ts.Tensor) -> ts.Tensor:
        return linear(x, self.weight_ih, self.bias)

    def step(self, x_t: ts.Tensor, state: State) -> tuple[ts.Tensor, State]:
        h, c = state
        i, f, g, o = chunk(x_t + linear(h, self.weight_hh), 4)
        c = ts.sigmoid(f) * c + ts.sigmoid(i) * ts.tanh(g)
        h = ts.sigmoid(o) * ts.tanh(c)
        return h, (h, c)


def torch_plugin_loop(torch: Any, x: Any, w_ih: Any, w_hh: Any, b: Any) -> Any:
    """The same cell as a per-step PyTorch eager loop (input product hoisted likewise)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    gx = torch.nn.functional.linear(x, w_ih, b)
    h = x.new_zeros((B, H))
    c = x.new_zeros((B, H))
    outs = []
    for t in range(T):
        i, f, g, o = (gx[t] + torch.nn.functional.linear(h, w_hh)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


# ---- timing -------------------------------------------------------------------------------
def measure(
    fns: dict[str, Callable[[], Any]], rounds: int, runs: int, warmup: int
) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating blocks.

    With ``INTERLEAVE`` set (single-threaded runs only, where no BLAS threads spin
    between calls), the functions instead take turns call by call, so a load that
    changes over time hits all of them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    if INTERLEAVE[0]:
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        for r in range(rounds * runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
        return {name: statistics.median(ts_) for name, ts_ in times.items()}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = fns[name]
            for _ in range(warmup):
                fn()
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
            time.sleep(PAUSE_S[0])
    return {name: statistics.median(ts_) for name, ts_ in times.items()}


def flops(T: int, B: int, n_in: int, H: int, gates: int) -> float:
    """GEMM FLOPs of one forward pass."""
    return 2.0 * T * B * (n_in + H) * gates * H


# ---- the implementations ------------------------------------------------------------------
class Case:
    """One (config, cell): the tinyseq layers, the PyTorch module and their inputs."""

    def __init__(
        self, torch: Any, cell: str, shape: tuple[int, int, int, int], seed: int = 0
    ) -> None:
        T, B, n_in, H = shape
        torch_name, self.gates, options = CELLS[cell]
        ts.manual_seed(seed)
        self.shape = shape
        self.layer = ts.nn.Recurrent(cell, n_in, H, fused=True, **options)
        self.step_layer = ts.nn.Recurrent(cell, n_in, H, fused=False, **options)
        self.step_layer.load_state_dict(self.layer.state_dict())
        self.torch = torch
        self.module = getattr(torch.nn, torch_name)(n_in, H)
        src = self.layer.cell_at(0)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.module, name + "_l0").copy_(torch.from_numpy(getattr(src, name).data))
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((T, B, n_in)).astype(np.float32)
        dy = rng.standard_normal((T, B, H)).astype(np.float32)
        self.x = ts.tensor(x, requires_grad=True)
        self.dy = ts.tensor(dy)
        self.xt = torch.tensor(x, requires_grad=True)
        self.dyt = torch.tensor(dy)

    # tinyseq
    def infer(self, layer: Any) -> Callable[[], Any]:
        def run() -> Any:
            with ts.no_grad():
                return layer(self.x)

        return run

    def train(self, layer: Any) -> Callable[[], Any]:
        def run() -> None:
            layer.zero_grad()
            self.x.grad = None
            y, _ = layer(self.x)
            y.backward(self.dy)

        return run

    # PyTorch
    def torch_infer(self) -> Any:
        with self.torch.no_grad():
            return self.module(self.xt)

    def torch_train(self) -> None:
        self.module.zero_grad(set_to_none=True)
        self.xt.grad = None
        y, _ = self.module(self.xt)
        y.backward(self.dyt)

    def max_difference(self) -> float:
        """Largest |tinyseq fused - PyTorch| over the outputs (a sanity check)."""
        y = self.infer(self.layer)()[0].data
        yt = self.torch_infer()[0].numpy()
        return float(np.abs(y - yt).max())

    # memory
    def tinyseq_saved_bytes(self, layer: Any) -> int:
        """Bytes a training forward leaves allocated until backward (output included).

        New allocations, plus what the forward took out of the kernels' scratch pool and
        kept (the saved gates come from the pool and go back after backward).
        """
        self.train(layer)()  # fill the scratch pools first: they are not saved state
        pooled = workspace.nbytes
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        y, state = layer(self.x)
        kept = tracemalloc.get_traced_memory()[0] - base + pooled - workspace.nbytes
        tracemalloc.stop()
        del y, state
        return kept

    def torch_saved_bytes(self) -> int:
        """Bytes of the tensors autograd saves in a training forward, plus the output."""
        torch = self.torch
        skip = {p.untyped_storage().data_ptr() for p in self.module.parameters()}
        skip.add(self.xt.untyped_storage().data_ptr())
        seen: dict[int, int] = {}

        def pack(t: Any) -> Any:
            storage = t.untyped_storage()
            if storage.data_ptr() not in skip:
                seen[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y, _ = self.module(self.xt)
        seen[y.untyped_storage().data_ptr()] = y.untyped_storage().nbytes()
        return sum(seen.values())


class GemmFloor:
    """The fused kernels' matrix products for one shape, with no element-wise work."""

    def __init__(self, shape: tuple[int, int, int, int], gates: int, seed: int = 0) -> None:
        T, B, n_in, H = shape
        G = gates * H
        rng = np.random.default_rng(seed)
        f32 = np.float32
        self.T = T
        self.w_ih = rng.standard_normal((G, n_in)).astype(f32)
        self.w_hh = rng.standard_normal((G, H)).astype(f32)
        self.x3 = rng.standard_normal((T, B, n_in)).astype(f32)
        self.x = self.x3.reshape(T * B, n_in)
        self.h = rng.standard_normal((H, B)).astype(f32) * f32(0.1)
        self.hs = rng.standard_normal((T * B, H)).astype(f32)
        self.rec = np.empty((G, B), f32)
        self.d = rng.standard_normal((G, T * B)).astype(f32) * f32(0.1)
        self.dh = np.empty((H, B), f32)

    def infer(self) -> None:
        # the input product in the fused kernels' chunks of steps (a whole-sequence
        # product is read back from memory and costs more at long T)
        xw = InputSteps(np, self.x3, self.w_ih, None)
        for t in range(self.T):
            xw[t]
            np.matmul(self.w_hh, self.h, out=self.rec)
        xw.release()

    def train(self) -> None:
        self.infer()
        w_hh_t = self.w_hh.T.copy()
        B = self.h.shape[1]
        for t in range(self.T):
            np.matmul(w_hh_t, self.d[:, t * B : (t + 1) * B], out=self.dh)
        np.matmul(self.d.T, self.w_ih)
        np.matmul(self.d, self.x)
        np.matmul(self.d, self.hs)


def sgemm_peak(n: int = 2048, runs: int = 10) -> float:
    """GFLOP/s of NumPy's float32 GEMM on a large square product (the machine's peak)."""
    a = np.ones((n, n), np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        np.matmul(a, a, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def with_jit(enabled: bool, fn: Callable[[], Any]) -> Callable[[], Any]:
    """fn run with the compiled element-wise pass on or off."""

    def run() -> Any:
        with use_jit(enabled):
            return fn()

    return run


def run_layers(
    torch: Any, configs: dict[str, tuple[int, int, int, int]], cells: list[str], args: Any
) -> list[dict[str, Any]]:
    rows = []
    for cfg, shape in configs.items():
        T, B, n_in, H = shape
        for cell in cells:
            case = Case(torch, cell, shape)
            impls_inf: dict[str, Callable[[], Any]] = {
                "fused": case.infer(case.layer),
                "torch": case.torch_infer,
            }
            impls_train: dict[str, Callable[[], Any]] = {
                "fused": case.train(case.layer),
                "torch": case.torch_train,
            }
            if jit_available():
                impls_inf["fused"] = with_jit(True, impls_inf["fused"])
                impls_train["fused"] = with_jit(True, impls_train["fused"])
                impls_inf["numpy"] = with_jit(False, case.infer(case.layer))
                impls_train["numpy"] = with_jit(False, case.train(case.layer))
            if not args.no_floor:
                floor = GemmFloor(shape, case.gates)
                impls_inf["floor"] = floor.infer
                impls_train["floor"] = floor.train
            if not args.no_step:
                impls_inf["step"] = case.infer(case.step_layer)
                impls_train["step"] = case.train(case.step_layer)
            runs = args.runs
            if cfg == "Long" and not args.quick:
                runs = max(1, runs // 2)  # Long takes 10x longer per call
            inf = measure(impls_inf, args.rounds, runs, args.warmup)
            train = measure(impls_train, args.rounds, runs, args.warmup)
            f = flops(T, B, n_in, H, case.gates)
            tbh = T * B * H
            row = {
                "config": cfg,
                "shape": shape,
                "cell": cell,
                "infer_ms": {k: v * 1e3 for k, v in inf.items()},
                "train_ms": {k: v * 1e3 for k, v in train.items()},
                "infer_gflops": {k: f / v / 1e9 for k, v in inf.items()},
                "train_gflops": {k: 3 * f / v / 1e9 for k, v in train.items()},
                "saved_bytes_per_tbh": {
                    "fused": case.tinyseq_saved_bytes(case.layer) / tbh,
                    "torch": case.torch_saved_bytes() / tbh,
                },
                "max_abs_diff_vs_torch": case.max_difference(),
            }
            if not args.no_step and not (cfg == "Long" and not args.quick):
                row["saved_bytes_per_tbh"]["step"] = case.tinyseq_saved_bytes(case.step_layer) / tbh
            rows.append(row)
            print_row(row)
            sys.stdout.flush()
    return rows


def run_long_scaling(
    torch: Any, shape: tuple[int, int, int, int], cells: list[str], args: Any
) -> list[dict[str, Any]]:
    """Time at T and at T/10 for the fused layer and PyTorch: the ratio shows linearity."""
    T, B, n_in, H = shape
    short = (max(1, T // 10), B, n_in, H)
    rows = []
    for cell in cells:
        result: dict[str, Any] = {"cell": cell, "T": [short[0], T]}
        for mode in ("infer", "train"):
            per_t = {}
            for s in (short, shape):
                case = Case(torch, cell, s)
                fns = {
                    "fused": case.infer(case.layer) if mode == "infer" else case.train(case.layer),
                    "torch": case.torch_infer if mode == "infer" else case.torch_train,
                }
                runs = args.runs if s is short or args.quick else max(1, args.runs // 2)
                per_t[s[0]] = measure(fns, args.rounds, runs, args.warmup)
            result[mode] = {
                impl: {
                    "ms_short": per_t[short[0]][impl] * 1e3,
                    "ms_long": per_t[T][impl] * 1e3,
                    "ratio": per_t[T][impl] / per_t[short[0]][impl],
                }
                for impl in ("fused", "torch")
            }
        rows.append(result)
        for mode in ("infer", "train"):
            r = result[mode]
            print(
                f"  Long {cell:5s} {mode:5s}  T={short[0]}->{T}: fused "
                f"{r['fused']['ms_short']:.2f}->{r['fused']['ms_long']:.2f} ms "
                f"(x{r['fused']['ratio']:.2f}), torch {r['torch']['ms_short']:.2f}->"
                f"{r['torch']['ms_long']:.2f} ms (x{r['torch']['ratio']:.2f})"
            )
    return rows


def run_plugin(
    torch: Any, configs: dict[str, tuple[int, int, int, int]], args: Any
) -> list[dict[str, Any]]:
    """The plugin LSTM on the step path against the same cell as a PyTorch eager loop."""
    rows = []
    for cfg, shape in configs.items():
        row = plugin_case(torch, shape, args)
        row["config"] = cfg
        rows.append(row)
        inf, train = row["infer_ms"], row["train_ms"]
        print(
            f"  plugin LSTM {cfg:4s} infer {inf['tinyseq']:8.2f} vs eager torch "
            f"{inf['torch']:8.2f} ms ({inf['tinyseq'] / inf['torch']:.2f}x)   train "
            f"{train['tinyseq']:8.2f} vs {train['torch']:8.2f} ms "
            f"({train['tinyseq'] / train['torch']:.2f}x)   "
            f"max|diff| {row['max_abs_diff_vs_torch']:.1e}"
        )
    return rows


def plugin_case(torch: Any, shape: tuple[int, int, int, int], args: Any) -> dict[str, Any]:
    T, B, n_in, H = shape
    ts.manual_seed(0)
    layer = ts.nn.Recurrent(PluginLSTM, n_in, H)
    cell = layer.cell_at(0)
    w = {
        n: torch.tensor(getattr(cell, n).data, requires_grad=True)
        for n in ("weight_ih", "weight_hh", "bias")
    }
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, n_in)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    xs, dys = ts.tensor(x, requires_grad=True), ts.tensor(dy)
    xt, dyt = torch.tensor(x, requires_grad=True), torch.tensor(dy)

    def ts_infer() -> Any:
        with ts.no_grad():
            return layer(xs)

    def ts_train() -> None:
        layer.zero_grad()
        xs.grad = None
        y, _ = layer(xs)
        y.backward(dys)

    def t_infer() -> Any:
        with torch.no_grad():
            return torch_plugin_loop(torch, xt, w["weight_ih"], w["weight_hh"], w["bias"])

    def t_train() -> None:
        for p in (*w.values(), xt):
            p.grad = None
        torch_plugin_loop(torch, xt, w["weight_ih"], w["weight_hh"], w["bias"]).backward(dyt)

    diff = float(np.abs(ts_infer()[0].data - t_infer().numpy()).max())
    inf = measure({"tinyseq": ts_infer, "torch": t_infer}, args.rounds, args.runs, args.warmup)
    train = measure({"tinyseq": ts_train, "torch": t_train}, args.rounds, args.runs, args.warmup)
    return {
        "shape": shape,
        "infer_ms": {k: v * 1e3 for k, v in inf.items()},
        "train_ms": {k: v * 1e3 for k, v in train.items()},
        "max_abs_diff_vs_torch": diff,
    }


# ---- generated kernels --------------------------------------------------------------------
def _tutorial_cell(path: str, name: str) -> Any:
    import importlib.util

    file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", path)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _layer_fns(layer: Any, shape: tuple[int, int, int, int], ctx: Callable[[], Any]) -> tuple[
        Callable[[], Any], Callable[[], Any]]:
    """(inference, training step) of ``layer`` under the context ``ctx()`` makes."""
    T, B, n_in, H = shape
    rng = np.random.default_rng(0)
    xs = ts.tensor(rng.standard_normal((T, B, n_in)).astype(np.float32), requires_grad=True)
    dys = ts.tensor(rng.standard_normal((T, B, layer.output_size)).astype(np.float32))

    def infer() -> Any:
        with ctx(), ts.no_grad():
            return layer(xs)

    def train() -> None:
        with ctx():
            layer.zero_grad()
            xs.grad = None
            y, _ = layer(xs)
            y.backward(dys)

    return infer, train


def run_generated(
    torch: Any, configs: dict[str, tuple[int, int, int, int]], cells: list[str], args: Any
) -> dict[str, Any]:
    """The issue's target rows for the generated kernels (ratios, same run)."""
    out: dict[str, Any] = {"vs_hand": [], "vs_step": [], "vs_torch": []}
    print("Generated kernels vs the hand-written fused kernels (generated/hand, infer / train):")
    for cfg, shape in configs.items():
        for cell in cells:
            ts.manual_seed(0)
            layer = ts.nn.Recurrent(cell, shape[2], shape[3])
            fns: dict[str, Callable[[], Any]] = {}
            variants: dict[str, Callable[[], Any]] = {
                "generated": lambda: use_generated(True, prefer=True),
                "hand": lambda: use_generated(False),
            }
            if jit_available():
                variants["hand_numpy"] = lambda: _both(use_generated(False), use_jit(False))
            for name, ctx in variants.items():
                fns[f"{name}_infer"], fns[f"{name}_train"] = _layer_fns(layer, shape, ctx)
            inf = measure({k: v for k, v in fns.items() if k.endswith("infer")}, args.rounds,
                          _runs(args, cfg), args.warmup)
            train = measure({k: v for k, v in fns.items() if k.endswith("train")}, args.rounds,
                            _runs(args, cfg), args.warmup)
            row = {"config": cfg, "cell": cell,
                   "infer_ms": {k[:-6]: v * 1e3 for k, v in inf.items()},
                   "train_ms": {k[:-6]: v * 1e3 for k, v in train.items()}}
            out["vs_hand"].append(row)
            i, t = row["infer_ms"], row["train_ms"]
            extra = ""
            if "hand_numpy" in i:
                extra = (f"   vs hand without jit {i['generated'] / i['hand_numpy']:.2f}x / "
                         f"{t['generated'] / t['hand_numpy']:.2f}x")
            print(f"  {cfg:4s} {cell:4s} generated {i['generated']:8.2f} / {t['generated']:8.2f} ms"
                  f"  hand {i['hand']:8.2f} / {t['hand']:8.2f} ms  "
                  f"{i['generated'] / i['hand']:.2f}x / {t['generated'] / t['hand']:.2f}x{extra}")
    print("Plugin cells, generated vs step path (training step):")
    plugins = {"peephole_lstm": _tutorial_cell("tutorials/cell_plugins/peephole_lstm.py",
                                               "PeepholeLSTMCell"),
               "mingru": _tutorial_cell("tutorials/tinyseq_mingru/tinyseq_mingru/__init__.py",
                                        "MinGRUCell")}
    for cfg in [c for c in ("S", "M") if c in configs]:
        shape = configs[cfg]
        for name, cls in plugins.items():
            ts.manual_seed(0)
            layer = ts.nn.Recurrent(cls, shape[2], shape[3])
            _, gen = _layer_fns(layer, shape, lambda: use_generated(True))
            _, step = _layer_fns(layer, shape, lambda: use_generated(False))
            t = measure({"generated": gen, "step": step}, args.rounds, args.runs, args.warmup)
            out["vs_step"].append({"config": cfg, "cell": name,
                                   "train_ms": {k: v * 1e3 for k, v in t.items()}})
            print(f"  {cfg:4s} {name:14s} generated {t['generated'] * 1e3:8.2f} ms  step "
                  f"{t['step'] * 1e3:8.2f} ms  {t['generated'] / t['step']:.2f}x")
    print("Plugin LSTM (the cell above), generated vs PyTorch's fused nn.LSTM (infer / train):")
    for cfg in [c for c in ("S", "M") if c in configs]:
        T, B, n_in, H = shape = configs[cfg]
        ts.manual_seed(0)
        layer = ts.nn.Recurrent(PluginLSTM, n_in, H)
        g_inf, g_train = _layer_fns(layer, shape, lambda: use_generated(True))
        ref = torch.nn.LSTM(n_in, H)
        rng = np.random.default_rng(0)
        xt = torch.tensor(rng.standard_normal((T, B, n_in)).astype(np.float32), requires_grad=True)
        dyt = torch.tensor(rng.standard_normal((T, B, H)).astype(np.float32))

        def t_inf(ref: Any = ref, xt: Any = xt) -> Any:
            with torch.no_grad():
                return ref(xt)

        def t_train(ref: Any = ref, xt: Any = xt, dyt: Any = dyt) -> None:
            ref.zero_grad()
            xt.grad = None
            ref(xt)[0].backward(dyt)

        i = measure({"generated": g_inf, "torch": t_inf}, args.rounds, args.runs, args.warmup)
        t = measure({"generated": g_train, "torch": t_train}, args.rounds, args.runs, args.warmup)
        out["vs_torch"].append({"config": cfg, "infer_ms": {k: v * 1e3 for k, v in i.items()},
                                "train_ms": {k: v * 1e3 for k, v in t.items()}})
        print(f"  {cfg:4s} generated {i['generated'] * 1e3:8.2f} / {t['generated'] * 1e3:8.2f} ms"
              f"  torch {i['torch'] * 1e3:8.2f} / {t['torch'] * 1e3:8.2f} ms  "
              f"{i['generated'] / i['torch']:.2f}x / {t['generated'] / t['torch']:.2f}x")
    lstm = ts.registry.get_cell_spec("lstm").create(8, 16)
    out["saved_bytes_per_tbh_lstm"] = compile_cell(lstm).plan.saved_bytes_per_tbh(4)
    print(f"Saved for backward, generated LSTM (float32, h and c states included): "
          f"{out['saved_bytes_per_tbh_lstm']:g} bytes per T*B*H")
    return out


def _both(a: Any, b: Any) -> Any:
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(a)
    stack.enter_context(b)
    return stack


def _runs(args: Any, cfg: str) -> int:
    return max(1, args.runs // 2) if cfg == "Long" else args.runs


def print_row(row: dict[str, Any]) -> None:
    inf, train = row["infer_ms"], row["train_ms"]
    mem = row["saved_bytes_per_tbh"]

    def cell(d: dict[str, float], k: str) -> str:
        return f"{d[k]:9.2f}" if k in d else "        -"

    def ratio(d: dict[str, float], k: str) -> str:
        return f"{d[k] / d['torch']:6.2f}x" if k in d else "      -"

    for label, d, gf, indent in (
        ("infer", inf, row["infer_gflops"], f"{row['config']:4s} {row['cell']:4s}"),
        ("train", train, row["train_gflops"], f"{'':9s}"),
    ):
        print(
            f"{indent} {label}  fused{cell(d, 'fused')} numpy{cell(d, 'numpy')} "
            f"step{cell(d, 'step')} floor{cell(d, 'floor')} torch{cell(d, 'torch')} ms  "
            f"/torch: fused {ratio(d, 'fused')} numpy {ratio(d, 'numpy')} step "
            f"{ratio(d, 'step')} floor {ratio(d, 'floor')}  GFLOP/s fused {gf['fused']:6.1f} "
            f"torch {gf['torch']:6.1f}"
        )
    steps = f" step {mem['step']:.1f}" if "step" in mem else ""
    print(
        f"{'':9s} saved bytes/(T*B*H): fused {mem['fused']:.1f}{steps} torch {mem['torch']:.1f} "
        f"(target {MEMORY_TARGET[row['cell']]})   max|fused - torch| "
        f"{row['max_abs_diff_vs_torch']:.1e}"
    )


def blas_description() -> str:
    """Which BLAS NumPy uses, with its thread count where threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        return "; ".join(
            f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
            f"threads={i.get('num_threads')} ({os.path.basename(i.get('filepath', ''))})"
            for i in infos
        )
    except ImportError:
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[func-returns-value]
            return f"{blas.get('name')} {blas.get('version')} (threadpoolctl not installed)"
        except Exception:
            return "unknown"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few runs (smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="blocks per implementation")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per block")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs per block")
    parser.add_argument("--no-step", action="store_true", help="skip the tinyseq step path")
    parser.add_argument("--no-plugin", action="store_true", help="skip the plugin-cell comparison")
    parser.add_argument("--no-generated", action="store_true",
                        help="skip the generated-kernel comparisons")
    parser.add_argument("--only-generated", action="store_true",
                        help="run only the generated-kernel comparisons")
    parser.add_argument("--no-floor", action="store_true", help="skip the GEMM-floor timing")
    parser.add_argument(
        "--no-long-scaling", action="store_true", help="skip the T=100 vs T=1000 check"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for both sides (default: every core this process may use)",
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="alternate implementations call by call instead of in blocks (only with "
        "--threads 1: robust to a machine whose load changes during the run)",
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # BLAS reads its thread count when NumPy is imported: start again with it set
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.interleave and args.threads != 1:
        parser.error(
            "--interleave needs --threads 1 (spinning BLAS threads bias call-by-call timing)"
        )
    INTERLEAVE[0] = args.interleave
    if args.quick:
        PAUSE_S[0] = 0.0
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.runs = args.runs or (1 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: this benchmark compares against it")
        return {}
    threads = args.threads or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    torch.set_num_threads(threads)
    table = QUICK_CONFIGS if args.quick else CONFIGS
    configs = {name: table[name] for name in args.configs}
    env = {
        k: os.environ[k]
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")
        if k in os.environ
    }
    print(
        f"tinyseq RNN CPU benchmark: {threads} threads, torch {torch.__version__}, numpy {np.__version__}"
    )
    print(f"BLAS: {blas_description()}  env: {env or '-'}")
    if jit_available():
        import numba

        jit_line = f"numba {numba.__version__}: fused = compiled element-wise pass, numpy = without"
    else:
        jit_line = "numba not installed: fused = the NumPy kernels (no 'numpy' column)"
    print(f"jit: {jit_line}")
    how = "interleaved call by call" if args.interleave else "in alternating blocks"
    print(
        f"timing: median of {args.rounds} x {args.runs} runs after {args.warmup} warm-up, "
        f"{how} (Long: half the runs)"
    )
    results: dict[str, Any] = {
        "threads": threads,
        "blas": blas_description(),
        "env": env,
        "jit": jit_available(),
    }
    if args.only_generated:
        results["generated"] = run_generated(torch, configs, args.cells, args)
        return results
    n_peak = 256 if args.quick else 2048
    peak_before = sgemm_peak(n_peak)
    print(f"sgemm peak ({n_peak}^3 float32 GEMM, best of 10): {peak_before:.1f} GFLOP/s")
    results["layers"] = run_layers(torch, configs, args.cells, args)
    # the machine's speed drifts: the better of a measurement before and one after
    peak = max(peak_before, sgemm_peak(n_peak))
    results["sgemm_peak_gflops"] = peak
    print(f"sgemm peak, best of before and after the layers: {peak:.1f} GFLOP/s")
    for row in results["layers"]:
        row["train_fraction_of_peak"] = {
            k: v / peak for k, v in row["train_gflops"].items() if k in ("fused", "torch")
        }
        if row["cell"] == "lstm" or len(args.cells) == 1:
            frac = row["train_fraction_of_peak"]
            print(
                f"  {row['config']:4s} {row['cell']:4s} training, fraction of sgemm peak: "
                f"fused {frac['fused']:.0%}, torch {frac['torch']:.0%}"
            )
    if "Long" in configs and not args.no_long_scaling:
        print("Long config, time against T/10:")
        results["long_scaling"] = run_long_scaling(torch, configs["Long"], args.cells, args)
    if not args.no_plugin:
        plugin_cfgs = {k: table[k] for k in ("S", "M") if k in configs} or {"S": table["S"]}
        print(
            "User-defined cell (plugin LSTM, step path) vs the same cell as a PyTorch eager loop:"
        )
        with use_generated(False):  # the step path, as this section always measured
            results["plugin"] = run_plugin(torch, plugin_cfgs, args)
    if not args.no_generated:
        results["generated"] = run_generated(torch, configs, args.cells, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
