"""Composite and fused tensor ops: softmax family, embedding lookup, dropout.

Each op computes its forward on arrays and sits next to its own backward, so the graph
gets one node per op instead of one per primitive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend
from .tensor import Array, Tensor, _make

__all__ = ["softmax", "log_softmax", "logsumexp", "embedding", "dropout"]


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
