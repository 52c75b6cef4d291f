"""Connectionist temporal classification loss (Graves et al. 2006), one fused graph node.

    ctc_loss(log_probs (T, N, C), targets, input_lengths (N,), target_lengths (N,))

The arguments and their meaning are those of ``torch.nn.functional.ctc_loss``. Each
target l (S_n labels, never the blank) is widened to l' = (blank, l1, blank, ...,
lS, blank) of 2 S_n + 1 positions; the forward (alpha) and backward (beta) recursions
run in log space over l', batched over N and looped over T, so no probability
underflows however long the input. The gradient is the exact one of the loss with
respect to ``log_probs``: -exp(log alpha + log beta - log_probs + nll), summed over the
positions of each class. PyTorch returns that plus exp(log_probs), which is the
gradient with respect to the logits when ``log_probs = log_softmax(logits)``; after a
log_softmax, as in every CTC model, the two give the same gradient to the logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import backend
from .losses import _check_reduction
from .tensor import Array, Tensor, custom

__all__ = ["ctc_loss"]

Host = npt.NDArray[Any]  # a host NumPy array


def _host_ints(value: Any, what: str) -> Host:
    """``value`` (Tensor, array, list or int) as a host int64 array."""
    if isinstance(value, Tensor):
        arr = backend.to_numpy(value.data)
    elif hasattr(value, "shape"):
        arr = backend.to_numpy(value)
    else:
        arr = np.asarray(value)
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
        raise TypeError(f"ctc_loss: {what} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _padded_targets(targets: Any, tl: Host, n: int, unbatched: bool) -> Host:
    """Targets as (N, S) padded rows, from (N, S) padded or (sum(target_lengths),)."""
    tg = _host_ints(targets, "targets")
    if unbatched:
        if tg.ndim != 1:
            raise ValueError(f"ctc_loss: unbatched log_probs (T, C) need targets (S,), got shape "
                             f"{tuple(tg.shape)}")
        tg = tg[None]
    elif tg.ndim == 1:  # concatenated targets, split by target_lengths
        total = int(tl.sum())
        if tg.shape[0] != total:
            raise ValueError(f"ctc_loss: 1-D targets are the {n} targets concatenated, so they need "
                             f"sum(target_lengths) = {total} labels, got {tg.shape[0]}")
        padded = np.zeros((n, int(tl.max(initial=0))), dtype=np.int64)
        ends = np.cumsum(tl)
        for i in range(n):
            padded[i, : tl[i]] = tg[ends[i] - tl[i] : ends[i]]
        return padded
    if tg.ndim != 2 or tg.shape[0] != n:
        raise ValueError(f"ctc_loss: targets must be (N, S) = ({n}, S) padded or 1-D concatenated, "
                         f"got shape {tuple(tg.shape)}")
    if tl.size and int(tl.max()) > tg.shape[1]:
        i = int(tl.argmax())
        raise ValueError(f"ctc_loss: target_lengths[{i}] = {tl[i]} exceeds the targets' padded "
                         f"length S = {tg.shape[1]}")
    return tg


def _logsumexp(xp: Any, *terms: Array) -> Array:
    """log(sum(exp(terms))) elementwise; -inf where every term is -inf (no nan)."""
    m = terms[0]
    for t in terms[1:]:
        m = xp.maximum(m, t)
    shift = xp.where(m == -np.inf, 0, m)
    total = xp.exp(terms[0] - shift)
    for t in terms[1:]:
        total = total + xp.exp(t - shift)
    with np.errstate(divide="ignore"):
        return shift + xp.log(total)


def _shift_right(xp: Any, a: Array, k: int) -> Array:
    """a (N, L) moved k positions right along L, -inf coming in: out[:, s] = a[:, s - k]."""
    k = min(k, a.shape[1])
    fill = xp.full((a.shape[0], k), -np.inf, dtype=a.dtype)
    return xp.concatenate([fill, a[:, : a.shape[1] - k]], axis=1)


def _shift_left(xp: Any, a: Array, k: int) -> Array:
    """out[:, s] = a[:, s + k], -inf past the end."""
    k = min(k, a.shape[1])
    fill = xp.full((a.shape[0], k), -np.inf, dtype=a.dtype)
    return xp.concatenate([a[:, k:], fill], axis=1)


def ctc_loss(
    log_probs: Tensor,
    targets: Any,
    input_lengths: Any,
    target_lengths: Any,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    """The CTC loss -log p(target | input), summed over all alignments.

    log_probs: (T, N, C) log-probabilities (log_softmax over C), or (T, C) unbatched.
    targets: (N, S) label ids padded (beyond each target's length anything goes), or
    1-D (sum(target_lengths),) the targets concatenated; ids in [0, C), never ``blank``.
    input_lengths, target_lengths: (N,) integers, input_lengths in [0, T].
    reduction: "none" (N,) losses; "sum"; "mean" (each loss divided by its target
    length, at least 1, then averaged over the batch, as in PyTorch). A target that no
    alignment of its input can produce (too short an input) has an infinite loss and a
    nan gradient, or 0 for both with ``zero_infinity=True``.
    """
    _check_reduction(reduction)
    if not isinstance(log_probs, Tensor):
        raise TypeError(f"ctc_loss: log_probs must be a Tensor, got {type(log_probs).__name__}")
    if log_probs.ndim not in (2, 3) or log_probs.dtype.kind != "f":
        raise ValueError(f"ctc_loss: log_probs must be floating (T, N, C) or (T, C), got shape "
                         f"{log_probs.shape} and dtype {log_probs.dtype}")
    unbatched = log_probs.ndim == 2
    xp = log_probs.device.xp
    lp = log_probs.data[:, None, :] if unbatched else log_probs.data
    T, N, C = (int(d) for d in lp.shape)
    if not 0 <= blank < C:
        raise ValueError(f"ctc_loss: blank must be a class index in [0, {C - 1}], got {blank}")
    il = _host_ints(input_lengths, "input_lengths").reshape(-1)
    tl = _host_ints(target_lengths, "target_lengths").reshape(-1)
    for name, arr in (("input_lengths", il), ("target_lengths", tl)):
        if arr.shape != (N,):
            raise ValueError(f"ctc_loss: {name} needs one length per example, {N}, got "
                             f"{arr.shape[0]}")
    if N and (il.min() < 0 or il.max() > T):
        raise ValueError(f"ctc_loss: input_lengths must be in [0, T] = [0, {T}], got values in "
                         f"[{il.min()}, {il.max()}]")
    if N and tl.min() < 0:
        raise ValueError(f"ctc_loss: target_lengths must be >= 0, got {tl.min()}")
    padded = _padded_targets(targets, tl, N, unbatched)
    S = padded.shape[1]
    valid = np.arange(S)[None, :] < tl[:, None]
    labels = padded[valid]
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= C:
            raise IndexError(f"ctc_loss: target labels must be in [0, {C - 1}] for {C} classes, got "
                             f"values in [{lo}, {hi}]")
        if (labels == blank).any():
            row = int(np.argwhere(valid & (padded == blank))[0, 0])
            raise ValueError(f"ctc_loss: target {row} holds the blank index {blank} among its "
                             f"first {tl[row]} labels; the blank cannot be a label")

    # the widened targets l' (N, L), and where position s may skip from s - 2 (a label
    # that differs from the label before it; between repeats the blank is compulsory)
    L = 2 * S + 1
    ext = np.full((N, L), blank, dtype=np.int64)
    ext[:, 1::2] = np.where(valid, padded, blank)
    skip = np.zeros((N, L), dtype=bool)
    if S > 1:
        skip[:, 3::2] = valid[:, 1:] & (padded[:, 1:] != padded[:, :-1])
    ends = np.zeros((N, L), dtype=bool)  # an alignment ends on the last label or blank
    ends[np.arange(N), 2 * tl] = True
    ends[np.arange(N)[tl > 0], 2 * tl[tl > 0] - 1] = True

    dev = log_probs.device
    dtype = lp.dtype
    neg_inf = dtype.type(-np.inf)

    def on(a: Any) -> Any:
        return a if dev.name == "cpu" else xp.asarray(a)

    rows = on(np.arange(N)[:, None])
    lpe = lp[:, rows, on(ext)] if N else xp.zeros((T, 0, L), dtype=dtype)  # (T, N, L)
    skip_d, ends_d = on(skip), on(ends)

    alpha = xp.full((T, N, L), neg_inf, dtype=dtype)
    if T:
        a0 = xp.full((N, L), neg_inf, dtype=dtype)
        a0[:, 0] = lpe[0, :, 0]
        if L > 1:
            a0[:, 1] = xp.where(on(tl > 0), lpe[0, :, 1], neg_inf)
        alpha[0] = a0
        for t in range(1, T):
            prev = alpha[t - 1]
            jump = xp.where(skip_d, _shift_right(xp, prev, 2), neg_inf)
            alpha[t] = _logsumexp(xp, prev, _shift_right(xp, prev, 1), jump) + lpe[t]
    if T:
        last = alpha[on(np.maximum(il - 1, 0)), on(np.arange(N))]  # (N, L) at each input's end
        final = xp.where(ends_d, last, neg_inf)
        m = final.max(axis=1, keepdims=True)
        shift = xp.where(m == neg_inf, 0, m)
        with np.errstate(divide="ignore"):
            ll = (shift + xp.log(xp.exp(final - shift).sum(axis=1, keepdims=True)))[:, 0]
    else:
        ll = xp.zeros((N,), dtype=dtype)
    # an empty input produces only the empty target
    empty = on(il == 0)
    ll = xp.where(empty, xp.where(on(tl == 0), dtype.type(0), neg_inf), ll)
    nll = -ll  # (N,)
    finite = xp.isfinite(nll)
    losses = xp.where(finite, nll, 0) if zero_infinity else nll
    denom = on(np.maximum(tl, 1).astype(dtype))
    if reduction == "none":
        out = losses[0] if unbatched else losses
    elif reduction == "sum":
        out = xp.asarray(losses.sum(), dtype=dtype)
    else:
        out = xp.asarray((losses / denom).sum() / max(N, 1), dtype=dtype)

    def backward(g: Array) -> tuple[Array]:
        if reduction == "none":
            scale = g.reshape(-1)
        elif reduction == "sum":
            scale = xp.broadcast_to(g, (N,))
        else:
            scale = g / (denom * N)
        beta = xp.full((T, N, L), neg_inf, dtype=dtype)
        il_d = on(il)
        skip_next = _skip_from(xp, skip_d)
        for t in range(T - 1, -1, -1):
            start = xp.where(ends_d, lpe[t], neg_inf)
            if t == T - 1:
                beta[t] = xp.where((il_d - 1 == t)[:, None], start, neg_inf)
                continue
            nxt = beta[t + 1]
            jump = xp.where(skip_next, _shift_left(xp, nxt, 2), neg_inf)
            rec = _logsumexp(xp, nxt, _shift_left(xp, nxt, 1), jump) + lpe[t]
            beta[t] = xp.where((il_d - 1 == t)[:, None], start,
                               xp.where((t < il_d - 1)[:, None], rec, neg_inf))
        # posterior of being at position s at time t; every alignment passes through one
        # position per step, so over s they sum to 1 at each valid step
        safe_nll = xp.where(finite, nll, 0)
        post = xp.exp(alpha + beta - lpe + safe_nll[None, :, None])  # (T, N, L)
        onehot = (on(ext)[:, :, None] == xp.arange(C)[None, None, :]).astype(dtype)  # (N, L, C)
        occupancy = xp.matmul(post.transpose(1, 0, 2), onehot).transpose(1, 0, 2)  # (T, N, C)
        keep = finite if zero_infinity else xp.ones((N,), dtype=bool)
        grad = -occupancy * xp.where(keep, scale, 0)[None, :, None]
        if not zero_infinity:  # an impossible target: nan over its valid steps, as PyTorch
            steps = xp.arange(T)[:, None] < il_d[None, :]
            grad = xp.where((steps & ~finite[None, :])[:, :, None], dtype.type(np.nan), grad)
        return (grad[:, 0, :] if unbatched else grad,)

    return custom(out, (log_probs,), backward)


def _skip_from(xp: Any, skip: Array) -> Array:
    """Where position s may jump to s + 2: skip (N, L) moved two positions left."""
    fill = xp.zeros((skip.shape[0], min(2, skip.shape[1])), dtype=bool)
    return xp.concatenate([skip[:, 2:], fill], axis=1)
