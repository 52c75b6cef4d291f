"""A :class:`tinyseq.nn.Recurrent` as ONNX nodes: one RNN/GRU/LSTM op per layer.

Layer l's op reads layer l-1's output, in the layer's direction (forward, reverse or
bidirectional, the same names in both); ONNX's Y (T, D, B, H) becomes the (T, B, D*H)
that tinyseq's concat merge gives (Transpose + Reshape), or is squeezed (D = 1), summed,
averaged or multiplied as the layer's merge says. Final states are the ops' Y_h / Y_c
concatenated in tinyseq's slot order (layer-major, forward then backward direction),
initial states are sliced from the same layout, and ``sequence_lens`` gives ragged
batches the semantics of tinyseq's lengths.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn.recurrent import Recurrent
from .errors import UnsupportedError
from .gates import ONNX_OPS, onnx_weights
from .graph import GraphBuilder

__all__ = ["onnx_op", "emit_recurrent"]

# the cell options each exportable cell understands (anything else is a plugin's idea)
_OPTIONS = {
    "rnn": {"nonlinearity", "bias"},
    "gru": {"reset_after", "bias"},
    "lstm": {"variant", "forget_bias", "bias"},
}
_ACTIVATION = {"tanh": "Tanh", "relu": "Relu"}


def onnx_op(rec: Recurrent) -> str:
    """The ONNX op ("RNN", "GRU", "LSTM") for ``rec``'s cell, or an UnsupportedError."""
    name, opts = rec.cell_name, rec.cell_options
    op = ONNX_OPS.get(name)
    problem = None
    if op is None:
        problem = (f"cell {name!r} has no ONNX operator (ONNX has RNN, GRU and LSTM: tinyseq's "
                   "'rnn', 'gru' and 'lstm' with variant='standard')")
    elif opts.get("variant", "standard") != "standard":
        problem = f"lstm with variant={opts['variant']!r} (a = o * c) has no ONNX operator"
    elif set(opts) - _OPTIONS[name]:
        problem = f"cell option(s) {sorted(set(opts) - _OPTIONS[name])} have no ONNX attribute"
    if problem is not None or op is None:
        raise UnsupportedError(
            f"cannot export Recurrent({rec.extra_repr()}) to ONNX: {problem}; cell {name!r} "
            f"with options {opts}"
        )
    return op


def _merge(g: GraphBuilder, y: str, directions: int, merge: str, dtype: Any) -> str:
    """ONNX's Y (T, D, B, H) as tinyseq's layer output (T, B, D*H) or (T, B, H)."""
    if directions == 1:
        return g.op("Squeeze", y, g.ints([1], "axes"))
    if merge == "concat":
        tbdh = g.op("Transpose", y, perm=[0, 2, 1, 3])
        return g.op("Reshape", tbdh, g.ints([0, 0, -1], "shape"))
    fwd = g.op("Gather", y, g.const(np.int64(0), "index"), axis=1)
    bwd = g.op("Gather", y, g.const(np.int64(1), "index"), axis=1)
    if merge == "product":
        return g.op("Mul", fwd, bwd)
    both = g.op("Add", fwd, bwd)
    if merge == "mean":
        return g.op("Mul", both, g.const(np.asarray(0.5, dtype=dtype), "half"))
    return both


def emit_recurrent(
    g: GraphBuilder,
    rec: Recurrent,
    x: str,
    states: list[str] | None,
    lengths: str | None,
    prefix: str = "rnn",
) -> tuple[str, list[str]]:
    """Nodes running ``rec`` on the time-major value ``x`` (T, B, I).

    states: one name per state component, each (L*D, B, H), or None for zeros.
    lengths: an int32 (B,) value for ``sequence_lens``, or None. prefix: initializer names.
    Returns the output (T, B, output_size) and the final states (L*D, B, H).
    """
    op = onnx_op(rec)
    first = next(iter(rec.parameters()))
    dtype = first.dtype
    finals: list[list[str]] = [[] for _ in rec.state_names]
    stem = f"{prefix}." if prefix else ""
    slot = 0
    for layer in range(rec.num_layers):
        D = 2 if rec.directions[layer] else 1
        cells = [rec.cell_at(layer, d) for d in range(D)]
        weights = [onnx_weights(op, c) for c in cells]
        w = g.const(np.stack([wt[0] for wt in weights]), f"{stem}W_l{layer}")
        r = g.const(np.stack([wt[1] for wt in weights]), f"{stem}R_l{layer}")
        biases = [wt[2] for wt in weights]
        b = "" if biases[0] is None else g.const(np.stack(biases), f"{stem}B_l{layer}")  # type: ignore[arg-type]
        inputs = [x, w, r, b, lengths or ""]
        for s in states or []:
            inputs.append(g.op("Slice", s, g.ints([slot], "starts"), g.ints([slot + D], "ends"),
                               g.ints([0], "axes")))
        # "forward", "reverse" or "bidirectional": tinyseq's names are ONNX's
        attrs: dict[str, Any] = {"hidden_size": rec.hidden_size,
                                 "direction": rec.layer_directions[layer]}
        if op == "RNN":
            attrs["activations"] = [_ACTIVATION[getattr(cells[0], "nonlinearity", "tanh")]] * D
        elif op == "GRU":
            attrs["linear_before_reset"] = int(getattr(cells[0], "reset_after", True))
        y, *layer_finals = g.node(op, inputs, n_outputs=1 + len(finals), **attrs)
        x = _merge(g, y, D, rec.merge, dtype)
        for component, final in zip(finals, layer_finals):
            component.append(final)
        slot += D
    joined = [parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=0) for parts in finals]
    return x, joined
