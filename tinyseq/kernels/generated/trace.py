"""Tracing: run a cell's ``step`` once on stand-in tensors that record a :class:`Graph`.

The step runs as written, with its module's names for tinyseq's ops (``ts.sigmoid``,
``chunk``, ``linear``, ...) swapped for recording versions, so no cell needs changing.
An op the generator does not know raises :class:`Unsupported` naming the op and the
step's ``file:line``; the caller then runs the step path.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import tinyseq
from tinyseq import cell as cell_module
from tinyseq import functional
from tinyseq.tensor import Tensor

from .graph import BINARY, Graph, Node

__all__ = ["Unsupported", "trace_step", "Sym"]

tensor = sys.modules["tinyseq.tensor"]  # the module (tinyseq.tensor is also a function)

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE = os.path.dirname(os.path.dirname(_HERE))  # tinyseq/


class Unsupported(Exception):
    """The step uses something the generator cannot fuse: ``op`` at ``where``."""

    def __init__(self, op: str, where: str, why: str = "") -> None:
        super().__init__(f"not fused: `{op}` at `{where}`" + (f" ({why})" if why else ""))
        self.op, self.where, self.why = op, where, why


def _user_frame() -> str:
    """``file:line`` of the innermost frame outside tinyseq's own package (the step)."""
    f = sys._getframe(1)
    while f is not None:
        path = os.path.abspath(f.f_code.co_filename)
        if not path.startswith(_PACKAGE + os.sep):
            return f"{os.path.basename(path)}:{f.f_lineno}"
        f = f.f_back  # type: ignore[assignment]
    return "?"


def _op_frame() -> str:
    """Name of the innermost tinyseq function outside this package (the op being called)."""
    f = sys._getframe(1)
    while f is not None:
        path = os.path.abspath(f.f_code.co_filename)
        if not path.startswith(_HERE):
            return f.f_code.co_name
        f = f.f_back  # type: ignore[assignment]
    return "?"


class _Recorder:
    """The graph under construction."""

    def __init__(self, cell: Any) -> None:
        self.nodes: list[Node] = []
        self.param_names = {id(p): name for name, p in cell.named_parameters()}
        self.param_shapes = {name: tuple(p.shape) for name, p in cell.named_parameters()}
        self.consts: dict[float, int] = {}
        self.param_nodes: dict[tuple[str, int, int], int] = {}

    def add(self, op: str, args: Sequence[int], width: int, **attrs: Any) -> Sym:
        node = Node(len(self.nodes), op, tuple(args), width, dict(attrs), _user_frame())
        self.nodes.append(node)
        return Sym(self, node.id)

    # operands ------------------------------------------------------------------------
    def param_ref(self, t: Tensor) -> ParamRef:
        name = self.param_names.get(id(t))
        if name is None:
            raise Unsupported("a tensor that is not one of the cell's parameters", _user_frame())
        rows = self.param_shapes[name][0]
        return ParamRef(self, name, 0, rows)

    def operand(self, v: Any) -> int:
        """Node id for a Sym, a number (const) or a parameter (used element-wise)."""
        if isinstance(v, Sym):
            return v.node
        if isinstance(v, ParamRef):
            return v.as_vector()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if isinstance(v, Tensor):
                return self.param_ref(v).as_vector()
            raise Unsupported(f"operand of type {type(v).__name__}", _user_frame())
        key = float(v)
        if key not in self.consts:
            self.consts[key] = self.add("const", (), 0, value=key).node
        return self.consts[key]

    def width(self, i: int) -> int:
        return self.nodes[i].width

    def binary(self, op: str, a: Any, b: Any) -> Sym:
        ia, ib = self.operand(a), self.operand(b)
        na, nb = self.nodes[ia], self.nodes[ib]
        if not (na.batched or nb.batched):
            raise Unsupported(f"{op} of parameters or constants alone", _user_frame(),
                              "compute it outside the step")
        widths = {n.width for n in (na, nb) if n.op != "const"}
        if len(widths) != 1:
            raise Unsupported(f"{op} of widths {sorted(widths)}", _user_frame(), "no broadcasting")
        return self.add(op, (ia, ib), widths.pop())

    def unary(self, op: str, a: Any) -> Sym:
        ia = self.operand(a)
        if not self.nodes[ia].batched:
            raise Unsupported(f"{op} of a parameter", _user_frame(), "compute it outside the step")
        return self.add(op, (ia,), self.width(ia))


