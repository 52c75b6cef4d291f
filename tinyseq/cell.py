"""The cell contract: what a plugin author writes to get a full recurrent layer.

A cell is one time step. The recurrent layer (``tinyseq.nn.Recurrent``) owns the time
loop, masks, bidirectional and stacked wrapping, so a cell only says how one step maps
``(x_t, state) -> (output, state)`` with tinyseq tensor ops.

Minimal cell::

    class MyCell(Cell):
        def __init__(self, input_size, hidden_size):
            super().__init__(input_size, hidden_size)
            self.weight_ih = Parameter(...)
            self.weight_hh = Parameter(...)
        def step(self, x_t, state):
            (h,) = state
            h = ts.tanh(linear(x_t, self.weight_ih) + linear(h, self.weight_hh))
            return h, (h,)

Optional, for speed:
- ``input_projection(x)``: the part of the step that reads only the input, applied to
  all T steps at once (one big matrix product); ``step`` then receives its rows.
- ``fused_sequence(x, state, mask, reverse)``: the whole sequence as one graph node;
  return None to fall back to the step path (e.g. on a backend it has no kernel for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from . import backend
from .checks import check_int
from .functional import linear, reuse_weights
from .nn.init import uniform_
from .nn.module import Module, Parameter
from .tensor import Array, Tensor, _make, _wrap, is_grad_enabled

__all__ = [
    "Cell",
    "GatedCell",
    "State",
    "check_state",
    "linear",
    "chunk",
    "unbind",
    "reuse_weights",
]

State = tuple[Tensor, ...]


# ---- ops a cell's step needs, each one graph node ------------------------------------------
class _Sink:
    """What each piece hands its hub in backward: the real gradient went into a buffer."""

    __slots__ = ()

    def __add__(self, other: object) -> _Sink:
        return self


_SINK = _Sink()


def _pieces(a: Tensor, indices: Sequence[Any]) -> list[Tensor]:
    """Views ``a[i]`` for each index as one graph node.

    In backward each piece writes its gradient into one shared buffer of ``a``'s shape
    (no per-piece full-size arrays, unlike plain indexing).
    """
    dev, data = a.device, a.data
    if not (a.requires_grad and is_grad_enabled()):
        return [_wrap(data[i], dev) for i in indices]
    shape, dtype = data.shape, data.dtype
    buf: list[Array] = []

    def hub_backward(_: Array) -> tuple[Array]:
        return (buf.pop(),)  # the next backward (retain_graph) starts a fresh buffer

    hub = _make(data, dev, (a,), hub_backward)
    out = []
    for i in indices:

        def piece_backward(g: Array, i: Any = i) -> tuple[Any]:
            if not buf:
                buf.append(dev.xp.zeros(shape, dtype=dtype))
            buf[0][i] = g
            return (_SINK,)

        out.append(_make(data[i], dev, (hub,), piece_backward))
    return out


def chunk(x: Tensor, sections: int | Sequence[int], axis: int = -1) -> list[Tensor]:
    """Split ``x`` along ``axis`` into ``sections`` equal parts or at the given indices.

    One graph node (e.g. the gate blocks of a (B, 4H) pre-activation).
    """
    n = x.data.shape[axis]
    if isinstance(sections, int):
        if sections <= 0 or n % sections:
            raise ValueError(f"chunk: axis {axis} of size {n} does not divide into {sections}")
        bounds = list(range(0, n + 1, n // sections))
    else:
        bounds = [0, *[int(i) for i in sections], n]
    lead = (slice(None),) * (axis % x.data.ndim)
    return _pieces(x, [(*lead, slice(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])])


def unbind(x: Tensor) -> list[Tensor]:
    """The slices ``x[0], x[1], ...`` along the first axis, as one graph node."""
    return _pieces(x, range(x.data.shape[0]))


def check_state(
    state: Any, names: Sequence[str], shape: tuple[int, ...], owner: str, layout: str
) -> State:
    """``state`` as a tuple of one Tensor per name in ``names``, each of ``shape``.

    A single Tensor is taken as the state of a one-component cell or layer (PyTorch's
    ``h``). Anything else — a wrong count, a non-Tensor, a shape that would merely
    broadcast — is a ValueError naming the expected ``layout`` (e.g. "(B, H)"), its
    value and what was given. owner: who asks, for the message (e.g. "GRUCell").
    """
    if isinstance(state, Tensor):
        parts: tuple[Any, ...] = (state,)
        given = f"a single Tensor of shape {state.shape}"
    elif isinstance(state, (tuple, list)):
        parts = tuple(state)
        given = str(len(parts))
    else:
        parts, given = (), type(state).__name__
    if len(parts) != len(names):
        raise ValueError(
            f"{owner} expects a state of {len(names)} tensor(s) {tuple(names)} (a tuple), "
            f"each {layout} = {shape}, got {given}"
        )
    for name, part in zip(names, parts):
        if not isinstance(part, Tensor) or part.shape != shape:
            got = part.shape if isinstance(part, Tensor) else type(part).__name__
            raise ValueError(f"{owner}: state {name!r} must have shape {layout} = {shape}, got {got}")
    return parts


class Cell(Module):
    """Base class of recurrent cells (one step).

    input_size: features of x_t. hidden_size: features of each state component.
    ``state_names`` names the state components, e.g. ("h",) or ("h", "c"); each is
    (B, hidden_size). The step's output is (B, output_size), normally the new ``h``.
    """

    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        owner = type(self).__name__
        self.input_size = check_int(input_size, f"{owner}: input_size")
        self.hidden_size = check_int(hidden_size, f"{owner}: hidden_size")

    @property
    def output_size(self) -> int:
        """Features of each step's output (hidden_size unless a cell says otherwise)."""
        return self.hidden_size

    def initial_state(self, batch_size: int) -> State:
        """Zeros for every state component: each (batch_size, hidden_size)."""
        dev = self.device
        first = next(self.parameters(), None)  # also finds parameters of submodules
        dtype = first.dtype if first is not None else backend.get_default_dtype()
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
        else:
            shape = (x_t.shape[0], self.hidden_size)
            state = check_state(state, self.state_names, shape, type(self).__name__, "(B, H)")
        projected = self.input_projection(x_t)
        return self.step(projected if projected is not None else x_t, state)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"



