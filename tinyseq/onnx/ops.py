"""The ONNX ops :func:`tinyseq.onnx.load` runs, besides RNN/GRU/LSTM (see recurrent_import).

A value is a tinyseq Tensor (the differentiable data path: activations, weights) or a
host NumPy array (ids, lengths, shapes, axes, masks). Every handler takes either: on
arrays alone it computes with NumPy, which is how the shape arithmetic torch.onnx.export
emits (Shape, Gather, Concat, ConstantOfShape, ...) is folded once at load time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import backend
from ..functional import embedding, linear, log_softmax, softmax
from ..tensor import Tensor, concatenate, matmul, relu, sigmoid, tanh, where
from .errors import UnsupportedError, require

__all__ = ["Node", "Value", "HANDLERS", "as_tensor", "as_array"]

Value = Tensor | np.ndarray
Args = Sequence[Any]  # a node's input values in order, None for an omitted one


@dataclass
class Node:
    """One ONNX node as the loader reads it: names, attributes (Python values), origin."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = "<model>"
    opset: int = 18

    @classmethod
    def read(cls, proto: Any, where: str, opset: int, index: int) -> Node:
        onnx = require("onnx")
        attrs = {}
        for a in proto.attribute:
            value = onnx.helper.get_attribute_value(a)
            if isinstance(value, onnx.TensorProto):
                value = onnx.numpy_helper.to_array(value)
            elif isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, list) and value and isinstance(value[0], bytes):
                value = [v.decode() for v in value]
            attrs[a.name] = value
        return cls(proto.name or f"#{index}", proto.op_type, list(proto.input), list(proto.output),
                   attrs, where, opset)

    def describe(self) -> str:
        return f"{self.where}: node {self.name!r} ({self.op})"

    def refuse(self, what: str, why: str) -> UnsupportedError:
        """The error for something of this node tinyseq cannot express (``what``: its name)."""
        return UnsupportedError(f"{self.describe()}: {what} is not supported: {why}")

    def input(self, args: Args, i: int) -> Value | None:
        return args[i] if i < len(args) else None


def as_array(v: Value) -> np.ndarray:
    """The host array of a value (a Tensor's data, copied from its device)."""
    return backend.to_numpy(v.data) if isinstance(v, Tensor) else np.asarray(v)


def as_tensor(v: Value, like: Tensor | None = None) -> Tensor:
    """A value as a Tensor (on ``like``'s device, in its dtype for floats)."""
    if isinstance(v, Tensor):
        return v
    arr = np.asarray(v)
    if like is not None:
        if arr.dtype.kind == "f":
            arr = arr.astype(like.dtype)
        return Tensor(arr if like.device.name == "cpu" else like.device.xp.asarray(arr), device=like.device)
    return Tensor(arr)


def _ints(v: Value | None) -> list[int]:
    return [] if v is None else [int(i) for i in as_array(v).reshape(-1)]


def _axes(node: Node, args: Args, since: int) -> list[int] | None:
    """Axes from the input (opset >= ``since``) or the attribute."""
    if node.opset >= since:
        given = node.input(args, 1)
        return None if given is None else _ints(given)
    return node.attrs.get("axes")


def _pair(args: Args) -> tuple[Tensor, Tensor]:
    a, b = args[0], args[1]
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return as_tensor(a, like), as_tensor(b, like)


def _numeric(fn: Callable[[Any, Any], Any]) -> Callable[[Node, Args], list[Value]]:
    """An element-wise binary op: NumPy on two arrays, tinyseq otherwise."""
    def run(node: Node, args: Args) -> list[Value]:
        a, b = args[0], args[1]
        if not isinstance(a, Tensor) and not isinstance(b, Tensor):
            return [np.asarray(fn(np.asarray(a), np.asarray(b))).astype(np.result_type(a, b))]
        ta, tb = _pair(args)
        return [fn(ta, tb)]
    return run


def _int_div(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray) and a.dtype.kind in "iu":
        return np.trunc(a / b)  # ONNX's integer Div truncates toward zero
    return a / b


