"""Built-in plugin: the stacked (deep) wrapper."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import tinyseq
from tinyseq.cell import Cell, State
from tinyseq.functional import dropout as dropout_fn
from tinyseq.nn.recurrent import (
    Layer,
    SequenceLayer,
    initial_state,
    join_states,
    num_slots,
    output_size,
    run_layer,
    split_state,
)
from tinyseq.tensor import Array, Tensor

__all__ = ["Stacked", "register_cells"]


class Stacked(SequenceLayer):
    """Layers on top of each other: layer l at step t reads layer l-1 at step t.

    layers: cells or sequence layers (e.g. bidirectional), each one's input size the
    previous one's output size. dropout: applied to each layer's output except the last,
    while training (as torch.nn.LSTM's dropout). reverse: one bool per layer, True for a
    cell that reads each sequence from its last valid step to its first (outputs stay
    aligned with the input steps); None: all forward. State: each component
    (sum of the layers' slots, B, H), layer by layer.
    """

    def __init__(
        self, *layers: Layer, dropout: float = 0.0, reverse: Sequence[bool] | None = None
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("Stacked needs at least one layer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Stacked: dropout must be in [0, 1), got {dropout}")
        flags = [False] * len(layers) if reverse is None else [bool(r) for r in reverse]
        if len(flags) != len(layers):
            raise ValueError(
                f"Stacked: reverse has {len(flags)} entries, expected one per layer ({len(layers)})"
            )
        for i, (layer, flag) in enumerate(zip(layers, flags)):
            if flag and not isinstance(layer, Cell):
                raise ValueError(
                    f"Stacked: layer {i} ({type(layer).__name__}) cannot run reversed; only a "
                    "cell can (a bidirectional layer reads both ways already)"
                )
        for i, layer in enumerate(layers):
            if i and layer.input_size != output_size(layers[i - 1]):
                raise ValueError(
                    f"Stacked: layer {i} expects {layer.input_size} input features but "
                    f"layer {i - 1} outputs {output_size(layers[i - 1])}"
                )
            if layer.state_names != layers[0].state_names or layer.hidden_size != layers[0].hidden_size:
                raise ValueError(
                    f"Stacked: layer {i} has state {layer.state_names} of size "
                    f"{layer.hidden_size}, layer 0 has {layers[0].state_names} of size "
                    f"{layers[0].hidden_size}; the stack's state needs them equal"
                )
            setattr(self, str(i), layer)
        self.dropout = dropout
        self.reverse = flags
        self.input_size = layers[0].input_size
        self.hidden_size = layers[0].hidden_size
        self.output_size = output_size(layers[-1])
        self.state_names = layers[0].state_names
        self.slots = [num_slots(layer) for layer in layers]
        self.num_slots = sum(self.slots)

    def __getitem__(self, index: int) -> Layer:
        return list(self._modules.values())[index]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._modules.values())  # type: ignore[arg-type]

    def initial_state(self, batch_size: int) -> State:
        return join_states([initial_state(layer, batch_size) for layer in self])

    def forward_sequence(
        self, x: Tensor, state: State | None, mask: Array | None, fused: bool | None = None
    ) -> tuple[Tensor, State]:
        per_layer: list[State | None] = [None] * len(self)
        if state is not None:
            per_layer = list(split_state(self.check_state(state, x.shape[1]), self.slots))
        finals = []
        y = x
        last = len(self) - 1
        for i, (layer, layer_state) in enumerate(zip(self, per_layer)):
            y, final = run_layer(layer, y, layer_state, mask, self.reverse[i], fused)
            finals.append(final)
            if i < last and self.dropout and self.training:
                y = dropout_fn(y, self.dropout, True)
        return y, join_states(finals)

    def extra_repr(self) -> str:
        parts = [f"dropout={self.dropout}"] if self.dropout else []
        if any(self.reverse):
            parts.append(f"reverse={self.reverse}")
        return ", ".join(parts)


@tinyseq.hookimpl
def register_cells(register: Any) -> None:
    """Register the stacked wrapper as "stacked"."""
    register(
        "stacked",
        Stacked,
        wrapper=True,
        description="layers on top of each other (any may be bidirectional or reversed), "
        "dropout between",
    )
