"""The recurrent layer: lifts any registered cell to a full layer over sequences.

    rnn = ts.nn.Recurrent("lstm", input_size=32, hidden_size=64, num_layers=2,
                          bidirectional=True, batch_first=True)
    out, (h, c) = rnn(x, lengths=lengths)   # x (B, T, 32) -> out (B, T, 128)

The layer owns the time loop; cells only say how one step works (:mod:`tinyseq.cell`).
Per layer and direction it uses the cell's fused whole-sequence path when that returns
something (``Cell.fused_sequence``), else kernels generated from the cell's step
(:mod:`tinyseq.kernels.generated`), else the step path: one hoisted input product for
all steps (``Cell.input_projection``), then ``cell.step`` per step. Variable lengths
need no sorting: at a padded step the state is kept and the output is zero, so the
backward direction of a bidirectional layer starts at each sequence's own last step.
Whatever a padded step holds (NaN, inf) reaches no output, state or gradient: padding
is selected away, never multiplied by a 0/1 mask. An empty batch (B = 0) or sequence
(T = 0) gives an empty output and the state unchanged, with zero gradients.

A layer reads forward (left to right), in reverse (``direction="reverse"``: ONNX's
reverse direction, the backward half of a bidirectional layer) or both ways. Reversed,
each sequence is read from its own last valid step to step 0 and the outputs stay
aligned with the input steps: output[t] is the state after reading steps T_b-1 .. t.

Layers and wrappers share one sequence interface (time-major): ``x`` (T, B, I), a state
tuple with one tensor per state component of shape (slots, B, H), where a cell is one
slot, a bidirectional layer two and a stack the sum of its layers (PyTorch's layout,
layer-major then direction), and a (T, B) bool mask or None.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import backend, registry
from ..backend import Device
from ..cell import Cell, State, check_state, reuse_weights, unbind
from ..kernels import generated
from ..tensor import Array, Tensor, _make, _wrap, concatenate
from .module import Module

__all__ = [
    "Recurrent",
    "SequenceLayer",
    "run_cell",
    "run_layer",
    "initial_state",
    "num_slots",
    "output_size",
    "detach_state",
    "check_state",
    "use_fused",
    "fused_enabled",
]

_fused_default = [True]


def fused_enabled() -> bool:
    """Whether layers try a cell's fused path by default (see :class:`use_fused`)."""
    return _fused_default[0]


class use_fused(contextlib.ContextDecorator):
    """``with use_fused(False):`` forces the step path (for tests and benchmarks).

    A layer's own ``fused=True/False`` setting wins over this default.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        self._previous.append(_fused_default[0])
        _fused_default[0] = self.enabled

    def __exit__(self, *exc: object) -> None:
        _fused_default[0] = self._previous.pop()


def detach_state(state: Any) -> Any:
    """The same state cut from the graph (truncated BPTT): a Tensor or a tuple of them."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


# ---- graph helpers for the time loop (one node each, cheap per step) ----------------------
def _stack(steps: Sequence[Tensor]) -> Tensor:
    """Stack equal-shaped tensors on a new first axis as one graph node."""
    first = steps[0]
    out = first.device.xp.stack([s.data for s in steps])

    def backward(g: Array) -> list[Array]:
        return [g[i] for i in range(len(steps))]

    return _make(out, first.device, tuple(steps), backward)


def _keep(m: Array, new: Tensor, old: Tensor) -> Tensor:
    """new where m else old; m (B, 1) bool: a padded row keeps its state."""
    xp = new.device.xp
    out = xp.where(m, new.data, old.data)

    def backward(g: Array) -> tuple[Array | None, Array | None]:
        zero = g.dtype.type(0)
        gn = xp.where(m, g, zero) if new.requires_grad else None
        go = xp.where(m, zero, g) if old.requires_grad else None
        return gn, go

    return _make(out, new.device, (new, old), backward)


