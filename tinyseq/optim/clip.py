"""Gradient clipping, in place on ``.grad`` (torch.nn.utils' functions)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..tensor import Tensor
from .optimizer import params_of

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale all gradients together so their joint norm is at most ``max_norm``.

    The norm is taken over all gradients as if concatenated into one vector
    (``norm_type`` p >= 1, or ``inf`` for the largest magnitude). Gradients are
    multiplied by max_norm / (norm + 1e-6) when that is below 1, as in PyTorch.
    Returns the total norm before clipping, as a float.
    """
    grads = [p.grad for p in params_of(parameters) if p.grad is not None]
    if not grads:
        return 0.0
    p_norm = float(norm_type)
    if p_norm <= 0:
        raise ValueError(f"norm_type must be positive or inf, got {norm_type}")
    if math.isinf(p_norm):
        total = max(float(g.device.xp.abs(g.data).max()) if g.size else 0.0 for g in grads)
    elif p_norm == 2.0:
        # the common case: a dot product per tensor (BLAS), no temporaries
        total = math.sqrt(sum(float(g.device.xp.vdot(g.data.ravel(), g.data.ravel())) for g in grads))
    else:
        norms = [float((g.device.xp.abs(g.data) ** p_norm).sum()) for g in grads]
        total = sum(norms) ** (1 / p_norm)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is {total}, so they "
            "cannot be clipped; pass error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        with np.errstate(invalid="ignore"):  # inf * 0 -> nan, silently, as in PyTorch
            for g in grads:
                g.data *= coef
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    if clip_value < 0:
        raise ValueError(f"clip_value must be >= 0, got {clip_value}")
    for p in params_of(parameters):
        if p.grad is not None:
            g = p.grad.data
            p.grad.device.xp.clip(g, -clip_value, clip_value, out=g)
