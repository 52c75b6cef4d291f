"""A run never replaces another run's files unasked, a resume on other data never hangs,
a resume works from any directory, and Trainer's numeric arguments are checked."""

from __future__ import annotations

import json
import math
import os
import signal
import warnings

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.checkpoint import load_checkpoint
from tinyseq.cli import main
from tinyseq.data import SequenceDataset, StreamDataset, Vocab
from tinyseq.models import LanguageModel, SequenceClassifier
from tinyseq.trainer import RunExistsError, Trainer, TrainingError, data_fingerprint

TEXT = "a quick brown fox jumps over the lazy dog; " * 12


@pytest.fixture
def no_hang():
    """Fail a test that runs past 60 s instead of hanging the suite."""

    def stop(signum, frame):
        raise TimeoutError("the test hung")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def lm(seed: int = 0):
    vocab = Vocab.build([list(TEXT)])
    ts.manual_seed(seed)
    return LanguageModel(len(vocab), embedding_dim=8, hidden_size=16), vocab.encode_text(TEXT)


def trainer(model, train, out, steps, valid=None, **kw):
    return Trainer(model, train, valid, lr=5e-3, max_steps=steps, epochs=100, eval_every=4,
                   checkpoint_every=3, out_dir=out, progress=False, seed=1, **kw)


def contents(directory) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- case 1: a new run into a directory that holds a run -------------------------------------
def test_fit_refuses_a_directory_that_holds_a_run_and_changes_nothing(tmp_path) -> None:
    model, ids = lm()
    data = StreamDataset(ids, 4, 40)
    trainer(model, data, tmp_path, 6, valid=StreamDataset(ids[:300], 2, 40)).fit()
    before = contents(tmp_path)
    assert {"best.npz", "last.npz", "metrics.jsonl"} <= set(before)
    model2, _ = lm(seed=5)
    with pytest.raises(RunExistsError) as info:
        trainer(model2, data, tmp_path, 2).fit()
    msg = str(info.value)
    assert isinstance(info.value, FileExistsError)
    assert f"{tmp_path} already holds a run (best.npz, last.npz, metrics.jsonl)" in msg
    assert f"fit(resume={str(tmp_path / 'last.npz')!r})" in msg and "overwrite=True" in msg
    assert contents(tmp_path) == before  # not a byte changed


def test_resuming_another_directory_into_a_run_is_refused(tmp_path) -> None:
    model, ids = lm()
    data = StreamDataset(ids, 4, 40)
    trainer(model, data, tmp_path / "a", 3).fit()
    trainer(lm(1)[0], data, tmp_path / "b", 3).fit()
    before = contents(tmp_path / "b")
    with pytest.raises(RunExistsError, match=r"b already holds a run .* and .*a.last\.npz is not one of its"):
        trainer(lm()[0], data, tmp_path / "b", 6).fit(resume=tmp_path / "a" / "last.npz")
    assert contents(tmp_path / "b") == before
    # into its own directory a resume is the normal case
    assert trainer(lm()[0], data, tmp_path / "a", 6).fit(resume=tmp_path / "a" / "last.npz").steps == 6


def test_overwrite_starts_a_fresh_run_and_log(tmp_path) -> None:
    model, ids = lm()
    data, valid = StreamDataset(ids, 4, 40), StreamDataset(ids[:300], 2, 40)
    trainer(model, data, tmp_path, 9, valid=valid).fit()
    assert len([e for e in events(tmp_path / "metrics.jsonl") if e["event"] == "train"]) == 0  # log_every 10
    summary = trainer(lm(3)[0], data, tmp_path, 2, overwrite=True).fit()  # no validation data
    assert summary.steps == 2
    log = events(tmp_path / "metrics.jsonl")
    assert [e["event"] for e in log] == ["start", "end"] and log[-1]["step"] == 2
    # the old run's best.npz went with it: the directory holds this run only
    assert sorted(os.listdir(tmp_path)) == ["last.npz", "metrics.jsonl"]
    assert load_checkpoint(tmp_path / "last.npz").metadata["trainer"]["step"] == 2
    with pytest.raises(ValueError, match=r"overwrite=True replaces the run in .*, resume .*last.npz continues it"):
        trainer(lm()[0], data, tmp_path, 4, overwrite=True).fit(resume=tmp_path / "last.npz")


