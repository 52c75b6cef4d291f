"""Export tinyseq models as standard ONNX graphs (the ``onnx`` package, an optional extra).

    tinyseq.onnx.export(rec, "rnn.onnx", (x, None, lengths))     # ts.nn.Recurrent
    tinyseq.onnx.export(lm, "lm.onnx", (ids, state))              # LanguageModel
    tinyseq.onnx.export(classifier, "clf.onnx", batch)            # or (x, lengths)

``example_input`` is what the model's forward takes (as for ``torch.onnx.export``): it
decides which graph inputs exist (initial states, lengths) and is run once in tinyseq
to check it fits. Batch and time are dynamic axes. The graph computes the model in eval
mode (no dropout). Inputs and outputs, by model:

| model | inputs | outputs |
|---|---|---|
| ``Recurrent`` | x (T, B, I) or (B, T, I), [h_0, c_0 (L*D, B, H)], [lengths (B,)] | y, h_n[, c_n] |
| ``LanguageModel`` | ids (T, B), [h_0, c_0], [lengths] | logits (T, B, V), h_n[, c_n] |
| ``SequenceClassifier`` | ids (B, T) or x (B, T, F), [lengths] | logits (B, C) |
| ``SequenceTagger`` | ids (B, T) or x (B, T, F), [lengths] | logits (T, B, C) |
| ``SequenceRegressor`` | as the tagger | predictions (T, B, F) |

ids and lengths are int64; ``softmax=True`` adds an output ``probabilities``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend
from ..data.batching import Batch
from ..models import LanguageModel, SequenceClassifier, SequenceRegressor, SequenceTagger
from ..nn import Embedding, Linear, Module
from ..nn.recurrent import Recurrent
from ..tensor import Tensor, no_grad
from .errors import UnsupportedError, require
from .graph import Dim, GraphBuilder
from .recurrent_export import emit_recurrent

__all__ = ["export", "DEFAULT_OPSET", "OPSETS"]

DEFAULT_OPSET = 18
OPSETS = range(18, 22)  # Reduce* take axes as an input from 18 on; 18-21 read the same here


def _host(value: Any) -> np.ndarray:
    return backend.to_numpy(value.data) if isinstance(value, Tensor) else np.asarray(value)


def _args(example: Any, names: Sequence[str], owner: str) -> list[Any]:
    """``example`` as the forward's positional arguments ``names`` (missing ones None)."""
    parts = list(example) if isinstance(example, (tuple, list)) else [example]
    if not 1 <= len(parts) <= len(names):
        raise ValueError(
            f"export: example_input for {owner} is ({', '.join(names)}) with the first "
            f"required, got {len(parts)} values"
        )
    return parts + [None] * (len(names) - len(parts))


class _Export:
    """One export in progress: the graph, the float dtype, the symbolic axes."""

    def __init__(self, model: Module, opset: int) -> None:
        self.g = GraphBuilder(opset)
        first = next(iter(model.parameters()), None)
        self.dtype = first.dtype if first is not None else backend.get_default_dtype()

    def lengths(self, lengths: Any) -> tuple[str | None, str | None]:
        """The int64 graph input ``lengths`` (B,) and its int32 copy for sequence_lens."""
        if lengths is None:
            return None, None
        name = self.g.input("lengths", np.int64, ["batch"])
        return name, self.g.op("Cast", name, to=self.g.onnx.TensorProto.INT32)

    def states(self, rec: Recurrent, state: Any) -> list[str] | None:
        """Graph inputs h_0 (, c_0), each (L*D, B, H), when the example gives a state."""
        if state is None:
            return None
        slots = rec.layers.num_slots
        return [self.g.input(f"{n}_0", self.dtype, [slots, "batch", rec.hidden_size])
                for n in rec.state_names]

    def state_outputs(self, rec: Recurrent, finals: list[str]) -> None:
        for n, value in zip(rec.state_names, finals):
            self.g.output(value, f"{n}_n", self.dtype, [rec.layers.num_slots, "batch", rec.hidden_size])

    def embed(self, emb: Embedding, ids: str, prefix: str) -> str:
        return self.g.op("Gather", self.g.const(_host(emb.weight), f"{prefix}.weight"), ids, axis=0)

    def linear(self, lin: Linear, x: str, ndim: int, prefix: str) -> str:
        """x (..., in) -> (..., out): Gemm for 2-D inputs, else MatMul + Add."""
        g = self.g
        w = _host(lin.weight)
        b = None if lin.bias is None else g.const(_host(lin.bias), f"{prefix}.bias")
        if ndim == 2:
            return g.op("Gemm", x, g.const(w, f"{prefix}.weight"), *([b] if b else []), transB=1)
        y = g.op("MatMul", x, g.const(np.ascontiguousarray(w.T), f"{prefix}.weight_t"))
        return y if b is None else g.op("Add", y, b)

    def softmax(self, logits: str, shape: list[Dim]) -> None:
        self.g.output(self.g.op("Softmax", logits, axis=-1), "probabilities", self.dtype, shape)


