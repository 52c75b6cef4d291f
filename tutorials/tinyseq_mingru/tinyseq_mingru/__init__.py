"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?") as a tinyseq plugin.

    z<t>  = σ(W_z x<t> + b_z)
    h~<t> = W_h x<t> + b_h
    h<t>  = (1 - z<t>) * h<t-1> + z<t> * h~<t>

Its gates read only the input, so the whole input product is hoisted out of the time
loop (``input_projection``): each step is three element-wise operations.
"""

from __future__ import annotations

import math
from typing import Any

import tinyseq as ts
from tinyseq.cell import Cell, State, chunk, linear
from tinyseq.nn import Parameter, init

__all__ = ["MinGRUCell", "register_cells"]
__version__ = "0.1.0"


class MinGRUCell(Cell):
    """minGRU: h = (1 - z) * h_prev + z * h~, with z and h~ from x<t> alone.

    Parameters: ``weight`` (2H, I) and ``bias`` (2H,), blocks (z, h~). State: (h,).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        self.weight = Parameter(ts.zeros(2 * hidden_size, input_size))
        self.register_parameter("bias", Parameter(ts.zeros(2 * hidden_size)) if bias else None)
        bound = 1.0 / math.sqrt(input_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def input_projection(self, x: ts.Tensor) -> ts.Tensor:
        """All steps at once: x (..., I) -> (..., 2H)."""
        return linear(x, self.weight, self.bias)

    def step(self, x_t: ts.Tensor, state: State) -> tuple[ts.Tensor, State]:
        """x_t: this step's projected input (B, 2H)."""
        (h,) = state
        z_pre, candidate = chunk(x_t, 2)
        h = h + ts.sigmoid(z_pre) * (candidate - h)  # = (1 - z) * h + z * h~
        return h, (h,)


@ts.hookimpl
def register_cells(register: Any) -> None:
    """Register the minGRU cell as "mingru"."""
    register("mingru", MinGRUCell, description="minGRU: h = (1-z)*h_prev + z*h~, gates from x only")
