"""Optional CUDA-graph mode for the fused kernels' time loops.

On a GPU a fused step is two or three launches of a few microseconds of work each, and
the host spends ~7-30 us per launch: at small and medium sizes the time loop is bound by
launch overhead. With graph mode on, :mod:`.stepwise` runs each time loop through
:func:`execute`, which, once per shape (the cache key), allocates static buffers,
captures the loop into a CUDA graph and then, on every call, copies the call's inputs
into the static buffers, replays the graph with one launch, and lets the caller copy
out what it keeps. Results equal eager mode's: the same kernels run in the same order.

CuPy's own ``matmul`` refuses stream capture ("calling cuBLAS API during stream capture
is currently unsupported"), so the captured loop calls cuBLAS directly through ctypes on
the libcublas CuPy has loaded (``cublasSgemm_v2`` / ``cublasDgemm_v2`` on the current
stream, default math mode: no TF32), with a workspace of its own as graph capture needs.

Selecting: ``use_cuda_graphs(True)`` (also ``with use_cuda_graphs(True): ...``) or the
environment variable ``TINYSEQ_CUDA_GRAPHS=1``. On devices other than ``cuda`` the same
path runs with an emulated graph (the loop re-run on the static buffers with the
portable pointwise functions and ``xp.matmul``): that is how the tests exercise the
static-buffer, key and copy logic without a GPU. Status: written against CuPy's
documented API (``Stream.begin_capture``/``end_capture``, ``Graph.launch``); not yet run
on a GPU in this release.

CuPy is never imported here: everything comes from the array module ``xp`` passed in.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = [
    "use_cuda_graphs",
    "graphs_enabled",
    "execute",
    "clear_cache",
    "execute_eager",
    "capture_failures",
    "gemm_arguments",
    "CublasGemm",
    "ENV_VAR",
]

Array = Any
Buffers = dict[str, Array]
ENV_VAR = "TINYSEQ_CUDA_GRAPHS"
MAX_GRAPHS = 32  # captured loops kept (each holds its static buffers), least recent dropped

_enabled = [os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")]


def graphs_enabled() -> bool:
    """Whether the fused kernels capture their time loops in graphs."""
    return _enabled[0]


class use_cuda_graphs(contextlib.AbstractContextManager["use_cuda_graphs"]):
    """Turn graph mode on or off: ``use_cuda_graphs(True)`` sets it from now on;
    ``with use_cuda_graphs(True): ...`` sets it for the block and restores it after."""

    def __init__(self, enabled: bool = True) -> None:
        self._previous = _enabled[0]
        _enabled[0] = bool(enabled)

    def __exit__(self, *exc: object) -> None:
        _enabled[0] = self._previous


class _Captured:
    """A captured loop: its static buffers and how to replay it."""

    __slots__ = ("buffers", "replay")

    def __init__(self, buffers: Buffers, replay: Callable[[], None]) -> None:
        self.buffers, self.replay = buffers, replay


_graphs: OrderedDict[Hashable, _Captured] = OrderedDict()
_failed: dict[Hashable, str] = {}  # keys whose capture failed: they run eagerly
capture_failures: list[str] = []  # the reasons, in order (for tests and diagnostics)


def clear_cache() -> None:
    """Drop every captured graph and its buffers (and forget failed captures)."""
    _graphs.clear()
    _failed.clear()


def execute(
    xp: Any,
    key: Hashable,
    allocate: Callable[[], Buffers],
    loop: Callable[[Any, Buffers], None],
    inputs: Buffers,
) -> tuple[Buffers, bool]:
    """Run ``loop(ops, buffers)`` eagerly, or replay its captured graph.

    allocate(): the loop's own buffers; inputs: arrays the loop reads (their shapes and
    dtypes must be determined by ``key``). Returns (buffers, static): with static True
    the buffers belong to the graph and the next call overwrites them, so the caller
    copies out what it keeps.
    """
    if not _enabled[0]:
        return execute_eager(xp, allocate, loop, inputs)
    full_key = (id(xp), key)
    captured = _graphs.get(full_key)
    if captured is None:
        if full_key in _failed:
            return execute_eager(xp, allocate, loop, inputs)
        buffers = allocate()
        for name, a in inputs.items():
            buffers[name] = xp.empty(a.shape, dtype=a.dtype)
        _copy_in(xp, buffers, inputs)
        try:
            captured = _capture(xp, loop, buffers)
        except Exception as err:  # e.g. a driver or library that refuses capture
            _failed[full_key] = f"{type(err).__name__}: {err}"
            capture_failures.append(_failed[full_key])
            warnings.warn(
                f"CUDA graph capture failed, running this shape eagerly: {_failed[full_key]}",
                RuntimeWarning,
                stacklevel=3,
            )
            return execute_eager(xp, allocate, loop, inputs)
        _graphs[full_key] = captured
        while len(_graphs) > MAX_GRAPHS:
            _graphs.popitem(last=False)
    else:
        _graphs.move_to_end(full_key)
        _copy_in(xp, captured.buffers, inputs)
    captured.replay()
    return captured.buffers, True


def execute_eager(
    xp: Any,
    allocate: Callable[[], Buffers],
    loop: Callable[[Any, Buffers], None],
    inputs: Buffers,
) -> tuple[Buffers, bool]:
    """Run the loop once on fresh buffers (no graph): returns (buffers, False)."""
    from .stepwise import eager_ops  # the loops' module imports this one

    buffers = allocate()
    buffers.update(inputs)
    loop(eager_ops(xp), buffers)
    return buffers, False


def _copy_in(xp: Any, buffers: Buffers, inputs: Buffers) -> None:
    for name, a in inputs.items():
        dst = buffers[name]
        if dst.shape != a.shape or dst.dtype != a.dtype:
            raise AssertionError(f"graph input {name!r}: {a.shape} {a.dtype}, buffer {dst.shape}")
        xp.copyto(dst, a)


def _capture(xp: Any, loop: Callable[[Any, Buffers], None], buffers: Buffers) -> _Captured:
    from .stepwise import Ops, is_cupy, pointwise_for

    if not is_cupy(xp):
        # emulated graph: the loop bound to the static buffers, re-run on each replay
        ops = Ops(xp, pointwise_for(xp), lambda a, b, out: xp.matmul(a, b, out=out))
        return _Captured(buffers, lambda: loop(ops, buffers))
    ops = Ops(xp, pointwise_for(xp), _cublas(xp))
    # one eager run first: compiles the kernels (no module loading while capturing)
    # and checks the cuBLAS route outside capture, where errors are easy to read
    loop(ops, buffers)
    stream = xp.cuda.Stream(non_blocking=True)
    stream.wait_event(xp.cuda.get_current_stream().record())
    with stream:
        stream.begin_capture()
        try:
            loop(ops, buffers)
        except BaseException:
            with contextlib.suppress(Exception):
                stream.end_capture()  # leave the stream usable; report the loop's error
            raise
        graph = stream.end_capture()
    return _Captured(buffers, lambda: graph.launch(xp.cuda.get_current_stream()))


# ---- cuBLAS through ctypes ---------------------------------------------------------------
_OP_N, _OP_T = 0, 1


def gemm_arguments(
    a_shape: tuple[int, ...],
    a_strides: tuple[int, ...],
    b_shape: tuple[int, ...],
    b_strides: tuple[int, ...],
    out_shape: tuple[int, ...],
    out_strides: tuple[int, ...],
    itemsize: int,
) -> tuple[int, int, int, int, int, int, int, int]:
    """cuBLAS (column-major) arguments for the row-major product out = a @ b.

    Row-major out (M, N) is column-major out.T, and out.T = b.T @ a.T, so cuBLAS gets b
    first: returns (transa, transb, m, n, k, ld_b, ld_a, ld_out) for
    ``gemm(h, transa, transb, m, n, k, alpha, B, ld_b, A, ld_a, beta, OUT, ld_out)``.
    Each operand may be row-major with a row stride (a slice of columns) or a
    transposed view of one (column-major); ``out`` must be row-major.
    """
    M, K = a_shape
    K2, N = b_shape
    if K2 != K or tuple(out_shape) != (M, N):
        raise ValueError(f"gemm shapes: {a_shape} @ {b_shape} -> {out_shape}")
    op_b, ld_b = _operand(b_shape, b_strides, itemsize)
    op_a, ld_a = _operand(a_shape, a_strides, itemsize)
    op_out, ld_out = _operand(out_shape, out_strides, itemsize)
    if op_out != _OP_N:
        raise ValueError(f"gemm output must be row-major, strides {out_strides}")
    return op_b, op_a, N, M, K, ld_b, ld_a, ld_out


def _operand(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> tuple[int, int]:
    """(op, leading dimension) of a row-major-described 2-D operand for cuBLAS."""
    rows, cols = shape
    s0, s1 = strides
    if cols == 1 or s1 == itemsize:
        # row-major: cuBLAS sees its transpose, stored column-major with ld = row stride
        return _OP_N, max(s0 // itemsize if rows > 1 else cols, cols, 1)
    if rows == 1 or s0 == itemsize:
        # a transposed view of a row-major array: column-major itself; op T transposes
        return _OP_T, max(s1 // itemsize if cols > 1 else rows, rows, 1)
    raise ValueError(f"gemm operand needs unit stride in one axis, got strides {strides}")


_cublas_cache: dict[int, CublasGemm] = {}


def _cublas(xp: Any) -> CublasGemm:
    g = _cublas_cache.get(id(xp))
    if g is None:
        g = _cublas_cache[id(xp)] = CublasGemm(xp)
    return g


def _find_libcublas(xp: Any) -> ctypes.CDLL:
    """The libcublas CuPy uses: loaded by one small product, then found in this process."""
    a = xp.ones((2, 2), dtype=xp.float32)
    xp.matmul(a, a)
    paths: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            path = line.rstrip("\n").split(" ")[-1]
            name = os.path.basename(path)
            if name.startswith("libcublas.so") and path not in paths:
                paths.append(path)
    errors = []
    for candidate in [*paths, "libcublas.so.13", "libcublas.so.12", "libcublas.so"]:
        try:
            return ctypes.CDLL(candidate)
        except OSError as err:
            errors.append(f"{candidate}: {err}")
    raise RuntimeError("CUDA graph mode needs libcublas; not found: " + "; ".join(errors))


class CublasGemm:
    """out = a @ b (row-major 2-D, float32/float64) by cuBLAS on the current stream.

    Works inside stream capture, unlike CuPy's matmul. One handle per CuPy module, in
    default math mode (TF32 off), with its own workspace (set after each stream change,
    since cublasSetStream resets it).
    """

    WORKSPACE_BYTES = 32 << 20

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        lib = self.lib = _find_libcublas(xp)
        handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate_v2")
        self.handle = handle
        self._check(lib.cublasSetMathMode(handle, 0), "cublasSetMathMode")  # CUBLAS_DEFAULT_MATH
        self.workspace = xp.empty((self.WORKSPACE_BYTES,), dtype=xp.uint8)
        c_int, c_void_p = ctypes.c_int, ctypes.c_void_p
        for name, real in (("cublasSgemm_v2", ctypes.c_float), ("cublasDgemm_v2", ctypes.c_double)):
            fn = getattr(lib, name)
            fn.restype = c_int
            fn.argtypes = [
                c_void_p,
                c_int,
                c_int,
                c_int,
                c_int,
                c_int,
                ctypes.POINTER(real),
                c_void_p,
                c_int,
                c_void_p,
                c_int,
                ctypes.POINTER(real),
                c_void_p,
                c_int,
            ]
        lib.cublasSetStream_v2.argtypes = [c_void_p, c_void_p]
        # cuBLAS >= 11: a user workspace, so capture never allocates one mid-graph
        self._set_workspace = getattr(lib, "cublasSetWorkspace_v2", None)
        if self._set_workspace is not None:
            self._set_workspace.argtypes = [c_void_p, c_void_p, ctypes.c_size_t]
        self._scalars = {
            "f": (ctypes.c_float(1.0), ctypes.c_float(0.0), lib.cublasSgemm_v2),
            "d": (ctypes.c_double(1.0), ctypes.c_double(0.0), lib.cublasDgemm_v2),
        }
        self._stream = -1

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def __call__(self, a: Array, b: Array, out: Array) -> None:
        if not (a.dtype == b.dtype == out.dtype) or a.dtype.char not in self._scalars:
            raise TypeError(f"gemm needs one float32/float64 dtype, got {a.dtype}, {b.dtype}")
        one, zero, fn = self._scalars[a.dtype.char]
        stream = self.xp.cuda.get_current_stream().ptr
        if stream != self._stream:
            lib = self.lib
            self._check(lib.cublasSetStream_v2(self.handle, stream), "cublasSetStream_v2")
            if self._set_workspace is not None:
                self._check(
                    self._set_workspace(
                        self.handle, self.workspace.data.ptr, self.workspace.nbytes
                    ),
                    "cublasSetWorkspace_v2",
                )
            self._stream = stream
        ta, tb, m, n, k, ld_b, ld_a, ld_out = gemm_arguments(
            a.shape, a.strides, b.shape, b.strides, out.shape, out.strides, a.itemsize
        )
        status = fn(
            self.handle,
            ta,
            tb,
            m,
            n,
            k,
            ctypes.byref(one),
            b.data.ptr,
            ld_b,
            a.data.ptr,
            ld_a,
            ctypes.byref(zero),
            out.data.ptr,
            ld_out,
        )
        self._check(status, fn.__name__)
