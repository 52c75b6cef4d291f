"""Linear layer: y = x W^T + b."""

from __future__ import annotations

import math

from .. import backend
from ..backend import Device
from ..checks import check_int
from ..functional import linear
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

__all__ = ["Linear"]


class Linear(Module):
    """y = x @ weight.T + bias.

    x: (..., in_features) -> (..., out_features). weight: (out_features, in_features).
    Initialised like PyTorch: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    """

    weight: Parameter
    bias: Parameter | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: str | Device | None = None,
        dtype: object = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "Linear: in_features", 0)
        self.out_features = check_int(out_features, "Linear: out_features", 0)
        dev = backend.get_device(device)
        dt = dtype or backend.get_default_dtype()
        self.weight = Parameter(Tensor(dev.xp.zeros((out_features, in_features), dtype=dt)))
        self.register_parameter(
            "bias", Parameter(Tensor(dev.xp.zeros((out_features,), dtype=dt))) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: U(±1/sqrt(in_features)) for weight and bias."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        # kaiming_uniform_(a=sqrt(5)) is exactly this bound; written out for clarity
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in_features) -> (..., out_features)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"Linear expects a Tensor, got {type(x).__name__}")
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) expected input of shape "
                f"(..., {self.in_features}), got {x.shape}"
            )
        w, b = self.weight, self.bias
        if x.device is not w.device or x.dtype != w.dtype:
            raise TypeError(
                f"Linear: input is {x.dtype} on {x.device.name} but the weight is {w.dtype} "
                f"on {w.device.name}; move one with .to()"
            )
        return linear(x, w, b)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )

