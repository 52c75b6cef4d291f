"""Tensor and reverse-mode autograd: each op's backward sits right below its forward.

A :class:`Tensor` wraps one array (NumPy, CuPy or the test device's) and, when it was
computed from tensors that require gradients, a context ``(backward, parents)``.
``backward(g)`` maps the gradient of the output to one gradient per parent.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Union

import numpy as np

from . import backend
from .backend import Device

__all__ = [
    "Tensor",
    "tensor",
    "as_tensor",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
]

Array = Any  # an ndarray of the tensor's device (numpy, cupy or the test device)
Operand = Union["Tensor", int, float]  # noqa: UP007 (a runtime alias)
Backward = Callable[[Array], Sequence[Array | None]]


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """Whether new operations record a graph for backward."""
    return _GradMode.enabled


class _BackwardPass:
    retain_graph = False  # that of the backward pass running now
    # gradients that a backward made fresh and keeps no reference to (a fused kernel's
    # weight gradients), by id, held until the pass ends so that no id is reused: the first
    # leaf to receive one takes it as its .grad without the defensive copy
    fresh: dict[int, Any] = {}


def graph_is_retained() -> bool:
    """Inside a backward function: whether this pass keeps the graph (retain_graph=True).

    When it does not, the node is never run again, so a backward function may hand
    its saved buffers back to a scratch pool for reuse.
    """
    return _BackwardPass.retain_graph


class _GradModeContext(contextlib.ContextDecorator):
    """Sets the recording mode on entry and restores the previous one on exit."""

    def __init__(self, mode: bool) -> None:
        self.mode = mode
        self.prev: list[bool] = []  # a stack: the same object may be entered re-entrantly

    def __enter__(self) -> None:
        self.prev.append(_GradMode.enabled)
        _GradMode.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        _GradMode.enabled = self.prev.pop()


class set_grad_enabled(_GradModeContext):
    """Turn graph recording on or off: a plain call, a context manager or a decorator.

    As in PyTorch, ``ts.set_grad_enabled(False)`` takes effect at once; in a ``with``
    block the previous mode comes back at the end.
    """

    def __init__(self, mode: bool) -> None:
        super().__init__(mode)
        self._before: bool | None = _GradMode.enabled
        _GradMode.enabled = mode

    def __enter__(self) -> None:
        if self._before is None:
            super().__enter__()
            return
        # the constructor already switched: restore what was there before it on exit
        self.prev.append(self._before)
        self._before = None

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:  # type: ignore[override]
        # used as a decorator: undo the constructor's switch, apply it per call instead
        if self._before is not None:
            _GradMode.enabled = self._before
            self._before = None
        return super().__call__(func)


class no_grad(_GradModeContext):
    """``with ts.no_grad():`` or ``@ts.no_grad()``: record no graph (inference)."""

    def __init__(self) -> None:
        super().__init__(False)


class enable_grad(_GradModeContext):
    """Turn graph recording back on inside a ``no_grad`` block."""

    def __init__(self) -> None:
        super().__init__(True)


def _freed(grad: Array) -> Sequence[Array | None]:
    raise RuntimeError(
        "Trying to backward through the graph a second time: its saved buffers were "
        "freed by the first backward. Call backward(retain_graph=True) the first time "
        "if you need to backward twice."
    )


# what a node's context becomes after a backward without retain_graph: the closure (and
# the arrays it saved) and the links to the parents are dropped, so memory is released
_FREED: tuple[Backward, tuple[Tensor, ...]] = (_freed, ())


class Tensor:
    """An n-dimensional array on a device, with optional gradient tracking.

    Attributes: ``data`` (the array), ``grad`` (a Tensor or None), ``requires_grad``,
    ``device`` (a :class:`Device`). Shapes and dtypes follow the array.
    """

    __slots__ = ("data", "grad", "requires_grad", "device", "_ctx", "_retain", "__weakref__")
    __array_priority__ = 1000  # ndarray + Tensor defers to Tensor.__radd__

    data: Array
    grad: Tensor | None
    requires_grad: bool
    device: Device
    _ctx: tuple[Backward, tuple[Tensor, ...]] | None
    _retain: bool

    def __init__(
        self,
        data: Any,
        dtype: Any = None,
        device: str | Device | None = None,
        requires_grad: bool = False,
    ) -> None:
        if isinstance(data, Tensor):
            data = data.data
        elif isinstance(data, np.generic):  # numpy scalar: a 0-d array, same dtype
            data = np.asarray(data)
        dev = backend.get_device(device) if device is not None else None
        try:
            src = backend.device_of(data)
        except TypeError:
            src = None
        if src is None:  # Python numbers / lists
            host = np.asarray(data)
            if host.dtype.kind not in "biufc":
                hint = " (for a list of tensors use ts.stack)" if _holds_tensor(data) else ""
                raise TypeError(
                    f"cannot make a tensor from {type(data).__name__} data of numpy dtype "
                    f"{host.dtype}: expected numbers, booleans or arrays{hint}"
                )
            if dtype is None and host.dtype.kind == "f":
                host = host.astype(backend.get_default_dtype())
            dev = dev or backend.get_default_device()
            arr = host if dev.name == "cpu" else dev.xp.asarray(host)
        elif dev is None or dev is src:
            dev = src
            arr = data
        else:
            arr = _move(data, src, dev)
        if dtype is not None and arr.dtype != np.dtype(dtype):
            arr = arr.astype(dtype)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require gradients, got {arr.dtype}")
        self.data = arr
        self.device = dev
        self.grad = None
        self.requires_grad = requires_grad
        self._ctx = None
        self._retain = False

    # ---- properties ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape  # type: ignore[no-any-return]

    @property
    def ndim(self) -> int:
        return int(self.data.ndim)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype  # type: ignore[no-any-return]

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return int(self.data.shape[0])

    def __iter__(self) -> Iterator[Tensor]:
        """The sub-tensors along the first axis (each one a graph node, like ``t[i]``)."""
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (getitem(self, i) for i in range(self.data.shape[0]))

    def __format__(self, spec: str) -> str:
        # f"{loss:.4f}" formats a 0-d tensor's value, as in PyTorch
        if self.data.ndim == 0:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __repr__(self) -> str:
        body = np.array2string(
            backend.to_numpy(self.data), precision=4, separator=", ", prefix="tensor("
        )
        extra = f", device='{self.device.name}'" if self.device.name != "cpu" else ""
        if self.dtype != backend.float32:
            extra += f", dtype={self.dtype}"
        if self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    # ---- conversion ---------------------------------------------------------------
    def numpy(self) -> np.ndarray:  # type: ignore[type-arg,unused-ignore]
        """The values as a NumPy array (copied off the GPU; shares memory on cpu)."""
        if self.requires_grad:
            raise RuntimeError("call .detach().numpy() on a tensor that requires grad")
        return backend.to_numpy(self.data)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return backend.to_numpy(self.data).reshape(()).item()  # type: ignore[no-any-return]

    def tolist(self) -> Any:
        return backend.to_numpy(self.data).tolist()

    def detach(self) -> Tensor:
        """The same values, cut from the graph (shares the array)."""
        return _wrap(self.data, self.device)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place on a leaf tensor; returns self."""
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("can only change requires_grad of leaf tensors")
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require gradients, got {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor after backward; returns self."""
        self._retain = True
        return self

    def zero_(self) -> Tensor:
        """Fill with zeros in place (no graph)."""
        self.data[...] = 0
        return self

    def to(self, target: str | Device | Any = None, dtype: Any = None) -> Tensor:
        """A copy on another device and/or with another dtype (self if nothing changes).

        ``t.to("cuda")``, ``t.to("cpu")``, ``t.to(ts.float64)``. Gradients flow back.
        """
        if target is not None and not isinstance(target, (str, Device)):
            dtype, target = target, None
        out: Tensor = self
        if target is not None:
            dev = backend.get_device(target)
            if dev is not self.device:
                src = self
                moved = _move(self.data, self.device, dev)

                def back_move(g: Array) -> tuple[Array]:
                    return (_move(g, dev, src.device),)

                out = _make(moved, dev, (src,), back_move)
        if dtype is not None and np.dtype(dtype) != out.dtype:
            return out.astype(dtype)
        return out

    def astype(self, dtype: Any) -> Tensor:
        """A copy with another dtype; gradients are cast back."""
        src_dtype = self.dtype
        out = self.data.astype(dtype)

        def back(g: Array) -> tuple[Array]:
            return (g.astype(src_dtype),)

        return _make(out, self.device, (self,), back)

    def float(self) -> Tensor:
        return self.astype(backend.float32) if self.dtype != backend.float32 else self

    def double(self) -> Tensor:
        return self.astype(backend.float64) if self.dtype != backend.float64 else self

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def clone(self) -> Tensor:
        """A copy of the values that gradients flow through."""
        return _make(self.data.copy(), self.device, (self,), _identity_backward)

    # ---- autograd -----------------------------------------------------------------
    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        gradient: same shape as self; may be omitted for a one-element tensor.
        retain_graph: keep saved buffers so the graph can be walked again.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of its "
                "graph has requires_grad=True (or it was computed under no_grad)"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element tensor, got "
                    f"shape {self.shape}; pass gradient= of that shape"
                )
            g = self.device.xp.ones(self.data.shape, dtype=self.dtype)
        else:
            g = gradient.data if isinstance(gradient, Tensor) else gradient
            if not hasattr(g, "shape") or backend.device_of(g) is not self.device:
                g = self.device.xp.asarray(
                    backend.to_numpy(g) if hasattr(g, "shape") else g, dtype=self.dtype
                )
            if tuple(g.shape) != self.shape:
                raise ValueError(
                    f"gradient has shape {tuple(g.shape)}, expected the tensor's shape "
                    f"{self.shape}"
                )
            if g.dtype != self.dtype:
                g = g.astype(self.dtype)
        _run_backward(self, g, retain_graph)

    # ---- arithmetic ---------------------------------------------------------------
    def __add__(self, other: Operand) -> Tensor:
        return add(self, other)

    def __radd__(self, other: Operand) -> Tensor:
        return add(self, other)

    def __sub__(self, other: Operand) -> Tensor:
        return sub(self, other)

    def __rsub__(self, other: Operand) -> Tensor:
        return sub(_scalar_like(other, self), self)

    def __mul__(self, other: Operand) -> Tensor:
        return mul(self, other)

    def __rmul__(self, other: Operand) -> Tensor:
        return mul(self, other)

    def __truediv__(self, other: Operand) -> Tensor:
        return div(self, other)

    def __rtruediv__(self, other: Operand) -> Tensor:
        return div(_scalar_like(other, self), self)

    def __matmul__(self, other: Tensor) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Tensor) -> Tensor:
        return matmul(_as_operand(other, self), self)

    def __pow__(self, exponent: Operand) -> Tensor:
        return pow(self, exponent)

    def __rpow__(self, base: Operand) -> Tensor:
        return pow(_scalar_like(base, self), self)

    def __neg__(self) -> Tensor:
        return neg(self)

    def __pos__(self) -> Tensor:
        return self

    # comparisons give boolean tensors with no gradient
    def __lt__(self, other: Operand) -> Tensor:  # type: ignore[override,unused-ignore]
        return _compare(self, other, "less")

    def __le__(self, other: Operand) -> Tensor:
        return _compare(self, other, "less_equal")

    def __gt__(self, other: Operand) -> Tensor:
        return _compare(self, other, "greater")

    def __ge__(self, other: Operand) -> Tensor:
        return _compare(self, other, "greater_equal")

    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]
        return _compare(self, other, "equal")  # type: ignore[arg-type]

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]
        return _compare(self, other, "not_equal")  # type: ignore[arg-type]

    # ---- reductions and shape ops (defined below as functions) ----------------------
    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return sum(self, axis, keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return mean(self, axis, keepdims)

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return max(self, axis, keepdims)

    def min(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return -max(-self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return reshape(self, shape)

    view = reshape

    def flatten(self) -> Tensor:
        return reshape(self, (-1,))

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return transpose(self, axes or None)

    def swapaxes(self, axis1: int, axis2: int) -> Tensor:
        return swapaxes(self, axis1, axis2)

    def unsqueeze(self, axis: int) -> Tensor:
        return expand_dims(self, axis)

    def squeeze(self, axis: int | None = None) -> Tensor:
        return squeeze(self, axis)

    def __getitem__(self, index: Any) -> Tensor:
        return getitem(self, index)

    def exp(self) -> Tensor:
        return exp(self)

    def log(self) -> Tensor:
        return log(self)

    def tanh(self) -> Tensor:
        return tanh(self)

    def sigmoid(self) -> Tensor:
        return sigmoid(self)

    def relu(self) -> Tensor:
        return relu(self)

    def abs(self) -> Tensor:
        return abs(self)

    def sqrt(self) -> Tensor:
        return pow(self, 0.5)


def _holds_tensor(data: Any) -> bool:
    return isinstance(data, (list, tuple)) and any(
        isinstance(d, Tensor) or _holds_tensor(d) for d in data
    )


# ---- graph construction ---------------------------------------------------------------
def _wrap(data: Array, dev: Device) -> Tensor:
    """A fresh tensor around ``data`` with no graph (fast path, no checks)."""
    t = Tensor.__new__(Tensor)
    t.data = data
    t.device = dev
    t.grad = None
    t.requires_grad = False
    t._ctx = None
    t._retain = False
    return t


def _make(data: Array, dev: Device, parents: tuple[Tensor, ...], backward: Backward) -> Tensor:
    """The result of an op: records ``backward`` when a parent requires grad."""
    if isinstance(data, np.generic):  # numpy gives scalars for 0-d results: keep arrays
        data = np.asarray(data) if dev.name == "cpu" else dev.xp.asarray(data)
    t = Tensor.__new__(Tensor)
    t.data = data
    t.device = dev
    t.grad = None
    t._retain = False
    if _GradMode.enabled:
        for p in parents:
            if p.requires_grad:
                t.requires_grad = True
                t._ctx = (backward, parents)
                return t
    t.requires_grad = False
    t._ctx = None
    return t


def _identity_backward(g: Array) -> tuple[Array]:
    return (g,)


def _run_backward(root: Tensor, grad: Array, retain_graph: bool) -> None:
    outer, outer_fresh = _BackwardPass.retain_graph, _BackwardPass.fresh
    _BackwardPass.retain_graph, _BackwardPass.fresh = retain_graph, {}
    try:
        _walk_backward(root, grad, retain_graph)
    finally:
        _BackwardPass.retain_graph, _BackwardPass.fresh = outer, outer_fresh


def _walk_backward(root: Tensor, grad: Array, retain_graph: bool) -> None:
    # Kahn's algorithm, no recursion (deep graphs are fine): first count how many
    # consumers each node has in this graph, then visit a node once all of them have
    # sent it their gradient.
    pending: dict[int, int] = {}
    stack = [root]
    while stack:
        ctx = stack.pop()._ctx
        if ctx is None:
            continue
        for p in ctx[1]:
            if p.requires_grad:
                key = id(p)
                if key in pending:
                    pending[key] += 1
                else:
                    pending[key] = 1
                    stack.append(p)
    grads: dict[int, Array] = {id(root): grad}
    ready = [root]
    while ready:
        node = ready.pop()
        g = grads.pop(id(node), None)
        ctx = node._ctx
        if ctx is None:
            if g is not None:
                _accumulate(node, g)
            continue
        fn, parents = ctx
        if g is None:  # no gradient reached this node: only release its parents
            pgrads: Sequence[Array | None] = [None] * len(parents)
        else:
            if node._retain:
                _accumulate(node, g)
            pgrads = fn(g)
            if len(pgrads) != len(parents):
                raise RuntimeError(
                    f"a backward function returned {len(pgrads)} gradients for "
                    f"{len(parents)} inputs"
                )
            if not retain_graph:
                node._ctx = _FREED
        for p, pg in zip(parents, pgrads):
            if not p.requires_grad:
                continue
            key = id(p)
            if pg is not None:
                prev = grads.get(key)
                # never add in place: pg may alias another node's gradient
                grads[key] = pg if prev is None else prev + pg
            left = pending[key] - 1
            if left:
                pending[key] = left
            else:
                ready.append(p)


def _accumulate(leaf: Tensor, g: Array) -> None:
    if leaf.grad is None:
        # copy: g may be shared with other nodes, and optimizers edit .grad in place; a
        # fresh one is taken as it is, once (a second leaf given the same array copies it)
        if _BackwardPass.fresh.pop(id(g), None) is None or not g.flags.c_contiguous:
            g = g.copy()
        if isinstance(g, np.generic):
            g = np.asarray(g) if leaf.device.name == "cpu" else leaf.device.xp.asarray(g)
        leaf.grad = _wrap(g, leaf.device)
    else:
        leaf.grad.data = leaf.grad.data + g


def _move(data: Array, src: Device, dst: Device) -> Array:
    """A copy of ``data`` on ``dst`` (never a view: the two tensors must not share memory)."""
    if src is dst:
        return data
    host = backend.to_numpy(data)
    if src.name != "cuda":  # cpu/testcpu arrays: to_numpy gives a view, copy it
        host = host.copy()
    if dst.name == "cpu":
        return host
    return dst.xp.asarray(host)


def _mismatch(a: Tensor, b: Tensor, op: str) -> None:
    if a.device is not b.device:
        raise RuntimeError(
            f"{op}: tensors are on different devices: {a.device.name} and {b.device.name};"
            f" move one with .to('{a.device.name}')"
        )
    raise TypeError(
        f"{op}: tensors have different dtypes: {a.dtype} and {b.dtype}; convert one "
        f"with .to({a.dtype})"
    )


def _check(a: Tensor, b: Tensor, op: str) -> None:
    if a.device is not b.device or a.data.dtype != b.data.dtype:
        _mismatch(a, b, op)


def _as_operand(value: Any, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float, bool)):
        return _wrap(like.device.xp.asarray(value, dtype=like.dtype), like.device)
    if hasattr(value, "shape"):
        # an array keeps its device and dtype, so a mismatch is reported, not hidden
        return Tensor(value)
    return Tensor(value, device=like.device, dtype=like.dtype)


def _coerce(value: Any, like: Tensor) -> Tensor | int | float:
    """A non-Tensor operand: a Python number (kept: numpy keeps the tensor's dtype for
    those), or a Tensor made from an array or list."""
    if isinstance(value, np.generic):
        value = value.item()  # a numpy float64 scalar would promote float32 data
    if isinstance(value, (int, float)):
        return value
    return _as_operand(value, like)


def _scalar_like(value: Operand, like: Tensor) -> Tensor:
    return _as_operand(value, like)


def as_tensor(value: Any, dtype: Any = None, device: str | Device | None = None) -> Tensor:
    """``value`` as a Tensor: returned as is when it already is one on that device/dtype."""
    if isinstance(value, Tensor):
        return value.to(device, dtype) if (device or dtype) else value
    return Tensor(value, dtype=dtype, device=device)


def tensor(
    data: Any, dtype: Any = None, device: str | Device | None = None, requires_grad: bool = False
) -> Tensor:
    """A new tensor from a list, number or array (float data becomes the default dtype).

    ``ts.tensor([[1.0, 2.0]], requires_grad=True)``
    """
    if isinstance(data, Tensor):
        data = data.data
    elif device is None and type(data) is np.ndarray:
        device = backend.get_default_device()  # host arrays follow the default, as in PyTorch
    t = Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
    if t.data is data:
        t.data = data.copy()
    return t


def _unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``g`` down to ``shape`` (the reverse of broadcasting)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


# ---- elementwise arithmetic ---------------------------------------------------------------
def add(a: Tensor, b: Operand) -> Tensor:
    """a + b with broadcasting."""
    if not isinstance(b, Tensor):
        if type(b) is not float and type(b) is not int:  # Python numbers go straight on
            b = _coerce(b, a)
        if not isinstance(b, Tensor):
            return _make(a.data + b, a.device, (a,), _identity_backward)
    if a.device is not b.device or a.data.dtype != b.data.dtype:
        _mismatch(a, b, "add")
    sa, sb = a.data.shape, b.data.shape

    def backward(g: Array) -> tuple[Array, Array]:
        # the shape test inline: most calls need no reduction, and a call costs more
        gs = g.shape
        return (g if gs == sa else _unbroadcast(g, sa)), (g if gs == sb else _unbroadcast(g, sb))

    return _make(a.data + b.data, a.device, (a, b), backward)


def sub(a: Tensor, b: Operand) -> Tensor:
    """a - b with broadcasting."""
    if not isinstance(b, Tensor):
        if type(b) is not float and type(b) is not int:  # Python numbers go straight on
            b = _coerce(b, a)
        if not isinstance(b, Tensor):
            return _make(a.data - b, a.device, (a,), _identity_backward)
    if a.device is not b.device or a.data.dtype != b.data.dtype:
        _mismatch(a, b, "sub")
    sa, sb = a.data.shape, b.data.shape

    def backward(g: Array) -> tuple[Array, Array]:
        gs = g.shape
        return (g if gs == sa else _unbroadcast(g, sa)), (-g if gs == sb else _unbroadcast(-g, sb))

    return _make(a.data - b.data, a.device, (a, b), backward)


def mul(a: Tensor, b: Operand) -> Tensor:
    """a * b with broadcasting."""
    if not isinstance(b, Tensor):
        if type(b) is not float and type(b) is not int:  # Python numbers go straight on
            b = _coerce(b, a)
        if not isinstance(b, Tensor):
            s = b

            def backward_scalar(g: Array) -> tuple[Array]:
                return (g * s,)

            return _make(a.data * s, a.device, (a,), backward_scalar)
    if a.device is not b.device or a.data.dtype != b.data.dtype:
        _mismatch(a, b, "mul")
    ad, bd = a.data, b.data
    out = ad * bd
    # whether each side was broadcast, decided once here instead of in every backward
    same_a, same_b = out.shape == ad.shape, out.shape == bd.shape

    def backward(g: Array) -> tuple[Array | None, Array | None]:
        ga = gb = None
        if a.requires_grad:
            ga = g * bd if same_a else _unbroadcast(g * bd, ad.shape)
        if b.requires_grad:
            gb = g * ad if same_b else _unbroadcast(g * ad, bd.shape)
        return ga, gb

    return _make(out, a.device, (a, b), backward)


def div(a: Tensor, b: Operand) -> Tensor:
    """a / b with broadcasting."""
    if not isinstance(b, Tensor):
        if type(b) is not float and type(b) is not int:  # Python numbers go straight on
            b = _coerce(b, a)
        if not isinstance(b, Tensor):
            s = b

            def backward_scalar(g: Array) -> tuple[Array]:
                return (g / s,)

            return _make(a.data / s, a.device, (a,), backward_scalar)
    if a.device is not b.device or a.data.dtype != b.data.dtype:
        _mismatch(a, b, "div")
    ad, bd = a.data, b.data
    out = ad / bd

    def backward(g: Array) -> tuple[Array | None, Array | None]:
        ga = _unbroadcast(g / bd, ad.shape) if a.requires_grad else None
        gb = _unbroadcast(-g * out / bd, bd.shape) if b.requires_grad else None
        return ga, gb

    return _make(out, a.device, (a, b), backward)


def neg(a: Tensor) -> Tensor:
    """-a."""
    return _make(-a.data, a.device, (a,), _neg_backward)


def _neg_backward(g: Array) -> tuple[Array]:
    return (-g,)


def pow(a: Tensor, exponent: Operand) -> Tensor:
    """a ** exponent, a number or a tensor (broadcasting).

    Gradients follow PyTorch at the edges: zero for the base where the exponent is 0,
    zero for the exponent where the base is 0 and the exponent >= 0 (else log(a) of a
    non-positive base gives nan, as it should).
    """
    xp = a.device.xp
    ad = a.data
    if not isinstance(exponent, Tensor):
        p = _coerce(exponent, a)
        if not isinstance(p, Tensor):
            out = ad**p

            def backward_scalar(g: Array) -> tuple[Array]:
                if p == 0:
                    return (xp.zeros_like(g),)
                with np.errstate(divide="ignore", invalid="ignore"):  # 0 ** negative: inf
                    return (g * (p * ad ** (p - 1)),)

            return _make(out, a.device, (a,), backward_scalar)
        exponent = p
    _check(a, exponent, "pow")
    ed = exponent.data
    out = ad**ed

    def backward(g: Array) -> tuple[Array | None, Array | None]:
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if a.requires_grad:
                da = xp.where(ed == 0, 0, ed * ad ** (ed - 1)).astype(g.dtype, copy=False)
                ga = _unbroadcast(g * da, ad.shape)
            if exponent.requires_grad:
                de = xp.where((ad == 0) & (ed >= 0), 0, out * xp.log(ad))
                gb = _unbroadcast(g * de.astype(g.dtype, copy=False), ed.shape)
        return ga, gb

    return _make(out, a.device, (a, exponent), backward)


def _compare(a: Tensor, b: Operand, name: str) -> Tensor:
    if isinstance(b, Tensor):
        if a.device is not b.device:
            _mismatch(a, b, name)
        other = b.data
    else:
        other = b
    return _wrap(getattr(a.device.xp, name)(a.data, other), a.device)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy's rules for 1-D and batched (…, n, k) @ (…, k, m)."""
    if not isinstance(b, Tensor):
        b = _as_operand(b, a)
    _check(a, b, "matmul")
    ad, bd = a.data, b.data
    if ad.ndim == 0 or bd.ndim == 0:
        raise ValueError("matmul: both operands need at least one dimension; use * for scalars")
    ka = ad.shape[-1]
    kb = bd.shape[-2] if bd.ndim >= 2 else bd.shape[0]
    if ka != kb:
        raise ValueError(
            f"matmul: shapes {tuple(ad.shape)} and {tuple(bd.shape)} do not match: "
            f"the last dimension of the first ({ka}) must equal the "
            f"{'second-to-last' if bd.ndim >= 2 else 'only'} dimension of the second ({kb})"
        )
    out = ad @ bd

    def backward(g: Array) -> tuple[Array | None, Array | None]:
        if ad.ndim == 2 and bd.ndim == 2:  # the common case, without the general reshaping
            return (g @ bd.T if a.requires_grad else None, ad.T @ g if b.requires_grad else None)
        if ad.ndim == 1 and bd.ndim == 1:  # a dot product: g is 0-d
            return (g * bd if a.requires_grad else None, g * ad if b.requires_grad else None)
        a2 = ad if ad.ndim > 1 else ad[None, :]
        b2 = bd if bd.ndim > 1 else bd[:, None]
        g2 = g
        if ad.ndim == 1:
            g2 = g2[..., None, :]
        if bd.ndim == 1:
            g2 = g2[..., :, None]
        ga = gb = None
        if a.requires_grad:
            ga = _unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape if ad.ndim > 1 else (1,) + ad.shape)
            if ad.ndim == 1:
                ga = ga.reshape(ad.shape)
        if b.requires_grad:
            gb = _unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape if bd.ndim > 1 else bd.shape + (1,))
            if bd.ndim == 1:
                gb = gb.reshape(bd.shape)
        return ga, gb

    return _make(out, a.device, (a, b), backward)