def _recurrent(ex: _Export, rec: Recurrent, example: Any) -> None:
    x, state, lengths = _args(example, ("x", "state", "lengths"), "Recurrent")
    g = ex.g
    dims: list[Dim] = ["batch", "time"] if rec.batch_first else ["time", "batch"]
    name = g.input("x", ex.dtype, [*dims, rec.input_size])
    xt = g.op("Transpose", name, perm=[1, 0, 2]) if rec.batch_first else name
    states = ex.states(rec, state)  # inputs in the forward's order: x, h_0 (, c_0), lengths
    _, lens = ex.lengths(lengths)
    y, finals = emit_recurrent(g, rec, xt, states, lens, "")
    if rec.batch_first:
        y = g.op("Transpose", y, perm=[1, 0, 2])
    g.output(y, "y", ex.dtype, [*dims, rec.output_size])
    ex.state_outputs(rec, finals)


def _language_model(ex: _Export, model: LanguageModel, example: Any, softmax: bool) -> None:
    ids, state, lengths = _args(example, ("ids", "state", "lengths"), "LanguageModel")
    g = ex.g
    x = ex.embed(model.embedding, g.input("ids", np.int64, ["time", "batch"]), "embedding")
    states = ex.states(model.rnn, state)
    _, lens = ex.lengths(lengths)
    y, finals = emit_recurrent(g, model.rnn, x, states, lens, "rnn")
    logits = ex.linear(model.head, y, 3, "head")
    shape: list[Dim] = ["time", "batch", model.head.out_features]
    g.output(logits, "logits", ex.dtype, shape)
    ex.state_outputs(model.rnn, finals)
    if softmax:
        ex.softmax(logits, shape)


def _time_major_inputs(ex: _Export, model: SequenceTagger | SequenceClassifier, example: Any
                       ) -> tuple[str, str | None, str | None]:
    """Graph inputs ids (B, T) or x (B, T, F) [and lengths]: (T, B, E) features and lengths."""
    if isinstance(example, Batch):
        lengths = example.x_lengths
    else:
        _, lengths = _args(example, ("x", "lengths"), type(model).__name__)
    g = ex.g
    emb = model.inputs.embedding
    if emb is not None:
        ids = g.op("Transpose", g.input("ids", np.int64, ["batch", "time"]), perm=[1, 0])
        x = ex.embed(emb, ids, "inputs.embedding")
    else:
        x = g.op("Transpose", g.input("x", ex.dtype, ["batch", "time", model.inputs.size]), perm=[1, 0, 2])
    lengths64, lens = ex.lengths(lengths)
    return x, lengths64, lens


def _step_mask(g: GraphBuilder, y: str, lengths: str) -> str:
    """(T, B, 1) bool: step t < lengths[b]."""
    steps = g.op("Gather", g.op("Shape", y), g.const(np.int64(0), "index"), axis=0)
    t = g.op("Range", g.const(np.int64(0), "zero"), steps, g.const(np.int64(1), "one"))
    valid = g.op("Less", g.op("Unsqueeze", t, g.ints([1], "axes")),
                 g.op("Unsqueeze", lengths, g.ints([0], "axes")))
    return g.op("Unsqueeze", valid, g.ints([2], "axes"))


def _classifier(ex: _Export, model: SequenceClassifier, example: Any, softmax: bool) -> None:
    g = ex.g
    x, lengths, lens = _time_major_inputs(ex, model, example)
    y, finals = emit_recurrent(g, model.rnn, x, None, lens, "rnn")
    axes = g.ints([0], "axes")
    if model.pooling == "last":  # the top layer's final h, directions side by side
        slots, D = model.rnn.layers.num_slots, model.directions
        top = g.op("Slice", finals[0], g.ints([slots - D], "starts"), g.ints([slots], "ends"), axes)
        features = g.op("Reshape", g.op("Transpose", top, perm=[1, 0, 2]), g.ints([0, -1], "shape"))
    elif lengths is None:
        features = g.op("ReduceMean" if model.pooling == "mean" else "ReduceMax", y, axes, keepdims=0)
    elif model.pooling == "mean":
        kept = g.op("Where", _step_mask(g, y, lengths), y, g.const(np.asarray(0, ex.dtype), "zero"))
        total = g.op("ReduceSum", kept, axes, keepdims=0)
        count = g.op("Unsqueeze", g.op("Cast", lengths, to=g.elem(ex.dtype)), g.ints([1], "axes"))
        features = g.op("Div", total, count)
    else:
        low = g.const(np.asarray(-1e30, ex.dtype), "low")  # the model's own fill value
        features = g.op("ReduceMax", g.op("Where", _step_mask(g, y, lengths), y, low), axes, keepdims=0)
    logits = ex.linear(model.head, features, 2, "head")
    shape: list[Dim] = ["batch", model.head.out_features]
    g.output(logits, "logits", ex.dtype, shape)
    if softmax:
        ex.softmax(logits, shape)