def _zero_padded(y: Tensor, m: Array) -> Tensor:
    """y where m else 0, m bool broadcasting over y (e.g. (B, 1) or (T, B, 1)).

    A select, not a product with a 0/1 mask: NaN * 0 is NaN, so padding that holds
    NaN or inf would leak into the values and, backward, into every gradient.
    """
    xp = y.device.xp
    zero = y.dtype.type(0)

    def backward(g: Array) -> tuple[Array]:
        return (xp.where(m, g, zero),)

    return _make(xp.where(m, y.data, zero), y.device, (y,), backward)


def _nothing_runs(cell: Cell, x: Tensor) -> Tensor:
    """The (T, B, O) zeros output of a sequence where no step is valid (or T = 0).

    A graph node on x and the cell's parameters whose gradients are zeros, so that a
    loss over it (and over the unchanged state) runs backward as when steps ran.
    """
    xp = x.device.xp
    parents = (x, *cell.parameters())

    def backward(g: Array) -> list[Array]:
        return [xp.zeros_like(p.data) for p in parents]

    zeros = xp.zeros((x.shape[0], x.shape[1], cell.output_size), dtype=x.dtype)
    return _make(zeros, x.device, parents, backward)


# ---- running one cell over a sequence --------------------------------------------------------
def run_cell(
    cell: Cell,
    x: Tensor,
    state: State | None = None,
    mask: Array | None = None,
    reverse: bool = False,
    fused: bool | None = None,
) -> tuple[Tensor, State]:
    """Run ``cell`` over a time-major sequence.

    x: (T, B, I). state: tuple of (B, H) per state component, or None for the cell's
    initial state. mask: (T, B) bool array on x's device, or None when every step is
    valid. reverse: read from the last step to the first. fused: try the cell's fused
    path (None: the :class:`use_fused` default). Returns (output (T, B, O) with zeros at
    padded steps, final state tuple of (B, H)).
    """
    if state is None:
        state = cell.initial_state(x.shape[1])
    else:
        shape = (x.shape[1], cell.hidden_size)
        state = check_state(state, cell.state_names, shape, type(cell).__name__, "(B, H)")
    if fused if fused is not None else _fused_default[0]:
        # a cell's own fused kernel first, then kernels generated from its step
        result = None if generated.prefer_generated() else cell.fused_sequence(x, state, mask, reverse)
        if result is None:
            result = generated.run(cell, x, state, mask, reverse)
        if result is not None:
            return result
    with reuse_weights():
        return _step_loop(cell, x, state, mask, reverse)


def _step_loop(
    cell: Cell, x: Tensor, state: State, mask: Array | None, reverse: bool
) -> tuple[Tensor, State]:
    T, B = x.shape[0], x.shape[1]
    xp = x.device.xp
    summary = None
    if mask is not None:
        # One host copy of per-step summaries decides which steps need masking at all.
        summary = backend.to_numpy(xp.stack([mask.all(axis=1), mask.any(axis=1)]))
    if T == 0 or (summary is not None and not summary[1].any()):
        return _nothing_runs(cell, x), state
    if mask is not None:
        # once per sequence: padded steps then compute on zeros, so whatever they held
        # (NaN, inf) reaches no value and no gradient (see _zero_padded)
        x = _zero_padded(x, mask[:, :, None])
    projected = cell.input_projection(x)
    steps = unbind(projected if projected is not None else x)
    outputs: list[Tensor] = [steps[0]] * T  # placeholders, all overwritten
    order = range(T - 1, -1, -1) if reverse else range(T)
    step = cell.step
    if mask is None or summary is None:  # (summary is None exactly when mask is)
        for t in order:
            outputs[t], state = step(steps[t], state)
        return _stack(outputs), state
    keep = mask[:, :, None]
    zeros: Tensor | None = None
    for t in order:
        if summary[0, t]:  # every sequence is valid here
            outputs[t], state = step(steps[t], state)
        elif not summary[1, t]:  # every sequence is padded here: nothing changes
            if zeros is None:
                zeros = _wrap(xp.zeros((B, cell.output_size), dtype=x.dtype), x.device)
            outputs[t] = zeros
        else:
            y, new = step(steps[t], state)
            m = keep[t]
            state = tuple(_keep(m, n, o) for n, o in zip(new, state))
            outputs[t] = _zero_padded(y, m)
    return _stack(outputs), state


