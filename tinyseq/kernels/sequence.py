"""Time-loop bookkeeping shared by the fused kernels: step order, state slots, masks.

States live in one (T + 1, B, H) buffer indexed by time so that the output is a plain
contiguous slice in both directions: forward, slot t is the state before step t and
slot t + 1 the state after it; reverse, slot t + 1 is before and slot t after. So the
outputs are ``states[1:]`` (forward) or ``states[:-1]`` (reverse), and the states each
step read are ``states[:-1]`` / ``states[1:]`` — one GEMM computes dW_hh over all steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend

__all__ = ["Steps", "MaskInfo", "flush_subnormals", "FLUSH_EVERY"]

# backward loops flush subnormal gradients to zero every this many steps
FLUSH_EVERY = 8

Array = Any


class Steps:
    """Step order and state-slot offsets for one direction over T steps."""

    __slots__ = ("T", "reverse", "order", "prev", "new")

    def __init__(self, T: int, reverse: bool) -> None:
        self.T = T
        self.reverse = reverse
        self.order = range(T - 1, -1, -1) if reverse else range(T)
        # state slot read by step t is t + prev; the slot it writes is t + new
        self.prev, self.new = (1, 0) if reverse else (0, 1)

    @property
    def backward_order(self) -> range:
        return range(self.T) if self.reverse else range(self.T - 1, -1, -1)

    def initial_slot(self) -> int:
        return self.T if self.reverse else 0

    def final_slot(self) -> int:
        return 0 if self.reverse else self.T

    def outputs(self, states: Array) -> Array:
        """The (T, B, H) view of the states written by the steps, in time order."""
        return states[:-1] if self.reverse else states[1:]

    def inputs(self, states: Array) -> Array:
        """The (T, B, H) view of the states read by the steps, in time order."""
        return states[1:] if self.reverse else states[:-1]


class MaskInfo:
    """A (T, B) validity mask prepared for the kernels.

    ``pad[t]`` is (B, 1) True where step t is padding (state kept, output 0; its view
    ``pad[t].T`` serves the features x batch layout);
    ``padded_steps[t]`` says on the host whether step t has any padding at all, so
    fully valid steps skip the masking work.
    """

    __slots__ = ("valid", "pad", "padded_steps")

    def __init__(self, xp: Any, mask: Any, T: int, B: int) -> None:
        host = np.asarray(backend.to_numpy(getattr(mask, "data", mask)))
        if host.shape != (T, B):
            raise ValueError(f"mask must have shape (T, B) = {(T, B)}, got {host.shape}")
        host = host.astype(bool, copy=False)
        self.valid = xp.asarray(host[:, :, None])
        self.pad = xp.asarray(~host[:, :, None])
        self.padded_steps: list[bool] = [bool(v) for v in np.any(~host, axis=1).tolist()]

    def zero_padded(self, xp: Any, a: Array) -> Array:
        """A new (T, B, H) array: ``a`` at valid steps, 0 at padded ones.

        A select, not ``a * valid``: NaN * 0 is NaN, and a padded step's output (or the
        loss gradient reaching it) must be zero whatever it holds.
        """
        return xp.where(self.valid, a, a.dtype.type(0))

    @staticmethod
    def make(xp: Any, mask: Any, T: int, B: int) -> MaskInfo | None:
        """None when there is no mask or it is all True (nothing to do)."""
        if mask is None:
            return None
        info = MaskInfo(xp, mask, T, B)
        return info if any(info.padded_steps) else None


def flush_subnormals(xp: Any, *arrays: Array) -> None:
    """Set entries smaller than the dtype's smallest normal number to zero, in place.

    Why: a vanishing gradient decays through subnormal numbers, and CPUs multiply those
    up to ~100x more slowly, so a long backward pass would crawl (a vanilla RNN at
    T = 200 took 30x longer per step than at T = 100). Such values are below 1e-38 in
    float32: dropping them changes no result that matters.
    """
    for a in arrays:
        xp.copyto(a, 0, where=xp.abs(a) < xp.finfo(a.dtype).tiny)
