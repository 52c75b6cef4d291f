"""Data-parallel throughput: the main job's model on 2 MPI processes vs 1 process.

The character language model of ``tinyseq train`` (TASK_DEFAULTS["lm"]: LSTM 256,
embedding 64, batch 16, windows of 100 characters) on the built-in corpus, trained for a
number of steps, every process on one BLAS thread, all in the same run:

- one process, batch 16 (the main job);
- ``mpiexec -n 2`` with the main job's batch on each rank (global batch 32): the usual
  data-parallel measure (weak scaling, as Horovod and ChainerMN report it): each rank
  does a main-job step and the ranks share one all-reduce;
- ``mpiexec -n 2`` with the main job's batch split (global batch 16, 8 per rank: strong
  scaling, the same recipe in less time), and one process on batch 8 (one rank's share:
  what bounds that speed-up).

Prints training tokens per second of each, the ratios, and the shares of a step rank 0
spends waiting for the other rank (a barrier, timed apart) and in the gradient
all-reduce itself.

    python benchmarks/distributed.py            # 30 timed steps after 3 warm-up steps, twice
    python benchmarks/distributed.py --quick    # a smoke run (few steps, once)

Needs mpi4py and an ``mpiexec`` (``pip install 'tinyseq[mpi]'``). The processes run
one after the other, alternating which goes first; on a busy machine the figures say
little (the two ranks compete with everything else for the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def worker(steps: int, warmup: int, batch: int | None = None) -> None:
    """One rank's run: warm-up steps, then timed steps; rank 0 prints a JSON line."""
    import tinyseq as ts
    from tinyseq.config import TASK_DEFAULTS
    from tinyseq.data import StreamDataset, Vocab, default_corpus
    from tinyseq.distributed import get_comm
    from tinyseq.models import LanguageModel
    from tinyseq.trainer import Trainer

    lm = TASK_DEFAULTS["lm"]
    comm = get_comm()
    text = default_corpus()
    vocab = Vocab.build([list(text)])
    ids = vocab.encode_text(text)
    ts.manual_seed(0)
    model = LanguageModel(len(vocab), embedding_dim=lm["embedding_dim"], hidden_size=lm["hidden_size"])
    data = StreamDataset(ids, batch or lm["batch_size"], lm["seq_len"])
    trainer = Trainer(model, data, lr=lm["lr"], max_steps=warmup, progress=False, seed=0, comm=comm)

    waited, in_allreduce = [0.0], [0.0]
    reduce = comm.allreduce_

    def timed(buf: Any) -> Any:
        # a barrier first tells waiting for the slower rank from moving the gradients
        t0 = time.perf_counter()
        comm.barrier()
        t1 = time.perf_counter()
        out = reduce(buf)
        waited[0] += t1 - t0
        in_allreduce[0] += time.perf_counter() - t1
        return out

    comm.allreduce_ = timed  # type: ignore[method-assign]
    trainer.fit()
    comm.barrier()
    tokens0, waited[0], in_allreduce[0] = trainer.tokens, 0.0, 0.0
    t0 = time.perf_counter()
    trainer.max_steps = warmup + steps
    trainer.fit()
    comm.barrier()
    wall = time.perf_counter() - t0
    if comm.rank == 0:
        print(json.dumps({"processes": comm.size, "batch": data.batch_size, "tokens_per_s": (trainer.tokens - tokens0) / wall,
                          "step_ms": 1e3 * wall / steps, "allreduce_share": in_allreduce[0] / wall,
                          "wait_share": waited[0] / wall}))


def _run(cmd: list[str]) -> dict[str, Any]:
    env = {**os.environ, **ONE_THREAD}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each, alternating which goes first")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 steps, one round")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.warmup, args.rounds = 4, 1, 1
    if args.worker:
        worker(args.steps, args.warmup, args.batch)
        return
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("needs mpiexec on PATH: pip install 'tinyseq[mpi]'")
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--steps", str(args.steps),
          "--warmup", str(args.warmup)]
    one: list[dict[str, Any]] = []
    weak: list[dict[str, Any]] = []  # 2 ranks, the main job's batch each
    two: list[dict[str, Any]] = []  # 2 ranks, the main job's batch split
    half: list[dict[str, Any]] = []  # one process on one rank's share: the ideal speed-up
    for r in range(args.rounds):
        order = [(one, me), (weak, [mpiexec, "-n", "2", *me, "--batch", "32"]),
                 (two, [mpiexec, "-n", "2", *me]), (half, [*me, "--batch", "8"])]
        for results, cmd in order if r % 2 == 0 else order[::-1]:
            results.append(_run(cmd))
    best1, best_weak, best2, best_half = (max(runs, key=lambda d: d["tokens_per_s"])
                                          for runs in (one, weak, two, half))
    print(f"LSTM 256, embedding 64, seq 100; one BLAS thread per process; "
          f"best of {args.rounds} x {args.steps} steps")
    print(f"1 process, batch 16       : {best1['tokens_per_s']:8,.0f} tokens/s  "
          f"({best1['step_ms']:.1f} ms/step)")
    for name, best in (("2 processes, 16 each (32)", best_weak), ("2 processes, 8 each (16) ", best2)):
        print(f"{name}: {best['tokens_per_s']:8,.0f} tokens/s  ({best['step_ms']:.1f} ms/step), "
              f"all-reduce {100 * best['allreduce_share']:.1f}% of a step, waiting for the other "
              f"rank before it {100 * best['wait_share']:.1f}%; "
              f"{best['tokens_per_s'] / best1['tokens_per_s']:.2f}x the 1 process")
    # two ranks at best run two batch-8 steps at once: the step time of batch 8 bounds it
    ideal = best1["step_ms"] / best_half["step_ms"]
    print(f"1 process, batch 8 (one rank's share): {best_half['step_ms']:.1f} ms/step, so at most "
          f"{ideal:.2f}x from 2 processes (the part of a step that does not shrink with the batch "
          "is paid by every rank)")


if __name__ == "__main__":
    main()
