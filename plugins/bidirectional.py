"""Built-in plugin: the bidirectional wrapper (a forward and a backward cell)."""

from __future__ import annotations

from typing import Any

import tinyseq
from tinyseq.cell import Cell, State
from tinyseq.nn.recurrent import SequenceLayer, run_cell, stack_slots, unstack_slots
from tinyseq.tensor import Array, Tensor, concatenate

__all__ = ["Bidirectional", "MERGE_MODES", "register_cells"]

MERGE_MODES = ("concat", "sum", "mean", "product")


class Bidirectional(SequenceLayer):
    """Two cells over one sequence, one left to right and one right to left.

    The lecture's ŷ<t> = g(W_y [→a<t>, ←a<t>] + b_y) reads both directions; this layer
    returns the merged [→a<t>, ←a<t>]: merge="concat" (default, (T, B, 2H)), "sum",
    "mean" or "product" ((T, B, H)). With variable lengths the backward cell starts at
    each sequence's own last valid step (padded steps leave its state untouched).
    State: each component (2, B, H): forward then backward (PyTorch's order).
    """

    def __init__(self, forward_cell: Cell, backward_cell: Cell, merge: str = "concat") -> None:
        super().__init__()
        for role, cell in (("forward_cell", forward_cell), ("backward_cell", backward_cell)):
            if not isinstance(cell, Cell):
                raise TypeError(f"Bidirectional: {role} must be a Cell, got {type(cell).__name__}")
        if forward_cell is backward_cell:
            raise ValueError("Bidirectional needs two distinct cells (one per direction)")
        if (forward_cell.input_size, forward_cell.hidden_size, forward_cell.state_names) != (
            backward_cell.input_size, backward_cell.hidden_size, backward_cell.state_names
        ):
            raise ValueError(
                "Bidirectional: the two cells must agree in input_size, hidden_size and "
                f"state_names, got {forward_cell!r} and {backward_cell!r}"
            )
        if merge not in MERGE_MODES:
            raise ValueError(f"Bidirectional: merge must be one of {MERGE_MODES}, got {merge!r}")
        self.forward_cell = forward_cell
        self.backward_cell = backward_cell
        self.merge = merge
        self.input_size = forward_cell.input_size
        self.hidden_size = forward_cell.hidden_size
        self.state_names = forward_cell.state_names
        self.num_slots = 2
        cell_out = forward_cell.output_size
        self.output_size = 2 * cell_out if merge == "concat" else cell_out

    def initial_state(self, batch_size: int) -> State:
        return stack_slots(
            [self.forward_cell.initial_state(batch_size), self.backward_cell.initial_state(batch_size)]
        )

    def forward_sequence(
        self, x: Tensor, state: State | None, mask: Array | None, fused: bool | None = None
    ) -> tuple[Tensor, State]:
        fwd_state, bwd_state = None, None
        if state is not None:
            fwd_state, bwd_state = unstack_slots(self.check_state(state, x.shape[1]))
        y_f, final_f = run_cell(self.forward_cell, x, fwd_state, mask, False, fused)
        y_b, final_b = run_cell(self.backward_cell, x, bwd_state, mask, True, fused)
        if self.merge == "concat":
            y = concatenate([y_f, y_b], axis=-1)
        elif self.merge == "sum":
            y = y_f + y_b
        elif self.merge == "mean":
            y = (y_f + y_b) * 0.5
        else:
            y = y_f * y_b
        return y, stack_slots([final_f, final_b])

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}"


@tinyseq.hookimpl
def register_cells(register: Any) -> None:
    """Register the bidirectional wrapper as "bidirectional"."""
    register(
        "bidirectional",
        Bidirectional,
        wrapper=True,
        options={"merge": "concat"},
        description="two cells, left-to-right and right-to-left; merge concat|sum|mean|product",
    )
