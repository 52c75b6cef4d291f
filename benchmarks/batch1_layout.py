"""Batch 1: which layout's recurrent products are faster on this machine.

The fused GRU and LSTM kernels run features x batch ("columns", :mod:`tinyseq.kernels.columns`):
per step the forward product is ``W_hh (G, H) @ h (H, 1)`` on the weights as stored, and
backward's is ``W_hh.T @ d`` from one transposed copy of W_hh per backward call. The other
choice, the batch x features ("rows") layout, multiplies ``h (1, H) @ W_hh.T`` (a transposed
view) forward and ``d (1, G) @ W_hh`` (the weights as stored, no copy) backward. Which one
wins is a property of the BLAS and the CPU, so this script measures both on the benchmark's
B1 shape (T = 100, H = 512, the LSTM's G = 4H) and prints, per thread count, the time per
step of each and the whole sequence's product time, the copy included:

    python benchmarks/batch1_layout.py
    python benchmarks/batch1_layout.py --hidden 256 --steps 100 --gates 3   # a GRU

The kernels use the columns layout; the last line says whether this machine agrees.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from tinyseq import backend


def _per_call_us(fn: Callable[[], object], calls: int) -> float:
    for _ in range(max(10, calls // 10)):
        fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512, help="H (default 512, the B1 config)")
    ap.add_argument("--gates", type=int, default=4, help="gate blocks: 4 LSTM, 3 GRU (default 4)")
    ap.add_argument("--steps", type=int, default=100, help="T: steps sharing one transposed copy")
    ap.add_argument("--calls", type=int, default=1000, help="timed calls per product")
    args = ap.parse_args()
    H, G, T = args.hidden, args.gates * args.hidden, args.steps
    rng = np.random.default_rng(0)
    w = rng.standard_normal((G, H)).astype(np.float32)
    w_t = np.empty((H, G), np.float32)
    h, d = rng.standard_normal((H, 1)).astype(np.float32), rng.standard_normal((G, 1)).astype(np.float32)
    gates, dh = np.empty((G, 1), np.float32), np.empty((H, 1), np.float32)
    print(f"batch 1, H = {H}, G = {G}, T = {T}, float32; numpy {np.__version__}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    verdicts = []
    for threads in sorted({1, cores}):
        with threadpool_limits(threads):
            copy_us = _per_call_us(lambda: backend.transposed_copy(np, w, w_t), max(20, args.calls // 50))
            cols_f = _per_call_us(lambda: np.matmul(w, h, out=gates), args.calls)
            rows_f = _per_call_us(lambda: np.matmul(h.T, w.T, out=gates.T), args.calls)
            cols_b = _per_call_us(lambda: np.matmul(w_t, d, out=dh), args.calls)
            rows_b = _per_call_us(lambda: np.matmul(d.T, w, out=dh.T), args.calls)
        cols = T * (cols_f + cols_b) + copy_us
        rows = T * (rows_f + rows_b)
        print(f"{threads} thread(s): forward  columns W@h {cols_f:7.1f} us   rows h@W.T {rows_f:7.1f} us")
        print(f"{'':12}backward columns W.T@d {cols_b:5.1f} us (+ {copy_us:.0f} us copy per call)   "
              f"rows d@W {rows_b:7.1f} us")
        print(f"{'':12}T steps: columns {cols / 1e3:.2f} ms, rows {rows / 1e3:.2f} ms, "
              f"rows/columns {rows / cols:.2f}x")
        verdicts.append((threads, rows / cols))
    agree = all(r >= 1.0 for _, r in verdicts)
    print("this machine " + ("agrees with the columns layout" if agree else
          "runs the rows layout faster at " + ", ".join(f"{t} thread(s)" for t, r in verdicts if r < 1.0)))


if __name__ == "__main__":
    main()
