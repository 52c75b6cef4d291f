"""The step path of a cell written as a plugin vs the same cell as a PyTorch eager loop.

    python benchmarks/step_path.py [--cells lstm gru minrnn] [--configs S M] [--runs 10]

Both sides hoist the input product and run one step per Python iteration with the same
ops; tinyseq runs the built-in cells with ``fused=False`` (their step path is ordinary
plugin code). Prints median milliseconds (inference / training step = forward +
backward incl. input and weight gradients) and the ratio tinyseq / torch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import tinyseq as ts

CONFIGS = {"S": (50, 16, 128, 128), "M": (100, 64, 512, 512), "B1": (100, 1, 512, 512)}


def torch_loop(kind: str, I: int, H: int):  # noqa: E741
    g = {"rnn": 1, "gru": 3, "lstm": 4}[kind]
    torch.manual_seed(0)
    k = 1 / H**0.5
    w_ih = (torch.rand(g * H, I) * 2 * k - k).requires_grad_()
    w_hh = (torch.rand(g * H, H) * 2 * k - k).requires_grad_()
    b_ih = (torch.rand(g * H) * 2 * k - k).requires_grad_()
    b_hh = (torch.rand(g * H) * 2 * k - k).requires_grad_()
    params = [w_ih, w_hh, b_ih, b_hh]

    def run(x):
        T, B, _ = x.shape
        h = torch.zeros(B, H)
        c = torch.zeros(B, H)
        if kind == "gru":
            gi = torch.nn.functional.linear(x, w_ih, b_ih)
        else:
            gi = torch.nn.functional.linear(x, w_ih, b_ih + b_hh)
        outs = []
        for t in range(T):
            if kind == "lstm":
                i, f, gg, o = (gi[t] + torch.nn.functional.linear(h, w_hh)).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
            elif kind == "gru":
                rz_x, n_x = gi[t].split([2 * H, H], 1)
                rz_h, n_h = torch.nn.functional.linear(h, w_hh, b_hh).split([2 * H, H], 1)
                r, z = torch.sigmoid(rz_x + rz_h).chunk(2, 1)
                n = torch.tanh(n_x + r * n_h)
                h = n + z * (h - n)
            else:
                h = torch.tanh(gi[t] + torch.nn.functional.linear(h, w_hh))
            outs.append(h)
        return torch.stack(outs)

    return run, params


def timeit(fn, runs: int, clock=time.perf_counter) -> float:
    fn()
    fn()
    times = []
    for _ in range(runs):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", nargs="+", default=["rnn", "gru", "lstm"])
    parser.add_argument("--configs", nargs="+", default=["S", "M"])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--cpu-time", action="store_true",
        help="time by process CPU time (robust on a busy machine; run with one thread: "
        "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1)",
    )
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"torch threads {torch.get_num_threads()}, clock {clock.__name__}")
    for cfg in args.configs:
        for kind in args.cells:
            compare(kind, cfg, args.runs, clock)


def compare(kind: str, cfg: str, runs: int, clock) -> None:
    T, B, I, H = CONFIGS[cfg]  # noqa: E741
    x_np = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    rnn = ts.nn.Recurrent(kind, I, H, fused=False)
    run_t, _ = torch_loop(kind, I, H)
    xs = ts.tensor(x_np)
    xt = torch.tensor(x_np)

    def ts_inf() -> None:
        with ts.no_grad():
            rnn(xs)

    def ts_train() -> None:
        out, _ = rnn(ts.tensor(x_np, requires_grad=True))
        out.sum().backward()

    def t_inf() -> None:
        with torch.no_grad():
            run_t(xt)

    def t_train() -> None:
        run_t(xt.clone().requires_grad_()).sum().backward()

    res = {}
    for label, fn in (("ts_inf", ts_inf), ("t_inf", t_inf), ("ts_train", ts_train),
                      ("t_train", t_train)):
        res[label] = timeit(fn, runs, clock)
        time.sleep(0.2)
    print(
        f"{cfg} {kind:5s} inference tinyseq {res['ts_inf']:8.2f} ms  torch-eager "
        f"{res['t_inf']:8.2f} ms  ratio {res['ts_inf'] / res['t_inf']:.2f} | train "
        f"tinyseq {res['ts_train']:8.2f} ms  torch-eager {res['t_train']:8.2f} ms  "
        f"ratio {res['ts_train'] / res['t_train']:.2f}"
    )

if __name__ == "__main__":
    main()
