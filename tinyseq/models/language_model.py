"""Many to many, aligned: a language model over a token stream (next token)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend, decoding
from ..data.batching import Batch
from ..functional import dropout as dropout_fn
from ..losses import cross_entropy
from ..nn import Embedding, Linear
from ..nn.recurrent import Recurrent
from ..tensor import Tensor, no_grad
from .base import (
    Arr,
    SequenceModel,
    State,
    StepResult,
    _on,
)


# ---- many to many, aligned: language model ---------------------------------------------
class LanguageModel(SequenceModel):
    """Next-token prediction: ids (T, B) -> logits (T, B, V); state carried across batches."""

    kind = "language_model"
    bits = True

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        hidden_size: int = 256,
        cell: str = "lstm",
        num_layers: int = 1,
        dropout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        super().__init__(
            vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
            cell=cell, num_layers=num_layers, dropout=dropout, **cell_options,
        )
        self.embedding = Embedding(vocab_size, embedding_dim)
        self.rnn = Recurrent(cell, embedding_dim, hidden_size, num_layers=num_layers,
                             dropout=dropout, **cell_options)
        self.head = Linear(hidden_size, vocab_size)
        self.dropout = dropout

    def forward(self, ids: Any, state: State = None, lengths: Any = None) -> tuple[Tensor, State]:
        """ids (T, B) -> logits (T, B, V), final state."""
        x = self.embedding(self._ids(ids))
        x = dropout_fn(x, self.dropout, self.training)
        out, state = self.rnn(x, state, lengths=lengths)
        out = dropout_fn(out, self.dropout, self.training)
        return self.head(out), state

    def _logits(self, batch: Batch, state: State) -> tuple[Tensor, Arr, Arr | None, State]:
        ymask = batch.y_mask
        lengths = batch.x_lengths
        logits, state = self(batch.x.T, state, lengths=lengths)
        mask = None if ymask is None else ymask.T
        return logits, batch.y.T, mask, state

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        logits, y, mask, state = self._logits(batch, state)
        loss = cross_entropy(logits, self._ids(y), mask=None if mask is None else _on(self.device, mask))
        count = int(y.size if mask is None else mask.sum())
        return StepResult(loss, count, state)

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            logits, y, mask, state = self._logits(batch, state)
            m = None if mask is None else _on(self.device, mask)
            total = cross_entropy(logits, self._ids(y), mask=m, reduction="sum")
            pred = backend.to_numpy(logits.data.argmax(axis=-1))
        hits = pred == y
        count = y.size if mask is None else int(mask.sum())
        correct = hits.sum() if mask is None else hits[mask].sum()
        return {"loss_sum": total.item(), "count": count, "correct": int(correct)}, state

    def step_fn(self, tokens: Arr, state: State) -> tuple[Arr, State]:
        """Decoding interface: previous tokens (K,) -> logits (K, V) on the host."""
        with no_grad():
            logits, state = self(np.asarray(tokens)[None, :], state)
        return backend.to_numpy(logits.data[0]), state

    def generate(
        self,
        prime: Sequence[int],
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        greedy: bool = False,
        rng: Any = None,
        exclude: Sequence[int] = (),
    ) -> list[int]:
        """Ids that continue ``prime`` (at least one id), ``length`` of them.

        exclude: ids never to produce (e.g. the vocabulary's pad/begin/end tokens).
        """
        if len(prime) == 0:
            raise ValueError("generate needs a non-empty prime (e.g. the <bos> id or some text)")
        was = self.training
        self.eval()
        try:
            with no_grad():
                state: State = None
                if len(prime) > 1:
                    _, state = self(np.asarray(prime[:-1])[:, None], None)
                start = np.asarray(prime[-1:])
                banned = np.asarray(list(exclude), dtype=np.int64)

                def step(tokens: Arr, st: State) -> tuple[Arr, State]:
                    logits, st = self.step_fn(tokens, st)
                    if banned.size:
                        logits = logits.copy()
                        logits[:, banned] = -np.inf
                    return logits, st

                if greedy:
                    return decoding.greedy(step, state, start, length)[0]
                return decoding.sample(step, state, start, length, temperature, top_k, rng=rng)[0]
        finally:
            self.train(was)