# ---- the sequence-layer interface shared by cells and wrappers -------------------------------
class SequenceLayer(Module):
    """Base class of wrappers that run whole sequences (bidirectional, stacked, ...).

    Subclasses set ``input_size``, ``hidden_size``, ``output_size``, ``num_slots`` and
    ``state_names``, and implement :meth:`initial_state` and :meth:`forward_sequence`.
    """

    input_size: int
    hidden_size: int
    output_size: int
    num_slots: int
    state_names: tuple[str, ...]

    def initial_state(self, batch_size: int) -> State:
        """One tensor per state component, each (num_slots, batch_size, hidden_size)."""
        raise NotImplementedError

    def forward_sequence(
        self, x: Tensor, state: State | None, mask: Array | None, fused: bool | None = None
    ) -> tuple[Tensor, State]:
        """x (T, B, I), state as :meth:`initial_state` or None, mask (T, B) bool or None.

        Returns the output (T, B, output_size) and the final state.
        """
        raise NotImplementedError

    def check_state(self, state: Any, batch_size: int) -> State:
        """``state`` validated as :meth:`initial_state` would make it (see :func:`check_state`)."""
        shape = (self.num_slots, batch_size, self.hidden_size)
        return check_state(state, self.state_names, shape, type(self).__name__, "(num_slots, B, H)")

    def forward(
        self, x: Tensor, state: State | Tensor | None = None, mask: Array | None = None
    ) -> tuple[Tensor, State]:
        if state is not None:
            state = self.check_state(state, x.shape[1])
        return self.forward_sequence(x, state, mask)


Layer = Cell | SequenceLayer


def num_slots(layer: Layer) -> int:
    """How many (layer, direction) state slots ``layer`` has: 1 for a cell."""
    return 1 if isinstance(layer, Cell) else layer.num_slots


def output_size(layer: Layer) -> int:
    """Features of ``layer``'s output per step."""
    return layer.output_size


def initial_state(layer: Layer, batch_size: int) -> State:
    """``layer``'s initial state in the sequence layout: each (slots, B, H)."""
    if isinstance(layer, Cell):
        return tuple(s.reshape((1, *s.shape)) for s in layer.initial_state(batch_size))
    return layer.initial_state(batch_size)


def run_layer(
    layer: Layer,
    x: Tensor,
    state: State | None = None,
    mask: Array | None = None,
    reverse: bool = False,
    fused: bool | None = None,
) -> tuple[Tensor, State]:
    """Run a cell or wrapper over x (T, B, I) with state components (slots, B, H)."""
    if isinstance(layer, Cell):
        cell_state = None if state is None else tuple(s.reshape(s.shape[1:]) for s in state)
        y, final = run_cell(layer, x, cell_state, mask, reverse, fused)
        return y, tuple(s.reshape((1, *s.shape)) for s in final)
    if reverse:
        raise ValueError(f"{type(layer).__name__} cannot run reversed; only a cell can")
    return layer.forward_sequence(x, state, mask, fused)


def split_state(state: State, slots: Sequence[int]) -> list[State]:
    """Cut each component (sum(slots), B, H) into per-layer pieces along axis 0."""
    if len(slots) == 1:
        return [state]
    bounds = np.cumsum([0, *slots]).tolist()
    per_component = [
        [s[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])] for s in state
    ]
    return [tuple(comp[i] for comp in per_component) for i in range(len(slots))]


def join_states(states: Sequence[State]) -> State:
    """Concatenate per-layer states along the slot axis (the inverse of split_state)."""
    if len(states) == 1:
        return states[0]
    return tuple(concatenate(list(parts), 0) for parts in zip(*states))


def stack_slots(states: Sequence[State]) -> State:
    """(B, H) states of single cells -> components (n, B, H), one graph node each."""
    return tuple(_stack(list(parts)) for parts in zip(*states))


