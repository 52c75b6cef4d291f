"""Per-op overhead of tinyseq's autograd engine against PyTorch eager, on small tensors.

A chain of 1,000 ops on (16, 64) float32 arrays (matmul with a (64, 64) weight, bias add,
tanh, broadcast mul, sigmoid, sub, scalar mul, add, broadcast mul, tanh), forward +
backward, timed for tinyseq and for the same chain in PyTorch eager in the same run. At
this size the array work is small, so the figure is mostly each engine's cost per op.

    python benchmarks/overhead.py           # full run (median of >= 10 runs per side)
    python benchmarks/overhead.py --quick   # smoke run with few repeats (for CI)
    python benchmarks/overhead.py --threads 1   # both sides on one thread

Timing protocol: each side runs in blocks (one warm-up run, then timed runs), blocks
alternate which side goes first, with a short pause between blocks so BLAS worker threads
spinning after one side do not slow the other. Prints both medians and tinyseq/PyTorch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tinyseq as ts

BATCH, FEATURES = 16, 64
OPS_PER_BLOCK = 10


def make_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs and weights. The gains keep activations O(1) over the whole chain: a chain
    that decays reaches float32 denormals, which slow the two engines very unevenly."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((BATCH, FEATURES)).astype(np.float32),
        "W": (1.5 * rng.standard_normal((FEATURES, FEATURES)) / np.sqrt(FEATURES)).astype(np.float32),
        "b": (0.1 * rng.standard_normal(FEATURES)).astype(np.float32),
        "g": rng.uniform(0.5, 1.5, FEATURES).astype(np.float32),
        "s": rng.uniform(1.0, 2.0, FEATURES).astype(np.float32),
    }


def chain(h: Any, W: Any, b: Any, g: Any, s: Any, tanh: Callable[[Any], Any],
          sigmoid: Callable[[Any], Any], n_ops: int) -> Any:
    """``n_ops`` ops (a multiple of 10) written once for both engines."""
    for _ in range(n_ops // OPS_PER_BLOCK):
        u = h @ W          # 1 matmul
        u = u + b          # 2 add (broadcast bias)
        u = tanh(u)        # 3
        v = u * g          # 4 mul (broadcast)
        v = sigmoid(v)     # 5
        w = v - h          # 6 sub
        w = w * 0.5        # 7 mul by a scalar
        w = w + u          # 8 add
        w = w * s          # 9 mul (broadcast, a second gain vector)
        h = tanh(w)        # 10
    return h


PARAMS = ("W", "b", "g", "s")


def tinyseq_step(arrays: dict[str, np.ndarray], n_ops: int) -> Callable[[], None]:
    x = ts.tensor(arrays["x"])
    params = [ts.tensor(arrays[k], requires_grad=True) for k in PARAMS]

    def step() -> None:
        for p in params:
            p.grad = None
        out = chain(x, *params, ts.tanh, ts.sigmoid, n_ops)
        out.sum().backward()

    return step


def torch_step(torch: Any, arrays: dict[str, np.ndarray], n_ops: int) -> Callable[[], None]:
    x = torch.tensor(arrays["x"])
    params = [torch.tensor(arrays[k], requires_grad=True) for k in PARAMS]

    def step() -> None:
        for p in params:
            p.grad = None
        out = chain(x, *params, torch.tanh, torch.sigmoid, n_ops)
        out.sum().backward()

    return step


def time_block(step: Callable[[], None], runs: int) -> list[float]:
    step()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def check_agreement(torch: Any, arrays: dict[str, np.ndarray], n_ops: int) -> tuple[float, float]:
    """(max |tinyseq - torch| of the chain's output, mean |output|): a sanity check.

    Over a short chain: the full one is chaotic, so float32 rounding differences grow.
    """
    n_ops = min(n_ops, 30)
    names = ("x",) + PARAMS
    ours = chain(*[ts.tensor(arrays[k]) for k in names], ts.tanh, ts.sigmoid, n_ops).numpy()
    with torch.no_grad():
        ref = chain(*[torch.tensor(arrays[k]) for k in names], torch.tanh, torch.sigmoid,
                    n_ops).numpy()
    return float(np.abs(ours - ref).max()), float(np.abs(ref).mean())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    parser.add_argument("--ops", type=int, default=1000, help="ops in the chain (multiple of 10)")
    parser.add_argument("--rounds", type=int, default=None, help="blocks per side")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per block")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both sides (default: every core this process may use)")
    args = parser.parse_args(argv)
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # BLAS reads its thread count when NumPy is imported: start again with it set
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    rounds = args.rounds or (1 if args.quick else 6)
    runs = args.runs or (2 if args.quick else 5)
    n_ops = max(OPS_PER_BLOCK, args.ops // OPS_PER_BLOCK * OPS_PER_BLOCK)
    # the cores this process may use: NumPy's BLAS uses them all, so torch gets as many
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else (os.cpu_count() or 1))

    try:
        import torch
    except ImportError:
        torch = None

    arrays = make_inputs()
    sides: dict[str, Callable[[], None]] = {"tinyseq": tinyseq_step(arrays, n_ops)}
    if torch is not None:
        torch.set_num_threads(threads)
        sides["torch"] = torch_step(torch, arrays, n_ops)
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name] += time_block(sides[name], runs)
            time.sleep(0.05)  # let BLAS threads stop spinning before the other side

    result = {f"{name}_ms": 1e3 * statistics.median(ts_) for name, ts_ in times.items()}
    print(f"chain of {n_ops} ops on ({BATCH}, {FEATURES}) float32, forward + backward, "
          f"{threads} threads, median of {rounds * runs} runs per side")
    print(f"tinyseq: {result['tinyseq_ms']:8.2f} ms  ({1e6 * result['tinyseq_ms'] / 1e3 / n_ops:.1f} us/op)")
    if torch is not None:
        result["ratio"] = result["tinyseq_ms"] / result["torch_ms"]
        print(f"torch:   {result['torch_ms']:8.2f} ms  ({1e6 * result['torch_ms'] / 1e3 / n_ops:.1f} us/op)"
              f"  [PyTorch {torch.__version__}]")
        print(f"ratio tinyseq/PyTorch: {result['ratio']:.2f}")
        diff, scale = check_agreement(torch, arrays, n_ops)
        print(f"output check: max |tinyseq - torch| {diff:.1e} (mean |output| {scale:.2f})")
    else:
        print("PyTorch not installed: tinyseq figure only")
    return result


if __name__ == "__main__":
    main()