def _compare(fn: Callable[[Any, Any], Any]) -> Callable[[Node, Args], list[Value]]:
    def run(node: Node, args: Args) -> list[Value]:
        return [fn(as_array(args[0]), as_array(args[1]))]
    return run


def _unary(fn: Callable[[Tensor], Tensor]) -> Callable[[Node, Args], list[Value]]:
    def run(node: Node, args: Args) -> list[Value]:
        return [fn(as_tensor(args[0]))]
    return run


def _identity(node: Node, args: Args) -> list[Value]:
    return [args[0]]


def _constant(node: Node, args: Args) -> list[Value]:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            dtype = np.float32 if "float" in key else np.int64 if "int" in key else None
            return [np.asarray(node.attrs[key], dtype=dtype)]
    raise node.refuse(f"attribute(s) {sorted(node.attrs)}", "a Constant needs value, value_float(s) or value_int(s)")


def _cast(node: Node, args: Args) -> list[Value]:
    onnx = require("onnx")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(node.attrs["to"])
    x = args[0]
    if isinstance(x, Tensor) and dtype.kind == "f":
        return [x if x.dtype == dtype else x.astype(dtype)]
    return [as_array(x).astype(dtype)]


def _shape(node: Node, args: Args) -> list[Value]:
    dims = np.asarray(args[0].shape, dtype=np.int64)
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    return [dims[start:end]]


def _gather(node: Node, args: Args) -> list[Value]:
    data, idx = args[0], as_array(args[1])
    axis = node.attrs.get("axis", 0)
    n = data.shape[axis]
    idx = np.where(idx < 0, idx + n, idx)
    if not isinstance(data, Tensor):
        return [np.take(data, idx, axis=axis)]
    if axis % data.ndim == 0 and idx.ndim >= 1 and data.ndim == 2:
        return [embedding(idx, data)]  # an embedding lookup: ids (...) -> (..., D)
    return [data[(slice(None),) * (axis % data.ndim) + (idx if idx.ndim else int(idx),)]]


def _unsqueeze(node: Node, args: Args) -> list[Value]:
    x = args[0]
    axes = _axes(node, args, 13) or []
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis) if isinstance(x, Tensor) else np.expand_dims(x, axis)
    return [x]


def _squeeze(node: Node, args: Args) -> list[Value]:
    x = args[0]
    axes = _axes(node, args, 13)
    ndim = x.ndim
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    for axis in sorted((a % ndim for a in axes), reverse=True):
        x = x.squeeze(axis) if isinstance(x, Tensor) else np.squeeze(x, axis)
    return [x]


def _reshape(node: Node, args: Args) -> list[Value]:
    x = args[0]
    shape = _ints(args[1])
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(*shape) if isinstance(x, Tensor) else np.reshape(x, shape)]


def _transpose(node: Node, args: Args) -> list[Value]:
    x = args[0]
    perm = node.attrs.get("perm") or list(range(x.ndim))[::-1]
    return [x.transpose(*perm) if isinstance(x, Tensor) else np.transpose(x, perm)]


def _concat(node: Node, args: Args) -> list[Value]:
    parts = [a for a in args if a is not None]
    axis = node.attrs["axis"]
    like = next((p for p in parts if isinstance(p, Tensor)), None)
    if like is None:
        return [np.concatenate([np.asarray(p) for p in parts], axis=axis)]
    return [concatenate([as_tensor(p, like) for p in parts], axis)]


def _bound(v: int, dim: int, step: int) -> int:
    """ONNX Slice's clamping of one start/end."""
    if v < 0:
        v += dim
    return min(max(v, 0), dim) if step > 0 else min(max(v, -1), dim - 1)


def _slice(node: Node, args: Args) -> list[Value]:
    x = args[0]
    if node.opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes, steps = node.attrs.get("axes"), None
    else:
        starts, ends = _ints(args[1]), _ints(args[2])
        axes = _ints(node.input(args, 3)) or None
        steps = _ints(node.input(args, 4)) or None
    ndim = x.ndim
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    index: list[Any] = [slice(None)] * ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        dim = x.shape[a % ndim]
        lo, hi = _bound(s, dim, st), _bound(e, dim, st)
        index[a % ndim] = slice(lo, None if (st < 0 and hi < 0) else hi, st)
    return [x[tuple(index)]]


