"""Checkpoints: round trip, atomic save, corrupt files, no pickle."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend, checkpoint, optim


def host(t: ts.Tensor) -> np.ndarray:
    return backend.to_numpy(t.data)


def make(device: str = "cpu") -> tuple[ts.nn.Module, optim.Optimizer]:
    model = ts.nn.Sequential(ts.nn.Embedding(7, 4), ts.nn.Linear(4, 3)).to(device)
    return model, optim.Adam(model.parameters(), lr=0.05)


def train_step(model: ts.nn.Module, opt: optim.Optimizer, seed: int, device: str) -> None:
    rng = np.random.default_rng(seed)
    ids = ts.tensor(rng.integers(0, 7, (5,)), device=device)
    opt.zero_grad()
    ts.cross_entropy(model(ids), rng.integers(0, 3, (5,))).backward()
    opt.step()


def snapshot(model: ts.nn.Module, opt: optim.Optimizer) -> tuple[dict, dict]:  # type: ignore[type-arg]
    return model.state_dict(), opt.state_dict()


def assert_same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    assert a[0].keys() == b[0].keys()
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    assert a[1]["param_groups"] == b[1]["param_groups"]
    assert a[1]["state"].keys() == b[1]["state"].keys()
    for i, entry in a[1]["state"].items():
        for k, v in entry.items():
            np.testing.assert_array_equal(v, b[1]["state"][i][k])


def test_round_trip_continues_training_identically(tmp_path: Path, device: str) -> None:
    path = tmp_path / "run.ckpt"
    model, opt = make(device)
    for s in range(2):
        train_step(model, opt, s, device)
    ts.save_checkpoint(path, model, opt, metadata={"epoch": 2, "name": "tiny", "rng": ts.get_rng_state()},
                       extra_arrays={"vocab_ids": np.arange(7), "scores": ts.ones(2, device=device)})
    for s in range(2, 4):
        train_step(model, opt, s, device)
    expected = [host(p).copy() for p in model.parameters()]

    ts.manual_seed(123)  # a differently initialised model and a fresh optimizer
    model2, opt2 = make(device)
    ckpt = ts.load_checkpoint(path, model2, opt2)
    for s in range(2, 4):
        train_step(model2, opt2, s, device)
    for a, b in zip(expected, model2.parameters()):
        np.testing.assert_array_equal(a, host(b))
    assert all(p.device.name == device for p in model2.parameters())
    assert ckpt.metadata["epoch"] == 2 and ckpt.metadata["name"] == "tiny"
    np.testing.assert_array_equal(ckpt.arrays["vocab_ids"], np.arange(7))
    np.testing.assert_array_equal(ckpt.arrays["scores"], np.ones(2, np.float32))
    assert set(ckpt.model_state) == set(model.state_dict())
    assert ckpt.optimizer_state is not None and set(ckpt.optimizer_state["state"]) == {0, 1, 2}
    ts.set_rng_state(ckpt.metadata["rng"])  # the generator's state survives JSON


def test_file_is_a_plain_npz_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "m.ckpt"
    model, opt = make()
    ts.save_checkpoint(path, model, opt)
    with np.load(path, allow_pickle=False) as z:
        assert "model/1.weight" in z.files and "__tinyseq__" in z.files
    assert ts.load_checkpoint(path).optimizer_state is not None


def test_load_without_targets_and_model_only(tmp_path: Path) -> None:
    path = tmp_path / "m.ckpt"
    model, _ = make()
    ts.save_checkpoint(path, model)
    ckpt = ts.load_checkpoint(path)
    assert ckpt.optimizer_state is None and ckpt.metadata == {} and ckpt.arrays == {}
    _, opt = make()
    with pytest.raises(ts.CheckpointError, match="holds no optimizer state"):
        ts.load_checkpoint(path, model, opt)


def _saved(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "run.ckpt"
    model, opt = make()
    train_step(model, opt, 0, "cpu")
    ts.save_checkpoint(path, model, opt, metadata={"epoch": 1})
    return path, path.read_bytes()


@pytest.mark.parametrize("cut", [0.5, 0.95, 30])
def test_truncated_file_raises_and_changes_nothing(tmp_path: Path, cut: float) -> None:
    path, data = _saved(tmp_path)
    n = int(len(data) * cut) if cut < 1 else int(cut)
    path.write_bytes(data[:n])
    model, opt = make()
    train_step(model, opt, 5, "cpu")
    before = snapshot(model, opt)
    with pytest.raises(ts.CheckpointError, match=f"{path}: (corrupt or truncated|not a checkpoint)"):
        ts.load_checkpoint(path, model, opt)
    assert_same(before, snapshot(model, opt))


def test_corrupted_bytes_are_detected(tmp_path: Path) -> None:
    path, data = _saved(tmp_path)
    damaged = bytearray(data)
    start = data.index(b"model/1.weight.npy") + 200  # inside that array's bytes
    damaged[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(damaged))
    with pytest.raises(ts.CheckpointError, match="corrupt or truncated checkpoint.*CRC"):
        ts.load_checkpoint(path)


def test_garbage_and_foreign_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ts.CheckpointError, match="garbage.ckpt: not a checkpoint"):
        ts.load_checkpoint(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ts.CheckpointError, match="not a tinyseq checkpoint"):
        ts.load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        ts.load_checkpoint(tmp_path / "missing.ckpt")


def test_pickle_bearing_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    # a payload that would run code if unpickled: loading must never unpickle it
    np.savez(path.with_suffix(""), payload=np.array([os.system], dtype=object))
    os.replace(path.with_suffix(".npz"), path)
    with pytest.raises(ts.CheckpointError, match="refused: entry 'payload' holds pickled"):
        ts.load_checkpoint(path)


def test_save_failure_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, data = _saved(tmp_path)
    real = checkpoint._write_array
    calls = []

    def failing(fh, arr, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:  # after two arrays have been written: the disk fills up
            raise OSError(28, "No space left on device")
        real(fh, arr, **kw)

    monkeypatch.setattr(checkpoint, "_write_array", failing)
    model, opt = make()
    with pytest.raises(ts.CheckpointError, match="cannot save checkpoint.*No space left"):
        ts.save_checkpoint(path, model, opt, metadata={"epoch": 2})
    assert path.read_bytes() == data
    assert os.listdir(tmp_path) == ["run.ckpt"]  # no temporary file left behind
    assert ts.load_checkpoint(path).metadata == {"epoch": 1}


def test_bad_inputs_are_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "x.ckpt"
    model, _ = make()
    with pytest.raises(ts.CheckpointError, match="not JSON serializable"):
        ts.save_checkpoint(path, model, metadata={"f": object()})
    with pytest.raises(ts.CheckpointError, match="'extra/bad' has dtype object"):
        ts.save_checkpoint(path, model, extra_arrays={"bad": np.array([{}], dtype=object)})
    assert not path.exists() and os.listdir(tmp_path) == []
    with pytest.raises(ts.CheckpointError, match="cannot create a file in .*missing_dir.*No such file"):
        ts.save_checkpoint(tmp_path / "missing_dir" / "x.ckpt", model)


def test_mismatched_model_changes_neither_model_nor_optimizer(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    other = ts.nn.Sequential(ts.nn.Embedding(7, 4), ts.nn.Linear(4, 5)).to("cpu")
    opt = optim.Adam(other.parameters(), lr=0.05)
    train_step(other, opt, 1, "cpu")
    before = snapshot(other, opt)
    with pytest.raises(ts.CheckpointError, match=r"1\.weight: expected shape \(5, 4\), got \(3, 4\)"):
        ts.load_checkpoint(path, other, opt)
    assert_same(before, snapshot(other, opt))
    # the model fits but the optimizer does not: the model is left alone too
    model, _ = make()
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_step(model, sgd, 2, "cpu")
    before = snapshot(model, sgd)
    with pytest.raises(ts.CheckpointError, match="expected keys \\['momentum_buffer'\\]"):
        ts.load_checkpoint(path, model, sgd)
    assert_same(before, snapshot(model, sgd))


def test_checkpoint_zip_members_are_stored_arrays(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert all(n.endswith(".npy") for n in names)
    assert any(n.startswith("optimizer/state/") for n in names)
