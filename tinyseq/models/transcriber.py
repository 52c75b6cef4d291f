"""Many to many, unaligned: transcription with CTC (frames in, labels out)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend, decoding
from ..ctc import ctc_loss
from ..data.batching import Batch
from ..functional import dropout as dropout_fn
from ..functional import log_softmax
from ..metrics import error_counts
from ..nn import Linear
from ..tensor import Tensor, no_grad
from .base import (
    Arr,
    State,
    StepResult,
    _Encoding,
)


# ---- many to many, unaligned: transcription (CTC) --------------------------------------------
class SequenceTranscriber(_Encoding):
    """Frames in, a shorter label sequence out, with no alignment given: CTC.

    x: (B, T, F) float frames (or (B, T) ids) with x_lengths; y: (B, S) label ids in
    [1, num_classes) with y_lengths. Id 0 is the CTC blank (and the padding), so
    ``num_classes`` counts it. A recurrent encoder (bidirectional by default, any
    registered cell, stacked) gives per-frame log-probabilities (T, B, C). The loss is
    the CTC loss (Graves et al. 2006) summed over the batch and divided by the number
    of target labels (nats per label); a target its input is too short for counts 0
    (``zero_infinity``) instead of making the step nan. Evaluation adds the error rate
    (edit distance per reference label) and exact match of greedy decoding.
    """

    kind = "transcriber"
    blank = 0

    def __init__(
        self,
        num_classes: int,
        input_size: int | None = None,
        vocab_size: int | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes counts the blank (id 0) and at least one label, so it "
                             f"must be >= 2, got {num_classes}")
        super().__init__(
            num_classes=num_classes, input_size=input_size, vocab_size=vocab_size,
            embedding_dim=embedding_dim, hidden_size=hidden_size, cell=cell,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout, **cell_options,
        )
        self.rnn = self._build_encoder(vocab_size, input_size, embedding_dim, {}, cell,
                                  hidden_size, num_layers, bidirectional, dropout, cell_options)
        self.head = Linear((2 if bidirectional else 1) * hidden_size, num_classes)

    def forward(self, batch: Batch) -> Tensor:
        """Per-frame log-probabilities (T, B, C); C = num_classes, blank first."""
        out, _ = self._encode(self.rnn, batch)
        out = dropout_fn(out, self.dropout, self.training)
        return log_softmax(self.head(out), axis=-1)

    @staticmethod
    def _lengths(batch: Batch) -> tuple[Arr, Arr]:
        b = len(batch)
        il = batch.x_lengths if batch.x_lengths is not None else np.full(b, batch.x.shape[1])
        tl = batch.y_lengths if batch.y_lengths is not None else np.full(b, batch.y.shape[1])
        return np.asarray(il, dtype=np.int64), np.asarray(tl, dtype=np.int64)

    def _total(self, batch: Batch, log_probs: Tensor) -> Tensor:
        """The summed CTC loss of the batch."""
        if batch.y.ndim != 2 or batch.y.dtype.kind not in "iu":
            raise ValueError(f"a transcriber needs label ids y (B, S), got {batch.y.dtype} "
                             f"{batch.y.shape}")
        il, tl = self._lengths(batch)
        return ctc_loss(log_probs, np.asarray(batch.y, dtype=np.int64), il, tl, blank=self.blank,
                        reduction="sum", zero_infinity=True)

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        count = int(self._lengths(batch)[1].sum())
        return StepResult(self._total(batch, self(batch)) / float(max(count, 1)), count)

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            log_probs = self(batch)
            total = self._total(batch, log_probs).item()
        best = backend.to_numpy(log_probs.data.argmax(axis=-1)).T  # (B, T)
        il, tl = self._lengths(batch)
        pred = [decoding.ctc_collapse(best[b, : il[b]], self.blank) for b in range(len(batch))]
        gold = [batch.y[b, : tl[b]].tolist() for b in range(len(batch))]
        edits, ref = error_counts(pred, gold)
        return {"loss_sum": total, "count": ref, "edits": edits, "ref_tokens": ref,
                "exact": sum(p == g for p, g in zip(pred, gold)), "sequences": len(batch)}, None

    def predict(self, batch: Batch, method: str = "greedy", beam_width: int = 8) -> list[list[int]]:
        """The label ids of each example: "greedy" (best path) or "beam" (prefix beam search)."""
        if method not in ("greedy", "beam"):
            raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")
        was = self.training
        self.eval()
        try:
            with no_grad():
                lp = backend.to_numpy(self(batch).data)  # (T, B, C)
        finally:
            self.train(was)
        il, _ = self._lengths(batch)
        if method == "greedy":
            return [decoding.ctc_greedy_decode(lp[: il[b], b], self.blank) for b in range(len(batch))]
        return [decoding.ctc_prefix_beam_search(lp[: il[b], b], beam_width, self.blank)[0].tokens
                for b in range(len(batch))]
