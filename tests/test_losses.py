"""Losses against torch.nn.functional: values, gradients, stability, errors."""

from __future__ import annotations

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend
from tinyseq.testing import gradcheck

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32])


@pytest.fixture
def torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


def host(t: ts.Tensor) -> np.ndarray:
    return backend.to_numpy(t.data)


def close(a: object, b: object, dtype: object) -> None:
    tol = TOL[dtype]  # type: ignore[index]
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def run_both(torch, fn, tfn, arrays, device="cpu", grad_of=(0,)):  # type: ignore[no-untyped-def]
    """Loss value and gradients of the arrays at ``grad_of``, from tinyseq and torch."""
    ours = [ts.tensor(a, device=device, requires_grad=i in grad_of) if a.dtype.kind == "f"
            else a for i, a in enumerate(arrays)]
    ref = [torch.tensor(a, requires_grad=i in grad_of) if a.dtype.kind == "f"
           else torch.tensor(a) for i, a in enumerate(arrays)]
    out, out_t = fn(*ours), tfn(*ref)
    g = np.random.default_rng(5).standard_normal(out.shape).astype(out.dtype)
    out.backward(g)
    out_t.backward(torch.tensor(g))
    return (host(out), [host(ours[i].grad) for i in grad_of],
            out_t.detach().numpy(), [ref[i].grad.numpy() for i in grad_of])


# ---- cross_entropy ----------------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(torch, device: str, dtype, reduction: str) -> None:  # type: ignore[no-untyped-def]
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x = (3 * rng.standard_normal((6, 5))).astype(dtype)
    t = rng.integers(0, 5, 6)
    t[2] = -100
    w = rng.random(5).astype(dtype)
    v, g, vt, gt = run_both(
        torch,
        lambda a, b: ts.cross_entropy(a, b, weight=w, reduction=reduction),
        lambda a, b: F.cross_entropy(a, b, weight=torch.tensor(w), reduction=reduction),
        [x, t], device,
    )
    close(v, vt, dtype)
    close(g[0], gt[0], dtype)


@DTYPES
def test_cross_entropy_sequence_layout(torch, dtype) -> None:  # type: ignore[no-untyped-def]
    # tinyseq takes (B, T, C) with targets (B, T); torch wants classes second: (B, C, T)
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 7)).astype(dtype)
    t = rng.integers(0, 7, (3, 4))
    t[0, 3] = t[2, 1] = 0
    v, g, vt, gt = run_both(
        torch,
        lambda a, b: ts.cross_entropy(a, b, ignore_index=0),
        lambda a, b: F.cross_entropy(a.permute(0, 2, 1), b, ignore_index=0),
        [x, t],
    )
    close(v, vt, dtype)
    close(g[0], gt[0], dtype)


def test_cross_entropy_bool_mask_equals_ignore_index(device: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 3))
    t = rng.integers(0, 3, (4, 5))
    mask = rng.random((4, 5)) > 0.4
    a = ts.tensor(x, device=device, requires_grad=True)
    b = ts.tensor(x, device=device, requires_grad=True)
    la = ts.cross_entropy(a, t, mask=mask)
    lb = ts.cross_entropy(b, np.where(mask, t, -100))
    la.backward()
    lb.backward()
    close(host(la), host(lb), np.float64)
    close(host(a.grad), host(b.grad), np.float64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_float_mask_is_a_weighted_mean(torch, reduction: str) -> None:  # type: ignore[no-untyped-def]
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 4))
    t = rng.integers(0, 4, 8)
    m = rng.random(8)
    m[1] = 0

    def ref(a, b):  # type: ignore[no-untyped-def]
        per = F.cross_entropy(a, b, reduction="none") * torch.tensor(m)
        return {"mean": per.sum() / m.sum(), "sum": per.sum(), "none": per}[reduction]

    v, g, vt, gt = run_both(
        torch, lambda a, b: ts.cross_entropy(a, b, mask=m, reduction=reduction), ref, [x, t]
    )
    close(v, vt, np.float64)
    close(g[0], gt[0], np.float64)


def test_cross_entropy_gradcheck() -> None:
    rng = np.random.default_rng(4)
    x = ts.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    t = rng.integers(0, 4, (2, 3))
    t[1, 1] = -100
    m = rng.random((2, 3))
    w = rng.random(4)
    for red in ("mean", "sum", "none"):
        assert gradcheck(lambda x, red=red: ts.cross_entropy(x, t, weight=w, mask=m, reduction=red), [x])


@DTYPES
def test_cross_entropy_large_logits_stay_finite(torch, dtype) -> None:  # type: ignore[no-untyped-def]
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], dtype=dtype)
    t = np.array([1, 1])
    v, g, vt, gt = run_both(
        torch, ts.cross_entropy, torch.nn.functional.cross_entropy, [x, t]
    )
    assert np.isfinite(v).all() and np.isfinite(g[0]).all()
    close(v, vt, dtype)
    close(g[0], gt[0], dtype)


def test_cross_entropy_all_ignored_is_nan_like_torch(torch) -> None:  # type: ignore[no-untyped-def]
    x = np.zeros((2, 3))
    t = np.array([-100, -100])
    ours = float(host(ts.cross_entropy(ts.tensor(x), t)))
    ref = float(torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t)))
    assert np.isnan(ours) and np.isnan(ref)
    assert float(host(ts.cross_entropy(ts.tensor(x), t, reduction="sum"))) == 0.0


