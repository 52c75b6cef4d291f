"""Loss functions, each one fused graph node with its backward beside its forward.

    cross_entropy(logits (..., C), target (...))          class indices, from logits
    binary_cross_entropy_with_logits(logits, target)      0/1 (or soft) targets
    mse_loss(input, target)                               mean squared error

``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"`` (per element), as in
PyTorch. All are stable for logits of any size (1e4 gives finite losses and gradients).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend
from .backend import Device
from .tensor import Array, Tensor, _sigmoid_array, custom

__all__ = ["cross_entropy", "binary_cross_entropy_with_logits", "mse_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _array_on(value: Any, like: Tensor, op: str, what: str) -> Array:
    """``value`` (Tensor, array or list) as an array on ``like``'s device."""
    dev: Device = like.device
    if isinstance(value, Tensor):
        if value.device is not dev:
            raise RuntimeError(
                f"{op}: {what} is on {value.device.name} but the input is on {dev.name}"
            )
        return value.data
    if hasattr(value, "shape"):
        try:
            if backend.device_of(value) is dev:
                return value
        except TypeError:
            pass
        host = backend.to_numpy(value)
    else:
        host = np.asarray(value)
    return host if dev.name == "cpu" else dev.xp.asarray(host)


def _reduce(xp: Any, losses: Array, reduction: str, denom: Any = None) -> Array:
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> nan, like PyTorch
            total = total / (losses.size if denom is None else denom)
    return xp.asarray(total, dtype=losses.dtype)


def _scale(g: Array, reduction: str, denom: Any) -> Array:
    # d(reduced)/d(per-element loss), broadcastable against the per-element losses
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return g / denom
    return g


def cross_entropy(
    logits: Tensor,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    mask: Any = None,
) -> Tensor:
    """Softmax cross-entropy from unnormalised ``logits`` and integer class targets.

    logits: (..., C), classes in the LAST axis (for PyTorch's (N, C, T) layout move
    the class axis last first). target: integers of shape (...), each in [0, C) or
    equal to ``ignore_index``. weight: optional (C,) per-class weights. mask: optional
    bool or float weights of the target's shape (0 = not counted), for padded
    sequences. Each element's weight is mask * weight[target] (0 where ignored);
    ``"mean"`` divides the weighted sum by the sum of weights (the number of counted
    elements when unweighted), so a batch where nothing counts gives nan, as in
    PyTorch. Returns a scalar, or (...) for ``reduction="none"`` (0 where not counted).
    """
    _check_reduction(reduction)
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy: logits must be a Tensor, got {type(logits).__name__}")
    if logits.ndim == 0 or logits.dtype.kind != "f":
        raise ValueError(
            f"cross_entropy: logits must be floating with shape (..., C), got shape "
            f"{logits.shape} and dtype {logits.dtype}"
        )
    xp = logits.device.xp
    x = logits.data
    n_classes = x.shape[-1]
    t = _array_on(target, logits, "cross_entropy", "target")
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must hold integer class indices, got dtype {t.dtype}"
        )
    if tuple(t.shape) != tuple(x.shape[:-1]):
        raise ValueError(
            f"cross_entropy: logits of shape {tuple(x.shape)} need a target of shape "
            f"{tuple(x.shape[:-1])} (one class index per row), got {tuple(t.shape)}"
        )
    valid = t != ignore_index
    if t.size:
        checked = xp.where(valid, t, 0)
        lo, hi = int(checked.min()), int(checked.max())
        if lo < 0 or hi >= n_classes:
            raise IndexError(
                f"cross_entropy: target index out of range: expected values in "
                f"[0, {n_classes - 1}] for {n_classes} classes (or ignore_index="
                f"{ignore_index}), got values in [{lo}, {hi}]"
            )
    safe = xp.where(valid, t, 0)
    w = valid.astype(x.dtype)
    if weight is not None:
        wc = _array_on(weight, logits, "cross_entropy", "weight").astype(x.dtype, copy=False)
        if tuple(wc.shape) != (n_classes,):
            raise ValueError(
                f"cross_entropy: weight must have shape ({n_classes},) (one per class), "
                f"got {tuple(wc.shape)}"
            )
        w = w * wc[safe]
    if mask is not None:
        m = _array_on(mask, logits, "cross_entropy", "mask")
        if tuple(m.shape) != tuple(t.shape):
            raise ValueError(
                f"cross_entropy: mask must have the target's shape {tuple(t.shape)}, "
                f"got {tuple(m.shape)}"
            )
        w = w * m.astype(x.dtype)
    # log-sum-exp with the max subtracted: finite for logits of any size
    shifted = x - x.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    picked = xp.take_along_axis(shifted, safe[..., None], axis=-1)[..., 0]
    losses = (xp.log(s)[..., 0] - picked) * w
    denom = w.sum() if reduction == "mean" else None
    out = _reduce(xp, losses, reduction, denom)

    def backward(g: Array) -> tuple[Array]:
        gi = _scale(g, reduction, denom) * w
        grad = e / s
        grad *= gi[..., None]
        onehot = xp.arange(n_classes) == safe[..., None]
        grad -= onehot * gi[..., None]
        return (grad,)

    return custom(out, (logits,), backward)