class GatedCell(Cell):
    """A cell whose gates read ``W_ih x + b_ih`` and ``W_hh h + b_hh`` (PyTorch's layout).

    Parameters: ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` and
    ``bias_hh`` (G*H,) when ``bias``; G = ``num_gates``, the gate blocks stacked in rows.
    Initialised like PyTorch: every entry U(-1/sqrt(H), 1/sqrt(H)).

    ``input_projection`` hoists ``W_ih x + b_ih`` (plus ``b_hh`` when the subclass sets
    ``fold_hidden_bias``: the hidden bias then rides along, which is exact whenever
    ``b_hh`` is only ever added to the gates, not multiplied by one).
    """

    num_gates: ClassVar[int] = 1
    fold_hidden_bias: ClassVar[bool] = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        dev = backend.get_default_device()
        dt = backend.get_default_dtype()
        rows = self.num_gates * hidden_size

        def new(*shape: int) -> Parameter:
            return Parameter(_wrap(dev.xp.zeros(shape, dtype=dt), dev))

        self.bias = bias
        self.weight_ih = new(rows, input_size)
        self.weight_hh = new(rows, hidden_size)
        self.register_parameter("bias_ih", new(rows) if bias else None)
        self.register_parameter("bias_hh", new(rows) if bias else None)
        self.reset_parameters()

    bias_ih: Parameter | None
    bias_hh: Parameter | None

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias (PyTorch's default)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            uniform_(p, -bound, bound)

    def input_projection(self, x: Tensor) -> Tensor:
        """W_ih x + b_ih (+ b_hh when folded): x (..., I) -> (..., G*H)."""
        bias: Tensor | None = self.bias_ih
        if bias is not None and self.bias_hh is not None and self.fold_hidden_bias:
            bias = bias + self.bias_hh
        return linear(x, self.weight_ih, bias)

    def hidden_bias(self) -> Tensor | None:
        """The bias each step adds to W_hh h: None when it was folded into the projection."""
        return None if self.fold_hidden_bias else self.bias_hh

    def extra_repr(self) -> str:
        extra = "" if self.bias else ", bias=False"
        return f"{self.input_size}, {self.hidden_size}{extra}"
