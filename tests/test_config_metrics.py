"""The settings' table of each task's validation metrics is what the models report.

``--monitor`` is checked against that table before anything runs; a metric missing from
it would refuse a valid run, an extra one would let a typo through to the first
validation. So each task is built from a tiny file and evaluated once here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyseq import config
from tinyseq.config import make_config
from tinyseq.data import PianoRolls, write_pianorolls
from tinyseq.tasks import build_task
from tinyseq.trainer import Trainer


def _data(task: str, d: Path) -> str | None:
    if task == "lm":
        return None  # the built-in corpus
    if task == "classify":
        (d / "c.tsv").write_text("good film\tpos\nbad film\tneg\n" * 20)
        return str(d / "c.tsv")
    if task == "tag":  # BIO tags: the entity scores are reported too
        (d / "t.conll").write_text("john B-PER\nlives O\nin O\nparis B-LOC\n\n" * 20)
        return str(d / "t.conll")
    if task == "seq2seq":
        (d / "p.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in ["abc", "ab", "cab"] * 10))
        return str(d / "p.tsv")
    rng = np.random.default_rng(0)
    if task == "music":  # piano rolls: pieces of (T_i, P) binary steps
        rolls = [(rng.random((n, 6)) < 0.4).astype(np.uint8) for n in [5, 7, 4] * 7]
        write_pianorolls(d / "m.npz", PianoRolls(rolls, low=60))
        return str(d / "m.npz")
    if task == "regress":
        np.save(d / "s.npy", rng.standard_normal((20, 6, 2)).astype(np.float32))
        return str(d / "s.npy")
    if task == "transcribe":  # frames and shorter transcripts; id 0 is the CTC blank
        np.savez(d / "a.npz", x=rng.standard_normal((20, 8, 3)).astype(np.float32),
                 x_lengths=rng.integers(5, 9, 20), y=rng.integers(1, 4, (20, 3)),
                 y_lengths=rng.integers(1, 4, 20))
        return str(d / "a.npz")
    if task == "one_to_many":
        np.savez(d / "o.npz", x=rng.standard_normal((20, 3)).astype(np.float32),
                 y=rng.integers(4, 7, (20, 3)))
        return str(d / "o.npz")
    np.savez(d / "v.npz", x=rng.standard_normal((20, 3)).astype(np.float32),
             y=rng.integers(0, 2, 20))
    return str(d / "v.npz")


@pytest.mark.parametrize("task", config.TASKS)
def test_each_tasks_metrics_are_the_table(task: str, tmp_path: Path) -> None:
    cfg = make_config({"task": task, "train": _data(task, tmp_path), "hidden_size": 4,
                       "embedding_dim": 4, "batch_size": 4, "seq_len": 10, "valid_fraction": 0.2,
                       "out": str(tmp_path / "run")})
    built = build_task(cfg)
    assert built.valid_data is not None
    metrics = Trainer(built.model, built.train_data, progress=False).evaluate(built.valid_data,
                                                                             max_batches=1)
    assert sorted(metrics) == sorted(config._METRICS[task])
