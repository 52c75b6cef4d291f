"""Built-in plugin: the full GRU, in PyTorch's form (reset after) or the lecture's."""

from __future__ import annotations

from typing import Any

import tinyseq
from tinyseq import fused
from tinyseq.cell import GatedCell, State, chunk, linear
from tinyseq.tensor import Array, Tensor

__all__ = ["GRUCell", "register_cells"]


class GRUCell(GatedCell):
    """Full GRU with gate blocks (r, z, n) stacked as in torch.nn.GRU.

    reset_after=True (default; PyTorch, cuDNN, Keras)::

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h = (1 - z) * n + z * h_prev

    reset_after=False (the lecture: relevance gate applied BEFORE the matrix product)::

        c~<t> = tanh(W_c [Γr * c<t-1>, x<t>] + b_c)
        Γu    = σ(W_u [c<t-1>, x<t>] + b_u)
        Γr    = σ(W_r [c<t-1>, x<t>] + b_r)
        c<t>  = Γu * c~<t> + (1 - Γu) * c<t-1>

    i.e. n = tanh(W_in x + b_in + W_hn (r * h) + b_hn). Both forms interpolate with
    h = (1 - z) * n + z * h_prev, so the lecture's update gate is Γu = 1 - z and its
    relevance gate Γr = r. Parameters: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H),
    ``bias_ih``, ``bias_hh`` (3H,). State: (h,), each (B, H).
    """

    num_gates = 3
    fold_hidden_bias = False  # b_hn sits inside r * (...) or after the product

    def __init__(
        self, input_size: int, hidden_size: int, reset_after: bool = True, bias: bool = True
    ) -> None:
        super().__init__(input_size, hidden_size, bias)
        self.reset_after = bool(reset_after)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t: the projected input (B, 3H); state (h,) -> (h, (h,))."""
        (h,) = state
        H = self.hidden_size
        rz_x, n_x = chunk(x_t, [2 * H])
        if self.reset_after:
            rz_h, n_h = chunk(linear(h, self.weight_hh, self.bias_hh), [2 * H])
            r, z = chunk(tinyseq.sigmoid(rz_x + rz_h), 2)
            n = tinyseq.tanh(n_x + r * n_h)
        else:
            w_rz, w_n = chunk(self.weight_hh, [2 * H], axis=0)
            b_rz = b_n = None
            if self.bias_hh is not None:
                b_rz, b_n = chunk(self.bias_hh, [2 * H])
            r, z = chunk(tinyseq.sigmoid(rz_x + linear(h, w_rz, b_rz)), 2)
            n = tinyseq.tanh(n_x + linear(r * h, w_n, b_n))
        h = n + z * (h - n)  # = (1 - z) * n + z * h_prev
        return h, (h,)

    def fused_sequence(
        self, x: Tensor, state: State, mask: Array | None, reverse: bool
    ) -> tuple[Tensor, State] | None:
        return fused.run(
            "gru", self, x, state, mask, reverse, reset_after=self.reset_after
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset_after={self.reset_after}"


@tinyseq.hookimpl
def register_cells(register: Any) -> None:
    """Register the full GRU as "gru"."""
    register(
        "gru",
        GRUCell,
        description="GRU (r, z, n); reset_after=True is PyTorch's, False the lecture's",
    )
