"""Kernels generated from a cell's own ``step``: trace once, print NumPy (and CUDA) code.

- :mod:`.trace`: run ``step`` on stand-in tensors that record a :class:`.graph.Graph`.
- :mod:`.graph`: the step as products, gate slices and element-wise ops.
- :mod:`.codegen_numpy`: the forward and backward time loops as NumPy ``out=`` code.
- :mod:`.codegen_cuda`: the step's element-wise part as one CUDA ElementwiseKernel
  each way; :mod:`.cuda_loops` runs them (tested against the NumPy code through a host
  build of the same source).
- :mod:`.runner`: those loops over a whole sequence as one autograd node; the recurrent
  layer uses it for any cell without a ``fused_sequence`` of its own.
"""

from __future__ import annotations

from .graph import Graph, Node
from .runner import (
    Compiled,
    compile_cell,
    explain,
    generated_enabled,
    prefer_generated,
    run,
    use_generated,
)
from .trace import Unsupported, trace_step

__all__ = [
    "Graph",
    "Node",
    "Compiled",
    "Unsupported",
    "compile_cell",
    "explain",
    "generated_enabled",
    "prefer_generated",
    "run",
    "trace_step",
    "use_generated",
]
