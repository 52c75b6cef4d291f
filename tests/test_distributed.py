"""Data-parallel training under mpiexec: N = 2 ranks with batch b each equal one process
with batch 2b (losses, validation, final weights, a resume in the middle), a failing or
killed rank ends the job, and `tinyseq train` alone never imports mpi4py.

Run as a script (``mpiexec -n 2 python tests/test_distributed.py OUT``) this file is the
ranks' program; the tests run the same scenarios in one process and compare.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
TEXT = "a quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. " * 4
STEPS, SPLIT = 8, 4  # the split run stops at SPLIT (mid-epoch) and resumes to STEPS
SCENARIOS = (("lm", "float64"), ("classify", "float64"), ("lm", "float32"), ("tag", "float64"))


@pytest.fixture(autouse=True)
def _default_dtype() -> Any:
    import tinyseq as ts

    saved = ts.get_default_dtype()
    yield
    ts.set_default_dtype(saved)


def build(kind: str, dtype: str) -> tuple[Any, Any, Any]:
    """(model, global train data, global valid data) of a scenario, the same on every rank
    (on the default device)."""
    import tinyseq as ts
    from tinyseq.data import SequenceDataset, StreamDataset, Vocab
    from tinyseq.models import LanguageModel, SequenceClassifier, SequenceTagger

    ts.set_default_dtype(np.dtype(dtype))
    ts.manual_seed(7)
    if kind == "lm":
        vocab = Vocab.build([list(TEXT)])
        ids = vocab.encode_text(TEXT)
        model = LanguageModel(len(vocab), embedding_dim=6, hidden_size=10, cell="lstm")
        # 4 global rows (2 per rank), 3 windows per epoch: runs cross epoch boundaries
        return model, StreamDataset(ids, 4, 26), StreamDataset(ids[:150], 2, 20)
    rng = np.random.default_rng(3)
    lengths = rng.integers(2, 9, size=11)  # 11 examples, batch 4: the last batch has 3 rows
    xs = [rng.integers(1, 12, size=n) for n in lengths]
    if kind == "classify":
        ys = [int(x.sum() % 3) for x in xs]
        model = SequenceClassifier(3, vocab_size=12, embedding_dim=5, hidden_size=7, cell="gru")
        return (model, SequenceDataset(xs, ys, 4, seed=5),
                SequenceDataset(xs[:7], ys[:7], 3, shuffle=False))
    # a tagger's loss is a mean over tokens: the shards hold different numbers of them
    ys = [x % 4 for x in xs]
    model = SequenceTagger(4, vocab_size=12, embedding_dim=5, hidden_size=7, cell="rnn")
    return (model, SequenceDataset(xs, ys, 4, y_is_sequence=True, seed=5),
            SequenceDataset(xs[:7], ys[:7], 3, y_is_sequence=True, shuffle=False))


def trainer(model: Any, train: Any, valid: Any, where: Path, steps: int, comm: Any = None) -> Any:
    from tinyseq.trainer import Trainer

    return Trainer(model, train, valid, lr=0.02, clip_norm=0.5, max_steps=steps, epochs=50,
                   eval_every=3, checkpoint_every=2, out_dir=where, progress=False, seed=1,
                   comm=comm)


def _host(value: Any) -> Any:
    from tinyseq import backend

    return backend.to_numpy(value)


def run(kind: str, dtype: str, out: Path, comm: Any = None) -> dict[str, Any]:
    """An uninterrupted run of STEPS, and one stopped at SPLIT and resumed to STEPS."""
    full = trainer(*build(kind, dtype), out / "full", STEPS, comm)
    full.fit()
    first = trainer(*build(kind, dtype), out / "split", SPLIT, comm)
    first.fit()
    model, train, valid = build(kind, dtype)
    second = trainer(model, train, valid, out / "split", STEPS, comm)
    second.fit(resume=out / "split" / "last.npz")
    return {"history": full.history, "valid": full.valid_history,
            "resumed_history": second.history,
            "weights": {k: _host(v) for k, v in full.model.state_dict().items()},
            "resumed_weights": {k: _host(v) for k, v in model.state_dict().items()}}


def worker(out: Path) -> None:
    """The program of every rank: each scenario, results written per rank."""
    from tinyseq.distributed import get_comm

    comm = get_comm()
    assert comm.size == 2, comm
    for kind, dtype in SCENARIOS:
        where = out / f"{kind}-{dtype}"
        res = run(kind, dtype, where, comm)
        if (kind, dtype) == ("lm", "float64"):  # a checkpoint at SPLIT, for a 1-process resume
            trainer(*build(kind, dtype), where / "half", SPLIT, comm).fit()
        np.savez(where / f"weights{comm.rank}.npz", **{f"full/{k}": v for k, v in res["weights"].items()},
                 **{f"resumed/{k}": v for k, v in res["resumed_weights"].items()})
        if comm.rank == 0:
            keep = {k: res[k] for k in ("history", "valid", "resumed_history")}
            (where / "result.json").write_text(json.dumps(keep))


def gpu_worker(out: Path) -> None:
    """Every rank on its GPU (or all on one, NCCL off): a device buffer's sum, then training."""
    import tinyseq as ts
    from tinyseq import backend
    from tinyseq.distributed import get_comm, use_local_gpu

    comm = get_comm()
    use_local_gpu()
    ts.set_default_device("cuda")
    xp = backend.get_device("cuda").xp
    buf = comm.allreduce_(xp.full(5, comm.rank + 1.0, dtype=xp.float32))
    assert float(buf.sum()) == 5 * (1 + 2), buf
    res = run("lm", "float32", out, comm)
    if comm.rank == 0:
        (out / "result.json").write_text(json.dumps({"history": res["history"]}))
    np.savez(out / f"weights{comm.rank}.npz", **res["weights"])


