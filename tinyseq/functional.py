"""Composite and fused tensor ops: softmax family, embedding lookup, dropout, linear.

Each op computes its forward on arrays and sits next to its own backward, so the graph
gets one node per op instead of one per primitive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import backend
from .tensor import Array, Tensor, _make, _mismatch, _unbroadcast

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "embedding",
    "dropout",
    "linear",
    "reuse_weights",
]


def _shifted(xp: Any, x: Array, axis: int) -> tuple[Array, Array, Array]:
    """(x - m, sum(exp(x - m)), m) along ``axis`` with m the max (kept dims).

    Subtracting the max keeps exp from overflowing for logits of any size; a slice that
    is all -inf uses m = 0 so it gives -inf (log of 0) instead of nan (-inf - -inf).
    """
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
    z = x - m
    return z, xp.exp(z).sum(axis=axis, keepdims=True), m


def _log(xp: Any, s: Array) -> Array:
    with np.errstate(divide="ignore"):  # log(0) = -inf is the answer for all -inf input
        return xp.log(s)


def logsumexp(x: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) along ``axis``, stable for large values.

    x: (...); returns x's shape without ``axis`` (kept as size 1 if ``keepdims``).
    """
    xp = x.device.xp
    z, s, m = _shifted(xp, x.data, axis)
    lse = _log(xp, s) + m
    out = lse if keepdims else lse.squeeze(axis)

    def backward(g: Array) -> tuple[Array]:
        gk = g if keepdims else xp.expand_dims(g, axis)
        return (gk * (xp.exp(z) / s),)

    return _make(out, x.device, (x,), backward)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, stable for large values. Shape of x."""
    xp = x.device.xp
    z, s, _ = _shifted(xp, x.data, axis)
    out = xp.exp(z)
    out /= s  # e / sum(e), not exp(x - lse): exact for large equal logits in float32

    def backward(g: Array) -> tuple[Array]:
        return (out * (g - (g * out).sum(axis=axis, keepdims=True)),)

    return _make(out, x.device, (x,), backward)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along ``axis``, stable for large values. Shape of x."""
    xp = x.device.xp
    z, s, _ = _shifted(xp, x.data, axis)
    out = z - _log(xp, s)

    def backward(g: Array) -> tuple[Array]:
        return (g - xp.exp(out) * g.sum(axis=axis, keepdims=True),)

    return _make(out, x.device, (x,), backward)


def embedding(indices: Tensor | Array, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (V, D) picked by integer ``indices`` (...) -> (..., D)."""
    dev = weight.device
    if isinstance(indices, Tensor):
        idx = indices.data
    else:  # a list or a host array: moved to the weight's device
        idx = indices if hasattr(indices, "dtype") else np.asarray(indices)
        if type(idx) is np.ndarray and dev.name != "cpu":
            idx = dev.xp.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding indices must be integers, got {getattr(idx, 'dtype', type(idx))}")
    if isinstance(indices, Tensor) and indices.device is not weight.device:
        raise RuntimeError(
            f"embedding: indices are on {indices.device.name} but the weight is on "
            f"{weight.device.name}"
        )
    vocab = weight.data.shape[0]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
        raise IndexError(
            f"embedding index out of range: got values in [{int(idx.min())}, "
            f"{int(idx.max())}], the table has {vocab} rows"
        )
    wshape, wdtype = weight.data.shape, weight.data.dtype

    def backward(g: Array) -> tuple[Array]:
        full = dev.xp.zeros(wshape, dtype=wdtype)
        backend.scatter_add(dev, full, idx.reshape(-1), g.reshape(-1, wshape[1]))
        return (full,)

    return _make(weight.data[idx], dev, (weight,), backward)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p).

    Identity when not training or p == 0 (inverted dropout, as in PyTorch).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = backend.random_uniform(x.device, x.shape, 0.0, 1.0, x.dtype) >= p
    mask = keep.astype(x.dtype) * (1.0 / (1.0 - p))

    def backward(g: Array) -> tuple[Array]:
        return (g * mask,)

    return _make(x.data * mask, x.device, (x,), backward)


# ---- linear: x W^T + b, with contiguous W^T reused across a sequence's steps -------------
_weight_scopes: list[dict[int, tuple[Array, Array]]] = []


@contextlib.contextmanager
def reuse_weights() -> Iterator[None]:
    """Inside this block, ``linear`` keeps a contiguous W.T per Parameter and reuses it.

    BLAS multiplies by a transposed view up to twice as slowly as by a contiguous
    matrix at the small sizes of one time step, so the recurrent layer opens this
    scope around a sequence: each weight is transposed once, not once per step.
    Parameters must not change inside the block.
    """
    _weight_scopes.append({})
    try:
        yield
    finally:
        _weight_scopes.pop()


def _transposed(weight: Tensor) -> Array:
    wd = weight.data
    if not _weight_scopes or not weight.is_leaf:  # parameters, not computed tensors
        return wd.T
    cache = _weight_scopes[-1]
    hit = cache.get(id(weight))
    if hit is not None and hit[0] is wd:
        return hit[1]
    wt = backend.transposed_copy(weight.device.xp, wd)
    cache[id(weight)] = (wd, wt)
    return wt


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias as one graph node (PyTorch's F.linear).

    x: (..., in), weight: (out, in) -> (..., out). bias: (out,), or any tensor that
    broadcasts to the output — e.g. a step's hoisted input projection (B, out), which
    saves a separate addition per step: ``linear(h, W_hh, x_t)`` = x_t + h @ W_hh.T.
    """
    if x.device is not weight.device or x.dtype != weight.dtype:
        _mismatch(x, weight, "linear")
    xd, wd = x.data, weight.data
    if xd.shape[-1] != wd.shape[1]:
        raise ValueError(
            f"linear: input has {xd.shape[-1]} features, the weight {tuple(wd.shape)} "
            f"expects {wd.shape[1]}"
        )
    lead = xd.shape[:-1]
    x2 = xd.reshape(-1, xd.shape[-1]) if xd.ndim != 2 else xd
    out = x2 @ _transposed(weight)
    if xd.ndim != 2:
        out = out.reshape(*lead, wd.shape[0])
    if bias is None:
        parents: tuple[Tensor, ...] = (x, weight)
    else:
        if bias.device is not x.device or bias.dtype != x.dtype:
            _mismatch(x, bias, "linear")
        if out.shape == bias.data.shape or bias.data.ndim < out.ndim:
            out += bias.data  # in place: the product is a fresh array
        else:
            out = out + bias.data
        parents = (x, weight, bias)

    def backward(g: Array) -> tuple[Array | None, ...]:
        g2 = g.reshape(-1, g.shape[-1]) if g.ndim != 2 else g
        gx = (g2 @ wd).reshape(xd.shape) if x.requires_grad else None
        gw = None
        if weight.requires_grad:
            # a one-row product is an outer product: BLAS's GEMM is slow at K = 1
            gw = g2.T * x2 if x2.shape[0] == 1 else g2.T @ x2
        if bias is None:
            return gx, gw
        return gx, gw, (_unbroadcast(g, bias.data.shape) if bias.requires_grad else None)

    return _make(out, x.device, parents, backward)