def _float_operand(value: Any, like: Tensor, op: str, what: str) -> tuple[Array, Tensor | None]:
    """(array, tensor-or-None) for a target that may itself need a gradient."""
    if isinstance(value, Tensor):
        if value.device is not like.device or value.dtype != like.dtype:
            raise TypeError(
                f"{op}: {what} is {value.dtype} on {value.device.name} but the input is "
                f"{like.dtype} on {like.device.name}"
            )
        return value.data, value
    arr = _array_on(value, like, op, what)
    return arr.astype(like.dtype, copy=False), None


def binary_cross_entropy_with_logits(
    logits: Tensor,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable step.

    logits, target: the same shape (...); target in [0, 1]. weight: optional,
    broadcastable to the logits (rescales each element). pos_weight: optional,
    broadcastable along the last axis (C,): weight of the positive term, as in
    PyTorch. loss = (1 - y)·x + (1 + (pos_weight - 1)·y)·softplus(-x).
    """
    _check_reduction(reduction)
    op = "binary_cross_entropy_with_logits"
    xp = logits.device.xp
    x = logits.data
    y, ty = _float_operand(target, logits, op, "target")
    if tuple(y.shape) != tuple(x.shape):
        raise ValueError(
            f"{op}: target must have the logits' shape {tuple(x.shape)}, got {tuple(y.shape)}"
        )
    # softplus(-x) = -log(sigmoid(x)) = log1p(exp(-|x|)) + max(-x, 0): exp never overflows
    sp = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
    pw = None
    if pos_weight is not None:
        pw = _array_on(pos_weight, logits, op, "pos_weight").astype(x.dtype, copy=False)
        lw = 1 + (pw - 1) * y
    else:
        lw = None
    losses = (1 - y) * x + (sp if lw is None else lw * sp)
    wt = None
    if weight is not None:
        wt = _array_on(weight, logits, op, "weight").astype(x.dtype, copy=False)
        try:
            losses = losses * wt
        except ValueError:
            raise ValueError(
                f"{op}: weight of shape {tuple(wt.shape)} does not broadcast to the logits' "
                f"shape {tuple(x.shape)}"
            ) from None
    out = _reduce(xp, losses, reduction)
    count = x.size
    parents = (logits,) if ty is None else (logits, ty)

    def backward(g: Array) -> tuple[Array | None, ...]:
        gi = _scale(g, reduction, count)
        if wt is not None:
            gi = gi * wt
        sig = _sigmoid_array(xp, x)
        gx = (sig - y) if lw is None else (1 - y) + lw * (sig - 1)
        gx = gx * gi
        if ty is None or not ty.requires_grad:
            return (gx,) if ty is None else (gx, None)
        gy = -x if pw is None else -x + (pw - 1) * sp
        return gx, xp.broadcast_to(gy * gi, x.shape)

    return custom(out, parents, backward)


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error (input - target)², elementwise; both the same shape."""
    _check_reduction(reduction)
    xp = input.device.xp
    x = input.data
    y, ty = _float_operand(target, input, "mse_loss", "target")
    if tuple(y.shape) != tuple(x.shape):
        raise ValueError(
            f"mse_loss: target must have the input's shape {tuple(x.shape)}, got "
            f"{tuple(y.shape)}"
        )
    diff = x - y
    out = _reduce(xp, diff * diff, reduction)
    count = x.size
    parents = (input,) if ty is None else (input, ty)

    def backward(g: Array) -> tuple[Array, ...]:
        gx = 2 * diff * _scale(g, reduction, count)
        return (gx,) if ty is None else (gx, -gx)

    return custom(out, parents, backward)