def crash(out: Path, how: str) -> None:
    """Rank 1 fails (an exception, or SIGKILL) while rank 0 waits in an all-reduce."""
    import signal

    from tinyseq.distributed import get_comm

    comm = get_comm()
    if comm.rank == 1:
        time.sleep(0.5)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("rank one's data file is unreadable")
    comm.allreduce_(np.zeros(4))  # never completes: rank 1 is gone
    raise AssertionError("rank 0 got past an all-reduce rank 1 never joined")


# ---- the tests ---------------------------------------------------------------------------
def test_under_mpiexec_reads_the_launchers_variables() -> None:
    from tinyseq.distributed import Communicator, get_comm, under_mpiexec

    assert under_mpiexec({"PMI_SIZE": "2", "PMI_RANK": "1"})  # MPICH's Hydra, Intel MPI
    assert under_mpiexec({"OMPI_COMM_WORLD_SIZE": "4"})  # Open MPI
    assert not under_mpiexec({"PMI_SIZE": "1"})  # mpiexec -n 1 is one process
    assert not under_mpiexec({"SLURM_NTASKS": "4"})  # set for non-MPI job steps too
    comm = get_comm(False)
    assert type(comm) is Communicator and (comm.rank, comm.size) == (0, 1)
    buf = np.arange(3.0)
    assert comm.allreduce_(buf) is buf and comm.gather(5) == [5]


def test_shards_split_every_global_batch_in_rank_order() -> None:
    from tinyseq.data import SequenceDataset, StreamDataset
    from tinyseq.data.batching import shard, shard_rows

    assert [shard_rows(5, r, 2) for r in range(2)] == [slice(0, 2), slice(2, 5)]
    xs = [np.full(n, n) for n in (3, 1, 4, 1, 5, 9, 2)]
    data = SequenceDataset(xs, list(range(7)), 4, seed=2)
    parts = [shard(data, r, 2) for r in range(2)]
    assert all(len(p) == len(data) and p.fingerprint() == data.fingerprint() for p in parts)
    for whole, *mine in zip(data.batches(1), *(p.batches(1) for p in parts)):
        assert np.concatenate([m.y for m in mine]).tolist() == whole.y.tolist()
        # each shard is padded to its own longest example only
        assert all(m.x.shape[1] == m.x_lengths.max() for m in mine)
    stream = StreamDataset(np.arange(100), 4, 7)
    one = list(shard(stream, 1, 2).batches(0, 2))
    assert np.array_equal(one[0].x, next(stream.batches(0, 2)).x[2:4])
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        shard(data, 2, 2)


