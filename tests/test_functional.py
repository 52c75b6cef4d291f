"""softmax, log_softmax, logsumexp, embedding, dropout: gradient checks, PyTorch parity,
stability and errors."""

from __future__ import annotations

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.testing import gradcheck


def _x(shape: tuple[int, ...], device: str, seed: int = 0, scale: float = 2.0) -> ts.Tensor:
    data = np.random.default_rng(seed).uniform(-scale, scale, size=shape)
    return ts.tensor(data, dtype=ts.float64, device=device, requires_grad=True)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family_gradcheck(device: str, axis: int) -> None:
    x = _x((3, 4, 5), device)
    assert gradcheck(lambda t: ts.softmax(t, axis=axis), [x], atol=1e-7, rtol=1e-6)
    assert gradcheck(lambda t: ts.log_softmax(t, axis=axis), [x], atol=1e-7, rtol=1e-6)
    assert gradcheck(lambda t: ts.logsumexp(t, axis=axis), [x], atol=1e-7, rtol=1e-6)
    assert gradcheck(lambda t: ts.logsumexp(t, axis=axis, keepdims=True), [x],
                     atol=1e-7, rtol=1e-6)


def test_embedding_gradcheck_repeated_ids(device: str) -> None:
    weight = _x((5, 3), device)
    ids = ts.tensor(np.array([[0, 2, 2], [4, 0, 2]]), device=device)
    assert gradcheck(lambda w: ts.embedding(ids, w), [weight], atol=1e-7, rtol=1e-6)


def test_dropout_gradcheck_with_fixed_mask(device: str) -> None:
    x = _x((4, 5), device)

    def fn(t: ts.Tensor) -> ts.Tensor:
        ts.manual_seed(3)  # the same mask on every evaluation
        return ts.dropout(t, 0.3)

    assert gradcheck(fn, [x], atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_family_matches_torch(dtype: str) -> None:
    torch = pytest.importorskip("torch")
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    data = np.random.default_rng(1).normal(0, 3, size=(4, 6)).astype(dtype)
    w = np.random.default_rng(2).normal(size=(4, 6)).astype(dtype)
    pairs = [
        (lambda t: ts.softmax(t, axis=-1), lambda t: torch.softmax(t, dim=-1)),
        (lambda t: ts.softmax(t, axis=0), lambda t: torch.softmax(t, dim=0)),
        (lambda t: ts.log_softmax(t, axis=1), lambda t: torch.log_softmax(t, dim=1)),
        (lambda t: ts.logsumexp(t, axis=1, keepdims=True),
         lambda t: torch.logsumexp(t, dim=1, keepdim=True)),
        (lambda t: ts.logsumexp(t, axis=0), lambda t: torch.logsumexp(t, dim=0)),
    ]
    for ours_fn, ref_fn in pairs:
        x = ts.tensor(data, requires_grad=True)
        xr = torch.tensor(data, requires_grad=True)
        out, ref = ours_fn(x), ref_fn(xr)
        np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), **tol)
        ww = w[: out.shape[0], : out.shape[-1]] if out.ndim == 2 else w[0, : out.shape[0]]
        (out * ts.tensor(ww.copy())).sum().backward()
        (ref * torch.tensor(ww.copy())).sum().backward()
        assert x.grad is not None and x.grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(x.grad.numpy(), xr.grad.numpy(), **tol)


def test_embedding_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    weight = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    ids = np.array([[1, 5, 1], [0, 1, 3]])
    g = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    w = ts.tensor(weight, requires_grad=True)
    wr = torch.tensor(weight, requires_grad=True)
    out = ts.embedding(ts.tensor(ids), w)
    ref = torch.nn.functional.embedding(torch.tensor(ids), wr)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy())
    out.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(w.grad.numpy(), wr.grad.numpy(), rtol=1e-6)  # type: ignore[union-attr]
    # row 1 was picked three times: its gradient is the sum of the three
    np.testing.assert_allclose(w.grad.numpy()[1], g[0, 0] + g[0, 2] + g[1, 1], rtol=1e-6)  # type: ignore[union-attr]


