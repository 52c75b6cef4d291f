"""SequenceTranscriber (CTC): trains on unaligned frames, reports the error rate, decodes;
`tinyseq train --task transcribe`, evaluate and predict; bad data is named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend
from tinyseq.cli import main
from tinyseq.data import Batch, DataFormatError, SequenceDataset
from tinyseq.models import SequenceTranscriber, build_model
from tinyseq.trainer import Trainer


def toy_speech(n: int, seed: int, labels: int = 3, features: int = 6) -> dict[str, np.ndarray]:
    """Utterances of 1-3 'words': each label sounds as 2-4 frames of its own feature
    pattern, with 0-2 frames of silence around; no alignment is stored."""
    rng = np.random.default_rng(seed)
    patterns = np.eye(labels + 1, features)[1:] * 3
    xs, ys = [], []
    for _ in range(n):
        words = rng.integers(1, labels + 1, int(rng.integers(1, 4)))
        frames = [np.zeros((int(rng.integers(0, 3)), features))]
        for w in words:
            frames.append(np.repeat(patterns[w - 1][None], int(rng.integers(2, 5)), axis=0))
            frames.append(np.zeros((int(rng.integers(1, 3)), features)))
        xs.append(np.concatenate(frames) + 0.3 * rng.standard_normal((sum(len(f) for f in frames), features)))
        ys.append(words)
    T, S = max(len(x) for x in xs), 3
    x = np.zeros((n, T, features), dtype=np.float32)
    y = np.zeros((n, S), dtype=np.int64)
    for i, (a, b) in enumerate(zip(xs, ys)):
        x[i, : len(a)], y[i, : len(b)] = a, b
    return {"x": x, "x_lengths": np.array([len(a) for a in xs]), "y": y,
            "y_lengths": np.array([len(b) for b in ys])}


def dataset(d: dict[str, np.ndarray], batch_size: int = 16, shuffle: bool = True) -> SequenceDataset:
    xs = [d["x"][i, : d["x_lengths"][i]] for i in range(len(d["x"]))]
    ys = [d["y"][i, : d["y_lengths"][i]] for i in range(len(d["y"]))]
    return SequenceDataset(xs, ys, batch_size, True, True, shuffle=shuffle)


def test_learns_unaligned_labels_and_reports_error_rate(device: str) -> None:
    ts.manual_seed(0)
    model = SequenceTranscriber(4, input_size=6, hidden_size=16, cell="gru", num_layers=2,
                                bidirectional=True).to(device)
    train, valid = dataset(toy_speech(96, 0)), dataset(toy_speech(32, 1), shuffle=False)
    trainer = Trainer(model, train, valid, lr=0.02, max_steps=150, eval_every=1000,
                      progress=False, seed=0)
    before = trainer.evaluate(valid)
    assert sorted(before) == ["error_rate", "exact_match", "loss"]
    trainer.fit()
    after = trainer.evaluate(valid)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["error_rate"] < 0.15 < before["error_rate"]
    batch = next(iter(valid))
    greedy = model.predict(batch)
    beam = model.predict(batch, method="beam", beam_width=4)
    gold = [batch.y[b, : batch.y_lengths[b]].tolist() for b in range(len(batch))]
    assert sum(g == t for g, t in zip(greedy, gold)) >= 0.7 * len(batch)
    assert sum(g == t for g, t in zip(beam, gold)) >= 0.7 * len(batch)


def test_loss_is_summed_ctc_per_label_and_checkpoint_config_rebuilds(tmp_path: Path) -> None:
    d = toy_speech(8, 2)
    batch = Batch(x=d["x"], y=d["y"], x_lengths=d["x_lengths"], y_lengths=d["y_lengths"])
    model = SequenceTranscriber(4, input_size=6, hidden_size=8, cell="lstm", bidirectional=False)
    lp = model(batch)
    assert lp.shape == (d["x"].shape[1], 8, 4)
    np.testing.assert_allclose(backend.to_numpy(ts.exp(lp).sum(axis=-1).data), 1.0, rtol=1e-5)
    expected = ts.ctc_loss(lp, d["y"], d["x_lengths"], d["y_lengths"], reduction="sum").item()
    result = model.loss(batch)
    assert result.count == int(d["y_lengths"].sum())
    assert result.loss.item() == pytest.approx(expected / result.count, rel=1e-6)
    counts, _ = model.evaluate_batch(batch)
    assert counts["ref_tokens"] == result.count and counts["sequences"] == 8
    clone = build_model(model.kind, json.loads(json.dumps(model.config)))
    clone.load_state_dict(model.state_dict())
    assert clone.predict(batch) == model.predict(batch)
    with pytest.raises(ValueError, match="must be >= 2, got 1"):
        SequenceTranscriber(1, input_size=6)
    with pytest.raises(ValueError, match="method must be 'greedy' or 'beam', got 'best'"):
        model.predict(batch, method="best")


def test_cli_train_evaluate_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "train.npz", **toy_speech(64, 3))
    np.savez(tmp_path / "test.npz", **toy_speech(8, 4))
    out = tmp_path / "run"
    assert main(["train", "--task", "transcribe", "--train", str(tmp_path / "train.npz"),
                 "--cell", "gru", "--hidden-size", "16", "--num-layers", "2", "--max-steps", "30",
                 "--eval-every", "15", "--lr", "0.02", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "transcriber" in text and "error_rate" in text
    ckpt = str(out / "best.npz")
    assert main(["evaluate", "--checkpoint", ckpt, "--data", str(tmp_path / "test.npz")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert sorted(metrics) == ["error_rate", "exact_match", "loss"]
    assert main(["predict", "--checkpoint", ckpt, "--data", str(tmp_path / "test.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(i) for i in range(8)]
    assert all(set(line.split("\t")[1].split()) <= {"1", "2", "3"} for line in lines)
    assert main(["predict", "--checkpoint", ckpt, "--data", str(tmp_path / "test.npz"),
                 "--beam", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8
    assert main(["predict", "--checkpoint", ckpt, "--input", "one two"]) == 1
    assert "give --data FILE.npz" in capsys.readouterr().err
    np.savez(tmp_path / "narrow.npz", x=np.zeros((2, 5, 4), dtype=np.float32))
    assert main(["predict", "--checkpoint", ckpt, "--data", str(tmp_path / "narrow.npz")]) == 1
    err = capsys.readouterr().err
    assert "narrow.npz" in err and "(N, T, 6)" in err and "(2, 5, 4)" in err


def test_transcripts_with_the_blank_id_are_refused(tmp_path: Path) -> None:
    from tinyseq.config import make_config
    from tinyseq.tasks import build_task

    d = toy_speech(10, 5)
    d["y"][4, 0] = 0
    path = tmp_path / "bad.npz"
    np.savez(path, **d)
    cfg = make_config({"task": "transcribe", "train": str(path), "out": str(tmp_path / "r")})
    with pytest.raises(DataFormatError, match=r"bad\.npz.*label ids >= 1 in 'y' \(id 0 is the CTC "
                       r"blank\), example 4 holds 0"):
        build_task(cfg)
    d["y"] = d["y"].astype(np.float32)
    np.savez(path, **d)
    with pytest.raises(DataFormatError, match=r"expects 'y' as label ids \(N, S\)"):
        build_task(cfg)


def test_examples_too_short_for_their_transcripts_are_warned_about(tmp_path: Path) -> None:
    from tinyseq.config import make_config
    from tinyseq.tasks import build_task

    d = toy_speech(10, 6)
    d["y"][7], d["y_lengths"][7] = [2, 2, 3], 3  # needs 4 frames: 2, blank, 2, 3
    d["x_lengths"][7] = 3
    path = tmp_path / "short.npz"
    np.savez(path, **d)
    cfg = make_config({"task": "transcribe", "train": str(path), "out": str(tmp_path / "r")})
    with pytest.warns(UserWarning, match=r"short\.npz: 1 of 10 examples .* example 7: 3 frames "
                      r"for 3 labels, which need 4"):
        build_task(cfg)