def _mpiexec() -> str:
    pytest.importorskip("mpi4py")
    exe = shutil.which("mpiexec")
    if exe is None:
        pytest.skip("no mpiexec on PATH (pip install mpich)")
    return exe


def _launch(args: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([_mpiexec(), "-n", "2", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**base, **(env or {})})


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mpi")
    proc = _launch([sys.executable, str(HERE), "worker", str(out)], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("kind,dtype", SCENARIOS)
def test_two_ranks_equal_one_process_with_the_global_batch(two_ranks: Path, tmp_path: Path,
                                                           kind: str, dtype: str) -> None:
    tol = 1e-10 if dtype == "float64" else 1e-5
    ref = run(kind, dtype, tmp_path)
    where = two_ranks / f"{kind}-{dtype}"
    got = json.loads((where / "result.json").read_text())
    np.testing.assert_allclose(got["history"], ref["history"], rtol=tol, atol=tol)
    assert len(got["history"]) == STEPS
    for mine, theirs in zip(got["valid"], ref["valid"]):
        assert mine.keys() == theirs.keys()
        np.testing.assert_allclose([mine[k] for k in mine], [theirs[k] for k in mine], rtol=tol, atol=tol)
    assert len(got["valid"]) == len(ref["valid"]) >= 3
    # the resumed half of the split run repeats the uninterrupted run
    assert len(got["resumed_history"]) == STEPS - SPLIT
    np.testing.assert_allclose(got["resumed_history"], ref["history"][SPLIT:], rtol=tol, atol=tol)
    rank0, rank1 = np.load(where / "weights0.npz"), np.load(where / "weights1.npz")
    for name in rank0.files:
        assert np.array_equal(rank0[name], rank1[name]), f"ranks differ in {name}"
    for name, value in ref["weights"].items():
        np.testing.assert_allclose(rank0[f"full/{name}"], value, rtol=tol, atol=tol, err_msg=name)
        np.testing.assert_allclose(rank0[f"resumed/{name}"], value, rtol=tol, atol=tol, err_msg=name)


def test_a_two_rank_checkpoint_resumes_in_one_process(two_ranks: Path, tmp_path: Path) -> None:
    # the checkpoint holds both ranks' carried LSTM state (the 4 global rows): one process
    # goes on from it exactly as the uninterrupted run
    from tinyseq.checkpoint import load_checkpoint

    ref = run("lm", "float64", tmp_path / "ref")
    half = tmp_path / "half"
    shutil.copytree(two_ranks / "lm-float64" / "half", half)
    assert load_checkpoint(half / "last.npz").arrays["carried_state/0"].shape[1] == 4
    model, train, valid = build("lm", "float64")
    second = trainer(model, train, valid, half, STEPS)
    second.fit(resume=half / "last.npz")
    np.testing.assert_allclose(second.history, ref["history"][SPLIT:], rtol=1e-10, atol=1e-10)
    for name, value in ref["weights"].items():
        np.testing.assert_allclose(np.asarray(model.state_dict()[name]), value, rtol=1e-10,
                                   atol=1e-10, err_msg=name)


def _tail(path: Path) -> Any:
    return [json.loads(line) for line in path.read_text().splitlines()
            if json.loads(line)["event"] == "valid"][-1]


def test_mpiexec_tinyseq_train_is_the_one_process_run(tmp_path: Path) -> None:
    from tinyseq.cli import main

    train = [sys.executable, "-m", "tinyseq.cli", "train", "--quick", "--no-progress", "--seed", "3"]
    proc = _launch([*train, "--max-steps", "4", "--out", str(tmp_path / "run")], timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("stopped after 4 steps") == 1, proc.stdout  # rank 0 alone reports
    assert "data-parallel on 2 processes, 4 sequences each per batch of 8" in proc.stdout
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert log.count('"start"') == 1
    assert main(["train", "--quick", "--no-progress", "--seed", "3", "--max-steps", "4",
                 "--out", str(tmp_path / "one")]) == 0
    mine, theirs = _tail(tmp_path / "run" / "metrics.jsonl"), _tail(tmp_path / "one" / "metrics.jsonl")
    np.testing.assert_allclose(mine["loss"], theirs["loss"], rtol=1e-5)

    # rank 0 refuses to replace the run, once, and no rank writes
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    again = _launch([*train, "--max-steps", "4", "--out", str(tmp_path / "run")], timeout=60)
    assert again.returncode == 1, again.stderr[-3000:]
    assert again.stderr.count("already holds a run") == 1, again.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before

    # --resume: every rank loads the checkpoint, the run goes on to step 6
    more = _launch([*train, "--max-steps", "6", "--resume", str(tmp_path / "run" / "last.npz")], timeout=60)
    assert more.returncode == 0, more.stderr[-3000:]
    assert more.stdout.count("stopped after 6 steps") == 1, more.stdout
    assert _tail(tmp_path / "run" / "metrics.jsonl")["step"] == 6


def test_a_global_batch_that_does_not_divide_is_refused(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = _launch([sys.executable, "-m", "tinyseq.cli", "train", "--quick", "--no-progress",
                    "--batch-size", "5", "--out", str(tmp_path / "run")], timeout=60)
    assert proc.returncode != 0
    assert time.monotonic() - start < 30
    assert "--batch-size 5 is the global batch and must divide by the 2 processes" in proc.stderr
    assert "--batch-size 4 or 6" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
def test_two_ranks_on_gpus_equal_one_process(tmp_path: Path) -> None:
    import tinyseq as ts

    cupy = pytest.importorskip("cupy")
    env = {} if cupy.cuda.runtime.getDeviceCount() >= 2 else {"TINYSEQ_NCCL": "0"}
    proc = _launch([sys.executable, str(HERE), "gpu", str(tmp_path / "mpi")], timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ts.set_default_device("cuda")
    try:
        ref = run("lm", "float32", tmp_path / "one")
    finally:
        ts.set_default_device("cpu")
    got = json.loads((tmp_path / "mpi" / "result.json").read_text())
    np.testing.assert_allclose(got["history"], ref["history"], rtol=1e-5, atol=1e-5)
    rank0, rank1 = np.load(tmp_path / "mpi" / "weights0.npz"), np.load(tmp_path / "mpi" / "weights1.npz")
    for name, value in ref["weights"].items():
        assert np.array_equal(rank0[name], rank1[name]), name
        np.testing.assert_allclose(rank0[name], value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_with_a_message(tmp_path: Path, how: str) -> None:
    start = time.monotonic()
    proc = _launch([sys.executable, str(HERE), "crash", str(tmp_path), how], timeout=60)
    took = time.monotonic() - start
    assert proc.returncode != 0
    assert took < 30, f"the job took {took:.0f} s to end"
    if how == "raise":
        assert "rank 1: RuntimeError: rank one's data file is unreadable" in proc.stderr
    else:  # the launcher (mpich's Hydra, on stdout) reports the killed process
        said = proc.stdout + proc.stderr
        assert "KILLED BY SIGNAL: 9" in said or "signal 9" in said.lower(), said[-2000:]
    assert "rank 0 got past" not in proc.stderr


def test_tinyseq_train_alone_never_imports_mpi4py(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    code = ("import sys, tinyseq.cli as c; rc = c.main(['train', '--quick', '--max-steps', '1', "
            f"'--no-progress', '--out', {out!r}]); print('mpi4py' in sys.modules, rc)")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False 0", proc.stdout[-500:]


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(Path(sys.argv[2]))
    elif sys.argv[1] == "gpu":
        Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
        gpu_worker(Path(sys.argv[2]))
    else:
        crash(Path(sys.argv[2]), sys.argv[3])
