"""A peephole LSTM (Gers & Schmidhuber 2000) as a single-file tinyseq plugin.

    TINYSEQ_PLUGINS=peephole_lstm.py tinyseq check-cell peephole_lstm
"""

import math

import tinyseq as ts
from tinyseq.cell import Cell, chunk, linear
from tinyseq.nn import Parameter, init


class PeepholeLSTMCell(Cell):
    """LSTM whose gates also read the cell state: i, f see c<t-1>, o sees c<t>."""

    state_names = ("h", "c")

    def __init__(self, input_size, hidden_size, forget_bias=1.0):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.weight_ih = Parameter(ts.zeros(4 * H, input_size))  # gates i, f, g, o
        self.weight_hh = Parameter(ts.zeros(4 * H, H))
        self.bias = Parameter(ts.zeros(4 * H))
        self.peephole = Parameter(ts.zeros(3, H))  # i, f, o read c element-wise
        bound = 1.0 / math.sqrt(H)
        for p in (self.weight_ih, self.weight_hh, self.bias, self.peephole):
            init.uniform_(p, -bound, bound)
        self.bias.data[H : 2 * H] = forget_bias

    def input_projection(self, x):
        # W_ih x + b for all time steps at once: one matrix product outside the loop
        return linear(x, self.weight_ih, self.bias)

    def step(self, x_t, state):
        h, c = state
        i, f, g, o = chunk(linear(h, self.weight_hh, x_t), 4)  # x_t + W_hh h
        p_i, p_f, p_o = chunk(self.peephole, 3, axis=0)
        c = ts.sigmoid(f + p_f * c) * c + ts.sigmoid(i + p_i * c) * ts.tanh(g)
        h = ts.sigmoid(o + p_o * c) * ts.tanh(c)
        return h, (h, c)


@ts.hookimpl
def register_cells(register):
    register("peephole_lstm", PeepholeLSTMCell)
