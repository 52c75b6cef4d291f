"""Built-in plugin: the lecture's simplified GRU (update gate only)."""

from __future__ import annotations

from typing import Any

import tinyseq
from tinyseq import fused
from tinyseq.cell import GatedCell, State, chunk, linear
from tinyseq.tensor import Array, Tensor

__all__ = ["SimpleGRUCell", "register_cells"]


class SimpleGRUCell(GatedCell):
    """Simplified GRU, the lecture's first gated cell (no relevance gate)::

        c~<t> = tanh(W_c [c<t-1>, x<t>] + b_c)
        Γu    = σ(W_u [c<t-1>, x<t>] + b_u)
        c<t>  = Γu * c~<t> + (1 - Γu) * c<t-1>,      a<t> = c<t>

    With Γu ≈ 0 the memory cell keeps its value across many steps. Gate blocks are
    stacked (u, c~) in ``weight_ih`` (2H, I), ``weight_hh`` (2H, H), ``bias_ih``,
    ``bias_hh`` (2H,). State: (h,) = (c,), each (B, H).
    """

    num_gates = 2

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t: the projected input (B, 2H); state (c,) -> (c, (c,))."""
        (c,) = state
        u_pre, cand_pre = chunk(linear(c, self.weight_hh, x_t), 2)  # x_t + W_hh c
        u = tinyseq.sigmoid(u_pre)
        cand = tinyseq.tanh(cand_pre)
        c = c + u * (cand - c)  # = u * c~ + (1 - u) * c_prev with one product fewer
        return c, (c,)

    def fused_sequence(
        self, x: Tensor, state: State, mask: Array | None, reverse: bool
    ) -> tuple[Tensor, State] | None:
        return fused.run("simple_gru", self, x, state, mask, reverse)


@tinyseq.hookimpl
def register_cells(register: Any) -> None:
    """Register the simplified GRU as "simple_gru"."""
    register(
        "simple_gru",
        SimpleGRUCell,
        description="simplified GRU (update gate only): c = u*c~ + (1-u)*c_prev",
    )