def unstack_slots(state: State) -> list[State]:
    """Components (n, B, H) -> n per-cell states of (B, H) (inverse of stack_slots)."""
    pieces = [unbind(s) for s in state]
    return [tuple(p[i] for p in pieces) for i in range(len(pieces[0]))]


# ---- the user-facing layer -----------------------------------------------------------------
CellFactory = Callable[..., Cell]


def _resolve_factory(cell: str | CellFactory, options: dict[str, Any]) -> tuple[str, CellFactory]:
    if isinstance(cell, str):
        spec = registry.get_cell_spec(cell)
        if spec.kind != "cell":
            raise TypeError(f"Recurrent needs a cell, but {cell!r} is a wrapper")

        def make(input_size: int, hidden_size: int) -> Cell:
            return spec.create(input_size, hidden_size, **options)  # type: ignore[no-any-return]

        return cell, make
    if callable(cell):
        name = getattr(cell, "__name__", type(cell).__name__)

        def make_from(input_size: int, hidden_size: int) -> Cell:
            return cell(input_size, hidden_size, **options)

        return name, make_from
    raise TypeError(
        f"Recurrent: cell must be a registered cell name or a Cell class/factory, got {cell!r}"
    )


DIRECTIONS = ("forward", "reverse", "bidirectional")


def _layer_directions(
    bidirectional: bool | Sequence[bool], direction: str | Sequence[str] | None, num_layers: int
) -> list[str]:
    """One of :data:`DIRECTIONS` per layer, from ``bidirectional`` and/or ``direction``."""
    if isinstance(bidirectional, bool):
        from_flag = [bidirectional] * num_layers
    else:
        from_flag = [bool(b) for b in bidirectional]
        if len(from_flag) != num_layers:
            raise ValueError(
                f"Recurrent: bidirectional has {len(from_flag)} entries, expected one "
                f"per layer ({num_layers})"
            )
    if direction is None:
        return ["bidirectional" if b else "forward" for b in from_flag]
    if isinstance(direction, str):
        chosen = [direction] * num_layers
    elif not isinstance(direction, Sequence):
        raise TypeError(
            f"Recurrent: direction must be one of {DIRECTIONS} or a list of them (one per "
            f"layer), got {direction!r}"
        )
    else:
        chosen = list(direction)
        if len(chosen) != num_layers:
            raise ValueError(
                f"Recurrent: direction has {len(chosen)} entries, expected one per layer "
                f"({num_layers})"
            )
    for d in chosen:
        if d not in DIRECTIONS:
            raise ValueError(f"Recurrent: direction must be one of {DIRECTIONS}, got {d!r}")
    given_flag = bidirectional is not False
    if given_flag and from_flag != [d == "bidirectional" for d in chosen]:
        raise ValueError(
            f"Recurrent: bidirectional={bidirectional!r} and direction={direction!r} "
            "disagree; pass one of them"
        )
    return chosen


