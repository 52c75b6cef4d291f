"""One to one: a plain feed-forward network, the degenerate pattern."""

from __future__ import annotations

from typing import Any

from .. import backend
from ..data.batching import Batch
from ..losses import cross_entropy
from ..nn import Linear
from ..tensor import Tensor, no_grad, tanh
from .base import (
    SequenceModel,
    State,
    StepResult,
)


# ---- one to one ------------------------------------------------------------------------------
class OneToOne(SequenceModel):
    """A feed-forward network x (B, F) -> y: classes (cross-entropy) or values (MSE)."""

    kind = "one_to_one"

    def __init__(self, input_size: int, hidden_size: int = 64, num_classes: int | None = None,
                 output_size: int | None = None, num_layers: int = 1) -> None:
        if (num_classes is None) == (output_size is None):
            raise ValueError("give exactly one of num_classes (classification) or output_size (regression)")
        super().__init__(input_size=input_size, hidden_size=hidden_size, num_classes=num_classes,
                         output_size=output_size, num_layers=num_layers)
        sizes = [input_size] + [hidden_size] * num_layers
        from ..nn import ModuleList
        self.layers = ModuleList(Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = Linear(sizes[-1], num_classes or output_size or 0)
        self.classify = num_classes is not None

    def forward(self, x: Any) -> Tensor:
        h = self._floats(x)
        for layer in self.layers:
            h = tanh(layer(h))
        return self.head(h)  # type: ignore[no-any-return]

    def _loss(self, batch: Batch, reduction: str) -> tuple[Tensor, Tensor]:
        out = self(batch.x)
        if self.classify:
            return cross_entropy(out, self._ids(batch.y), reduction=reduction), out
        diff = out - self._floats(batch.y.reshape(out.shape))
        sq = (diff * diff).sum()
        return (sq / float(diff.size) if reduction == "mean" else sq / float(diff.shape[-1])), out

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        return StepResult(self._loss(batch, "mean")[0], len(batch))

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            total, out = self._loss(batch, "sum")
        counts = {"loss_sum": total.item(), "count": len(batch)}
        if self.classify:
            counts["correct"] = int((backend.to_numpy(out.data.argmax(axis=-1)) == batch.y).sum())
        return counts, None