class _Operators:
    """The arithmetic a step writes, recorded as graph nodes (shared by parameters and values)."""

    rec: _Recorder

    def __add__(self, o: Any) -> Sym:
        return self.rec.binary("add", self, o)

    def __radd__(self, o: Any) -> Sym:
        return self.rec.binary("add", o, self)

    def __sub__(self, o: Any) -> Sym:
        return self.rec.binary("sub", self, o)

    def __rsub__(self, o: Any) -> Sym:
        return self.rec.binary("sub", o, self)

    def __mul__(self, o: Any) -> Sym:
        return self.rec.binary("mul", self, o)

    def __rmul__(self, o: Any) -> Sym:
        return self.rec.binary("mul", o, self)

    def __truediv__(self, o: Any) -> Sym:
        return self.rec.binary("div", self, o)

    def __rtruediv__(self, o: Any) -> Sym:
        return self.rec.binary("div", o, self)


class ParamRef(_Operators):
    """Rows lo:hi of a parameter (all of it, or a ``chunk`` along axis 0)."""

    def __init__(self, rec: _Recorder, name: str, lo: int, hi: int) -> None:
        self.rec, self.name, self.lo, self.hi = rec, name, lo, hi

    @property
    def shape(self) -> tuple[int, ...]:
        full = self.rec.param_shapes[self.name]
        return (self.hi - self.lo, *full[1:])

    def as_vector(self) -> int:
        """The node of this parameter used element-wise: a (w,) vector over features."""
        full = self.rec.param_shapes[self.name]
        if len(full) == 2 and self.hi - self.lo != 1:
            raise Unsupported(f"parameter {self.name!r} of shape {self.shape} used element-wise",
                              _user_frame(), "only vectors and single rows broadcast")
        if len(full) > 2:
            raise Unsupported(f"parameter {self.name!r} of shape {full}", _user_frame())
        width = full[1] if len(full) == 2 else self.hi - self.lo
        key = (self.name, self.lo, self.hi)
        if key not in self.rec.param_nodes:
            self.rec.param_nodes[key] = self.rec.add(
                "param", (), width, name=self.name, lo=self.lo, hi=self.hi).node
        return self.rec.param_nodes[key]


class Sym(_Operators, Tensor):
    """A recorded (B, width) value of the step. A Tensor subclass, so that ``param * sym``
    reaches :meth:`__rmul__` before Tensor's own operator."""

    def __init__(self, rec: _Recorder, node: int) -> None:  # no Tensor.__init__: no data
        object.__setattr__(self, "rec", rec)
        object.__setattr__(self, "_node", node)

    def __getattr__(self, name: str) -> Any:  # .data and the like: a real op got a Sym
        raise Unsupported(_op_frame(), _user_frame(), "not among the traced ops")

    @property
    def node(self) -> int:
        return self.__dict__["_node"]  # type: ignore[no-any-return]

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, self.rec.width(self.node))

    @property
    def ndim(self) -> int:
        return 2

    def __bool__(self) -> bool:
        raise Unsupported("bool() of a traced value", _user_frame(), "data-dependent control flow")


    def __neg__(self) -> Sym:
        return self.rec.unary("neg", self)

    def __matmul__(self, w: Any) -> Sym:
        return _gemm(self.rec, self, w, transposed=True)

    def __pow__(self, e: Any) -> Sym:
        raise Unsupported("pow", _user_frame())

    def __getitem__(self, i: Any) -> Sym:
        raise Unsupported("indexing", _user_frame(), "use chunk")

    def sigmoid(self) -> Sym:
        return self.rec.unary("sigmoid", self)

    def tanh(self) -> Sym:
        return self.rec.unary("tanh", self)

    def relu(self) -> Sym:
        return self.rec.unary("relu", self)

    def exp(self) -> Sym:
        return self.rec.unary("exp", self)

    def log(self) -> Sym:
        return self.rec.unary("log", self)