def test_a_file_as_out_dir_is_refused(tmp_path) -> None:
    (tmp_path / "f").write_text("mine")
    model, ids = lm()
    with pytest.raises(RunExistsError, match=r"out_dir .*f is a file, not a directory"):
        trainer(model, StreamDataset(ids, 4, 40), tmp_path / "f", 2).fit()
    assert (tmp_path / "f").read_text() == "mine"


# ---- case 3: a NaN stop names only this run's checkpoints -------------------------------------
def test_nan_stop_does_not_vouch_for_an_older_runs_checkpoint(tmp_path) -> None:
    model, ids = lm()
    data = StreamDataset(ids, 4, 40)
    trainer(model, data, tmp_path, 3).fit()
    before = contents(tmp_path)
    model.head.bias.data[0] = np.nan  # the next loss is NaN
    with pytest.raises(TrainingError) as info:
        trainer(model, data, tmp_path, 10, overwrite=True).fit()
    msg = str(info.value)
    assert "loss became nan at step 1" in msg and "this run wrote no checkpoint yet" in msg
    assert "last.npz" not in msg and "last good checkpoint" not in msg
    assert {k: v for k, v in contents(tmp_path).items() if k != "metrics.jsonl"} == \
        {k: v for k, v in before.items() if k != "metrics.jsonl"}


def test_nan_stop_after_a_resume_names_the_resumed_checkpoint(tmp_path) -> None:
    model, ids = lm()
    data = StreamDataset(ids, 4, 40)
    trainer(model, data, tmp_path, 3).fit()
    again = trainer(model, data, tmp_path, 10)
    again.resume(tmp_path / "last.npz")
    model.head.bias.data[0] = np.nan  # the resumed weights were good; the next loss is NaN
    with pytest.raises(TrainingError, match=r"step 4 .*the checkpoint it resumed from is kept: .*last\.npz"):
        again.fit()


# ---- case 5: a resume on other data ----------------------------------------------------------
def test_resume_on_data_with_fewer_batches_goes_on_at_the_next_epoch(tmp_path, no_hang) -> None:
    model, ids = lm()
    long = StreamDataset(ids, 2, 20)  # 13 windows per epoch
    trainer(model, long, tmp_path, 8).fit()
    assert load_checkpoint(tmp_path / "last.npz").metadata["trainer"]["batch_in_epoch"] == 8
    short = StreamDataset(ids[:60], 2, 20)  # 2 windows: the saved position is past its end
    again = trainer(lm()[0], short, tmp_path, 13)
    with pytest.warns(UserWarning, match=r"last\.npz was trained on other training data \(13 batches per "
                      r"epoch; this data has 2.*epoch 0, batch 8.* start of epoch 1"):
        summary = again.fit(resume=tmp_path / "last.npz")
    assert summary.steps == 13 and again.epoch == 3 and again.batch_in_epoch == 1
    meta = load_checkpoint(tmp_path / "last.npz").metadata["trainer"]
    assert meta["batches_per_epoch"] == 2 and meta["data_fingerprint"] == data_fingerprint(short)


