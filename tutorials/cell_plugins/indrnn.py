"""IndRNN (Li et al. 2018) as a single-file tinyseq plugin: each unit keeps its own
recurrent weight, so the recurrence is element-wise (no recurrent matrix product).

    h<t> = relu(W x<t> + b + u * h<t-1>)

    TINYSEQ_PLUGINS=indrnn.py tinyseq check-cell indrnn --show-kernel
"""

import math

import tinyseq as ts
from tinyseq.cell import Cell, linear
from tinyseq.nn import Parameter, init


class IndRNNCell(Cell):
    """IndRNN: ``weight`` (H, I), ``bias`` (H,), ``recurrent`` (H,) used element-wise."""

    def __init__(self, input_size, hidden_size, nonlinearity="relu"):
        super().__init__(input_size, hidden_size)
        self.nonlinearity = nonlinearity
        self.weight = Parameter(ts.zeros(hidden_size, input_size))
        self.bias = Parameter(ts.zeros(hidden_size))
        self.recurrent = Parameter(ts.zeros(hidden_size))
        bound = 1.0 / math.sqrt(input_size)
        init.uniform_(self.weight, -bound, bound)
        init.uniform_(self.bias, -bound, bound)
        init.uniform_(self.recurrent, 0.0, 1.0)  # |u| <= 1 keeps the recurrence stable

    def input_projection(self, x):
        return linear(x, self.weight, self.bias)

    def step(self, x_t, state):
        (h,) = state
        pre = x_t + self.recurrent * h
        h = ts.relu(pre) if self.nonlinearity == "relu" else ts.tanh(pre)
        return h, (h,)


@ts.hookimpl
def register_cells(register):
    register("indrnn", IndRNNCell, description="IndRNN: h = relu(W x + b + u * h), u element-wise")
