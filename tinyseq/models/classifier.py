"""Many to one: a sequence classifier (last valid step, mean or max pooling)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..data.batching import Batch
from ..functional import dropout as dropout_fn
from ..losses import cross_entropy
from ..nn import Linear
from ..tensor import Tensor, _wrap, no_grad, where
from .base import (
    Arr,
    State,
    StepResult,
    _char_options,
    _Encoding,
    _on,
    _top_hidden,
)


# ---- many to one ----------------------------------------------------------------------
class SequenceClassifier(_Encoding):
    """One label per sequence from the last *valid* step (or a masked mean/max pool).

    ``pooling="last"`` reads the top layer's final state, which the recurrent layer
    holds at each sequence's own last valid step (both directions when bidirectional:
    the forward pass ends at step len-1, the backward pass at step 0).
    """

    kind = "classifier"
    POOLINGS = ("last", "mean", "max")

    def __init__(
        self,
        num_classes: int,
        vocab_size: int | None = None,
        input_size: int | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        pooling: str = "last",
        dropout: float = 0.0,
        char_features: bool = False,
        char_vocab_size: int | None = None,
        char_embedding_dim: int = 16,
        char_hidden_size: int = 25,
        char_layer: str = "cell",
        char_width: int = 3,
        **cell_options: Any,
    ) -> None:
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        chars = _char_options(char_features, char_vocab_size, char_embedding_dim, char_hidden_size,
                              char_layer, char_width)
        super().__init__(
            num_classes=num_classes, vocab_size=vocab_size, input_size=input_size,
            embedding_dim=embedding_dim, hidden_size=hidden_size, cell=cell,
            num_layers=num_layers, bidirectional=bidirectional, pooling=pooling,
            dropout=dropout, **chars, **cell_options,
        )
        self.rnn = self._build_encoder(vocab_size, input_size, embedding_dim, chars, cell,
                                  hidden_size, num_layers, bidirectional, dropout, cell_options)
        self.directions = 2 if bidirectional else 1
        self.head = Linear(self.directions * hidden_size, num_classes)
        self.pooling = pooling

    def features(self, batch: Batch) -> Tensor:
        """The sequence summary (B, D*H)."""
        out, state = self._encode(self.rnn, batch)
        if self.pooling == "last":
            return _top_hidden(state, self.directions)
        mask = batch.x_mask
        if mask is None:
            mask = np.ones(batch.x.shape[:2], dtype=bool)
        m = _on(self.device, mask.T[..., None].astype(out.dtype))
        if self.pooling == "mean":
            denom = _on(self.device, mask.sum(axis=1)[:, None].astype(out.dtype))
            pooled: Tensor = (out * _wrap(m, self.device)).sum(axis=0) / _wrap(denom, self.device)
            return pooled
        masked = where(_on(self.device, mask.T[..., None]), out, -1e30)
        return masked.max(axis=0)

    def forward(self, batch: Batch) -> Tensor:
        """Logits (B, C)."""
        f = dropout_fn(self.features(batch), self.dropout, self.training)
        return self.head(f)  # type: ignore[no-any-return]

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        return StepResult(cross_entropy(self(batch), self._ids(batch.y)), len(batch))

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            logits = self(batch)
            total = cross_entropy(logits, self._ids(batch.y), reduction="sum").item()
            pred = backend.to_numpy(logits.data.argmax(axis=-1))
        return {"loss_sum": total, "count": len(batch), "correct": int((pred == batch.y).sum())}, None

    def predict(self, batch: Batch) -> Arr:
        """Predicted class ids (B,)."""
        self.eval()
        with no_grad():
            return backend.to_numpy(self(batch).data.argmax(axis=-1))
