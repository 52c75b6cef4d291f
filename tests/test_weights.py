"""safetensors weights: PyTorch's names, round trips to PyTorch and back, refused files."""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import registry, weights

safetensors_numpy = pytest.importorskip("safetensors.numpy")

I, H, B, T, V, E = 3, 4, 2, 5, 11, 6  # noqa: E741


@pytest.fixture(autouse=True)
def _builtin_cells_only() -> Iterator[None]:
    """Only the built-in cells: nothing installed or set in the environment leaks in."""
    with registry.isolated_plugins():
        yield


def np_of(t: ts.Tensor) -> np.ndarray:
    return t.detach().numpy()


def header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (8 bytes of length, then JSON)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])  # type: ignore[no-any-return]


# (torch class, tinyseq cell, options, num_layers, bidirectional)
LAYERS = [
    ("LSTM", "lstm", {}, 2, True),
    ("GRU", "gru", {}, 1, False),
    ("RNN", "rnn", {"nonlinearity": "relu"}, 2, False),
]


@pytest.mark.parametrize("kind,cell,opts,layers,bidi", LAYERS, ids=[c[0] for c in LAYERS])
def test_recurrent_round_trip_to_torch_and_back(tmp_path: Path, kind: str, cell: str,
                                                opts: dict[str, Any], layers: int,
                                                bidi: bool) -> None:
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    ts.manual_seed(0)
    rec = ts.nn.Recurrent(cell, I, H, num_layers=layers, bidirectional=bidi, **opts)
    path = tmp_path / "rnn.safetensors"
    ts.save_weights(rec, path)
    meta = header(path)["__metadata__"]
    assert meta == {"format": "tinyseq", "version": weights.VERSION}
    torch.manual_seed(1)  # other initial weights, overwritten by the file
    module = getattr(torch.nn, kind)(I, H, num_layers=layers, bidirectional=bidi,
                                     **({"nonlinearity": "relu"} if kind == "RNN" else {}))
    assert set(st_torch.load_file(path)) == set(module.state_dict())
    module.load_state_dict(st_torch.load_file(path))  # strict: every name and shape
    x = np.random.default_rng(2).standard_normal((T, B, I)).astype(np.float32)
    with ts.no_grad(), torch.no_grad():
        ours, _ = rec(ts.tensor(x))
        theirs, _ = module(torch.tensor(x))
    np.testing.assert_allclose(np_of(ours), theirs.numpy(), rtol=1e-5, atol=1e-5)
    # and back: weights changed on the torch side come into a fresh tinyseq layer
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(-0.5)
        theirs, _ = module(torch.tensor(x))
    back_path = tmp_path / "back.safetensors"
    st_torch.save_file(module.state_dict(), back_path)
    back = ts.nn.Recurrent(cell, I, H, num_layers=layers, bidirectional=bidi, **opts)
    ts.load_weights(back, back_path)
    with ts.no_grad():
        ours, _ = back(ts.tensor(x))
    np.testing.assert_allclose(np_of(ours), theirs.numpy(), rtol=1e-5, atol=1e-5)


def _torch_language_model(torch: Any) -> Any:
    """torch's mirror of ts.models.LanguageModel: embedding, rnn (LSTM), head."""

    class TorchLM(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H, num_layers=2)
            self.head = torch.nn.Linear(H, V)

        def forward(self, ids: Any) -> Any:
            out, _ = self.rnn(self.embedding(ids))
            return self.head(out)

    return TorchLM()


def test_model_with_embedding_recurrent_linear_round_trip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    ts.manual_seed(3)
    model = ts.models.LanguageModel(V, embedding_dim=E, hidden_size=H, cell="lstm", num_layers=2)
    model.eval()
    path = tmp_path / "lm.safetensors"
    ts.save_weights(model, path)
    mirror = _torch_language_model(torch).eval()
    names = set(st_torch.load_file(path))
    assert names == set(mirror.state_dict())
    assert {"rnn.weight_ih_l0", "rnn.bias_hh_l1", "embedding.weight", "head.weight"} <= names
    mirror.load_state_dict(st_torch.load_file(path))
    ids = np.random.default_rng(4).integers(0, V, size=(T, B))
    with ts.no_grad(), torch.no_grad():
        ours, _ = model(ids)
        theirs = mirror(torch.tensor(ids))
    np.testing.assert_allclose(np_of(ours), theirs.numpy(), rtol=1e-5, atol=1e-5)
    # back: a torch-trained mirror into a fresh tinyseq model
    opt = torch.optim.SGD(mirror.parameters(), lr=0.5)
    mirror(torch.tensor(ids)).square().mean().backward()
    opt.step()
    with torch.no_grad():
        theirs = mirror(torch.tensor(ids))
    st_torch.save_file(mirror.state_dict(), tmp_path / "trained.safetensors")
    fresh = ts.models.LanguageModel(V, embedding_dim=E, hidden_size=H, cell="lstm", num_layers=2)
    ts.load_weights(fresh, tmp_path / "trained.safetensors")
    with ts.no_grad():
        ours, _ = fresh.eval()(ids)
    np.testing.assert_allclose(np_of(ours), theirs.numpy(), rtol=1e-5, atol=1e-5)


