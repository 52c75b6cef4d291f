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

``layer="cnn"`` is Ma & Hovy's (2016) alternative: ``hidden_size`` filters over windows
of ``width`` characters (the word padded by ``width // 2`` on each side), tanh, and the
maximum over the word's positions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap, concatenate, tanh, where
from .embedding import Embedding
from .linear import Linear
from .module import Module
from .recurrent import Recurrent

__all__ = ["CharFeatures"]


class CharFeatures(Module):
    """Words' characters (..., C) ids with lengths (...) -> word vectors (..., D*H).

    num_chars: the character vocabulary's size (id 0 is padding). ``layer="cell"``: any
    registered ``cell``; ``bidirectional`` joins the forward state after the last
    character with the backward state after the first (size D*H). ``layer="cnn"``: a
    convolution of ``width`` characters with ``hidden_size`` filters, max-pooled (size H).
    """

    LAYERS = ("cell", "cnn")

    def __init__(self, num_chars: int, embedding_dim: int = 16, hidden_size: int = 25,
                 cell: str = "lstm", bidirectional: bool = True, layer: str = "cell",
                 width: int = 3, **cell_options: Any) -> None:
        super().__init__()
        if layer not in self.LAYERS:
            raise ValueError(f"CharFeatures: layer must be one of {self.LAYERS}, got {layer!r}")
        if width < 1:
            raise ValueError(f"CharFeatures: width must be >= 1 character, got {width}")
        self.embedding = Embedding(num_chars, embedding_dim, padding_idx=0)
        self.layer = layer
        self.width = width
        self.rnn = (Recurrent(cell, embedding_dim, hidden_size, bidirectional=bidirectional,
                              **cell_options) if layer == "cell" else None)
        self.conv = Linear(width * embedding_dim, hidden_size) if layer == "cnn" else None
        self.directions = 2 if bidirectional and layer == "cell" else 1
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
        vectors = (self._recurrent(word_chars, word_lens) if self.rnn is not None
                   else self._convolution(word_chars, word_lens))  # (K, size)
        # row 0 of the table is the zero vector of padded words
        rows = np.zeros(flat.shape, dtype=np.int64)
        rows[words] = np.arange(1, words.size + 1)
        table = concatenate([zero, vectors], axis=0)
        return table[_on(dev, rows)].reshape(*lead, self.size)

    def _recurrent(self, word_chars: Any, word_lens: Any) -> Tensor:
        """The top layer's final states of the words (K, C') with lengths (K,): (K, D*H)."""
        assert self.rnn is not None
        dev = self.embedding.weight.device
        x = self.embedding(_on(dev, np.ascontiguousarray(word_chars.T)))  # (C', K, E)
        _, state = self.rnn(x, None, lengths=word_lens)
        h = state if isinstance(state, Tensor) else state[0]  # (D, K, H)
        top = [h[h.shape[0] - self.directions + d] for d in range(self.directions)]
        return top[0] if self.directions == 1 else concatenate(top, axis=1)

    def _convolution(self, word_chars: Any, word_lens: Any) -> Tensor:
        """Max over each word's positions of tanh(filters . window): (K, H)."""
        assert self.conv is not None
        dev = self.embedding.weight.device
        k, c = word_chars.shape
        valid = np.arange(c)[None, :] < word_lens[:, None]  # (K, C')
        left = self.width // 2
        padded = np.zeros((k, c + self.width - 1), dtype=np.int64)
        inside = np.zeros(padded.shape, dtype=bool)
        padded[:, left: left + c] = word_chars
        inside[:, left: left + c] = valid
        windows = np.arange(c)[:, None] + np.arange(self.width)[None, :]  # (C', width)
        x = self.embedding(_on(dev, padded[:, windows]))  # (K, C', width, E)
        # a window's characters outside the word are exact zeros, whatever the ids there
        x = where(_on(dev, inside[:, windows][..., None]), x, 0.0)
        h = tanh(self.conv(x.reshape(k, c, -1)))  # (K, C', H)
        return where(_on(dev, valid[..., None]), h, -2.0).max(axis=1)  # tanh > -2: padding never wins

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, size={self.size}"


def _on(dev: Any, a: Any) -> Any:
    return a if dev.name == "cpu" else dev.xp.asarray(a)
