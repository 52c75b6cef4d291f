"""Linear layer: y = x W^T + b."""

from __future__ import annotations

import math

from .. import backend
from ..backend import Device
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

__all__ = ["Linear"]


class Linear(Module):
    """y = x @ weight.T + bias.

    x: (..., in_features) -> (..., out_features). weight: (out_features, in_features).
    Initialised like PyTorch: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: str | Device | None = None,
        dtype: object = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        dev = backend.get_device(device)
        dt = dtype or backend.get_default_dtype()
        self.weight = Parameter(Tensor(dev.xp.zeros((out_features, in_features), dtype=dt)))
        self.register_parameter(
            "bias", Parameter(Tensor(dev.xp.zeros((out_features,), dtype=dt))) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(
                f"Linear expected input of shape (..., {self.in_features}), got {x.shape}"
            )
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