class Recurrent(Module):
    """Any cell as a full recurrent layer, like torch.nn.RNN/GRU/LSTM.

    cell: a registered name ("rnn", "simple_gru", "gru", "lstm" or a plugin's) or a Cell
    class/factory ``f(input_size, hidden_size, **cell_options)``.
    num_layers: stacked layers (layer l reads layer l-1's outputs); ``dropout`` between
    them while training. bidirectional: True, or one bool per layer; ``merge`` joins the
    two directions: "concat" (default), "sum", "mean" or "product".
    batch_first: x is (B, T, I) instead of (T, B, I). fused: True/False forces the
    choice of path, None follows :class:`use_fused`. stateful: carry the final state,
    detached, into the next call (truncated BPTT; :meth:`reset_state` clears it).
    device, dtype: where to put the parameters. cell_options go to the cell, e.g.
    ``variant="lecture"`` for "lstm".
    direction: "forward", "reverse" or "bidirectional" (ONNX's names), or one per layer;
    an alternative to ``bidirectional`` that can also say reverse-only. A "reverse"
    layer reads each sequence from its last valid step to its first (Keras'
    ``go_backwards``, but its output stays aligned with the input: output[t] is the
    state after reading steps T_b-1 .. t, not reversed) and its final state is the one
    after step 0. ``bidirectional`` and ``direction`` may both be given only if they agree.

    forward(x, state=None, lengths=None, mask=None) -> (output, state):
    output (T, B, D*H) (or (B, T, D*H)), zeros at padded steps; D = 2 for bidirectional
    layers merged by concat. state: like PyTorch, a Tensor (L*D, B, H) for one-component
    cells, a tuple (h, c) for the LSTM; a wrong count or shape is a ValueError (no
    broadcasting). lengths: ints (B,); mask: bool (B, T) if batch_first else (T, B).
    """

    def __init__(
        self,
        cell: str | CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool | Sequence[bool] = False,
        batch_first: bool = False,
        dropout: float = 0.0,
        merge: str = "concat",
        *,
        fused: bool | None = None,
        stateful: bool = False,
        direction: str | Sequence[str] | None = None,
        device: str | Device | None = None,
        dtype: Any = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"Recurrent: num_layers must be at least 1, got {num_layers}")
        layer_directions = _layer_directions(bidirectional, direction, num_layers)
        directions = [d == "bidirectional" for d in layer_directions]
        self.cell_name, make = _resolve_factory(cell, cell_options)
        self.cell_options = dict(cell_options)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.layer_directions = layer_directions
        self.direction: str | list[str] = (
            layer_directions[0] if len(set(layer_directions)) == 1 else list(layer_directions)
        )
        self.directions = directions  # per layer: bidirectional or not
        self.bidirectional = all(directions)
        self.batch_first = batch_first
        self.dropout = dropout
        self.merge = merge
        self.fused = fused
        self.stateful = stateful
        layers: list[Layer] = []
        features = input_size
        with backend.default_dtype(dtype if dtype is not None else backend.get_default_dtype()):
            for both in directions:
                layer: Layer = make(features, hidden_size)
                if both:
                    backward_cell = make(features, hidden_size)
                    layer = registry.create_wrapper(
                        "bidirectional", layer, backward_cell, merge=merge
                    )
                layers.append(layer)
                features = output_size(layer)
        reverse = [d == "reverse" for d in layer_directions]
        options: dict[str, Any] = {"reverse": reverse} if any(reverse) else {}
        self.layers: SequenceLayer = registry.create_wrapper(
            "stacked", *layers, dropout=dropout, **options
        )
        if device is not None:
            self.to(device)
        self._carried: State | None = None

    # ---- shapes and parts --------------------------------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:
        return self.layers.state_names

    @property
    def output_size(self) -> int:
        """Features of each output step (D*H for concat-merged bidirectional layers)."""
        return self.layers.output_size

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def cell_at(self, layer: int, direction: int = 0) -> Cell:
        """The cell of ``layer``: forward (0) or backward (1), or a one-way layer's only cell (0)."""
        part = list(self.layers.children())[layer]
        if isinstance(part, Cell):
            if direction != 0:
                raise IndexError(f"layer {layer} is unidirectional: it has no direction {direction}")
            return part
        cells = [c for c in part.children() if isinstance(c, Cell)]
        return cells[direction]

    def cells(self) -> Iterator[tuple[int, int, Cell]]:
        """(layer, direction, cell) for every cell, in the state's slot order."""
        for layer in range(self.num_layers):
            for direction in range(2 if self.directions[layer] else 1):
                yield layer, direction, self.cell_at(layer, direction)

    def reset_state(self) -> None:
        """Forget the state a stateful layer carries between calls."""
        self._carried = None

    # ---- forward -------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        state: Tensor | Sequence[Tensor] | None = None,
        lengths: Any = None,
        mask: Any = None,
    ) -> tuple[Tensor, Any]:
        if not isinstance(x, Tensor):
            raise TypeError(f"Recurrent expected x as a Tensor, got {type(x).__name__}")
        layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"Recurrent expected x of shape {layout} with I = {self.input_size}, "
                f"got {x.shape}"
            )
        if self.batch_first:
            x = x.swapaxes(0, 1)
        T, B = x.shape[0], x.shape[1]
        step_mask = self._step_mask(T, B, lengths, mask, x.device)
        components = self._state_in(state, B, x)
        y, final = self.layers.forward_sequence(x, components, step_mask, self.fused)
        if self.batch_first:
            y = y.swapaxes(0, 1)
        if self.stateful:
            self._carried = detach_state(final)
        return y, final[0] if len(final) == 1 else final

    def _step_mask(
        self, T: int, B: int, lengths: Any, mask: Any, dev: Device
    ) -> Array | None:
        """(T, B) bool on dev, or None when every step of every sequence is valid."""
        if lengths is not None and mask is not None:
            raise ValueError("Recurrent: pass lengths or mask, not both")
        if lengths is not None:
            host = backend.to_numpy(lengths.data if isinstance(lengths, Tensor) else np.asarray(lengths))
            if host.size == 0:
                host = host.astype(np.int64)  # np.asarray([]) is float: a batch of 0 is fine
            if host.shape != (B,) or host.dtype.kind not in "iu":
                raise ValueError(
                    f"Recurrent: lengths must be {B} integers (one per sequence), got "
                    f"shape {host.shape} of {host.dtype}"
                )
            if host.size and (host.min() < 0 or host.max() > T):
                raise ValueError(
                    f"Recurrent: lengths must be in [0, {T}] (T = {T}), got values from "
                    f"{host.min()} to {host.max()}"
                )
            if (host == T).all():
                return None
            steps = np.arange(T)[:, None] < host[None, :]
            return steps if dev.name == "cpu" else dev.xp.asarray(steps)
        if mask is None:
            return None
        arr = mask.data if isinstance(mask, Tensor) else mask
        if not hasattr(arr, "shape"):
            arr = np.asarray(arr)
        if backend.device_of(arr) is not dev:
            arr = dev.xp.asarray(backend.to_numpy(arr))
        want = (B, T) if self.batch_first else (T, B)
        if tuple(arr.shape) != want:
            raise ValueError(
                f"Recurrent: mask must have shape {want} "
                f"({'(B, T)' if self.batch_first else '(T, B)'}), got {tuple(arr.shape)}"
            )
        if arr.dtype.kind != "b":
            arr = arr != 0
        if self.batch_first:
            arr = dev.xp.ascontiguousarray(arr.T)
        return None if bool(arr.all()) else arr

    def _state_in(self, state: Any, B: int, x: Tensor) -> State:
        slots = self.layers.num_slots
        names = self.state_names
        carried = state is None and self.stateful and self._carried is not None
        if state is None:
            if not carried:
                return self.layers.initial_state(B)
            state = self._carried
            if state[0].shape[1] != B:
                raise ValueError(
                    f"stateful Recurrent carries a state for batch size "
                    f"{state[0].shape[1]}, got a batch of {B}; call reset_state()"
                )
            # checked like a given state: the layer may have moved (to()) since
        want = (slots, B, self.hidden_size)
        parts = check_state(
            state, names, want, f"Recurrent({self.cell_name!r})", "(num_layers * num_directions, B, H)"
        )
        for name, part in zip(names, parts):
            if part.device is not x.device or part.dtype != x.dtype:
                raise ValueError(
                    f"Recurrent: state {name!r} is {part.dtype} on {part.device.name}, the "
                    f"input is {x.dtype} on {x.device.name}"
                    + ("; it was carried from the last call: call reset_state()" if carried else "")
                )
        return parts

    def extra_repr(self) -> str:
        out = f"{self.cell_name!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            out += f", num_layers={self.num_layers}"
        if "reverse" in self.layer_directions:
            out += f", direction={self.direction!r}"
        elif any(self.directions):
            out += f", bidirectional={self.bidirectional if self.bidirectional else self.directions}"
        if any(self.directions) and self.merge != "concat":
            out += f", merge={self.merge!r}"
        if self.batch_first:
            out += ", batch_first=True"
        if self.dropout:
            out += f", dropout={self.dropout}"
        for key, value in self.cell_options.items():
            out += f", {key}={value!r}"
        return out