def test_embedding_accepts_host_ids_and_lists(device: str) -> None:
    w = ts.tensor(np.arange(12.0).reshape(4, 3), device=device, requires_grad=True)
    a = ts.embedding(np.array([3, 0]), w)
    b = ts.embedding([3, 0], w)
    assert type(a.data) is type(w.data)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    np.testing.assert_array_equal(a.detach().numpy(), [[9, 10, 11], [0, 1, 2]])


@pytest.mark.usefixtures("cpu_default")
def test_embedding_errors() -> None:
    w = ts.ones(4, 3)
    with pytest.raises(IndexError, match=r"out of range.*\[0, 7\].*4 rows"):
        ts.embedding(ts.tensor([0, 7]), w)
    with pytest.raises(IndexError, match=r"\[-1, 2\]"):
        ts.embedding(ts.tensor([-1, 2]), w)
    with pytest.raises(TypeError, match="must be integers.*float"):
        ts.embedding(ts.tensor([0.0, 1.0]), w)
    with pytest.raises(RuntimeError, match="testcpu.*cpu"):
        ts.embedding(ts.tensor([0, 1], device="testcpu"), w)


def test_dropout_gradient_is_the_mask(device: str) -> None:
    p = 0.4
    data = np.random.default_rng(0).uniform(1, 2, size=(50, 40)).astype(np.float32)
    x = ts.tensor(data, device=device, requires_grad=True)
    y = ts.dropout(x, p)
    g = np.random.default_rng(1).normal(size=(50, 40)).astype(np.float32)
    y.backward(g)
    kept = y.detach().numpy() != 0
    mask = kept / (1 - p)
    np.testing.assert_allclose(y.detach().numpy(), x.detach().numpy() * mask, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), g * mask, rtol=1e-6)  # type: ignore[union-attr]
    assert x.grad is not None and x.grad.dtype == np.float32
    assert type(y.data) is type(x.data)
    assert 0.5 < kept.mean() < 0.7  # about 1 - p kept


def test_dropout_identity_and_edges() -> None:
    x = ts.ones(3, 4, requires_grad=True)
    assert ts.dropout(x, 0.5, training=False) is x
    assert ts.dropout(x, 0.0) is x
    y = ts.dropout(x, 1.0)
    assert np.all(y.detach().numpy() == 0)
    with pytest.raises(ValueError, match=r"\[0, 1\].*1.5"):
        ts.dropout(x, 1.5)


def test_dropout_seeded_reproducible() -> None:
    x = ts.ones(20, 20)
    ts.manual_seed(7)
    a = ts.dropout(x, 0.5).numpy()
    ts.manual_seed(7)
    b = ts.dropout(x, 0.5).numpy()
    c = ts.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_softmax_family_is_stable_for_large_values(device: str) -> None:
    x = ts.tensor([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]], device=device)
    s = ts.softmax(x).numpy()
    np.testing.assert_allclose(s, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-7)
    ls = ts.log_softmax(x).numpy()
    assert np.all(np.isfinite(ls[0, :2])) and np.allclose(ls[0, :2], np.log(0.5))
    lse = ts.logsumexp(x).numpy()
    np.testing.assert_allclose(lse, [1000 + np.log(2.0), 1e4], rtol=1e-6)


def test_logsumexp_of_all_minus_inf_is_minus_inf(device: str) -> None:
    torch = pytest.importorskip("torch")
    data = np.array([[-np.inf, -np.inf], [0.0, -np.inf]], dtype=np.float32)
    out = ts.logsumexp(ts.tensor(data, device=device), axis=1).numpy()
    ref = torch.logsumexp(torch.tensor(data), dim=1).numpy()
    np.testing.assert_array_equal(out, ref)
    assert out[0] == -np.inf and out[1] == 0.0
