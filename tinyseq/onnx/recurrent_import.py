"""An ONNX RNN/GRU/LSTM node as a tinyseq module (the import side of recurrent_export).

The node's W, R, B become the cells of a one-layer :class:`tinyseq.nn.Recurrent` in the
node's direction ("rnn" with tanh or relu, "gru" with ``reset_after =
linear_before_reset``, "lstm")
through :mod:`tinyseq.onnx.gates`. What tinyseq's cells cannot compute is refused with
the attribute named: ``clip``, ``input_forget=1``, other activations or their
``activation_alpha``/``activation_beta``, and LSTM peepholes (input ``P``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn.module import Module
from ..nn.recurrent import Recurrent
from ..tensor import Tensor
from .gates import CELL_OF_OP, set_onnx_weights
from .ops import Node, Value, as_array, as_tensor

__all__ = ["OnnxRecurrent", "RECURRENT_OPS"]

RECURRENT_OPS = ("RNN", "GRU", "LSTM")
_ATTRIBUTES = {"activations", "activation_alpha", "activation_beta", "clip", "direction",
               "hidden_size", "layout"}
_EXTRA = {"RNN": set(), "GRU": {"linear_before_reset"}, "LSTM": {"input_forget"}}
_DEFAULT_ACTIVATIONS = {"RNN": ["tanh"], "GRU": ["sigmoid", "tanh"], "LSTM": ["sigmoid", "tanh", "tanh"]}
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _check(node: Node) -> dict[str, Any]:
    """The cell options the node's attributes ask for, or an UnsupportedError naming one."""
    op, attrs = node.op, node.attrs
    for name in sorted(attrs):
        if name not in _ATTRIBUTES | _EXTRA[op]:
            raise node.refuse(f"attribute {name}", f"{op} has no such attribute")
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in attrs:
            raise node.refuse(f"attribute {name}={attrs[name]!r}",
                              "tinyseq's cells apply their activations without clipping or parameters")
    if attrs.get("input_forget", 0):
        raise node.refuse(f"attribute input_forget={attrs['input_forget']}",
                          "tinyseq's LSTM has separate input and forget gates")
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise node.refuse(f"attribute direction={direction!r}", "expected forward, reverse or bidirectional")
    D = _DIRECTIONS[direction]
    default = _DEFAULT_ACTIVATIONS[op]
    acts = [str(a).lower() for a in attrs.get("activations", default * D)]
    options: dict[str, Any] = {}
    if op == "RNN":
        if len(set(acts)) != 1 or acts[0] not in ("tanh", "relu"):
            raise node.refuse(f"attribute activations={attrs['activations']!r}",
                              "tinyseq's rnn cell is tanh or relu, the same in both directions")
        options["nonlinearity"] = acts[0]
    elif acts != default * D:
        raise node.refuse(f"attribute activations={attrs['activations']!r}",
                          f"tinyseq's {op} uses ONNX's default activations {default}")
    if op == "GRU":
        options["reset_after"] = bool(attrs.get("linear_before_reset", 0))
    if attrs.get("layout", 0) not in (0, 1):
        raise node.refuse(f"attribute layout={attrs['layout']}", "expected 0 or 1")
    return options


class OnnxRecurrent(Module):
    """One ONNX RNN/GRU/LSTM node: ``run(X, sequence_lens, initial_h, initial_c)`` -> [Y, Y_h(, Y_c)].

    Layout 0: X (T, B, I), states (D, B, H), Y (T, D, B, H); layout 1: X (B, T, I),
    states (B, D, H), Y (B, T, D, H). The node's weights are this module's parameters.
    """

    def __init__(self, node: Node, w: np.ndarray, r: np.ndarray, b: np.ndarray | None) -> None:
        super().__init__()
        options = _check(node)
        self.op, self.node_name = node.op, node.name
        self.direction = node.attrs.get("direction", "forward")
        self.layout = int(node.attrs.get("layout", 0))
        D = _DIRECTIONS[self.direction]
        gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[node.op]
        H = int(node.attrs.get("hidden_size") or r.shape[-1])
        if w.ndim != 3 or w.shape[:2] != (D, gates * H) or r.shape != (D, gates * H, H) or (
                b is not None and b.shape != (D, 2 * gates * H)):
            raise ValueError(
                f"{node.describe()}: with direction={self.direction!r} and hidden_size={H}, W must "
                f"be ({D}, {gates * H}, I), R ({D}, {gates * H}, {H}) and B ({D}, {2 * gates * H}); got "
                f"W {w.shape}, R {r.shape}, B {None if b is None else b.shape}"
            )
        self.rec = Recurrent(CELL_OF_OP[node.op], int(w.shape[2]), H, direction=self.direction,
                             dtype=w.dtype, bias=b is not None, **options)
        for _, d, cell in self.rec.cells():
            set_onnx_weights(node.op, cell, w[d], r[d], None if b is None else b[d])

    def run(self, x: Value, lengths: Value | None, h0: Value | None, c0: Value | None) -> list[Tensor]:
        rec = self.rec
        first = next(iter(rec.parameters()))
        xt = as_tensor(x, first)
        given = [s if s is None else as_tensor(s, first) for s in (h0, c0)[: len(rec.state_names)]]
        if self.layout:
            xt = xt.swapaxes(0, 1)
            given = [s if s is None else s.swapaxes(0, 1) for s in given]
        T, B, H = xt.shape[0], xt.shape[1], rec.hidden_size
        D = rec.num_directions
        lens = None if lengths is None else as_array(lengths).astype(np.int64)
        state: tuple[Tensor, ...] | None = None
        if any(s is not None for s in given):
            zeros = as_tensor(np.zeros((D, B, H), dtype=first.dtype), first)
            state = tuple(zeros if s is None else s for s in given)
        out, st = rec(xt, None if state is None else (state[0] if len(state) == 1 else state),
                      lengths=lens)
        ys = out.reshape(T, B, D, H).transpose(0, 2, 1, 3)  # (T, D, B, H)
        finals = [st] if isinstance(st, Tensor) else list(st)
        if self.layout:
            ys = ys.transpose(2, 0, 1, 3)
            finals = [f.swapaxes(0, 1) for f in finals]
        return [ys, *finals]

    def extra_repr(self) -> str:
        return f"{self.op} {self.node_name!r}, direction={self.direction!r}, layout={self.layout}"
