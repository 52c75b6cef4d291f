"""Loss modules: thin wrappers of :mod:`tinyseq.losses` holding their settings."""

from __future__ import annotations

from typing import Any

from ..ctc import ctc_loss
from ..losses import binary_cross_entropy_with_logits, cross_entropy, mse_loss
from ..tensor import Tensor
from .module import Module

__all__ = ["CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "CTCLoss"]


class CrossEntropyLoss(Module):
    """``loss(logits (..., C), target (...), mask=None)``; see :func:`tinyseq.cross_entropy`."""

    def __init__(
        self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Any, mask: Any = None) -> Tensor:
        return cross_entropy(
            logits, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction=self.reduction, mask=mask,
        )

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class BCEWithLogitsLoss(Module):
    """``loss(logits, target)``; see :func:`tinyseq.binary_cross_entropy_with_logits`."""

    def __init__(
        self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None
    ) -> None:
        super().__init__()
        self.weight = weight
        self.reduction = reduction
        self.pos_weight = pos_weight

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return binary_cross_entropy_with_logits(
            logits, target, weight=self.weight, reduction=self.reduction,
            pos_weight=self.pos_weight,
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(Module):
    """``loss(input, target)``; see :func:`tinyseq.mse_loss`."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return mse_loss(input, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CTCLoss(Module):
    """``loss(log_probs (T, N, C), targets, input_lengths, target_lengths)``; see
    :func:`tinyseq.ctc_loss`."""

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> None:
        super().__init__()
        self.blank = blank
        self.reduction = reduction
        self.zero_infinity = zero_infinity

    def forward(self, log_probs: Tensor, targets: Any, input_lengths: Any,
                target_lengths: Any) -> Tensor:
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=self.blank,
                        reduction=self.reduction, zero_infinity=self.zero_infinity)

    def extra_repr(self) -> str:
        return (f"blank={self.blank}, reduction={self.reduction!r}, "
                f"zero_infinity={self.zero_infinity}")
