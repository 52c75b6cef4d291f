"""Reusable scratch arrays for the fused kernels, and the in-place pointwise helpers.

Large fresh arrays cost page faults on first touch (several ms for tens of MB), so
transient buffers — the inference gate buffer, backward's gate gradients — are taken
from a small pool keyed by (device, shape, dtype) and given back after use. Arrays
handed to a caller or saved for backward are never pooled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Workspace", "workspace", "sigmoid_from_half_", "add_biases"]

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


def sigmoid_from_half_(xp: Any, a: Array) -> Array:
    """Logistic sigmoid in place of a = tanh(pre / 2): a = 0.5 * a + 0.5; returns a.

    The kernels halve the sigmoid gates' weights and biases, take one tanh over all
    gates at once, then finish the sigmoid gates here: 0.5 * tanh(x / 2) + 0.5 is the
    sigmoid without overflow, and costs two cheap passes after the shared tanh.
    """
    half = a.dtype.type(0.5)
    xp.multiply(a, half, out=a)
    xp.add(a, half, out=a)
    return a


def add_biases(xp: Any, b_ih: Array | None, b_hh: Array | None) -> Array | None:
    """b_ih + b_hh (either may be None), added once to the input product."""
    if b_ih is None:
        return b_hh
    if b_hh is None:
        return b_ih
    return xp.add(b_ih, b_hh)
