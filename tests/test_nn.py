"""nn layers: initialisation, parity with torch.nn, state_dict, modes, devices, repr."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend
from tinyseq.testing import gradcheck


@pytest.fixture
def torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


def host(t: ts.Tensor) -> np.ndarray:
    return backend.to_numpy(t.data)


# ---- initialisation ---------------------------------------------------------------------
def test_linear_default_init_is_uniform_one_over_sqrt_fan_in() -> None:
    lin = ts.nn.Linear(64, 300)
    bound = 1 / math.sqrt(64)
    for p in (lin.weight, lin.bias):
        assert p is not None
        v = host(p)
        assert np.abs(v).max() <= bound
        assert np.abs(v).max() > 0.95 * bound
    # uniform on [-b, b] has std b / sqrt(3)
    assert abs(host(lin.weight).std() - bound / math.sqrt(3)) < 0.05 * bound


def test_kaiming_uniform_sqrt5_is_linear_bound() -> None:
    w = ts.zeros(200, 50)
    ts.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    assert np.abs(host(w)).max() <= 1 / math.sqrt(50) + 1e-7
    assert np.abs(host(w)).max() > 0.95 / math.sqrt(50)


def test_embedding_default_init_is_standard_normal() -> None:
    emb = ts.nn.Embedding(400, 50, padding_idx=3)
    v = host(emb.weight)
    assert np.all(v[3] == 0)
    rest = np.delete(v, 3, axis=0)
    assert abs(rest.mean()) < 0.02 and abs(rest.std() - 1) < 0.02


def test_seeded_init_is_reproducible() -> None:
    ts.manual_seed(7)
    a = host(ts.nn.Linear(5, 4).weight).copy()
    ts.manual_seed(7)
    b = host(ts.nn.Linear(5, 4).weight)
    np.testing.assert_array_equal(a, b)


# ---- parity with torch --------------------------------------------------------------------
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(torch, device: str, dtype, rtol: float, bias: bool) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    ref = torch.nn.Linear(4, 3, bias=bias).to(getattr(torch, np.dtype(dtype).name))
    lin = ts.nn.Linear(4, 3, bias=bias, device=device, dtype=dtype)
    lin.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    xn = rng.standard_normal((2, 5, 4)).astype(dtype)
    gn = rng.standard_normal((2, 5, 3)).astype(dtype)
    x = ts.tensor(xn, device=device, requires_grad=True)
    xt = torch.tensor(xn, requires_grad=True)
    y, yt = lin(x), ref(xt)
    assert y.device.name == device and y.dtype == dtype
    np.testing.assert_allclose(host(y), yt.detach().numpy(), rtol=rtol, atol=rtol)
    y.backward(gn)
    yt.backward(torch.tensor(gn))
    np.testing.assert_allclose(host(x.grad), xt.grad.numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(host(lin.weight.grad), ref.weight.grad.numpy(), rtol=rtol, atol=rtol)
    if bias:
        np.testing.assert_allclose(host(lin.bias.grad), ref.bias.grad.numpy(), rtol=rtol, atol=rtol)


def test_linear_gradcheck() -> None:
    lin = ts.nn.Linear(3, 2, dtype=np.float64)
    x = ts.randn(4, 3, dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda x, w, b: ts.functional.linear(x, w, b), [x, lin.weight, lin.bias])
    x1 = ts.randn(3, dtype=np.float64, requires_grad=True)  # 1-D input
    assert gradcheck(lambda x, w, b: ts.functional.linear(x, w, b), [x1, lin.weight, lin.bias])


def test_linear_shape_error_names_shapes() -> None:
    lin = ts.nn.Linear(4, 2)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\), got \(3, 5\)"):
        lin(ts.zeros(3, 5))


def test_linear_device_or_dtype_mismatch_names_both() -> None:
    lin = ts.nn.Linear(4, 2, device="cpu")
    with pytest.raises(TypeError, match="float64 on cpu.*float32 on cpu"):
        lin(ts.zeros(3, 4, dtype=np.float64, device="cpu"))
    with pytest.raises(TypeError, match="testcpu"):
        lin(ts.zeros(3, 4, device="testcpu"))


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(torch, device: str, padding_idx) -> None:  # type: ignore[no-untyped-def]
    ref = torch.nn.Embedding(6, 3, padding_idx=padding_idx).double()
    emb = ts.nn.Embedding(6, 3, padding_idx=padding_idx, device=device, dtype=np.float64)
    assert emb.padding_idx == ref.padding_idx
    emb.load_state_dict({"weight": ref.weight.detach().numpy()})
    ids = np.array([[0, 2, 5], [2, 2, 1]])
    g = np.random.default_rng(0).standard_normal((2, 3, 3))
    out = emb(ts.tensor(ids, device=device))
    out_t = ref(torch.tensor(ids))
    np.testing.assert_allclose(host(out), out_t.detach().numpy(), rtol=1e-12)
    out.backward(g)
    out_t.backward(torch.tensor(g))
    np.testing.assert_allclose(host(emb.weight.grad), ref.weight.grad.numpy(), rtol=1e-12)


def test_embedding_gradcheck() -> None:
    # (the padding row's gradient is zero by design, so check without one)
    emb = ts.nn.Embedding(5, 2, dtype=np.float64)
    ids = np.array([[0, 1], [1, 4]])
    assert gradcheck(lambda w: emb(ids), [emb.weight])


def test_embedding_from_pretrained(torch) -> None:  # type: ignore[no-untyped-def]
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    emb = ts.nn.Embedding.from_pretrained(table, padding_idx=1)
    ref = torch.nn.Embedding.from_pretrained(torch.tensor(table), padding_idx=1)
    assert not emb.weight.requires_grad
    table[0, 0] = 99  # a copy: the source can change afterwards
    ids = np.array([1, 0, 3])
    np.testing.assert_array_equal(host(emb(ids)), ref(torch.tensor(ids)).numpy())
    trainable = ts.nn.Embedding.from_pretrained(table, freeze=False, device="testcpu")
    assert trainable.weight.requires_grad and trainable.weight.device.name == "testcpu"
    with pytest.raises(ValueError, match=r"2-D.*got shape \(12,\)"):
        ts.nn.Embedding.from_pretrained(np.zeros(12))


def test_embedding_padding_idx_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[-4, 4\).*got 4"):
        ts.nn.Embedding(4, 2, padding_idx=4)


# ---- state_dict -------------------------------------------------------------------------
def _model() -> ts.nn.Module:
    return ts.nn.Sequential(ts.nn.Linear(3, 4), ts.nn.Dropout(0.5), ts.nn.Linear(4, 2))


def test_state_dict_keys_match_torch_and_load_torch_weights(torch) -> None:  # type: ignore[no-untyped-def]
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    model = _model().to("cpu")
    assert list(model.state_dict()) == list(ref.state_dict())
    model.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    model.eval()
    ref.eval()
    np.testing.assert_allclose(
        host(model(ts.tensor(x, device="cpu"))), ref(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_state_dict_is_a_host_copy(device: str) -> None:
    model = _model().to(device)
    state = model.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())
    state["0.weight"][...] = 0
    assert np.any(host(model[0].weight) != 0)  # type: ignore[attr-defined]


def test_load_state_dict_shape_error_changes_nothing() -> None:
    model = _model()
    before = model.state_dict()
    bad = {k: v + 1 for k, v in before.items()}
    bad["2.weight"] = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"2\.weight: expected shape \(2, 4\), got \(2, 5\)"):
        model.load_state_dict(bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_missing_and_unexpected_keys() -> None:
    model = _model()
    state = model.state_dict()
    del state["0.bias"]
    state["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: \['0.bias'\].*unexpected keys: \['extra'\]"):
        model.load_state_dict(state)
    model.load_state_dict(state, strict=False)  # loads what fits


def test_load_state_dict_keeps_device_and_dtype(device: str) -> None:
    model = _model().to(device)
    model.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    for p in model.parameters():
        assert p.device.name == device and p.dtype == np.float32


def test_buffers_are_saved_and_moved() -> None:
    class WithBuffer(ts.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = ts.nn.Linear(2, 2)
            self.register_buffer("running", ts.zeros(2))

    m = WithBuffer()
    assert list(m.state_dict()) == ["running", "lin.weight", "lin.bias"]
    m.running = ts.ones(2)  # assigning a tensor to a buffer's name keeps it a buffer
    assert np.all(m.state_dict()["running"] == 1)
    m.to("testcpu")
    assert m.running.device.name == "testcpu"
    assert [n for n, _ in m.named_parameters()] == ["lin.weight", "lin.bias"]
    m.running = ts.nn.Parameter(ts.zeros(2))  # a Parameter takes the name over, as in PyTorch
    assert [n for n, _ in m.named_parameters()] == ["running", "lin.weight", "lin.bias"]
    assert [n for n, _ in m.named_buffers()] == []


# ---- modes, devices, gradients, containers --------------------------------------------------
def test_train_eval_switches_dropout() -> None:
    model = ts.nn.Sequential(ts.nn.Dropout(0.5))
    x = ts.ones(1000)
    assert model.training and model[0].training
    out = host(model(x))
    assert 0.3 < (out == 0).mean() < 0.7 and set(np.unique(out)) <= {0.0, 2.0}
    model.eval()
    assert not model[0].training
    np.testing.assert_array_equal(host(model(x)), np.ones(1000))
    assert model.train() is model and model[0].training


def test_to_device_keeps_parameter_objects(device: str) -> None:
    model = _model()
    params = list(model.parameters())
    model(ts.randn(2, 3)).sum().backward()
    assert model.to(device) is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    for p in model.parameters():
        assert p.device.name == device and p.grad is not None and p.grad.device.name == device
    out = model(ts.randn(2, 3, device=device))
    assert out.device.name == device


def test_to_dtype() -> None:
    model = _model().to(ts.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model(ts.randn(2, 3, dtype=np.float64)).dtype == np.float64


def test_zero_grad() -> None:
    model = _model()
    model(ts.randn(2, 3)).sum().backward()
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not np.any(host(p.grad)) for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_repr_matches_torch(torch) -> None:  # type: ignore[no-untyped-def]
    ours = ts.nn.Sequential(
        ts.nn.Embedding(10, 3, padding_idx=0),
        ts.nn.Sequential(ts.nn.Linear(3, 4), ts.nn.Linear(4, 2, bias=False)),
    )
    ref = torch.nn.Sequential(
        torch.nn.Embedding(10, 3, padding_idx=0),
        torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2, bias=False)),
    )
    assert repr(ours) == repr(ref)
    assert repr(ts.nn.Dropout(0.25)) == "Dropout(p=0.25)"


def test_parameters_registered_once_and_containers() -> None:
    shared = ts.nn.Linear(2, 2)
    seq = ts.nn.Sequential(shared, shared)
    assert len(list(seq.parameters())) == 2
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    ml = ts.nn.ModuleList([ts.nn.Linear(2, 3)]).extend([ts.nn.Linear(3, 1)])
    assert len(ml) == 2 and ml[1].out_features == 1  # type: ignore[attr-defined]
    assert seq.append(ts.nn.Dropout()) is seq and len(seq) == 3
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Dropout"]
    with pytest.raises(TypeError, match="got int"):
        seq.append(3)  # type: ignore[arg-type]
    assert seq.num_parameters() == 6


def test_assigning_to_a_parameter_name() -> None:
    lin = ts.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'weight' of Linear"):
        lin.weight = ts.zeros(2, 2)  # type: ignore[assignment]
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin(ts.ones(1, 2)).shape == (1, 2)
    lin.bias = ts.nn.Parameter(ts.zeros(2))
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
