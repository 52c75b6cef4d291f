"""Import ONNX graphs as tinyseq modules.

    module = tinyseq.onnx.load("model.onnx")
    y, h_n, c_n = module(x, lengths)        # the graph's inputs in order, its outputs

Supported: RNN, GRU and LSTM nodes (any direction, layout 0 or 1, initial states,
sequence_lens; see :mod:`tinyseq.onnx.recurrent_import`), Gather (embeddings), Gemm,
MatMul, Add/Sub/Mul/Div, Softmax/LogSoftmax, Tanh/Sigmoid/Relu, ReduceSum/Mean/Max,
Where, and the shape plumbing torch.onnx.export emits between stacked layers
(Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Reshape, Transpose, ConstantOfShape,
Expand, Cast, Range, Less, Constant, Identity). Float initializers feeding Gemm, MatMul,
Add and Gather become parameters, so the module can be trained further. Any other op,
domain or unsupported attribute raises :class:`UnsupportedError` naming the node.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..nn.module import Module, Parameter
from ..tensor import Tensor
from .errors import UnsupportedError, require
from .ops import HANDLERS, Node, Value, as_array, as_tensor
from .recurrent_import import RECURRENT_OPS, OnnxRecurrent

__all__ = ["load", "OnnxModule"]

_PARAMETER_OPS = {"Gemm": (0, 1, 2), "MatMul": (0, 1), "Add": (0, 1), "Gather": (0,)}


def _opset(proto: Any, where: str) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise UnsupportedError(f"{where}: the model imports no default-domain opset")


class OnnxModule(Module):
    """An ONNX graph run with tinyseq ops: ``forward(*inputs)`` in the graph's input order.

    Inputs are arrays or Tensors (float ones become Tensors; ids, lengths and other
    integers stay host arrays). Returns the output Tensor, or a tuple when the graph
    has several. ``input_names`` / ``output_names`` say which is which.
    """

    def __init__(self, proto: Any, where: str = "<model>") -> None:
        super().__init__()
        onnx = require("onnx")
        graph = proto.graph
        opset = _opset(proto, where)
        consts: dict[str, np.ndarray] = {
            t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer
        }
        self.input_names = [i.name for i in graph.input if i.name not in consts]
        self.output_names = [o.name for o in graph.output]
        self._steps: list[tuple[Node, OnnxRecurrent | None]] = []
        for index, proto_node in enumerate(graph.node):
            node = Node.read(proto_node, where, opset, index)
            if proto_node.domain not in ("", "ai.onnx"):
                raise node.refuse(f"domain {proto_node.domain!r}", "only the default ONNX domain")
            if node.op in RECURRENT_OPS:
                self._steps.append((node, self._recurrent(node, consts, len(self._steps))))
            elif node.op not in HANDLERS:
                raise node.refuse(f"op {node.op!r}", "tinyseq.onnx.load has no implementation "
                                  f"of it (it reads {', '.join(sorted({*HANDLERS, *RECURRENT_OPS}))})")
            elif all(i == "" or i in consts for i in node.inputs):  # fold constants once
                outs = self._call(node, [consts[i] if i else None for i in node.inputs])
                consts.update((n, as_array(v)) for n, v in zip(node.outputs, outs) if n)
            else:
                self._steps.append((node, None))
        self._consts = consts
        self._parameter_of: dict[str, str] = {}
        for node, _ in self._steps:
            for i in _PARAMETER_OPS.get(node.op, ()):
                name = node.inputs[i] if i < len(node.inputs) else ""
                value = consts.get(name)
                if value is None or value.dtype.kind != "f" or value.ndim == 0 or name in self._parameter_of:
                    continue
                attr = self._unique(re.sub(r"\W", "_", name).strip("_") or "param")
                self.register_parameter(attr, Parameter(Tensor(value.copy())))
                self._parameter_of[name] = attr

    def _unique(self, stem: str) -> str:
        name, k = stem, 0
        while name in self._parameters or name in self._modules or hasattr(self, name):
            k += 1
            name = f"{stem}_{k}"
        return name

    def _recurrent(self, node: Node, consts: dict[str, np.ndarray], k: int) -> OnnxRecurrent:
        names = node.inputs + [""] * (8 - len(node.inputs))
        for i, role in ((1, "W"), (2, "R"), (3, "B")):
            if names[i] and names[i] not in consts:
                raise node.refuse(f"input {role} ({names[i]!r}) computed at run time",
                                  "the weights must be initializers or constants")
        if node.op == "LSTM" and names[7]:
            raise node.refuse(f"input P ({names[7]!r}, peepholes)", "tinyseq's LSTM has no peepholes")
        b = consts[names[3]] if names[3] else None
        module = OnnxRecurrent(node, consts[names[1]], consts[names[2]], b)
        setattr(self, self._unique(re.sub(r"\W", "_", node.name).strip("_") or f"rnn{k}"), module)
        return module

    @staticmethod
    def _call(node: Node, args: list[Value | None]) -> list[Value]:
        try:
            return HANDLERS[node.op](node, args)
        except UnsupportedError:
            raise
        except (ValueError, TypeError, IndexError, KeyError) as err:
            raise ValueError(f"{node.describe()}: {err}") from err

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"this ONNX graph takes {len(self.input_names)} inputs "
                            f"{tuple(self.input_names)}, got {len(inputs)}")
        env: dict[str, Value] = dict(self._consts)
        for name, attr in self._parameter_of.items():
            env[name] = getattr(self, attr)
        for name, value in zip(self.input_names, inputs):
            if isinstance(value, Tensor):
                env[name] = value if value.dtype.kind == "f" else as_array(value)
            else:
                arr = np.asarray(value)
                env[name] = Tensor(arr) if arr.dtype.kind == "f" else arr
        for node, recurrent in self._steps:
            args = [env[i] if i else None for i in node.inputs]
            if recurrent is not None:
                padded = args + [None] * (7 - len(args))
                outs: list[Value] = list(recurrent.run(padded[0], padded[4], padded[5], padded[6]))  # type: ignore[arg-type]
            else:
                outs = self._call(node, args)
            env.update((n, v) for n, v in zip(node.outputs, outs) if n)
        results = [as_tensor(env[name]) for name in self.output_names]
        return results[0] if len(results) == 1 else tuple(results)

    def extra_repr(self) -> str:
        return f"inputs={self.input_names}, outputs={self.output_names}"


def load(source: str | os.PathLike[str] | bytes | Any) -> OnnxModule:
    """The ONNX model at ``source`` (a path, serialized bytes or a ModelProto) as a tinyseq Module."""
    onnx = require("onnx")
    if isinstance(source, onnx.ModelProto):
        return OnnxModule(source)
    if isinstance(source, (bytes, bytearray)):
        return OnnxModule(onnx.load_from_string(bytes(source)))
    where = os.fspath(source)
    return OnnxModule(onnx.load(where), where)
