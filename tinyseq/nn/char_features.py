"""Character-level word features: a vector per word read from its characters.

    chars = ts.nn.CharFeatures(num_chars=80, embedding_dim=16, hidden_size=25,
                               cell="lstm", bidirectional=True)
    v = chars(char_ids, char_lengths)   # (T, B, C) ids, (T, B) lengths -> (T, B, 50)

Lample et al. (2016): the final states of a (bidirectional) recurrent layer over a
word's characters, concatenated with the word embedding, so that a word outside the
vocabulary still shows its shape (capitals, digits, hyphens, suffixes). Every word of
the batch is one sequence of one batch of character sequences: the words are gathered
once, run through one :class:`~tinyseq.nn.Recurrent` call with their own lengths, and
scattered back. Padded characters are masked by the lengths; padded words (length 0)
are not run at all and get exactly zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap, concatenate
from .embedding import Embedding
from .module import Module
from .recurrent import Recurrent

__all__ = ["CharFeatures"]


class CharFeatures(Module):
    """Words' characters (..., C) ids with lengths (...) -> word vectors (..., D*H).

    num_chars: the character vocabulary's size (id 0 is padding). Any registered
    ``cell``; ``bidirectional`` joins the forward state after the last character with
    the backward state after the first.
    """

    def __init__(self, num_chars: int, embedding_dim: int = 16, hidden_size: int = 25,
                 cell: str = "lstm", bidirectional: bool = True, **cell_options: Any) -> None:
        super().__init__()
        self.embedding = Embedding(num_chars, embedding_dim, padding_idx=0)
        self.rnn = Recurrent(cell, embedding_dim, hidden_size, bidirectional=bidirectional,
                             **cell_options)
        self.directions = 2 if bidirectional else 1
        self.size = self.directions * hidden_size

    def forward(self, chars: Any, lengths: Any) -> Tensor:
        """chars (..., C) int ids (host or device), lengths (...) -> (..., size)."""
        ids = backend.to_numpy(chars)
        lens = backend.to_numpy(lengths).astype(np.int64)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"CharFeatures expects integer character ids, got {ids.dtype}")
        if ids.ndim < 1 or lens.shape != ids.shape[:-1]:
            raise ValueError(f"CharFeatures: lengths must be chars' shape without its last axis, "
                             f"chars {ids.shape}, lengths {lens.shape}")
        if lens.size and (lens.min() < 0 or lens.max() > ids.shape[-1]):
            raise ValueError(f"CharFeatures: lengths must be in [0, {ids.shape[-1]}] (characters "
                             f"per word), got {lens.min()} to {lens.max()}")
        lead = lens.shape
        flat = lens.reshape(-1)
        words = np.flatnonzero(flat > 0)  # padded words (length 0) are not run
        dev = self.embedding.weight.device
        dtype = self.embedding.weight.dtype
        zero = _wrap(dev.xp.zeros((1, self.size), dtype=dtype), dev)
        if words.size == 0:
            return zero[np.zeros(flat.shape, dtype=np.int64)].reshape(*lead, self.size)
        word_lens = flat[words]
        longest = int(word_lens.max())
        word_chars = ids.reshape(-1, ids.shape[-1])[words, :longest]  # (K, C')
        x = self.embedding(_on(dev, np.ascontiguousarray(word_chars.T)))  # (C', K, E)
        _, state = self.rnn(x, None, lengths=word_lens)
        h = state if isinstance(state, Tensor) else state[0]  # (D, K, H)
        top = [h[h.shape[0] - self.directions + d] for d in range(self.directions)]
        vectors = top[0] if self.directions == 1 else concatenate(top, axis=1)  # (K, D*H)
        # row 0 of the table is the zero vector of padded words
        rows = np.zeros(flat.shape, dtype=np.int64)
        rows[words] = np.arange(1, words.size + 1)
        table = concatenate([zero, vectors], axis=0)
        return table[_on(dev, rows)].reshape(*lead, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _on(dev: Any, a: Any) -> Any:
    return a if dev.name == "cpu" else dev.xp.asarray(a)