def _constant_of_shape(node: Node, args: Args) -> list[Value]:
    value = node.attrs.get("value", np.zeros(1, dtype=np.float32))
    return [np.full(_ints(args[0]), np.asarray(value).reshape(-1)[0], dtype=np.asarray(value).dtype)]


def _expand(node: Node, args: Args) -> list[Value]:
    x, shape = args[0], _ints(args[1])
    target = np.broadcast_shapes(tuple(x.shape), tuple(shape))
    if not isinstance(x, Tensor):
        return [np.broadcast_to(x, target).copy()]
    return [x + as_tensor(np.zeros(target, dtype=x.dtype), x)]


def _range(node: Node, args: Args) -> list[Value]:
    start, limit, delta = (as_array(a).reshape(()) for a in args)
    return [np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)]


def _where(node: Node, args: Args) -> list[Value]:
    cond, a, b = as_array(args[0]).astype(bool), args[1], args[2]
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return [np.asarray(np.where(cond, np.asarray(a), np.asarray(b)))]
    ta, tb = _pair([a, b])
    return [where(cond, ta, tb)]


def _reduce(kind: str) -> Callable[[Node, Args], list[Value]]:
    since = 13 if kind == "sum" else 18  # when axes became an input

    def run(node: Node, args: Args) -> list[Value]:
        x = args[0]
        axes = _axes(node, args, since)
        keep = bool(node.attrs.get("keepdims", 1))
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.ndim))
        axis = tuple(a % x.ndim for a in axes)
        if isinstance(x, Tensor):
            return [getattr(x, kind)(axis=axis, keepdims=keep)]
        return [getattr(np, kind)(x, axis=axis, keepdims=keep)]
    return run


def _gemm(node: Node, args: Args) -> list[Value]:
    a, b = _pair(args)
    c = node.input(args, 2)
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    trans_a, trans_b = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    bias = None if c is None else as_tensor(c, a)
    if not trans_a and trans_b and alpha == 1.0 and beta == 1.0 and (bias is None or bias.ndim == 1):
        return [linear(a, b, bias)]  # x W^T + b, one node (a Linear layer)
    y = matmul(a.T if trans_a else a, b.T if trans_b else b)
    if alpha != 1.0:
        y = y * alpha
    if bias is not None:
        y = y + (bias * beta if beta != 1.0 else bias)
    return [y]


def _matmul(node: Node, args: Args) -> list[Value]:
    a, b = args[0], args[1]
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return [np.matmul(a, b)]
    ta, tb = _pair(args)
    return [matmul(ta, tb)]


def _softmax(log: bool) -> Callable[[Node, Args], list[Value]]:
    def run(node: Node, args: Args) -> list[Value]:
        x = as_tensor(args[0])
        axis = node.attrs.get("axis", -1 if node.opset >= 13 else 1)
        if node.opset < 13 and axis % x.ndim != x.ndim - 1:
            # before opset 13 the input was flattened to 2-D at axis: only the last axis agrees
            raise node.refuse(f"attribute axis={axis}", "before opset 13, only the last axis")
        return [(log_softmax if log else softmax)(x, axis)]
    return run


HANDLERS: dict[str, Callable[[Node, Args], list[Value]]] = {
    "Identity": _identity,
    "Constant": _constant,
    "Cast": _cast,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Concat": _concat,
    "Slice": _slice,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Range": _range,
    "Less": _compare(np.less),
    "Greater": _compare(np.greater),
    "Equal": _compare(np.equal),
    "Where": _where,
    "Add": _numeric(lambda a, b: a + b),
    "Sub": _numeric(lambda a, b: a - b),
    "Mul": _numeric(lambda a, b: a * b),
    "Div": _numeric(_int_div),
    "ReduceSum": _reduce("sum"),
    "ReduceMean": _reduce("mean"),
    "ReduceMax": _reduce("max"),
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Softmax": _softmax(False),
    "LogSoftmax": _softmax(True),
    "Tanh": _unary(tanh),
    "Sigmoid": _unary(sigmoid),
    "Relu": _unary(relu),
}