def _tagger(ex: _Export, model: SequenceTagger, example: Any, softmax: bool) -> None:
    g = ex.g
    x, _, lens = _time_major_inputs(ex, model, example)
    y, _ = emit_recurrent(g, model.rnn, x, None, lens, "rnn")
    out = ex.linear(model.head, y, 3, "head")
    shape: list[Dim] = ["time", "batch", model.head.out_features]
    regressor = isinstance(model, SequenceRegressor)
    if regressor and softmax:
        raise ValueError("export: softmax=True needs logits; a SequenceRegressor predicts values")
    g.output(out, "predictions" if regressor else "logits", ex.dtype, shape)
    if softmax:
        ex.softmax(out, shape)


def _tensors(value: Any) -> Any:
    """Arrays (or tuples of them) as Tensors, for running the example in tinyseq."""
    if value is None or isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_tensors(v) for v in value)
    return Tensor(np.asarray(value))


def _run_example(model: Module, example: Any) -> None:
    """Run ``example`` through ``model`` once, so a misfit fails with tinyseq's message."""
    if isinstance(model, Recurrent):
        x, state, lengths = _args(example, ("x", "state", "lengths"), "Recurrent")
        model(_tensors(x), _tensors(state), lengths=lengths)
    elif isinstance(model, LanguageModel):
        ids, state, lengths = _args(example, ("ids", "state", "lengths"), "LanguageModel")
        model(_host(ids), _tensors(state), lengths)
    elif isinstance(example, Batch):
        model(example)
    else:
        x, lengths = _args(example, ("x", "lengths"), type(model).__name__)
        xs = _host(x)
        model(Batch(xs, np.zeros(xs.shape[:1], np.int64),
                    None if lengths is None else _host(lengths).astype(np.int64)))


def export(
    model: Module,
    path: str | os.PathLike[str] | None,
    example_input: Any,
    *,
    opset: int = DEFAULT_OPSET,
    softmax: bool = False,
    check: bool = True,
) -> Any:
    """Write ``model`` as an ONNX file at ``path`` (None: only return it); returns the ModelProto.

    model: a ``ts.nn.Recurrent`` with cell "rnn" (tanh/relu), "gru" (either reset_after)
    or "lstm" (variant="standard"), or a LanguageModel, SequenceClassifier,
    SequenceTagger or SequenceRegressor built on one. example_input: the forward's
    arguments (see the module docstring). opset: 18 to 21. softmax: also output
    ``probabilities``. check: run ``onnx.checker`` (with shape inference) on the result.
    Cells ONNX has no operator for raise :class:`UnsupportedError` naming the cell.
    """
    onnx = require("onnx")
    if opset not in OPSETS:
        raise ValueError(f"export: opset must be in {OPSETS.start}..{OPSETS.stop - 1}, got {opset}")
    rec = model if isinstance(model, Recurrent) else getattr(model, "rnn", None)
    builders = (Recurrent, LanguageModel, SequenceClassifier, SequenceTagger)
    if not isinstance(model, builders) or not isinstance(rec, Recurrent):
        raise UnsupportedError(
            f"export: {type(model).__name__} is not exportable; tinyseq.onnx exports "
            "Recurrent, LanguageModel, SequenceClassifier, SequenceTagger and SequenceRegressor"
        )
    if isinstance(model, Recurrent) and softmax:
        raise ValueError("export: softmax=True needs logits; a Recurrent outputs hidden states")
    ex = _Export(model, opset)
    was = model.training
    model.eval()  # the graph is the inference computation: no dropout
    try:
        with no_grad():
            _run_example(model, example_input)
        if isinstance(model, Recurrent):
            _recurrent(ex, model, example_input)
        elif isinstance(model, LanguageModel):
            _language_model(ex, model, example_input, softmax)
        elif isinstance(model, SequenceClassifier):
            _classifier(ex, model, example_input, softmax)
        else:
            _tagger(ex, model, example_input, softmax)
    finally:
        model.train(was)
    proto = ex.g.model(f"tinyseq_{type(model).__name__}", doc=repr(model))
    if check:
        onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto
