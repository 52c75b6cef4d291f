"""Attention over a source sequence: additive (Bahdanau et al. 2015), dot and general
(Luong et al. 2015) scoring, masked softmax, weighted sum of the keys.

    attn = Attention(query_size=H, key_size=K, score="general")
    context, weights = attn(query, keys, mask)   # (B, T, K), (B, T, S)

``weights[b, t]`` is a distribution over the valid source steps of example ``b``;
padded steps (``mask`` False) get exactly zero weight and zero gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..checks import check_int
from ..functional import softmax
from ..tensor import Tensor, tanh, where
from .linear import Linear
from .module import Module

__all__ = ["Attention", "SCORES"]

SCORES = ("additive", "dot", "general")


class Attention(Module):
    """Scores each source step against a query, then averages the keys by softmax weights.

    score="dot":      q · k                      (needs query_size == key_size)
    score="general":  q · (W k)                  W: (query_size, key_size), no bias
    score="additive": v · tanh(W_q q + W_k k)    attention_size units (default query_size)
    """

    def __init__(self, query_size: int, key_size: int, score: str = "additive",
                 attention_size: int | None = None) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"attention score must be one of {', '.join(SCORES)}, got {score!r}")
        self.query_size = check_int(query_size, "Attention: query_size", 1)
        self.key_size = check_int(key_size, "Attention: key_size", 1)
        if score == "dot" and query_size != key_size:
            raise ValueError(f"dot attention needs query_size == key_size, got {query_size} and "
                             f"{key_size}; use score='general' or 'additive' for different sizes")
        self.score = score
        self.key_proj: Linear | None = None
        self.query_proj: Linear | None = None
        self.v: Linear | None = None
        if score == "general":
            self.key_proj = Linear(key_size, query_size, bias=False)
        elif score == "additive":
            size = check_int(attention_size or query_size, "Attention: attention_size", 1)
            self.key_proj = Linear(key_size, size, bias=False)
            self.query_proj = Linear(query_size, size)
            self.v = Linear(size, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        """The part of the score that depends on the keys only, computed once per source.

        keys (B, S, K) -> (B, S, query_size) for dot/general, (B, S, A) for additive.
        """
        return keys if self.key_proj is None else self.key_proj(keys)

    def scores(self, query: Tensor, prepared: Tensor) -> Tensor:
        """Raw scores (B, T, S) of queries (B, T, Q) against prepared keys (B, S, ·)."""
        if self.score != "additive":
            return query @ prepared.swapaxes(1, 2)
        assert self.query_proj is not None and self.v is not None
        b, t, s = query.shape[0], query.shape[1], prepared.shape[1]
        # (B, T, 1, A) + (B, 1, S, A): every query against every source step
        hidden = tanh(self.query_proj(query).unsqueeze(2) + prepared.unsqueeze(1))
        scores: Tensor = self.v(hidden)
        return scores.reshape(b, t, s)

    def attend(self, query: Tensor, keys: Tensor, prepared: Tensor,
               mask: Any = None) -> tuple[Tensor, Tensor]:
        """:meth:`forward` with the keys already :meth:`prepare`-d (decoders call it per step)."""
        squeeze = query.ndim == 2
        if squeeze:
            query = query.unsqueeze(1)
        self._check(query, keys)
        raw = self.scores(query, prepared)
        if mask is None:
            weights = softmax(raw, axis=-1)
        else:
            m = np.asarray(mask.get() if hasattr(mask, "get") else mask, dtype=bool)
            if m.shape != (keys.shape[0], keys.shape[1]):
                raise ValueError(f"Attention: mask must be (B, S) = {keys.shape[:2]}, got {m.shape}")
            # a select, not a multiply: padded steps get exactly zero weight and gradient
            # (exp(-inf) = 0). A source with no valid step keeps its raw scores (no 0/0)
            # and gets all-zero weights below.
            any_valid: npt.NDArray[np.bool_] = np.asarray(m.any(axis=1))
            keep = (m | ~any_valid[:, None])[:, None, :]
            weights = softmax(where(keep, raw, -np.inf), axis=-1)
            if not any_valid.all():
                weights = where(any_valid[:, None, None], weights, 0.0)
        context = weights @ keys
        if squeeze:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights

    def _check(self, query: Tensor, keys: Tensor) -> None:
        if query.ndim != 3 or keys.ndim != 3 or query.shape[0] != keys.shape[0] \
                or query.shape[2] != self.query_size or keys.shape[2] != self.key_size:
            raise ValueError(f"Attention(query_size={self.query_size}, key_size={self.key_size}) "
                             f"expected query (B, T, {self.query_size}) and keys (B, S, "
                             f"{self.key_size}), got {query.shape} and {keys.shape}")

    def forward(self, query: Tensor, keys: Tensor, mask: Any = None) -> tuple[Tensor, Tensor]:
        """Context and weights of queries over source steps.

        query (B, T, Q) or (B, Q); keys (B, S, K) (also the values); mask (B, S) bool,
        True at valid steps (None: all valid). Returns context (B, T, K) and weights
        (B, T, S) (without the T axis for a 2-D query).
        """
        self._check(query.unsqueeze(1) if query.ndim == 2 else query, keys)
        return self.attend(query, keys, self.prepare(keys), mask)

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}, score={self.score!r}"