def test_cross_entropy_errors_name_shapes_and_values() -> None:
    logits = ts.zeros(4, 10, device="cpu")
    with pytest.raises(ValueError, match=r"logits of shape \(4, 10\).*target of shape \(4,\).*got \(5,\)"):
        ts.cross_entropy(logits, np.zeros(5, dtype=np.int64))
    with pytest.raises(IndexError, match=r"\[0, 9\] for 10 classes.*got values in \[-3, 10\]"):
        ts.cross_entropy(logits, np.array([0, 10, -3, 2]))
    with pytest.raises(TypeError, match="integer class indices, got dtype float"):
        ts.cross_entropy(logits, np.zeros(4))
    with pytest.raises(ValueError, match=r"mask must have the target's shape \(4,\), got \(4, 1\)"):
        ts.cross_entropy(logits, np.zeros(4, dtype=int), mask=np.ones((4, 1)))
    with pytest.raises(ValueError, match=r"weight must have shape \(10,\).*got \(3,\)"):
        ts.cross_entropy(logits, np.zeros(4, dtype=int), weight=np.ones(3))
    with pytest.raises(ValueError, match="reduction must be"):
        ts.cross_entropy(logits, np.zeros(4, dtype=int), reduction="avg")
    with pytest.raises(RuntimeError, match="target is on testcpu but the input is on cpu"):
        ts.cross_entropy(logits, ts.tensor(np.zeros(4, dtype=int), device="testcpu"))


def test_cross_entropy_module(device: str) -> None:
    x = ts.randn(3, 4, device=device)
    t = np.array([1, 0, 3])
    loss = ts.nn.CrossEntropyLoss(ignore_index=0, reduction="sum")
    assert float(host(loss(x, t))) == pytest.approx(
        float(host(ts.cross_entropy(x, t, ignore_index=0, reduction="sum")))
    )
    assert repr(loss) == "CrossEntropyLoss(ignore_index=0, reduction='sum')"
    assert loss(x, t).device.name == device


# ---- binary_cross_entropy_with_logits ---------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_with_logits_matches_torch(torch, device: str, dtype, reduction: str, weighted: bool) -> None:  # type: ignore[no-untyped-def]
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    x = (4 * rng.standard_normal((5, 3))).astype(dtype)
    y = rng.random((5, 3)).astype(dtype)
    w = rng.random((5, 1)).astype(dtype) if weighted else None
    pw = rng.random(3).astype(dtype) * 3 if weighted else None
    kw_t = {} if not weighted else {"weight": torch.tensor(w), "pos_weight": torch.tensor(pw)}
    v, g, vt, gt = run_both(
        torch,
        lambda a, b: ts.binary_cross_entropy_with_logits(a, b, weight=w, pos_weight=pw, reduction=reduction),
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kw_t),
        [x, y], device, grad_of=(0, 1),
    )
    close(v, vt, dtype)
    close(g[0], gt[0], dtype)
    close(g[1], gt[1], dtype)


@DTYPES
def test_bce_large_logits_stay_finite(torch, dtype) -> None:  # type: ignore[no-untyped-def]
    x = np.array([1e4, -1e4, 1e4, -1e4, 0.0], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5], dtype=dtype)
    pw = np.array(2.0, dtype=dtype)
    v, g, vt, gt = run_both(
        torch,
        lambda a, b: ts.binary_cross_entropy_with_logits(a, b, pos_weight=pw, reduction="none"),
        lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(
            a, b, pos_weight=torch.tensor(pw), reduction="none"),
        [x, y],
    )
    assert np.isfinite(v).all() and np.isfinite(g[0]).all()
    close(v, vt, dtype)
    close(g[0], gt[0], dtype)


def test_bce_gradcheck_and_errors() -> None:
    rng = np.random.default_rng(7)
    x = ts.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    y = ts.tensor(rng.random((3, 2)), requires_grad=True)
    pw = rng.random(2) + 0.5
    assert gradcheck(lambda x, y: ts.binary_cross_entropy_with_logits(x, y, pos_weight=pw), [x, y])
    with pytest.raises(ValueError, match=r"logits' shape \(3, 2\), got \(3,\)"):
        ts.binary_cross_entropy_with_logits(x, np.zeros(3))
    loss = ts.nn.BCEWithLogitsLoss(reduction="sum")
    assert float(host(loss(x, y))) == pytest.approx(
        float(host(ts.binary_cross_entropy_with_logits(x, y, reduction="sum"))))


# ---- mse_loss ---------------------------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch(torch, device: str, dtype, reduction: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3)).astype(dtype)
    y = rng.standard_normal((4, 3)).astype(dtype)
    v, g, vt, gt = run_both(
        torch,
        lambda a, b: ts.mse_loss(a, b, reduction=reduction),
        lambda a, b: torch.nn.functional.mse_loss(a, b, reduction=reduction),
        [x, y], device, grad_of=(0, 1),
    )
    close(v, vt, dtype)
    close(g[0], gt[0], dtype)
    close(g[1], gt[1], dtype)


def test_mse_gradcheck_and_errors() -> None:
    x = ts.randn(3, 2, dtype=np.float64, device="cpu", requires_grad=True)
    y = ts.randn(3, 2, dtype=np.float64, device="cpu", requires_grad=True)
    assert gradcheck(ts.mse_loss, [x, y])
    with pytest.raises(ValueError, match=r"input's shape \(3, 2\), got \(2, 3\)"):
        ts.mse_loss(x, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="float32 on cpu but the input is float64"):
        ts.mse_loss(x, ts.zeros(3, 2, device="cpu"))
    assert repr(ts.nn.MSELoss()) == "MSELoss(reduction='mean')"
