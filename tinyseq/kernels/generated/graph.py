"""The op graph of one traced recurrent step (what the generators print).

Every value is a per-step block: a node of ``width`` w is a (B, w) array (or (w, B)
in the features x batch layout). Leaves: ``state`` (component k of the state read by the step),
``xin`` (this step's row of the hoisted input projection, or of x), ``param`` (a
parameter used element-wise: a (w,) vector broadcast over the batch), ``const`` (a
number). Inner nodes: ``gemm`` (W @ a: the state, or any value, times a weight),
``slice`` (rows lo:hi, e.g. a gate block of ``chunk``) and the element-wise ops in
:data:`UNARY` and :data:`BINARY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "Graph", "UNARY", "BINARY", "LEAVES"]

UNARY = ("neg", "sigmoid", "tanh", "relu", "exp", "log")
BINARY = ("add", "sub", "mul", "div")
LEAVES = ("state", "xin", "param", "const")


@dataclass
class Node:
    """One op: ``args`` are node ids; ``attrs`` hold the op's fixed data.

    state: index k. param: name, lo, hi (rows of a 2-D parameter or entries of a 1-D
    one; a 2-D row range of length 1 is one row). const: value. slice: lo, hi.
    gemm: name, lo, hi (weight rows), transposed (a @ W instead of a @ W.T).
    ``where`` is the step's ``file:line`` that made the node.
    """

    id: int
    op: str
    args: tuple[int, ...]
    width: int
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    @property
    def batched(self) -> bool:
        return self.op not in ("param", "const")


@dataclass
class Graph:
    """A traced step: nodes in topological order, the output and the new state ids."""

    nodes: list[Node]
    n_states: int
    hidden: int
    xin_width: int
    output: int = -1
    new_states: tuple[int, ...] = ()
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def uses(self) -> dict[int, list[int]]:
        """Consumers of each node (the step's outputs count as uses too, as -1)."""
        out: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for a in n.args:
                out[a].append(n.id)
        for s in (self.output, *self.new_states):
            out[s].append(-1)
        return out

    def params(self) -> list[str]:
        """Names of the parameters the step reads, in first-use order."""
        names: list[str] = []
        for n in self.nodes:
            name = n.attrs.get("name") if n.op in ("param", "gemm") else None
            if name is not None and name not in names:
                names.append(name)
        return names

    def describe(self) -> str:
        """One line per node, e.g. ``n5 = sigmoid(n4)  [H=4]  cell.py:12``."""
        lines = []
        for n in self.nodes:
            args = ", ".join(f"n{a}" for a in n.args)
            extra = ", ".join(f"{k}={v}" for k, v in n.attrs.items())
            body = f"{n.op}({', '.join(x for x in (args, extra) if x)})"
            lines.append(f"n{n.id} = {body}  [w={n.width}]  {n.where}")
        states = ", ".join(f"n{s}" for s in self.new_states)
        lines.append(f"return n{self.output}, ({states})")
        return "\n".join(lines)
