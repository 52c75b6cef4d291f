"""A linear-chain conditional random field over per-step tag scores (Lafferty et al. 2001).

    crf = ts.nn.CRF(num_tags, tag_names=["B-PER", "I-PER", "O"], constraints=True)
    nll = crf.nll(emissions, tags, mask)     # emissions (T, B, C), tags (T, B), mask (T, B)
    paths = crf.decode(emissions, mask)      # Viterbi: one list of tag ids per sequence

A tag sequence y scores ``start[y0] + sum_t E[t, y_t] + sum_t trans[y_{t-1}, y_t] +
end[y_last]``; its probability is exp(score - log Z), with log Z summed over every tag
sequence by the forward algorithm. log Z is one fused graph node whose backward is the
forward-backward marginals, in log space throughout. Masks are (T, B) bool with each
sequence's valid steps first (at least one); padded steps leave the sums unchanged.

BIO constraints (``constraints=True`` with BIO tag names) forbid ``I-X`` after ``O``,
after ``B-Y``/``I-Y`` of another type, and at the start: those scores get a fixed
penalty of -10000 (AllenNLP's choice, finite so that a training sequence breaking the
rule gives a large loss rather than inf, and exp of it is exactly 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..backend import Device
from ..checks import check_int
from ..tensor import Array, Tensor, _wrap, custom
from . import init
from .module import Module, Parameter

__all__ = ["CRF", "crf_log_partition", "bio_transition_mask", "viterbi"]

PENALTY = -10000.0


def _lse(xp: Any, a: Array, axis: int) -> Array:
    """logsumexp along ``axis`` (removed), stable; rows of -inf give -inf."""
    m = a.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    return xp.log(xp.exp(a - m).sum(axis=axis)) + m.squeeze(axis)


def _valid_mask(xp: Any, mask: Any, t: int, b: int) -> Array:
    """The (T, B) bool mask on the device (all valid when None), checked."""
    if mask is None:
        return xp.ones((t, b), dtype=bool)
    m = xp.asarray(mask).astype(bool)
    if m.shape != (t, b):
        raise ValueError(f"CRF: mask must be (T, B) = {(t, b)} like the emissions, got {m.shape}")
    if b and not bool(m[0].all()):
        raise ValueError("CRF: every sequence needs at least one valid step (mask[0] all True)")
    return m


def crf_log_partition(
    emissions: Tensor, transitions: Tensor, start: Tensor, end: Tensor, mask: Any = None
) -> Tensor:
    """log Z (B,) of a linear-chain CRF: the forward algorithm as one graph node.

    emissions (T, B, C), transitions (C, C) (from row tag to column tag), start (C,),
    end (C,), mask (T, B) bool or None. The backward pass is the forward-backward
    algorithm: d logZ/dE[t, b, j] = P(y_t = j), d logZ/d trans[i, j] = sum_t P(y_{t-1} = i,
    y_t = j), d logZ/d start = P(y_0), d logZ/d end = P(y_last).
    """
    dev = emissions.device
    xp = dev.xp
    if emissions.ndim != 3:
        raise ValueError(f"CRF: emissions must be (T, B, C), got shape {emissions.shape}")
    t_len, b, c = emissions.shape
    if transitions.shape != (c, c) or start.shape != (c,) or end.shape != (c,):
        raise ValueError(f"CRF: {c} tags in the emissions need transitions ({c}, {c}) and start, "
                         f"end ({c},), got {transitions.shape}, {start.shape}, {end.shape}")
    if t_len == 0:
        raise ValueError("CRF: emissions have no steps (T = 0)")
    m = _valid_mask(xp, mask, t_len, b)
    e, tr = emissions.data, transitions.data
    alpha = xp.empty_like(e)  # alpha[t, b, j] = log sum of paths ending in j at step t
    alpha[0] = start.data[None, :] + e[0]
    for t in range(1, t_len):
        step = _lse(xp, alpha[t - 1][:, :, None] + tr[None], axis=1) + e[t]
        alpha[t] = xp.where(m[t][:, None], step, alpha[t - 1])  # padded: carry the sums
    log_z = _lse(xp, alpha[-1] + end.data[None, :], axis=1)

    def backward(g: Array) -> list[Array]:
        # beta[t, b, i] = log sum of the continuations after step t from tag i
        beta = xp.empty_like(e)
        beta[-1] = xp.broadcast_to(end.data[None, :], (b, c))
        for t in range(t_len - 2, -1, -1):
            step = _lse(xp, tr[None] + (e[t + 1] + beta[t + 1])[:, None, :], axis=2)
            beta[t] = xp.where(m[t + 1][:, None], step, beta[t + 1])
        unary = xp.exp(alpha + beta - log_z[None, :, None]) * m[..., None]  # P(y_t = j); 0 padded
        last = xp.exp(alpha[-1] + end.data[None, :] - log_z[:, None])  # P(y_last = j)
        return [unary * g[None, :, None], _weighted_pairs(xp, alpha, beta, e, tr, m, log_z, g),
                (unary[0] * g[:, None]).sum(axis=0), (last * g[:, None]).sum(axis=0)]

    return custom(log_z, (emissions, transitions, start, end), backward, device=dev)


def _weighted_pairs(xp: Any, alpha: Array, beta: Array, e: Array, tr: Array, m: Array,
                    log_z: Array, g: Array) -> Array:
    """sum over b, t of g[b] * P(y_{t-1} = i, y_t = j) at valid steps t >= 1: (C, C)."""
    out = xp.zeros_like(tr)
    for t in range(1, e.shape[0]):
        p = xp.exp(alpha[t - 1][:, :, None] + tr[None] + (e[t] + beta[t])[:, None, :]
                   - log_z[:, None, None])
        out += (p * (m[t] * g)[:, None, None]).sum(axis=0)
    return out


def bio_transition_mask(tag_names: list[str]) -> tuple[Array, Array]:
    """Which moves BIO allows: (transitions (C, C), start (C,)) bool, True = allowed.

    ``I-X`` may follow only ``B-X`` or ``I-X``, and may not start a sequence; every
    other tag may follow anything.
    """
    c = len(tag_names)
    trans = np.ones((c, c), dtype=bool)
    start = np.ones(c, dtype=bool)
    for j, to in enumerate(tag_names):
        if not to.startswith("I-"):
            continue
        start[j] = False
        for i, frm in enumerate(tag_names):
            trans[i, j] = frm[:2] in ("B-", "I-") and frm[2:] == to[2:]
    return trans, start


def viterbi(emissions: Array, transitions: Array, start: Array, end: Array,
            mask: Any = None) -> list[list[int]]:
    """The best tag sequence of each batch row, on the host (NumPy).

    emissions (T, B, C), transitions (C, C), start (C,), end (C,), mask (T, B) bool
    (valid steps first) or None. Returns B lists of tag ids, each as long as its row's
    valid steps.
    """
    e = np.asarray(emissions, dtype=np.float64)
    tr, st, en = (np.asarray(a, dtype=np.float64) for a in (transitions, start, end))
    t_len, b, c = e.shape
    m = _valid_mask(np, mask, t_len, b)
    score = st[None, :] + e[0]  # (B, C): best path ending in each tag
    back = np.zeros((t_len, b, c), dtype=np.int64)
    for t in range(1, t_len):
        cand = score[:, :, None] + tr[None]  # (B, from, to)
        back[t] = cand.argmax(axis=1)
        score = np.where(m[t][:, None], cand.max(axis=1) + e[t], score)
    lengths = m.sum(axis=0)
    best = (score + en[None, :]).argmax(axis=1)
    paths = []
    for row in range(b):
        tag = int(best[row])
        path = [tag]
        for t in range(int(lengths[row]) - 1, 0, -1):
            tag = int(back[t, row, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


class CRF(Module):
    """Linear-chain CRF output layer: transition, start and end scores over ``num_tags``.

    ``constraints=True`` with ``tag_names`` in the BIO scheme forbids the moves BIO
    does not allow (see :func:`bio_transition_mask`), in training and decoding.
    Emissions are time-major (T, B, C), as the recurrent layers give them.
    """

    def __init__(self, num_tags: int, tag_names: list[str] | None = None, constraints: bool = False,
                 device: str | Device | None = None, dtype: Any = None) -> None:
        super().__init__()
        self.num_tags = check_int(num_tags, "CRF: num_tags", 1)
        dev = backend.get_device(device)
        dt = dtype or backend.get_default_dtype()
        self.transitions = Parameter(Tensor(dev.xp.zeros((num_tags, num_tags), dtype=dt)))
        self.start = Parameter(Tensor(dev.xp.zeros((num_tags,), dtype=dt)))
        self.end = Parameter(Tensor(dev.xp.zeros((num_tags,), dtype=dt)))
        self.reset_parameters()
        self.constraints = bool(constraints)
        self._penalty: tuple[Array, Array] | None = None
        if constraints:
            if tag_names is None or len(tag_names) != num_tags:
                raise ValueError(f"CRF: constraints=True needs the {num_tags} tag names, got "
                                 f"{None if tag_names is None else len(tag_names)}")
            trans_ok, start_ok = bio_transition_mask(list(tag_names))
            self._penalty = (np.where(trans_ok, 0.0, PENALTY), np.where(start_ok, 0.0, PENALTY))

    def reset_parameters(self) -> None:
        """U(-0.1, 0.1), as PyTorch's CRF tutorial and pytorch-crf start."""
        for p in (self.transitions, self.start, self.end):
            init.uniform_(p, -0.1, 0.1)

    def scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """(transitions, start, end) with the constraint penalties added."""
        if self._penalty is None:
            return self.transitions, self.start, self.end
        dev, dt = self.transitions.device, self.transitions.dtype
        pt, ps = (_wrap(dev.xp.asarray(a.astype(dt)), dev) for a in self._penalty)
        return self.transitions + pt, self.start + ps, self.end

    def log_partition(self, emissions: Tensor, mask: Any = None) -> Tensor:
        """log Z (B,) for emissions (T, B, C) and mask (T, B)."""
        return crf_log_partition(emissions, *self.scores(), mask=mask)

    def score(self, emissions: Tensor, tags: Any, mask: Any = None) -> Tensor:
        """The score (B,) of the tag sequences ``tags`` (T, B) ids; padded steps ignored."""
        dev = emissions.device
        xp = dev.xp
        t_len, b, c = emissions.shape
        y = np.asarray(backend.to_numpy(tags) if not isinstance(tags, np.ndarray) else tags, dtype=np.int64)
        if y.shape != (t_len, b):
            raise ValueError(f"CRF: tags must be (T, B) = {(t_len, b)} like the emissions, got {y.shape}")
        m = backend.to_numpy(_valid_mask(xp, mask, t_len, b))
        if (y[m] < 0).any() or (y[m] >= c).any():
            raise ValueError(f"CRF: tags must be ids in [0, {c}), got values from {y[m].min()} to {y[m].max()}")
        y = np.where(m, y, 0)
        dt = emissions.dtype
        onehot = np.eye(c, dtype=dt)[y] * m[..., None]  # (T, B, C), zero at padded steps
        pairs = np.zeros((b, c, c), dtype=dt)  # counts of each move at valid steps
        rows = np.broadcast_to(np.arange(b), (t_len, b))
        valid_moves = m[1:]
        np.add.at(pairs, (rows[1:][valid_moves], y[:-1][valid_moves], y[1:][valid_moves]), 1)
        last = y[m.sum(axis=0) - 1, np.arange(b)]
        first_hot, last_hot = np.eye(c, dtype=dt)[y[0]], np.eye(c, dtype=dt)[last]
        trans, start, end = self.scores()

        def on(a: Array) -> Tensor:
            return _wrap(xp.asarray(a), dev)

        return ((emissions * on(onehot)).sum(axis=(0, 2)) + (trans * on(pairs)).sum(axis=(1, 2))
                + (start * on(first_hot)).sum(axis=1) + (end * on(last_hot)).sum(axis=1))

    def nll(self, emissions: Tensor, tags: Any, mask: Any = None, reduction: str = "sum") -> Tensor:
        """Negative log-likelihood of ``tags`` (T, B): "none" (B,), "sum" or "mean" (per sequence)."""
        out = self.log_partition(emissions, mask) - self.score(emissions, tags, mask)
        if reduction == "none":
            return out
        if reduction == "sum":
            return out.sum()
        if reduction == "mean":
            return out.sum() / float(max(out.shape[0], 1))
        raise ValueError(f"CRF: reduction must be 'none', 'sum' or 'mean', got {reduction!r}")

    def decode(self, emissions: Tensor, mask: Any = None) -> list[list[int]]:
        """Viterbi: the best tag ids of each sequence's valid steps."""
        trans, start, end = self.scores()
        m = None if mask is None else backend.to_numpy(mask)
        return viterbi(backend.to_numpy(emissions.data), backend.to_numpy(trans.data),
                       backend.to_numpy(start.data), backend.to_numpy(end.data), m)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constraints={self.constraints}"
