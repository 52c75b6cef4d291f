"""Built-in plugin: the LSTM, standard (a = Γo * tanh(c)) or the lecture's (a = Γo * c)."""

from __future__ import annotations

from typing import Any

import tinyseq
from tinyseq import fused
from tinyseq.cell import GatedCell, State, chunk, linear
from tinyseq.tensor import Array, Tensor

__all__ = ["LSTMCell", "register_cells"]

_VARIANTS = ("standard", "lecture")


class LSTMCell(GatedCell):
    """LSTM with gate blocks (i, f, g, o) stacked as in torch.nn.LSTM.

    The lecture's notation (Γu is PyTorch's input gate i, c~ its g)::

        c~<t> = tanh(W_c [a<t-1>, x<t>] + b_c)
        Γu    = σ(W_u [a<t-1>, x<t>] + b_u)      update (input) gate
        Γf    = σ(W_f [a<t-1>, x<t>] + b_f)      forget gate
        Γo    = σ(W_o [a<t-1>, x<t>] + b_o)      output gate
        c<t>  = Γu * c~<t> + Γf * c<t-1>
        a<t>  = Γo * tanh(c<t>)      variant="standard" (PyTorch, cuDNN, Keras)
        a<t>  = Γo * c<t>            variant="lecture"

    forget_bias: when non-zero, the forget gate's bias starts at exactly this value
    (``bias_ih``'s f block = forget_bias, ``bias_hh``'s = 0; Keras' unit_forget_bias is
    1.0); 0.0 keeps PyTorch's uniform initialisation. Parameters: ``weight_ih`` (4H, I),
    ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,). State: (h, c), each (B, H).
    """

    state_names = ("h", "c")
    num_gates = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        variant: str = "standard",
        forget_bias: float = 0.0,
        bias: bool = True,
    ) -> None:
        if variant not in _VARIANTS:
            raise ValueError(f"LSTMCell: variant must be one of {_VARIANTS}, got {variant!r}")
        if forget_bias and not bias:
            raise ValueError("LSTMCell: forget_bias needs bias=True")
        super().__init__(input_size, hidden_size, bias)
        self.variant = variant
        self.forget_bias = float(forget_bias)
        self._init_forget_bias()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._init_forget_bias()

    def _init_forget_bias(self) -> None:
        forget_bias = getattr(self, "forget_bias", 0.0)  # unset while the base class builds
        if forget_bias and self.bias_ih is not None and self.bias_hh is not None:
            H = self.hidden_size
            self.bias_ih.data[H : 2 * H] = forget_bias
            self.bias_hh.data[H : 2 * H] = 0.0

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t: the projected input (B, 4H); state (h, c) -> (h, (h, c))."""
        h, c = state
        i, f, g, o = chunk(linear(h, self.weight_hh, x_t), 4)  # x_t + W_hh h
        c = tinyseq.sigmoid(f) * c + tinyseq.sigmoid(i) * tinyseq.tanh(g)
        o = tinyseq.sigmoid(o)
        h = o * tinyseq.tanh(c) if self.variant == "standard" else o * c
        return h, (h, c)

    def fused_sequence(
        self, x: Tensor, state: State, mask: Array | None, reverse: bool
    ) -> tuple[Tensor, State] | None:
        return fused.run(
            "lstm", self, x, state, mask, reverse, variant=self.variant
        )

    def extra_repr(self) -> str:
        extra = f", variant={self.variant!r}"
        if self.forget_bias:
            extra += f", forget_bias={self.forget_bias}"
        return super().extra_repr() + extra


@tinyseq.hookimpl
def register_cells(register: Any) -> None:
    """Register the LSTM as "lstm"."""
    register(
        "lstm",
        LSTMCell,
        description="LSTM (i, f, g, o); variant standard a = o*tanh(c) or lecture a = o*c",
    )
