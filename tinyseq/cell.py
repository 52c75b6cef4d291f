"""The cell contract: what a plugin author writes to get a full recurrent layer.

A cell is one time step. The recurrent layer (``tinyseq.nn.Recurrent``) owns the time
loop, masks, bidirectional and stacked wrapping, so a cell only says how one step maps
``(x_t, state) -> (output, state)`` with tinyseq tensor ops.

Minimal cell::

    class MyCell(Cell):
        def __init__(self, input_size, hidden_size):
            super().__init__(input_size, hidden_size)
            self.weight = Parameter(...)
        def step(self, x_t, state):
            (h,) = state
            h = ts.tanh(x_t @ self.weight_ih.T + h @ self.weight_hh.T)
            return h, (h,)

Optional, for speed:
- ``input_projection(x)``: the part of the step that reads only the input, applied to
  all T steps at once (one big matrix product); ``step`` then receives its rows.
- ``fused_sequence(x, state, mask, reverse)``: the whole sequence as one graph node;
  return None to fall back to the step path (e.g. on a backend it has no kernel for).
"""

from __future__ import annotations

from typing import ClassVar

from . import backend
from .nn.module import Module
from .tensor import Array, Tensor, _wrap

__all__ = ["Cell", "State"]

State = tuple[Tensor, ...]


class Cell(Module):
    """Base class of recurrent cells (one step).

    input_size: features of x_t. hidden_size: features of each state component.
    ``state_names`` names the state components, e.g. ("h",) or ("h", "c"); each is
    (B, hidden_size). The step's output is (B, output_size), normally the new ``h``.
    """

    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(
                f"{type(self).__name__}: input_size and hidden_size must be positive, "
                f"got {input_size} and {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size

    @property
    def output_size(self) -> int:
        """Features of each step's output (hidden_size unless a cell says otherwise)."""
        return self.hidden_size

    def initial_state(self, batch_size: int) -> State:
        """Zeros for every state component: each (batch_size, hidden_size)."""
        dev = self.device
        dtype = next(iter(self.parameters())).dtype if self._parameters else backend.get_default_dtype()
        return tuple(
            _wrap(dev.xp.zeros((batch_size, self.hidden_size), dtype=dtype), dev)
            for _ in self.state_names
        )

    def input_projection(self, x: Tensor) -> Tensor | None:
        """Optional hoisted input product: x (T, B, I) -> (T, B, G), or None."""
        return None

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: x_t (B, I) — or (B, G) when input_projection is defined — and state.

        Returns output (B, output_size) and the new state (each (B, hidden_size)).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def fused_sequence(
        self, x: Tensor, state: State, mask: Array | None, reverse: bool
    ) -> tuple[Tensor, State] | None:
        """Optional fused path over a whole sequence: x (T, B, I), mask (T, B) bool.

        Returns outputs (T, B, output_size) — zeros at padded steps — and the final
        state, or None to use the step path. Must agree with the step path exactly.
        """
        return None

    def forward(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run one step on raw input (applies ``input_projection`` when defined)."""
        if state is None:
            state = self.initial_state(x_t.shape[0])
        projected = self.input_projection(x_t)
        return self.step(projected if projected is not None else x_t, state)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