def test_resume_on_same_sized_data_with_other_content_warns(tmp_path) -> None:
    rng = np.random.default_rng(0)
    xs = [rng.integers(1, 5, size=4) for _ in range(40)]
    ys = list(rng.integers(0, 2, size=40))
    model = SequenceClassifier(2, vocab_size=5, hidden_size=8)
    trainer(model, SequenceDataset(xs, ys, 8), tmp_path, 3).fit()
    other = SequenceDataset(xs, [1 - y for y in ys], 8)  # same shapes, other labels
    again = trainer(SequenceClassifier(2, vocab_size=5, hidden_size=8), other, tmp_path, 6)
    with pytest.warns(UserWarning, match=r"5 batches per epoch; this data has 5, content differs.*epoch 1"):
        assert again.fit(resume=tmp_path / "last.npz").steps == 6
    # the same data resumes exactly, without a warning
    same = trainer(SequenceClassifier(2, vocab_size=5, hidden_size=8), other, tmp_path, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert same.fit(resume=tmp_path / "last.npz").steps == 7


def test_an_epoch_without_batches_is_an_error_not_a_spin(no_hang) -> None:
    model, _ = lm()

    class Lying:  # len() says 3 batches, batches() gives none
        carries_state = True

        def __len__(self):
            return 3

        def batches(self, epoch=0, start=0):
            return iter(())

    with pytest.raises(TrainingError, match=r"gave no batch for epoch 0 from batch 0 on, though it has 3 batches"):
        Trainer(model, Lying(), max_steps=5, progress=False).fit()
    assert data_fingerprint(Lying()) is None


# ---- Trainer's arguments ----------------------------------------------------------------------
@pytest.mark.parametrize("name, value", [
    ("epochs", 0), ("epochs", 2.5), ("epochs", True), ("max_steps", -5), ("max_steps", 0),
    ("max_time", -1.0), ("max_time", math.nan), ("max_time", math.inf), ("eval_every", 0),
    ("checkpoint_every", -1), ("patience", 0), ("patience", 1.5), ("clip_norm", -1.0),
    ("clip_norm", math.nan), ("clip_norm", 0), ("lr", 0.0), ("lr", math.nan), ("lr", "0.1"),
    ("log_every", 0), ("weight_decay", -0.1), ("seed", -1), ("overwrite", "yes"),
])
def test_trainer_checks_its_numeric_arguments(name, value) -> None:
    model, ids = lm()
    with pytest.raises(ValueError, match=rf"Trainer: {name}: expected .*, got {value!r}"):
        Trainer(model, StreamDataset(ids, 4, 40), **{name: value})


def test_trainer_accepts_sensible_arguments() -> None:
    model, ids = lm()
    t = Trainer(model, StreamDataset(ids, 4, 40), epochs=np.int64(2), max_time=5, clip_norm=None,
                max_steps=None, lr=1, weight_decay=0, log_every=1, progress=False)
    assert t.epochs == 2 and t.max_time == 5


# ---- evaluation progress ----------------------------------------------------------------------
def test_long_evaluation_shows_a_progress_bar(capsys) -> None:
    model, ids = lm()
    long = StreamDataset(ids, 2, 20)  # 13 batches
    t = Trainer(model, long, progress=True)
    t.evaluate(long)
    err = capsys.readouterr().err
    assert "evaluate" in err and "13/13" in err
    t.evaluate(long, progress=False)
    t.evaluate(StreamDataset(ids, 4, 40))  # 3 batches: no bar
    assert capsys.readouterr().err == ""
    Trainer(model, long, progress=False).evaluate(long)
    assert capsys.readouterr().err == ""


# ---- the command line -------------------------------------------------------------------------
def test_cli_refuses_an_out_that_holds_a_run(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    real = tmp_path / "runs" / "charlm"
    real.mkdir(parents=True)
    (real / "best.npz").write_bytes(b"the main job's trained model")
    assert main(["train", "--quick", "--max-steps", "3", "--no-progress"]) == 0
    assert "runs/charlm-quick/" in capsys.readouterr().out
    assert (real / "best.npz").read_bytes() == b"the main job's trained model"  # --quick kept off it
    quick = tmp_path / "runs" / "charlm-quick"
    before = contents(quick)
    assert main(["train", "--quick", "--max-steps", "3", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "error: runs/charlm-quick already holds a run (best.npz, last.npz, metrics.jsonl)" in err
    assert "`--resume runs/charlm-quick/last.npz`" in err and "`--overwrite`" in err and "--out" in err
    assert contents(quick) == before
    assert main(["train", "--out", "runs/charlm", "--quick", "--no-progress"]) == 1
    assert "runs/charlm already holds a run (best.npz)" in capsys.readouterr().err
    assert (real / "best.npz").read_bytes() == b"the main job's trained model"
    # --overwrite replaces it, with a fresh log
    assert main(["train", "--quick", "--max-steps", "2", "--no-progress", "--overwrite"]) == 0
    assert [e["event"] for e in events(quick / "metrics.jsonl")][0] == "start"
    assert [e["event"] for e in events(quick / "metrics.jsonl")].count("start") == 1
    assert load_checkpoint(quick / "last.npz").metadata["trainer"]["step"] == 2


def test_cli_resume_from_another_directory_and_on_other_data(tmp_path, monkeypatch, capsys, no_hang) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "text.txt").write_text("the cat sat on the mat. " * 200)
    monkeypatch.chdir(a)
    assert main(["train", "--quick", "--train", "text.txt", "--out", "run", "--max-steps", "5",
                 "--no-progress"]) == 0
    cfg = load_checkpoint(a / "run" / "last.npz").metadata["config"]
    assert cfg["train"] == str(a / "text.txt") and cfg["out"] == str(a / "run")
    monkeypatch.chdir(b)
    capsys.readouterr()
    assert main(["train", "--resume", "../a/run/last.npz", "--max-steps", "7", "--no-progress"]) == 0
    assert "stopped after 7 steps" in capsys.readouterr().out
    assert load_checkpoint(a / "run" / "last.npz").metadata["trainer"]["step"] == 7  # in its own directory
    assert os.listdir(b) == []
    # a 1 KB file on resume: fewer batches than the saved position (this hung)
    (b / "small.txt").write_text("hello world. " * 80)
    assert main(["train", "--resume", "../a/run/last.npz", "--train", "small.txt", "--max-steps", "12",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "stopped after 12 steps" in captured.out
    assert "warning: ../a/run/last.npz was trained on other training data" in captured.err
    stored = load_checkpoint(a / "run" / "last.npz").metadata["config"]
    assert stored["train"] == str(b / "small.txt")


def test_cli_resume_names_the_flag_for_a_moved_data_file(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("the cat sat on the mat. " * 200)
    assert main(["train", "--quick", "--train", "text.txt", "--out", "run", "--max-steps", "3",
                 "--no-progress"]) == 0
    os.rename(tmp_path / "text.txt", tmp_path / "moved.txt")
    capsys.readouterr()
    assert main(["train", "--resume", "run/last.npz", "--max-steps", "5", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"run/last.npz was trained on --train {tmp_path / 'text.txt'}, which is not found" in err
    assert "--train FILE" in err
    assert main(["train", "--resume", "run/last.npz", "--train", "moved.txt", "--max-steps", "5",
                 "--no-progress"]) == 0


def test_cli_resume_with_another_model_setting_names_it_and_keeps_the_checkpoint(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--quick", "--out", "run", "--max-steps", "3", "--no-progress"]) == 0
    before = (tmp_path / "run" / "last.npz").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", "run/last.npz", "--cell", "gru", "--max-steps", "5",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "run/last.npz was trained with cell='lstm'; this run asks for cell='gru'" in err
    assert "drop --cell" in err
    assert (tmp_path / "run" / "last.npz").read_bytes() == before
    # the settings that do not change the model may change on a resume
    assert main(["train", "--resume", "run/last.npz", "--lr", "0.001", "--max-steps", "5",
                 "--no-progress"]) == 0


def test_cli_evaluate_shows_progress_on_stderr(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("the cat sat on the mat. " * 200)
    assert main(["train", "--quick", "--train", "text.txt", "--out", "run", "--max-steps", "2",
                 "--no-progress"]) == 0
    capsys.readouterr()
    (tmp_path / "big.txt").write_text("the cat sat on the mat. " * 400)
    assert main(["evaluate", "--checkpoint", "run/last.npz", "--data", "big.txt"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["bpc"] > 0  # stdout stays JSON
    assert "evaluate" in captured.err and "batch" in captured.err
    assert main(["evaluate", "--checkpoint", "run/last.npz", "--data", "big.txt", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
