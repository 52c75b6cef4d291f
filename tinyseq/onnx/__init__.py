"""ONNX export and import (needs the optional ``onnx`` package: ``pip install tinyseq[onnx]``).

    tinyseq.onnx.export(model, "model.onnx", example_input)   # RNN/GRU/LSTM ops, embeddings, heads
    module = tinyseq.onnx.load("model.onnx")                  # a tinyseq Module
    outputs = module(*inputs)                                 # the graph's inputs, in order

See :mod:`tinyseq.onnx.export` and :mod:`tinyseq.onnx.load` for what is supported;
anything else raises :class:`UnsupportedError` naming the cell, node, op or attribute.
"""

from .errors import UnsupportedError
from .export import DEFAULT_OPSET, export
from .load import OnnxModule, load

__all__ = ["export", "load", "OnnxModule", "UnsupportedError", "DEFAULT_OPSET"]