def _gemm(rec: _Recorder, a: Any, w: Any, transposed: bool = False) -> Sym:
    if not isinstance(a, Sym):
        raise Unsupported("a product whose input is not a step value", _user_frame())
    ref = w if isinstance(w, ParamRef) else rec.param_ref(w) if isinstance(w, Tensor) else None
    if ref is None or len(rec.param_shapes[ref.name]) != 2:
        raise Unsupported("a product with something other than a 2-D parameter", _user_frame())
    if transposed and (ref.lo, ref.hi) != (0, rec.param_shapes[ref.name][0]):
        raise Unsupported("a product with rows of a transposed weight", _user_frame())
    rows, cols = ref.shape
    k, out = (rows, cols) if transposed else (cols, rows)
    if rec.width(a.node) != k:
        raise Unsupported(f"a product of width {rec.width(a.node)} with {ref.shape}", _user_frame())
    return rec.add("gemm", (a.node,), out, name=ref.name, lo=ref.lo, hi=ref.hi,
                   transposed=transposed)


def _stand_ins(rec: _Recorder) -> dict[int, Callable[..., Any]]:
    """id(real function) -> its recording version."""

    def linear(x: Any, weight: Any, bias: Any = None) -> Sym:
        out = _gemm(rec, x, weight)
        return out if bias is None else rec.binary("add", out, bias)

    def matmul(a: Any, b: Any) -> Sym:
        return _gemm(rec, a, b, transposed=True)

    def chunk(x: Any, sections: Any, axis: int = -1) -> list[Any]:
        if isinstance(x, Tensor) and not isinstance(x, Sym):
            x = rec.param_ref(x)
        n = x.shape[axis]
        bounds = (list(range(0, n + 1, n // sections)) if isinstance(sections, int)
                  else [0, *[int(i) for i in sections], n])
        pairs = list(zip(bounds[:-1], bounds[1:]))
        if isinstance(x, ParamRef):
            if axis % len(x.shape) != 0:
                # a 1-D parameter is split along its only axis; a 2-D one by rows only
                if len(x.shape) != 1:
                    raise Unsupported("chunk of a parameter along axis 1", _user_frame())
            return [ParamRef(rec, x.name, x.lo + lo, x.lo + hi) for lo, hi in pairs]
        if axis % 2 != 1:
            raise Unsupported("chunk of a step value along the batch", _user_frame())
        return [rec.add("slice", (x.node,), hi - lo, lo=lo, hi=hi) for lo, hi in pairs]

    def unary(op: str) -> Callable[[Any], Sym]:
        return lambda a: rec.unary(op, a)

    def binary(op: str) -> Callable[[Any, Any], Sym]:
        return lambda a, b: rec.binary(op, a, b)

    table: dict[int, Callable[..., Any]] = {
        id(functional.linear): linear,
        id(cell_module.linear): linear,
        id(cell_module.chunk): chunk,
        id(tensor.matmul): matmul,
    }
    for op in ("sigmoid", "tanh", "relu", "exp", "log", "neg"):
        table[id(getattr(tensor, op))] = unary(op)
    for op in BINARY:
        table[id(getattr(tensor, op))] = binary(op)
    return table


class _ModuleProxy(types.ModuleType):
    """``ts`` / ``tinyseq`` inside the traced step: known ops record, other ops refuse."""

    def __init__(self, real: types.ModuleType, table: dict[int, Callable[..., Any]]) -> None:
        super().__init__(real.__name__)
        self._real, self._table = real, table

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._real, name)
        return _substitute(value, self._table, name)


def _substitute(value: Any, table: dict[int, Callable[..., Any]], name: str) -> Any:
    if id(value) in table:
        return table[id(value)]
    if isinstance(value, types.ModuleType) and value.__name__.startswith("tinyseq"):
        return _ModuleProxy(value, table)
    if isinstance(value, types.FunctionType) and value.__module__.startswith("tinyseq"):

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise Unsupported(name, _user_frame())

        return refuse
    return value


def trace_step(cell: Any, xin_width: int | None = None) -> Graph:
    """The graph of ``cell.step`` (raises :class:`Unsupported`).

    xin_width: features of each step's input (the projection's, or x's); None finds
    it by projecting one zero step.
    """
    rec = _Recorder(cell)
    table = _stand_ins(rec)
    step = type(cell).step
    if not isinstance(step, types.FunctionType):
        raise Unsupported("step", "?", "not a plain function")
    env = {k: _substitute(v, table, k) for k, v in step.__globals__.items()}
    env["__builtins__"] = step.__globals__.get("__builtins__", __builtins__)
    traced = types.FunctionType(step.__code__, env, step.__name__, step.__defaults__,
                                step.__closure__)
    H = cell.hidden_size
    n_states = len(cell.state_names)
    states = tuple(rec.add("state", (), H, k=k) for k in range(n_states))
    if xin_width is None:
        xin_width = _projection_width(cell)
    width = xin_width
    xin = rec.add("xin", (), width)
    for leaf in rec.nodes:
        leaf.where = "step input"
    try:
        with _parameter_operators():
            result = traced(cell, xin, states)
    except Unsupported:
        raise
    except Exception as err:  # anything else the stand-ins could not take
        raise Unsupported(_op_frame_of(err), _where_of(err), f"{type(err).__name__}: {err}") from err
    try:
        out, new = result
        new = tuple(new)
    except (TypeError, ValueError):
        raise Unsupported("step's return value", "?", "expected (output, state)") from None
    if len(new) != n_states:
        raise Unsupported("step's return value", "?", f"{len(new)} state tensors, expected {n_states}")
    ids = []
    for v in (out, *new):
        if not isinstance(v, Sym):
            raise Unsupported("a returned value that is not computed from the step's inputs", "?")
        if rec.width(v.node) != (cell.output_size if v is out else H):
            raise Unsupported("a returned value of the wrong width", rec.nodes[v.node].where)
        ids.append(v.node)
    return Graph(rec.nodes, n_states, H, width, ids[0], tuple(ids[1:]), rec.param_shapes)


def _projection_width(cell: Any) -> int:
    import numpy as np

    probe = tinyseq.Tensor(np.zeros((1, 1, cell.input_size), dtype=_dtype_of(cell)))
    with tinyseq.no_grad():
        projected = cell.input_projection(probe.to(cell.device))
    return int(cell.input_size if projected is None else projected.shape[-1])


_REFLECTED = {"__add__": "__radd__", "__radd__": "__add__", "__sub__": "__rsub__",
              "__rsub__": "__sub__", "__mul__": "__rmul__", "__rmul__": "__mul__",
              "__truediv__": "__rtruediv__"}


@contextlib.contextmanager
def _parameter_operators() -> Iterator[None]:
    """``param * sym``: a Parameter is not a Sym's base class, so Python would call
    Tensor's operator first; while tracing, Tensor's operators hand a Sym over."""
    saved = {name: Tensor.__dict__[name] for name in _REFLECTED if name in Tensor.__dict__}

    def handing(name: str, real: Any) -> Any:
        def op(self: Any, other: Any) -> Any:
            if isinstance(other, Sym):
                return getattr(Sym, _REFLECTED[name])(other, self)
            return real(self, other)

        return op

    try:
        for name, real in saved.items():
            setattr(Tensor, name, handing(name, real))
        yield
    finally:
        for name, real in saved.items():
            setattr(Tensor, name, real)


def _dtype_of(cell: Any) -> Any:
    first = next(cell.parameters(), None)
    return first.dtype if first is not None else tinyseq.get_default_dtype()


def _where_of(err: BaseException) -> str:
    tb = err.__traceback__
    where = "?"
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not path.startswith(_PACKAGE + os.sep):
            where = f"{os.path.basename(path)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _op_frame_of(err: BaseException) -> str:
    tb = err.__traceback__
    name = type(err).__name__
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if path.startswith(_PACKAGE + os.sep) and not path.startswith(_HERE):
            return tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return name
