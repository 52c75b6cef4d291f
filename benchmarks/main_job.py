"""The main job's training speed: ``tinyseq train``'s recipe against the same in PyTorch.

The character language model of ``tinyseq train`` (TASK_DEFAULTS["lm"]: embedding 64,
LSTM 256, 16 carried streams, windows of 100 characters, Adam 4e-3, gradient clipping at
5, one BLAS thread) on the built-in corpus's training split (the first 95%), and the same
recipe as a plain PyTorch script (``nn.Embedding``, ``nn.LSTM``, ``nn.Linear``, Adam,
``clip_grad_norm_``, the state detached between windows). Each runs in its own process
on one thread: tinyseq with the compiled element-wise pass (numba; the ``jit`` extra),
tinyseq without it (``TINYSEQ_JIT=0``), and PyTorch; rounds alternate the order. Prints
steps per second of each and tinyseq/PyTorch (higher is better).

    python benchmarks/main_job.py               # 60 timed steps after 5 warm-up, twice
    python benchmarks/main_job.py --quick       # a smoke run (few steps, once)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
VALID_FRACTION = 0.05  # tinyseq train holds out the last 5% of the corpus


def _corpus_ids() -> tuple[Any, int]:
    """The training split of the built-in corpus as character ids, and the vocab size."""
    from tinyseq.data import Vocab, default_corpus

    text = default_corpus()
    text = text[: int(len(text) * (1 - VALID_FRACTION))]
    vocab = Vocab.build([list(text)])
    return vocab.encode_text(text), len(vocab)


def tinyseq_worker(steps: int, warmup: int) -> dict[str, Any]:
    """Steps per second of tinyseq's Trainer on the main job's model and data."""
    import tinyseq as ts
    from tinyseq.config import TASK_DEFAULTS
    from tinyseq.data import StreamDataset
    from tinyseq.kernels.jit import jit_enabled
    from tinyseq.models import LanguageModel
    from tinyseq.trainer import Trainer

    lm = TASK_DEFAULTS["lm"]
    ids, V = _corpus_ids()
    ts.manual_seed(0)
    model = LanguageModel(V, embedding_dim=lm["embedding_dim"], hidden_size=lm["hidden_size"])
    data = StreamDataset(ids, lm["batch_size"], lm["seq_len"])
    t0 = time.perf_counter()
    trainer = Trainer(model, data, lr=lm["lr"], max_steps=warmup, progress=False, seed=0)
    trainer.fit()  # warm-up: the first step also pays any JIT load or compile
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.max_steps = warmup + steps
    trainer.fit()
    wall = time.perf_counter() - t0
    return {"steps_per_s": steps / wall, "warmup_s": first, "jit": jit_enabled()}


def torch_worker(steps: int, warmup: int) -> dict[str, Any]:
    """Steps per second of the same recipe written as a PyTorch script."""
    import numpy as np
    import torch

    from tinyseq.config import TASK_DEFAULTS

    torch.set_num_threads(1)
    lm = TASK_DEFAULTS["lm"]
    ids, V = _corpus_ids()
    B, T, E, H = lm["batch_size"], lm["seq_len"], lm["embedding_dim"], lm["hidden_size"]
    arr = np.asarray(ids, dtype=np.int64)
    rows = (len(arr) - 1) // B
    inputs = torch.from_numpy(arr[: rows * B].reshape(B, rows).copy())
    targets = torch.from_numpy(arr[1 : rows * B + 1].reshape(B, rows).copy())
    n_windows = rows // T
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H)
            self.head = torch.nn.Linear(H, V)

        def forward(self, x: Any, state: Any) -> Any:
            y, state = self.rnn(self.embedding(x), state)
            return self.head(y), state

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=lm["lr"])
    state = None

    def step(k: int) -> None:
        nonlocal state
        w = k % n_windows
        x = inputs[:, w * T : (w + 1) * T].T  # (T, B)
        y = targets[:, w * T : (w + 1) * T].T
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    t0 = time.perf_counter()
    for k in range(warmup):
        step(k)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(warmup, warmup + steps):
        step(k)
    wall = time.perf_counter() - t0
    return {"steps_per_s": steps / wall, "warmup_s": first}


def _run(kind: str, steps: int, warmup: int) -> dict[str, Any]:
    env = {**os.environ, **ONE_THREAD}
    if kind == "numpy":
        env["TINYSEQ_JIT"] = "0"
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        kind,
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=60, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each, alternating the order")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 steps, one round")
    ap.add_argument("--worker", choices=["jit", "numpy", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.rounds = 3, 1, 1
    if args.worker:
        fn = torch_worker if args.worker == "torch" else tinyseq_worker
        print(json.dumps(fn(args.steps, args.warmup)))
        return {}
    kinds = ["jit", "numpy", "torch"]
    try:
        import numba  # noqa: F401
    except ImportError:
        kinds.remove("jit")  # without numba, "numpy" is what tinyseq runs
    try:
        import torch  # noqa: F401
    except ImportError:
        kinds.remove("torch")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            runs[kind].append(_run(kind, args.steps, args.warmup))
    print(
        f"main job recipe (LSTM 256, batch 16, windows of 100, one thread): "
        f"{args.steps} timed steps after {args.warmup} warm-up, {args.rounds} round(s)"
    )
    result: dict[str, Any] = {"steps": args.steps, "rounds": args.rounds}
    for kind in kinds:
        sps = statistics.median(r["steps_per_s"] for r in runs[kind])
        warm = statistics.median(r["warmup_s"] for r in runs[kind])
        result[kind] = {"steps_per_s": sps, "warmup_s": warm, "runs": runs[kind]}
        label = {"jit": "tinyseq (compiled pass)", "numpy": "tinyseq (NumPy only)"}.get(
            kind, "PyTorch"
        )
        print(f"  {label:24s} {sps:6.2f} steps/s   (warm-up {args.warmup} steps: {warm:.2f} s)")
    if "torch" in result:
        for kind in kinds:
            if kind != "torch":
                ratio = result[kind]["steps_per_s"] / result["torch"]["steps_per_s"]
                result[kind]["vs_torch"] = ratio
                print(f"  {kind}: {ratio:.2f}x PyTorch's steps per second")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
