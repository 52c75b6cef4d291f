"""Every tensor op: float64 gradient check on each device, and values and gradients
against PyTorch (float32 and float64).

Each case is written twice, once with tinyseq and once with torch, over the same inputs
drawn from a fixed generator; ``lows``/``highs`` keep inputs where an op is smooth
(denominators away from 0, positive bases for log, sqrt and tensor exponents).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.testing import gradcheck


@dataclass
class Case:
    name: str
    fn: Callable[..., Any]  # on tinyseq tensors
    ref: Callable[..., Any]  # the same on torch tensors
    shapes: list[tuple[int, ...]]
    lows: list[float] = field(default_factory=list)
    highs: list[float] = field(default_factory=list)

    def arrays(self) -> list[np.ndarray]:
        rng = np.random.default_rng(sum(map(ord, self.name)))
        out = []
        for i, shape in enumerate(self.shapes):
            lo = self.lows[i] if i < len(self.lows) else -2.0
            hi = self.highs[i] if i < len(self.highs) else 2.0
            out.append(rng.uniform(lo, hi, size=shape))
        return out


I = np.array  # noqa: E741 (short alias for index arrays in the table)

CASES: list[Case] = []


def case(name: str, fn: Callable[..., Any], ref: Callable[..., Any],
         *shapes: tuple[int, ...], lows: list[float] | None = None,
         highs: list[float] | None = None) -> None:
    CASES.append(Case(name, fn, ref, list(shapes), lows or [], highs or []))


# ---- binary ops, with every broadcasting pattern ------------------------------------
BROADCAST = [((3, 4), (3, 4)), ((3, 1, 4), (2, 1)), ((2, 3), ()), ((), (2, 3)),
             ((4,), (3, 4)), ((2, 1), (1, 3))]
for sa, sb in BROADCAST:
    tag = f"{sa}x{sb}".replace(" ", "")
    case(f"add{tag}", lambda a, b: a + b, lambda a, b: a + b, sa, sb)
    case(f"sub{tag}", lambda a, b: a - b, lambda a, b: a - b, sa, sb)
    case(f"mul{tag}", lambda a, b: a * b, lambda a, b: a * b, sa, sb)
    case(f"div{tag}", lambda a, b: a / b, lambda a, b: a / b, sa, sb,
         lows=[-2, 0.5], highs=[2, 2])
    case(f"pow{tag}", lambda a, b: a**b, lambda a, b: a**b, sa, sb,
         lows=[0.5, -2], highs=[2, 2])

# ---- with Python numbers --------------------------------------------------------------
case("add_scalar", lambda a: a + 2, lambda a: a + 2, (3, 4))
case("radd_scalar", lambda a: 2 + a, lambda a: 2 + a, (3, 4))
case("sub_scalar", lambda a: a - 3.5, lambda a: a - 3.5, (3, 4))
case("rsub_scalar", lambda a: 3.5 - a, lambda a: 3.5 - a, (3, 4))
case("mul_scalar", lambda a: a * 2.5, lambda a: a * 2.5, (3, 4))
case("rmul_scalar", lambda a: 2.5 * a, lambda a: 2.5 * a, (3, 4))
case("div_scalar", lambda a: a / 4, lambda a: a / 4, (3, 4))
case("rdiv_scalar", lambda a: 4 / a, lambda a: 4 / a, (3, 4), lows=[0.5])
case("neg", lambda a: -a, lambda a: -a, (3, 4))
case("pow2_negative_base", lambda a: a**2, lambda a: a**2, (3, 4))
case("pow3", lambda a: a**3, lambda a: a**3, (3, 4))
case("pow_half", lambda a: a**0.5, lambda a: a**0.5, (3, 4), lows=[0.2])
case("pow_minus1", lambda a: a**-1, lambda a: a**-1, (3, 4), lows=[0.5])
case("pow0", lambda a: a**0, lambda a: a**0, (3, 4))
case("rpow", lambda a: 2.0**a, lambda a: 2.0**a, (3, 4))
case("sqrt", lambda a: a.sqrt(), lambda a: a.sqrt(), (3, 4), lows=[0.2])
case("scalar_tensor_operands", lambda a, b: a * b + b, lambda a, b: a * b + b, (), ())

# ---- matmul ------------------------------------------------------------------------
for sa, sb in [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
               ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
               ((4,), (2, 4, 3)), ((2, 3, 4), (4,))]:
    tag = f"{sa}@{sb}".replace(" ", "")
    case(f"matmul{tag}", lambda a, b: a @ b, lambda a, b: a @ b, sa, sb)

# ---- unary math ----------------------------------------------------------------------
case("exp", ts.exp, lambda a: a.exp(), (3, 4))
case("log", ts.log, lambda a: a.log(), (3, 4), lows=[0.2])
case("tanh", ts.tanh, lambda a: a.tanh(), (3, 4))
case("sigmoid", ts.sigmoid, lambda a: a.sigmoid(), (3, 4), lows=[-4], highs=[4])
case("relu", ts.relu, lambda a: a.relu(), (3, 4))
case("abs", ts.abs, lambda a: a.abs(), (3, 4))
case("method_chain", lambda a: a.exp().tanh().sigmoid().relu().abs().log(),
     lambda a: a.exp().tanh().sigmoid().relu().abs().log(), (3, 4))

# ---- reductions ------------------------------------------------------------------------
for axis, keep in [(None, False), (1, False), (-1, True), ((0, 2), False), ((-1, 0), True),
                   (0, True)]:
    tag = f"{axis}{'k' if keep else ''}".replace(" ", "")
    dim = axis if axis is not None else tuple(range(3))
    case(f"sum{tag}", lambda a, ax=axis, k=keep: a.sum(axis=ax, keepdims=k),
         lambda a, d=dim, k=keep: a.sum(dim=d, keepdim=k), (2, 3, 4))
    case(f"mean{tag}", lambda a, ax=axis, k=keep: a.mean(axis=ax, keepdims=k),
         lambda a, d=dim, k=keep: a.mean(dim=d, keepdim=k), (2, 3, 4))
    case(f"max{tag}", lambda a, ax=axis, k=keep: a.max(axis=ax, keepdims=k),
         lambda a, d=dim, k=keep: a.amax(dim=d, keepdim=k), (2, 3, 4))
    case(f"min{tag}", lambda a, ax=axis, k=keep: a.min(axis=ax, keepdims=k),
         lambda a, d=dim, k=keep: a.amin(dim=d, keepdim=k), (2, 3, 4))
case("sum_0d", lambda a: a.sum(), lambda a: a.sum(), ())
case("sum_0d_axis0", lambda a: a.sum(axis=0), lambda a: a.sum(dim=0), ())
case("max_0d", lambda a: a.max(axis=-1), lambda a: a.amax(dim=-1), ())
case("ts.sum_fn", lambda a: ts.sum(a, 1) + ts.mean(a, 0).sum() + ts.max(a),
     lambda a: a.sum(1) + a.mean(0).sum() + a.amax(), (3, 4))

# ---- shape ops ----------------------------------------------------------------------------
case("reshape", lambda a: a.reshape(6, 4) * 1.5, lambda a: a.reshape(6, 4) * 1.5, (2, 3, 4))
case("reshape_minus1", lambda a: a.reshape((-1,)), lambda a: a.reshape(-1), (2, 3, 4))
case("view_flatten", lambda a: a.view(4, 6).flatten(), lambda a: a.reshape(4, 6).flatten(),
     (2, 3, 4))
case("transpose_none", lambda a: a.transpose(), lambda a: a.permute(2, 1, 0), (2, 3, 4))
case("transpose_axes", lambda a: a.transpose(1, 0, 2), lambda a: a.permute(1, 0, 2),
     (2, 3, 4))
case("transpose_negative", lambda a: ts.transpose(a, (-1, 0, 1)),
     lambda a: a.permute(2, 0, 1), (2, 3, 4))
case("T", lambda a: a.T, lambda a: a.T, (3, 4))
case("swapaxes", lambda a: a.swapaxes(0, 2), lambda a: a.swapaxes(0, 2), (2, 3, 4))
case("swapaxes_negative", lambda a: ts.swapaxes(a, -1, -2), lambda a: a.swapaxes(-1, -2),
     (2, 3, 4))
case("expand_dims0", lambda a: ts.expand_dims(a, 0), lambda a: a.unsqueeze(0), (3, 4))
case("unsqueeze_neg", lambda a: a.unsqueeze(-1), lambda a: a.unsqueeze(-1), (3, 4))
case("squeeze_all", lambda a: a.squeeze(), lambda a: a.squeeze(), (3, 1, 4, 1))
case("squeeze_axis", lambda a: ts.squeeze(a, -1), lambda a: a.squeeze(-1), (3, 1, 4, 1))

# ---- indexing -----------------------------------------------------------------------------
case("getitem_int", lambda a: a[1], lambda a: a[1], (3, 4))
case("getitem_slices", lambda a: a[:, 1:3], lambda a: a[:, 1:3], (3, 4))
case("getitem_numpy_int", lambda a: a[np.int64(2), 1:], lambda a: a[2, 1:], (3, 4))
case("getitem_full_int", lambda a: a[1, 2] * a, lambda a: a[1, 2] * a, (3, 4))
case("getitem_step_ellipsis", lambda a: a[..., ::2], lambda a: a[..., ::2], (2, 3, 4))
case("getitem_negative_newaxis", lambda a: a[-1, None, 1:], lambda a: a[-1, None, 1:],
     (3, 4))
case("getitem_repeated", lambda a: a[I([0, 2, 2, 0])],
     lambda a: a[I([0, 2, 2, 0])], (3, 4))
case("getitem_array_2d", lambda a: a[I([[0, 1], [1, 1]])],
     lambda a: a[I([[0, 1], [1, 1]])], (3, 4))
case("getitem_mixed", lambda a: a[1:, I([3, 0, 3])], lambda a: a[1:, I([3, 0, 3])], (3, 4))
case("getitem_tuple_arrays", lambda a: a[I([0, 1, 1, 2]), I([2, 0, 2, 2])],
     lambda a: a[I([0, 1, 1, 2]), I([2, 0, 2, 2])], (3, 4))
case("getitem_list", lambda a: a[[2, 2, 1]], lambda a: a[[2, 2, 1]], (3, 4))
case("getitem_bool_mask",
     lambda a: a[I([[True, False, True, False], [False] * 4, [True] * 4])],
     lambda a: a[I([[True, False, True, False], [False] * 4, [True] * 4])], (3, 4))
case("getitem_bool_rows", lambda a: a[I([True, False, True])],
     lambda a: a[I([True, False, True])], (3, 4))
case("getitem_tensor_index", lambda a: a[ts.tensor(I([1, 1, 0]), device=a.device)],
     lambda a: a[I([1, 1, 0])], (3, 4))

# ---- joining and splitting --------------------------------------------------------------
case("concatenate", lambda a, b: ts.concatenate([a, b], axis=1),
     lambda a, b: _torch().cat([a, b], dim=1), (2, 3), (2, 1))
case("concatenate_negative", lambda a, b, c: ts.cat([a, b, c], axis=-1),
     lambda a, b, c: _torch().cat([a, b, c], dim=-1), (2, 3), (2, 1), (2, 2))
case("concatenate_axis0", lambda a, b: ts.concatenate([a, b, a]),
     lambda a, b: _torch().cat([a, b, a]), (1, 3), (2, 3))
case("stack", lambda a, b: ts.stack([a, b]), lambda a, b: _torch().stack([a, b]),
     (2, 3), (2, 3))
case("stack_last", lambda a, b: ts.stack([a, b, a], axis=-1),
     lambda a, b: _torch().stack([a, b, a], dim=-1), (2, 3), (2, 3))
case("split_equal", lambda a: tuple(ts.split(a, 2, axis=1)),
     lambda a: a.split(2, dim=1), (3, 4))
case("split_indices", lambda a: tuple(ts.split(a, [1, 3], axis=-1)),
     lambda a: a.tensor_split([1, 3], dim=-1), (3, 4))
case("split_partial_use", lambda a: ts.split(a, 3)[1] * 2.0,
     lambda a: a.split(1)[1] * 2.0, (3, 4))

# ---- where ---------------------------------------------------------------------------------
COND = I([[True, False, True, False], [False, False, True, True], [True, True, False, False]])
case("where", lambda a, b: ts.where(ts.tensor(COND, device=a.device), a, b),
     lambda a, b: _torch().where(_torch().tensor(COND), a, b), (3, 4), (3, 4))
case("where_broadcast", lambda a, b: ts.where(COND, a, b),
     lambda a, b: _torch().where(_torch().tensor(COND), a, b), (4,), (3, 1))
case("where_scalar_other", lambda a: ts.where(a > 0, a, 0.5),
     lambda a: _torch().where(a > 0, a, 0.5), (3, 4))
case("where_scalar_first", lambda b: ts.where(COND, -1.0, b),
     lambda b: _torch().where(_torch().tensor(COND), -1.0, b), (3, 4))
case("where_python_bool", lambda a, b: ts.where(True, a, b) + ts.where(False, a, b) * 2,
     lambda a, b: a + b * 2, (3, 4), (4,))

# ---- dtype and copies -------------------------------------------------------------------
case("clone", lambda a: a.clone() * a, lambda a: a.clone() * a, (3, 4))
case("astype_roundtrip", lambda a: a.astype(ts.float64).astype(a.dtype) * 2.0,
     lambda a: a.double().to(a.dtype) * 2.0, (3, 4))
case("to_dtype", lambda a: a.to(ts.float64).sum(), lambda a: a.double().sum(), (3, 4))


def _torch() -> Any:
    import torch

    return torch


IDS = [c.name for c in CASES]


@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_gradcheck(c: Case, device: str) -> None:
    inputs = [ts.tensor(a, dtype=ts.float64, device=device, requires_grad=True)
              for a in c.arrays()]
    assert gradcheck(c.fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}


def _as_list(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


# float32 on cpu is enough to check the rounding; float64 on every device
TORCH_SETUPS = [
    pytest.param("cpu", "float32", id="cpu-float32"),
    pytest.param("cpu", "float64", id="cpu-float64"),
    pytest.param("testcpu", "float64", id="testcpu-float64"),
    pytest.param("cuda", "float64", id="cuda-float64", marks=pytest.mark.gpu),
]


@pytest.mark.parametrize(("device", "dtype"), TORCH_SETUPS)
@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_matches_torch(c: Case, dtype: str, device: str) -> None:
    torch = pytest.importorskip("torch")
    arrays = [a.astype(dtype) for a in c.arrays()]
    ours = [ts.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = _as_list(c.fn(*ours))
    ref = _as_list(c.ref(*theirs))
    assert len(out) == len(ref)
    rng = np.random.default_rng(1)
    loss_ours: Any = None
    loss_ref: Any = None
    for o, r in zip(out, ref):
        assert o.shape == tuple(r.shape), c.name
        assert o.dtype == np.dtype(str(r.dtype).replace("torch.", "")), c.name
        np.testing.assert_allclose(o.detach().numpy(), r.detach().numpy(), **TOL[dtype])
        w = rng.standard_normal(o.shape).astype(o.dtype)
        lo = (o * ts.tensor(w, device=device)).sum()
        lr = (r * torch.tensor(w)).sum()
        loss_ours = lo if loss_ours is None else loss_ours + lo
        loss_ref = lr if loss_ref is None else loss_ref + lr
    loss_ours.backward()
    loss_ref.backward()
    for i, (a, b) in enumerate(zip(ours, theirs)):
        ref_grad = b.grad.numpy() if b.grad is not None else np.zeros(b.shape, dtype)
        assert a.grad is not None, f"{c.name}: input {i} got no gradient"
        assert a.grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a.grad.numpy(), ref_grad, **TOL[dtype],
                                   err_msg=f"{c.name}: gradient of input {i}")