# ---- unary math -------------------------------------------------------------------------
def exp(a: Tensor) -> Tensor:
    """e ** a."""
    out = a.device.xp.exp(a.data)

    def backward(g: Array) -> tuple[Array]:
        return (g * out,)

    return _make(out, a.device, (a,), backward)


def log(a: Tensor) -> Tensor:
    """Natural logarithm."""
    ad = a.data

    def backward(g: Array) -> tuple[Array]:
        return (g / ad,)

    return _make(a.device.xp.log(ad), a.device, (a,), backward)


def tanh(a: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    out = a.device.xp.tanh(a.data)

    def backward(g: Array) -> tuple[Array]:
        d = 1 - out * out
        d *= g  # in place: d is fresh
        return (d,)

    return _make(out, a.device, (a,), backward)


def _sigmoid_array(xp: Any, x: Array) -> Array:
    # 0.5 * tanh(x / 2) + 0.5 is the exact sigmoid and never overflows exp; one fresh
    # array (asarray: NumPy gives a scalar for 0-d input), the other passes in place
    out = xp.asarray(xp.multiply(x, 0.5))
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def sigmoid(a: Tensor) -> Tensor:
    """Logistic sigmoid 1 / (1 + e^-a), stable for large |a|."""
    out = _sigmoid_array(a.device.xp, a.data)

    def backward(g: Array) -> tuple[Array]:
        d = 1 - out  # one fresh array, the rest in place
        d *= out
        d *= g
        return (d,)

    return _make(out, a.device, (a,), backward)


def relu(a: Tensor) -> Tensor:
    """max(a, 0)."""
    ad = a.data
    out = a.device.xp.maximum(ad, 0)

    def backward(g: Array) -> tuple[Array]:
        return (g * (ad > 0),)

    return _make(out, a.device, (a,), backward)


def abs(a: Tensor) -> Tensor:
    """|a| (gradient 0 at 0)."""
    ad = a.data
    xp = a.device.xp

    def backward(g: Array) -> tuple[Array]:
        return (g * xp.sign(ad),)

    return _make(xp.abs(ad), a.device, (a,), backward)


# ---- reductions -------------------------------------------------------------------------
def _norm_axes(axis: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for ax in axes:
        # a 0-d tensor accepts axis 0 and -1 (as PyTorch does) and reduces nothing
        if not -builtins.max(ndim, 1) <= ax < builtins.max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
        if ndim:
            out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(out)


def _expand_reduced(g: Array, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Array:
    if not keepdims:
        full = list(shape)
        for ax in axes:
            full[ax] = 1
        g = g.reshape(full)
    return g


def sum(a: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (all axes when None)."""
    xp = a.device.xp
    shape = a.data.shape
    axes = _norm_axes(axis, a.data.ndim)
    out = xp.asarray(a.data.sum(axis=axes, keepdims=keepdims))

    def backward(g: Array) -> tuple[Array]:
        return (xp.broadcast_to(_expand_reduced(g, shape, axes, keepdims), shape),)

    return _make(out, a.device, (a,), backward)


def mean(a: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes when None)."""
    axes = _norm_axes(axis, a.data.ndim)
    count = 1
    for ax in axes:
        count *= a.data.shape[ax]
    return mul(sum(a, axes, keepdims), 1.0 / count)


def max(a: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Maximum over ``axis``; the gradient is shared equally between tied maxima."""
    xp = a.device.xp
    ad = a.data
    axes = _norm_axes(axis, ad.ndim)
    if ad.size == 0:
        raise ValueError("max() of an empty tensor")
    kept = ad.max(axis=axes, keepdims=True)
    out = kept if keepdims else xp.asarray(kept.reshape([n for i, n in enumerate(ad.shape) if i not in axes]))

    def backward(g: Array) -> tuple[Array]:
        share = (ad == kept).astype(g.dtype)  # in the data's dtype (a bool/int ratio is float64)
        share /= share.sum(axis=axes, keepdims=True)
        return (_expand_reduced(g, ad.shape, axes, keepdims) * share,)

    return _make(out, a.device, (a,), backward)


# ---- shape ops --------------------------------------------------------------------------
def reshape(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The same values in a new shape (one dimension may be -1)."""
    src = a.data.shape
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise ValueError(
            f"cannot reshape a tensor of shape {tuple(src)} ({a.data.size} elements) "
            f"into shape {tuple(shape)}"
        ) from None

    def backward(g: Array) -> tuple[Array]:
        return (g.reshape(src),)

    return _make(out, a.device, (a,), backward)


def transpose(a: Tensor, axes: tuple[int, ...] | None = None) -> Tensor:
    """Permute dimensions (reverse them when ``axes`` is None)."""
    out = a.data.transpose(axes)
    if axes is None:
        inverse = None
    else:
        inverse = tuple(int(i) for i in np.argsort([ax % a.data.ndim for ax in axes]))

    def backward(g: Array) -> tuple[Array]:
        return (g.transpose(inverse),)

    return _make(out, a.device, (a,), backward)


def swapaxes(a: Tensor, axis1: int, axis2: int) -> Tensor:
    """Exchange two dimensions."""

    def backward(g: Array) -> tuple[Array]:
        return (g.swapaxes(axis1, axis2),)

    return _make(a.data.swapaxes(axis1, axis2), a.device, (a,), backward)


def expand_dims(a: Tensor, axis: int) -> Tensor:
    """Insert a dimension of size 1 at ``axis``."""
    shape = list(a.data.shape)
    if not -len(shape) - 1 <= axis <= len(shape):
        raise ValueError(
            f"expand_dims: axis {axis} is out of range for a tensor with {len(shape)} "
            f"dimensions (expected {-len(shape) - 1} to {len(shape)})"
        )
    axis = axis if axis >= 0 else axis + len(shape) + 1
    shape.insert(axis, 1)
    return reshape(a, tuple(shape))


def squeeze(a: Tensor, axis: int | None = None) -> Tensor:
    """Remove size-1 dimensions (only ``axis`` when given)."""
    if axis is None:
        shape = tuple(n for n in a.data.shape if n != 1)
    else:
        (ax,) = _norm_axes(axis, a.data.ndim) or (None,)
        if ax is None:  # a 0-d tensor: nothing to remove
            return reshape(a, ())
        if a.data.shape[ax] != 1:
            raise ValueError(f"cannot squeeze axis {axis} of size {a.data.shape[ax]}")
        shape = tuple(n for i, n in enumerate(a.data.shape) if i != ax)
    return reshape(a, shape)


def getitem(a: Tensor, index: Any) -> Tensor:
    """``a[index]``: basic slicing and integer-array indexing; repeated indices add up."""
    dev = a.device
    if isinstance(index, tuple):
        index = tuple(_index_on(dev, i) for i in index)
    else:
        index = _index_on(dev, index)
    parts = index if isinstance(index, tuple) else (index,)
    if all(isinstance(i, _BASIC_INDEX) and not isinstance(i, bool) for i in parts):
        # basic indexing never picks an element twice: a plain write does the backward
        return getitem_slice(a, index)
    out = a.data[index]
    shape, dtype = a.data.shape, a.data.dtype

    def backward(g: Array) -> tuple[Array]:
        full = dev.xp.zeros(shape, dtype=dtype)
        backend.scatter_add(dev, full, index, g)
        return (full,)

    return _make(out, dev, (a,), backward)


_BASIC_INDEX = (int, np.integer, slice, type(None), type(Ellipsis))


def _index_on(dev: Device, index: Any) -> Any:
    """An index component as ``dev`` can use it: Tensors and host arrays are moved there
    (as PyTorch accepts a CPU index for a CUDA tensor)."""
    if isinstance(index, Tensor):
        return _move(index.data, index.device, dev) if index.device is not dev else index.data
    if dev.name != "cpu" and (type(index) is np.ndarray or isinstance(index, list)):
        return dev.xp.asarray(index)
    return index


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate() needs at least one tensor")
    first = tensors[0]
    for t in tensors[1:]:
        _check(first, t, "concatenate")
    xp = first.device.xp
    try:
        out = xp.concatenate([t.data for t in tensors], axis=axis)
    except (ValueError, IndexError):  # numpy's AxisError is both
        raise ValueError(
            f"concatenate along axis {axis}: cannot join shapes "
            f"{[tuple(t.shape) for t in tensors]}; they need the same number of dimensions "
            "(with the axis in range) and equal sizes in every other dimension"
        ) from None
    splits = np.cumsum([t.data.shape[axis] for t in tensors])[:-1].tolist()

    def backward(g: Array) -> list[Array]:
        return xp.split(g, splits, axis=axis)  # type: ignore[no-any-return]

    return _make(out, first.device, tuple(tensors), backward)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack() needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    return concatenate([expand_dims(t, axis) for t in tensors], axis)


def split(a: Tensor, sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split into pieces: ``sections`` equal parts, or at the given indices (numpy's rule)."""
    n = a.data.shape[axis]
    if isinstance(sections, (int, np.integer)):
        sections = int(sections)
        if sections <= 0:
            raise ValueError(f"split: the number of sections must be positive, got {sections}")
        if n % sections:
            raise ValueError(f"split: axis {axis} of size {n} does not divide into {sections}")
        step = n // sections
        bounds = list(range(0, n + 1, step))
    else:
        bounds = [0, *[int(i) for i in sections], n]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        index = [slice(None)] * a.data.ndim
        index[axis] = slice(lo, hi)
        out.append(getitem_slice(a, tuple(index)))
    return out


def getitem_slice(a: Tensor, index: Any) -> Tensor:
    """``a[index]`` for basic indices only (ints, slices, None, ...): the backward writes,
    no scatter needed."""
    out = a.data[index]
    dev = a.device
    shape, dtype = a.data.shape, a.data.dtype

    def backward(g: Array) -> tuple[Array]:
        full = dev.xp.zeros(shape, dtype=dtype)
        full[index] = g
        return (full,)

    return _make(out, dev, (a,), backward)


def where(condition: Tensor | Array, a: Operand, b: Operand) -> Tensor:
    """Elementwise ``a`` where ``condition`` is true, else ``b`` (broadcasting)."""
    like = a if isinstance(a, Tensor) else b
    if not isinstance(like, Tensor):
        raise TypeError("where() needs at least one of a, b to be a Tensor")
    ta = _as_operand(a, like)
    tb = _as_operand(b, like)
    _check(ta, tb, "where")
    if isinstance(condition, Tensor):
        if condition.device is not like.device:
            _mismatch(like, condition, "where")
        cond = condition.data
    else:
        cond = _index_on(like.device, condition)  # a host mask moves to the device
    xp = like.device.xp
    out = xp.where(cond, ta.data, tb.data)
    sa, sb = ta.data.shape, tb.data.shape

    def backward(g: Array) -> tuple[Array, Array]:
        zero = xp.zeros((), dtype=g.dtype)
        return (
            _unbroadcast(xp.where(cond, g, zero), sa),
            _unbroadcast(xp.where(cond, zero, g), sb),
        )

    return _make(out, like.device, (ta, tb), backward)


def custom(
    data: Array, parents: Sequence[Tensor], backward: Backward, device: Device | None = None
) -> Tensor:
    """A tensor computed outside autograd (e.g. a fused kernel) with its own backward.

    backward(g) returns one gradient array (or None) per parent, in order.
    """
    parents = tuple(parents)
    dev = device or parents[0].device
    return _make(data, dev, parents, backward)


class _GradPack(list):  # type: ignore[type-arg]
    """Gradients of a multi-output op's outputs; ``+`` merges two packs slot by slot."""

    def __add__(self, other: Any) -> _GradPack:
        return _GradPack(
            b if a is None else a if b is None else a + b for a, b in zip(self, other)
        )


def custom_multi(
    outputs: Sequence[Array],
    parents: Sequence[Tensor],
    backward: Callable[[list[Array | None]], Sequence[Array | None]],
    device: Device | None = None,
    fresh_grads: bool = False,
) -> list[Tensor]:
    """Several tensors computed together outside autograd, with one shared backward.

    backward(grads) receives one gradient per output (None where an output got none)
    and returns one gradient (or None) per parent. This is how a fused whole-sequence
    kernel becomes a single graph node with outputs (y, h_T, c_T). fresh_grads: the
    arrays backward returns are new and referenced nowhere else (not views of inputs or
    of saved buffers; the same array may be returned for two parents), so a parameter
    whose .grad is None takes one as it is instead of copying it.
    """
    parents = tuple(parents)
    dev = device or parents[0].device
    n = len(outputs)

    def hub_backward(pack: Sequence[Array | None]) -> Sequence[Array | None]:
        grads = backward(list(pack))
        if fresh_grads:
            for g in grads:
                if g is not None:
                    _BackwardPass.fresh[id(g)] = g
        return grads

    hub = _make(dev.xp.empty((0,)), dev, parents, hub_backward)
    if not hub.requires_grad:
        return [_wrap(o, dev) for o in outputs]
    results = []
    for i, out in enumerate(outputs):

        def to_hub(g: Array, i: int = i) -> tuple[_GradPack]:
            pack = _GradPack([None] * n)
            pack[i] = g
            return (pack,)

        results.append(_make(out, dev, (hub,), to_hub))
    return results


# The operators call the op functions directly: one Python call less per op than going
# through the methods defined in the class (which stay as the documented signatures).
Tensor.__add__ = Tensor.__radd__ = add  # type: ignore[method-assign]
Tensor.__sub__ = sub  # type: ignore[method-assign]
Tensor.__mul__ = Tensor.__rmul__ = mul  # type: ignore[method-assign]
Tensor.__truediv__ = div  # type: ignore[method-assign]
Tensor.__matmul__ = matmul  # type: ignore[method-assign]
Tensor.__pow__ = pow  # type: ignore[method-assign]
Tensor.__neg__ = neg  # type: ignore[method-assign]
Tensor.__getitem__ = getitem  # type: ignore[method-assign]
