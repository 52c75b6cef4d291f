"""Built-in plugin: the vanilla (Elman) RNN cell, tanh or ReLU."""

from __future__ import annotations

from typing import Any

import tinyseq
from tinyseq import fused
from tinyseq.cell import GatedCell, State, linear
from tinyseq.tensor import Array, Tensor

__all__ = ["RNNCell", "register_cells"]

_NONLINEARITIES = ("tanh", "relu")


class RNNCell(GatedCell):
    """Vanilla RNN: a<t> = g(W_aa a<t-1> + W_ax x<t> + b_a), g = tanh or ReLU.

    The lecture writes it as a<t> = g(W_a [a<t-1>, x<t>] + b_a) with W_a = [W_aa W_ax];
    here W_ax is ``weight_ih`` (H, I), W_aa is ``weight_hh`` (H, H) and b_a is
    ``bias_ih + bias_hh`` (PyTorch's torch.nn.RNN). The output ŷ<t> = g'(W_ya a<t> + b_y)
    is a separate layer (e.g. ``ts.nn.Linear``) on the returned a<t>.

    nonlinearity: "tanh" (default) or "relu". State: (h,), each (B, H).
    """

    num_gates = 1

    def __init__(
        self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", bias: bool = True
    ) -> None:
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(
                f"RNNCell: nonlinearity must be one of {_NONLINEARITIES}, got {nonlinearity!r}"
            )
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t: the projected input (B, H); state (h,) -> (h, (h,))."""
        (h,) = state
        pre = linear(h, self.weight_hh, x_t)  # = x_t + W_hh h, one node
        h = tinyseq.tanh(pre) if self.nonlinearity == "tanh" else tinyseq.relu(pre)
        return h, (h,)

    def fused_sequence(
        self, x: Tensor, state: State, mask: Array | None, reverse: bool
    ) -> tuple[Tensor, State] | None:
        return fused.run(
            "rnn", self, x, state, mask, reverse, nonlinearity=self.nonlinearity
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


@tinyseq.hookimpl
def register_cells(register: Any) -> None:
    """Register the vanilla RNN cell as "rnn"."""
    register("rnn", RNNCell, description="vanilla RNN: a = g(W_aa a + W_ax x + b), g = tanh|relu")
