"""RMSprop: divide by a running root-mean-square of recent gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tensor import Array, Tensor
from .optimizer import Optimizer, lerp_

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """torch.optim.RMSprop: v = α·v + (1-α)·g²; p -= lr·g / (sqrt(v) + eps).

    centered: subtract the squared running mean of g inside the root. momentum: keep
    a buffer b = m·b + g / (sqrt(v) + eps) and step by lr·b.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        for name, value in (
            ("learning rate", lr), ("alpha", alpha), ("eps", eps),
            ("weight_decay", weight_decay), ("momentum", momentum),
        ):
            if value < 0.0:
                raise ValueError(f"invalid {name}: {value} (expected >= 0)")
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
            momentum=momentum, centered=centered,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        xp = p.device.xp
        state: dict[str, Any] = {"step": 0, "square_avg": xp.zeros_like(p.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = xp.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = xp.zeros_like(p.data)
        return state

    def _state_keys(self, group: Mapping[str, Any]) -> set[str]:
        keys = {"step", "square_avg"}
        if group["momentum"] > 0:
            keys.add("momentum_buffer")
        if group["centered"]:
            keys.add("grad_avg")
        return keys

    def _update(self, p: Tensor, grad: Array, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = p.device.xp
        state["step"] += 1
        alpha = group["alpha"]
        g = grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * (g * g)
        if group["centered"]:
            grad_avg = lerp_(state["grad_avg"], g, 1 - alpha)
            avg = xp.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = xp.sqrt(square_avg)
        avg += group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += g / avg
            p.data -= group["lr"] * buf
        else:
            p.data -= group["lr"] * (g / avg)
