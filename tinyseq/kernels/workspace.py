"""Reusable scratch arrays for the fused kernels, and the in-place pointwise helpers.

Large fresh arrays cost page faults on first touch (several ms for tens of MB), so
transient buffers — the inference gate buffer, backward's gate gradients — are taken
from a small pool keyed by (device, shape, dtype) and given back after use. Arrays
handed to a caller or saved for backward are never pooled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Workspace", "workspace", "sigmoid_", "dsigmoid_", "dtanh_", "tanh_", "add_biases", "gate_blocks", "weight_grads", "column_sums"]

Array = Any


class Workspace:
    """A free-list of scratch arrays: ``take`` one, ``give`` it back when done."""

    def __init__(self, max_per_key: int = 2) -> None:
        self._free: dict[tuple[int, tuple[int, ...], str], list[Array]] = {}
        self.max_per_key = max_per_key

    def take(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """An uninitialised array of ``shape``/``dtype`` from ``xp`` (reused when possible)."""
        key = (id(xp), tuple(shape), np.dtype(dtype).str)
        free = self._free.get(key)
        if free:
            return free.pop()
        return xp.empty(shape, dtype=dtype)

    def give(self, xp: Any, *arrays: Array) -> None:
        """Return arrays obtained from :meth:`take`; the caller must not use them again."""
        for a in arrays:
            key = (id(xp), tuple(a.shape), np.dtype(a.dtype).str)
            free = self._free.setdefault(key, [])
            if len(free) < self.max_per_key:
                free.append(a)

    def clear(self) -> None:
        """Drop every pooled array."""
        self._free.clear()


workspace = Workspace()


def sigmoid_(xp: Any, a: Array) -> Array:
    """Logistic sigmoid in place, as 0.5 * tanh(a / 2) + 0.5 (no overflow); returns a.

    tanh is one fast vectorised pass; the exp form needs exp, add and a division.
    """
    half = a.dtype.type(0.5)
    xp.multiply(a, half, out=a)
    xp.tanh(a, out=a)
    xp.multiply(a, half, out=a)
    xp.add(a, half, out=a)
    return a


def gate_blocks(a: Array, n: int) -> Array:
    """The (n, B, H) view of a row-major (B, n*H) gate matrix: block k is gate k."""
    B = a.shape[0]
    return a.reshape(B, n, a.shape[1] // n).transpose(1, 0, 2)


def dsigmoid_(xp: Any, d: Array, s: Array, tmp: Array) -> Array:
    """d *= s * (1 - s) in place, for s = sigmoid(pre); tmp is scratch of d's shape."""
    xp.subtract(1.0, s, out=tmp)
    xp.multiply(d, s, out=d)
    xp.multiply(d, tmp, out=d)
    return d


def dtanh_(xp: Any, d: Array, th: Array, tmp: Array) -> Array:
    """d *= 1 - th**2 in place, for th = tanh(pre); tmp is scratch of d's shape."""
    xp.multiply(th, th, out=tmp)
    xp.subtract(1.0, tmp, out=tmp)
    xp.multiply(d, tmp, out=d)
    return d


def tanh_(xp: Any, a: Array) -> Array:
    """tanh in place; returns a."""
    xp.tanh(a, out=a)
    return a


def add_biases(xp: Any, b_ih: Array | None, b_hh: Array | None) -> Array | None:
    """b_ih + b_hh (either may be None), added once to the input product."""
    if b_ih is None:
        return b_hh
    if b_hh is None:
        return b_ih
    return xp.add(b_ih, b_hh)


def weight_grads(xp: Any, d: Array, x2: Array, h2: Array) -> tuple[Array, Array]:
    """dW_ih = d.T @ x2 and dW_hh = d.T @ h2 over all steps, one GEMM each.

    d: (N, G) gate gradients; x2 (N, I), h2 (N, H) -> (G, I), (G, H). Computed as
    (x2.T @ d).T, the operand order BLAS runs fastest here, and returned as that
    transposed view (autograd copies gradients into fresh arrays anyway).
    """
    return xp.matmul(x2.T, d).T, xp.matmul(h2.T, d).T


def column_sums(xp: Any, d: Array) -> Array:
    """d.sum(axis=0) for a 2-D d, as a BLAS vector-matrix product (multithreaded)."""
    ones = _ones(xp, d.shape[0], d.dtype)
    return xp.matmul(ones, d)


_ones_cache: dict[tuple[int, int, str], Array] = {}


def _ones(xp: Any, n: int, dtype: Any) -> Array:
    key = (id(xp), n, np.dtype(dtype).str)
    ones = _ones_cache.get(key)
    if ones is None:
        if len(_ones_cache) > 16:
            _ones_cache.clear()
        ones = _ones_cache[key] = xp.ones((n,), dtype=dtype)
    return ones
