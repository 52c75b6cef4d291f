"""Adagrad: per-coordinate step sizes from the running sum of squared gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tensor import Array, Tensor
from .optimizer import Optimizer

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """torch.optim.Adagrad: sum += g²; p -= lr / (1 + (t-1)·lr_decay) · g / (sqrt(sum) + eps)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        for name, value in (
            ("learning rate", lr), ("lr_decay", lr_decay), ("weight_decay", weight_decay),
            ("initial_accumulator_value", initial_accumulator_value), ("eps", eps),
        ):
            if value < 0.0:
                raise ValueError(f"invalid {name}: {value} (expected >= 0)")
        defaults = dict(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps,
        )
        super().__init__(params, defaults)
        # PyTorch fills the accumulators at construction, so they are in state_dict at once
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = self._init_state(p, group)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        xp = p.device.xp
        return {"step": 0, "sum": xp.full(p.shape, group["initial_accumulator_value"], dtype=p.dtype)}

    def _state_keys(self, group: Mapping[str, Any]) -> set[str]:
        return {"step", "sum"}

    def _update(self, p: Tensor, grad: Array, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = p.device.xp
        state["step"] += 1
        g = grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        total = state["sum"]
        total += g * g
        std = xp.sqrt(total)
        std += group["eps"]
        p.data -= clr * (g / std)