def test_layers_pytorch_lacks_keep_tinyseq_names_and_round_trip(tmp_path: Path) -> None:
    ts.manual_seed(5)

    class Tagger(ts.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fwd = ts.nn.Recurrent("gru", I, H, reset_after=False, dtype=ts.float64)
            self.rev = ts.nn.Recurrent("lstm", I, H, direction="reverse", dtype=ts.float64)
            self.head = ts.nn.Linear(2 * H, 3, dtype=ts.float64)

        def forward(self, x: ts.Tensor) -> ts.Tensor:
            return self.head(ts.cat([self.fwd(x)[0], self.rev(x)[0]], -1))

    a, b = Tagger(), Tagger()
    names = weights.weight_names(a)
    assert names["fwd.layers.0.weight_ih"] == "fwd.layers.0.weight_ih"  # no PyTorch twin
    assert names["rev.layers.0.weight_hh"] == "rev.layers.0.weight_hh"
    assert names["head.weight"] == "head.weight"
    ts.save_weights(a, tmp_path / "t.safetensors")
    ts.load_weights(b, tmp_path / "t.safetensors")
    x = ts.tensor(np.random.default_rng(6).standard_normal((T, B, I)))
    with ts.no_grad():
        np.testing.assert_array_equal(np_of(a(x)), np_of(b(x)))


def test_safetensors_file_is_what_the_numpy_api_reads(tmp_path: Path) -> None:
    rec = ts.nn.Recurrent("lstm", I, H, bidirectional=True, dtype=ts.float64)
    ts.save_weights(rec, tmp_path / "w.safetensors")
    arrays = safetensors_numpy.load_file(tmp_path / "w.safetensors")
    params = dict(rec.named_parameters())
    assert params["layers.0.backward_cell.weight_ih"].shape == (4 * H, I)
    np.testing.assert_array_equal(arrays["weight_ih_l0_reverse"],
                                  np_of(params["layers.0.backward_cell.weight_ih"]))
    assert arrays["weight_ih_l0_reverse"].dtype == np.float64


# ---- refused files ---------------------------------------------------------------------
def _snapshot(module: ts.nn.Module) -> dict[str, np.ndarray]:
    return module.state_dict()


def _assert_unchanged(module: ts.nn.Module, before: dict[str, np.ndarray]) -> None:
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_shape_mismatch_names_file_tensor_and_both_shapes_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.safetensors"
    ts.save_weights(ts.nn.Recurrent("gru", I, H + 1), path)
    rec = ts.nn.Recurrent("gru", I, H)
    before = _snapshot(rec)
    with pytest.raises(ValueError) as err:
        ts.load_weights(rec, path)
    msg = str(err.value)
    assert str(path) in msg and "weight_hh_l0" in msg
    assert f"expected shape {(3 * H, H)}" in msg and f"the file has {(3 * (H + 1), H + 1)}" in msg
    _assert_unchanged(rec, before)


def test_a_file_that_partly_fits_changes_nothing(tmp_path: Path) -> None:
    """weight_ih fits, weight_hh does not: the module keeps every old value."""
    rec = ts.nn.Recurrent("rnn", I, H)
    good = {k: v + 1 for k, v in weights_by_file_name(rec).items()}
    good["weight_hh_l0"] = np.zeros((H, H + 2), np.float32)
    path = tmp_path / "partly.safetensors"
    safetensors_numpy.save_file(good, path)
    before = _snapshot(rec)
    with pytest.raises(ValueError, match=r"weight_hh_l0 \(tinyseq.s layers.0.weight_hh\): expected shape \(4, 4\), the file has \(4, 6\)"):
        ts.load_weights(rec, path)
    _assert_unchanged(rec, before)


def weights_by_file_name(module: ts.nn.Module) -> dict[str, np.ndarray]:
    state = module.state_dict()
    return {theirs: state[ours] for ours, theirs in weights.weight_names(module).items()}


def test_missing_unexpected_and_dtype_mismatches_are_named(tmp_path: Path) -> None:
    rec = ts.nn.Recurrent("lstm", I, H, num_layers=2)
    path = tmp_path / "one_layer.safetensors"
    ts.save_weights(ts.nn.Recurrent("lstm", I, H, bidirectional=True), path)
    with pytest.raises(ValueError) as err:
        ts.load_weights(rec, path)
    msg = str(err.value)
    assert str(path) in msg
    assert re.search(r"missing tensors \[[^]]*'weight_ih_l1'", msg)
    assert re.search(r"unexpected tensors \[[^]]*'weight_ih_l0_reverse'", msg)
    wide = tmp_path / "float64.safetensors"
    ts.save_weights(ts.nn.Recurrent("lstm", I, H, num_layers=2, dtype=ts.float64), wide)
    before = _snapshot(rec)
    with pytest.raises(ValueError, match=r"weight_ih_l0 \(tinyseq's layers.0.weight_ih\): "
                                         r"expected dtype F32 \(float32\), the file has F64"):
        ts.load_weights(rec, wide)
    _assert_unchanged(rec, before)


def test_bad_files_name_the_path(tmp_path: Path) -> None:
    rec = ts.nn.Recurrent("rnn", I, H)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match=f"{junk} is not a readable safetensors file"):
        ts.load_weights(rec, junk)
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        ts.load_weights(rec, tmp_path / "nowhere.safetensors")
    with pytest.raises(IsADirectoryError, match=f"{tmp_path} is a directory"):
        ts.load_weights(rec, tmp_path)
    future = tmp_path / "future.safetensors"
    safetensors_numpy.save_file(weights_by_file_name(rec), future,
                                metadata={"format": "tinyseq", "version": "99"})
    with pytest.raises(ValueError, match="weights version '99'"):
        ts.load_weights(rec, future)


def test_a_failed_save_leaves_the_old_file_as_it_was(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    ts.save_weights(ts.nn.Recurrent("rnn", I, H), path)
    old = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        ts.save_weights(ts.nn.Recurrent("rnn", I, H + 3), path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # no temporary left
