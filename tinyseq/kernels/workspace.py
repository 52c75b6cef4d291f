"""Reusable scratch arrays for the fused kernels, and small pointwise helpers.

Large fresh arrays cost page faults on first touch (several ms for tens of MB), so
transient buffers — the input product, the inference gate buffer, backward's gate
gradients — are taken from a pool keyed by (device, shape, dtype) and given back after
use. The pool holds at most ``max_bytes`` (least recently returned arrays go first),
so many different sequence lengths cannot make it grow without bound. Arrays handed to
a caller or saved for backward are never pooled.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

__all__ = ["Workspace", "workspace", "sigmoid_from_half_", "add_biases"]

Array = Any


class Workspace:
    """A free-list of scratch arrays: ``take`` one, ``give`` it back when done."""

    def __init__(self, max_per_key: int = 2, max_bytes: int = 256 * 2**20) -> None:
        self._free: OrderedDict[tuple[int, tuple[int, ...], str], list[Array]] = OrderedDict()
        self.max_per_key = max_per_key
        self.max_bytes = max_bytes
        self.nbytes = 0

    def take(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """An uninitialised array of ``shape``/``dtype`` from ``xp`` (reused when possible)."""
        key = (id(xp), tuple(shape), np.dtype(dtype).str)
        free = self._free.get(key)
        if free:
            a = free.pop()
            self.nbytes -= a.nbytes
            return a
        return xp.empty(shape, dtype=dtype)

    def give(self, xp: Any, *arrays: Array) -> None:
        """Return arrays obtained from :meth:`take`; the caller must not use them again."""
        for a in arrays:
            if a.nbytes > self.max_bytes:
                continue
            key = (id(xp), tuple(a.shape), np.dtype(a.dtype).str)
            free = self._free.setdefault(key, [])
            self._free.move_to_end(key)
            if len(free) >= self.max_per_key:
                continue
            free.append(a)
            self.nbytes += a.nbytes
            while self.nbytes > self.max_bytes:
                old_key, old = next(iter(self._free.items()))
                if old:
                    self.nbytes -= old.pop(0).nbytes
                if not old:
                    del self._free[old_key]

    def clear(self) -> None:
        """Drop every pooled array."""
        self._free.clear()
        self.nbytes = 0


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
