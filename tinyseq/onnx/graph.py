"""A small ONNX graph builder: named inputs, initializers, nodes and outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import require

__all__ = ["GraphBuilder", "Dim"]

Dim = int | str  # a fixed size or a symbolic one ("batch", "time")


class GraphBuilder:
    """Collects an ONNX graph; :meth:`model` makes the ModelProto.

    Node outputs get unique names from the op type unless given; initializers are
    named by the caller (e.g. after the tinyseq parameter they hold).
    """

    def __init__(self, opset: int) -> None:
        self.onnx = require("onnx")
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self._names: set[str] = set()
        self._count = 0

    def _fresh(self, stem: str) -> str:
        name = stem
        while name in self._names:
            self._count += 1
            name = f"{stem}_{self._count}"
        self._names.add(name)
        return name

    def elem(self, dtype: Any) -> int:
        """ONNX's element type code for a NumPy dtype."""
        return int(self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))

    def input(self, name: str, dtype: Any, shape: Sequence[Dim]) -> str:
        """Declare a graph input of ``dtype`` and ``shape`` (ints or symbolic names)."""
        self._names.add(name)
        self.inputs.append(self.onnx.helper.make_tensor_value_info(name, self.elem(dtype), list(shape)))
        return name

    def output(self, value: str, name: str, dtype: Any, shape: Sequence[Dim]) -> None:
        """Expose ``value`` as graph output ``name`` (renamed through Identity if needed)."""
        if value != name:
            self.node("Identity", [value], outputs=[name])
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, self.elem(dtype), list(shape)))

    def const(self, value: Any, name: str = "const", dtype: Any = None) -> str:
        """An initializer holding ``value`` (an array or a Python scalar/list)."""
        arr = np.asarray(value, dtype=dtype)
        unique = self._fresh(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr.copy(order="C"), unique))  # 0-d stays 0-d
        return unique

    def ints(self, values: Sequence[int], name: str = "ints") -> str:
        """An int64 1-D initializer (shapes, axes, slice bounds)."""
        return self.const(np.asarray(list(values), dtype=np.int64), name)

    def node(self, op: str, inputs: Sequence[str], n_outputs: int = 1,
             outputs: Sequence[str] | None = None, **attrs: Any) -> list[str]:
        """Append an ``op`` node; returns its output names."""
        while inputs and inputs[-1] == "":  # omitted trailing optional inputs
            inputs = inputs[:-1]
        if outputs is None:
            outputs = [self._fresh(f"{op}_out{i}" if n_outputs > 1 else op) for i in range(n_outputs)]
        else:
            self._names.update(outputs)
        name = self._fresh(f"node_{op}")
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), list(outputs), name=name, **attrs))
        return list(outputs)

    def op(self, op: str, *inputs: str, **attrs: Any) -> str:
        """A single-output node: its output name."""
        return self.node(op, list(inputs), **attrs)[0]

    def model(self, graph_name: str, doc: str = "") -> Any:
        """The ModelProto (default domain at ``opset``), producer tinyseq."""
        from .. import __version__

        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.initializers,
                                  doc_string=doc)
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="tinyseq",
                                  producer_version=__version__)
        # the oldest IR version the opset allows, so that older runtimes read the file too
        model.ir_version = helper.find_min_ir_version_for(opsets)
        return model
