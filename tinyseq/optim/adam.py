"""Adam and AdamW: bias-corrected running moments of the gradient and its square."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tensor import Array, Tensor
from .optimizer import Optimizer, lerp_

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """torch.optim.Adam: m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
    p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps).

    weight_decay adds wd·p to the gradient (L2); see :class:`AdamW` for the decoupled
    form. amsgrad: use the running maximum of v.
    """

    _decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid learning rate: {lr} (expected >= 0)")
        if eps < 0.0:
            raise ValueError(f"invalid eps: {eps} (expected >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay: {weight_decay} (expected >= 0)")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"invalid beta parameter at index {i}: {beta} (expected [0, 1))")
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        xp = p.device.xp
        state: dict[str, Any] = {
            "step": 0, "exp_avg": xp.zeros_like(p.data), "exp_avg_sq": xp.zeros_like(p.data)
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        return state

    def _state_keys(self, group: Mapping[str, Any]) -> set[str]:
        keys = {"step", "exp_avg", "exp_avg_sq"}
        if group["amsgrad"]:
            keys.add("max_exp_avg_sq")
        return keys

    def _update(self, p: Tensor, grad: Array, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = p.device.xp
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step = state["step"]
        g = grad
        if wd != 0:
            if self._decoupled:
                p.data *= 1 - lr * wd
            else:
                g = g + wd * p.data
        exp_avg = lerp_(state["exp_avg"], g, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * (g * g)
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        step_size = lr / bias_correction1
        if group["amsgrad"]:
            second = state["max_exp_avg_sq"]
            xp.maximum(second, exp_avg_sq, out=second)
        else:
            second = exp_avg_sq
        denom = xp.sqrt(second) / bias_correction2_sqrt
        denom += eps
        p.data -= step_size * (exp_avg / denom)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr·wd (default 1e-2)."""

    _decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
