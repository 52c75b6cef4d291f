"""A traced step's element-wise part as two compiled loops on the CPU (numba, ``jit`` extra).

:mod:`.scalar`'s passes printed as Python for numba: per step, the recurrent products
run as BLAS GEMMs into their blocks, then ONE compiled pass computes every element-wise
op of the step (forward), or their reverse mode (backward), instead of one NumPy call
per op. Blocks are batch x features, (B, w) per step (what the runner uses: element
(j, b) of a pass is column j + k*H of row b), or features x batch, (w, B); either way
the inner loop runs along contiguous memory, so LLVM vectorizes it. tanh and sigmoid use the compiled LSTM pass's float32 tanh
(:mod:`..jit_lstm`); constants are typed globals so float32 stays float32.

:class:`NumbaLoops` has the signature of the generated NumPy ``forward`` and
``backward`` functions, so :mod:`.runner` uses either. Steps whose products read an
element-wise result keep the NumPy code (see :func:`.scalar.check`).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from types import ModuleType
from typing import Any

from ...backend import transposed_copy
from .codegen_numpy import Plan
from .scalar import Lang, Pass, program
from .trace import Unsupported

__all__ = ["PyLang", "numba_sources", "NumbaLoops"]

Array = Any


class PyLang(Lang):
    """Python for numba: element (j, b) of a block is ``a[b, j + off]`` in batch x
    features (B, w) blocks, ``a[j + off, b]`` in features x batch (w, B) ones."""

    comment = "#"
    end = ""
    declare = ""

    def __init__(self, rows: bool) -> None:
        self.rows = rows
        self.constants: dict[float, str] = {}

    def read(self, array: str, off: int) -> str:
        at = f"j + {off}" if off else "j"
        return f"{array}[b, {at}]" if self.rows else f"{array}[{at}, b]"

    def param(self, name: str, start: int) -> str:
        return f"P_{name}[j + {start}]" if start else f"P_{name}[j]"

    def number(self, value: float) -> str:
        # a typed global (K0 = dt(0.5)): a Python float would make float32 math float64
        return self.constants.setdefault(float(value), f"K{len(self.constants)}")

    def select(self, cond: str, yes: str, no: str) -> str:
        return f"({yes} if {cond} else {no})"

    def call(self, fn: str, arg: str) -> str:
        if fn == "sigmoid":  # 0.5 * tanh(a / 2) + 0.5: no overflow for large |a|
            half = self.number(0.5)
            return f"({half} * tanh({half} * {arg}) + {half})"
        return f"tanh({arg})" if fn == "tanh" else f"math.{fn}({arg})"


def _function(name: str, ps: Pass, hidden: int, rows: bool) -> str:
    """The pass as a function; the inner loop runs along contiguous memory."""
    args = [*ps.inputs, *(f"P_{a}" for a in ps.params), "pad", *ps.outputs]
    if rows:
        loops = ["for b in range(pad.shape[0]):", "    p = pad[b]",
                 f"    for j in range({hidden}):"]
    else:
        loops = [f"for j in range({hidden}):", "    for b in range(pad.shape[0]):",
                 "        p = pad[b]"]
    lines = [f"def {name}({', '.join(args)}):", *(f"    {line}" for line in loops)]
    lines += [f"            {line}" for line in ps.lines]
    return "\n".join([*lines, ""])


def numba_sources(p: Plan) -> tuple[str, str, dict[float, str], tuple[Pass, Pass]]:
    """Python source of ``forward_pass`` and ``backward_pass``, the constants they name
    (value -> global name) and the passes. Raises :class:`.trace.Unsupported` where the
    one-pass form does not apply."""
    lang = PyLang(p.rows)
    f, b = program(p, lang)
    H = p.graph.hidden
    return (_function("forward_pass", f, H, p.rows), _function("backward_pass", b, H, p.rows),
            lang.constants, (f, b))


# (forward source, backward source, dtype) -> the compiled passes
_functions: dict[tuple[Any, ...], tuple[Callable[..., None], Callable[..., None]]] = {}


class NumbaLoops:
    """Forward and backward time loops of a planned step on its compiled passes.

    jit: the compiled LSTM module (:mod:`..jit_lstm`: numba, its float32 tanh and
    compile options); dtype: the arrays' dtype (the constants are made in it).
    """

    def __init__(self, p: Plan, jit: ModuleType, dtype: Any, name: str = "cell") -> None:
        import math

        self.p, self.g = p, p.graph
        fsrc, bsrc, constants, (self._forward, self._backward) = numba_sources(p)
        self.sources = (fsrc, bsrc)
        env: dict[str, Any] = {"math": math, "tanh": jit.scalar_tanh}
        env.update({k: dtype.type(v) for v, k in constants.items()})
        # the constants' values too: two steps can differ only in them (K0 = 0.5 or 2.0)
        key = (fsrc, bsrc, str(dtype), tuple(sorted(constants.items())))
        if key not in _functions:  # layers that differ only in input size share them
            njit = jit.numba.njit(**{**jit.COMPILE_OPTIONS, "cache": False})
            exec(compile(fsrc, f"<generated compiled forward of {name}>", "exec"), env)
            exec(compile(bsrc, f"<generated compiled backward of {name}>", "exec"), env)
            if len(_functions) > 64:
                _functions.clear()
            _functions[key] = (njit(env["forward_pass"]), njit(env["backward_pass"]))
        self.fw, self.bw = _functions[key]
        self.gemms = [n for n in self.g.nodes if n.op == "gemm"]
        self.vec_params = list(dict.fromkeys(
            n.attrs["name"] for n in self.g.nodes if n.op == "param"))
        self._warm_up(dtype, name)

    def _width(self, array: str) -> int:
        """Columns of a per-step block (or entries of a flat parameter) named in a pass."""
        g, p = self.g, self.p
        if array.startswith("P_"):
            return int(prod(g.param_shapes[array[2:]]))
        if array in ("x", "px"):
            return g.xin_width
        if array in ("y", "dy"):
            return g.nodes[g.output].width
        if array.startswith(("G", "pg")):
            return g.nodes[int(array.lstrip("Gpg"))].width
        if array.startswith("sv"):
            return g.nodes[p.saved[int(array[2:])]].width
        if array.startswith("acc"):
            return g.nodes[[n.id for n in g.nodes if n.op == "param"][int(array[3:])]].width
        return g.hidden  # sp, sn, gn, gp

    def _block(self, np: Any, array: str, dtype: Any) -> Array:
        """A one-column stand-in of a per-step block, in the memory layout the loops pass:
        C order, except the gradients of the products and the input in features x
        batch, which are (w, B) views of (w, T*B) buffers (see :func:`..columns.step_blocks`)."""
        w = self._width(array)
        if self.p.rows:
            return np.zeros((1, w), dtype)
        if array == "px" or array.startswith("pg"):
            return np.zeros((w, 2), dtype)[:, :1]
        return np.zeros((w, 1), dtype)

    def _warm_up(self, dtype: Any, name: str) -> None:
        """Compile both passes now, on stand-ins of the types the loops pass (2-D blocks,
        flat parameters, a bool row), so that a failure shows here, where the caller can
        fall back to the NumPy code."""
        import warnings

        import numpy as np

        for fn, ps in ((self.fw, self._forward), (self.bw, self._backward)):
            args = [self._block(np, a, dtype) for a in ps.inputs]
            args += [np.zeros(self._width(f"P_{a}"), dtype) for a in ps.params]
            args.append(np.zeros(1, dtype=bool))
            args += [self._block(np, a, dtype) for a in ps.outputs]
            try:
                fn(*args)
            except Exception as exc:  # numba's errors have no common base
                warnings.warn(f"tinyseq: the compiled pass of {name} did not compile "
                              f"({type(exc).__name__}: {exc}); its NumPy kernels run instead",
                              RuntimeWarning, stacklevel=4)
                raise Unsupported("numba", name, "the compiled pass did not compile") from exc

    def _weights(self, np: Any, P: dict[str, Array], B: int,
                 backward: bool) -> list[tuple[Array, int]]:
        """Per product: the matrix each step multiplies by, and the state it reads.

        A product is G = M a in features x batch (a @ M.T in batch x features), with
        M = W, or W.T for ``transposed``. The matrix read transposed gets a contiguous
        copy, made once per call (OpenBLAS multiplies a 16-wide block by a transposed
        view at ~1.2-1.6x the time); batch 1 multiplies matrix by vector and reads a
        transposed view as fast. Features x batch thus multiplies forward by W as stored.
        """
        out = []
        for n in self.gemms:
            a = n.attrs
            w = P[a["name"]][a["lo"] : a["hi"]]
            m = w.T if a["transposed"] else w  # M
            if backward:
                m = m.T  # da = M.T dG
            if self.p.rows and B > 1:
                m = m.T  # rows: G = a @ M.T, da = dG @ M
            if B > 1 and not m.flags.c_contiguous:
                m = transposed_copy(np, m.T)
            out.append((m, self.g.nodes[n.args[0]].attrs["k"]))
        return out

    def _pads(self, np: Any, pad: Array | None, T: int, B: int) -> Array:
        """(T, B) bool, True at padding (contiguous rows for the passes)."""
        if pad is None:
            return np.zeros((T, B), dtype=bool)
        return np.ascontiguousarray(pad.reshape(T, B))

    def _product(self, np: Any, m: Array, a: Array, out: Array) -> None:
        """out = M a (features x batch), a @ M.T (batch x features), M a at batch 1."""
        if not self.p.rows:
            np.matmul(m, a, out=out)
        elif a.shape[0] == 1:
            np.matmul(m, a[0], out=out[0])
        else:
            np.matmul(a, m, out=out)

    def forward(self, np: Any, X: Array, S: list[Array], SV: list[Array], Y: Array | None,
                P: dict[str, Array], R: Any, order: range, prev: int, new: int,
                pad: Array | None, padded: list[bool], train: bool, dt: Any) -> None:
        g, rows = self.g, self.p.rows
        T, B = X.shape[0], (X.shape[1] if rows else X.shape[2])
        G = [np.empty((B, n.width) if rows else (n.width, B), dtype=X.dtype)
             for n in self.gemms]
        weights = self._weights(np, P, B, backward=False)
        params = [P[name].reshape(-1) for name in self.vec_params]
        pads = self._pads(np, pad, T, B)
        fw, product = self.fw, self._product
        for t in order:
            s = t if train else 0
            sp = [S[k][t + prev] for k in range(g.n_states)]
            for buf, (m, k) in zip(G, weights):
                product(np, m, sp[k], buf)
            outs = [S[k][t + new] for k in range(g.n_states)]
            if Y is not None:
                outs.append(Y[t])
            outs += [sv[s] for sv in SV]
            fw(X[t], *sp, *G, *params, pads[t], *outs)

    def backward(self, np: Any, X: Array, S: list[Array], SV: list[Array], Y: Array | None,
                 P: dict[str, Array], R: Any, GR: Any, border: range, prev: int, new: int,
                 pad: Array | None, padded: list[bool], dt: Any, DY: Array, GN: list[Array],
                 GP: list[Array], PX: Array, PG: list[Array], ACC: list[Array], TMP: Any,
                 Q: Any, KEEP: Any, flush: Callable[..., None]) -> tuple[Array, ...]:
        g, rows = self.g, self.p.rows
        T, B = X.shape[0], (X.shape[1] if rows else X.shape[2])
        weights = self._weights(np, P, B, backward=True)
        params = [P[name].reshape(-1) for name in self.vec_params]
        pads = self._pads(np, pad, T, B)
        dh = [np.empty(GN[0].shape, dtype=X.dtype) for _ in self.gemms]
        gn, gp = list(GN), list(GP)
        bw, product = self.bw, self._product
        for k_, t in enumerate(border):
            ins = [X[t], *(S[k][t + prev] for k in range(g.n_states)),
                   *(S[k][t + new] for k in range(g.n_states)), *(sv[t] for sv in SV)]
            if Y is not None:
                ins.append(Y[t])
            pg = [blocks[t] for blocks in PG]
            bw(*ins, *gn, DY[t], *params, pads[t], *gp, PX[t], *pg, *ACC)
            for buf, dg, (m, k) in zip(dh, pg, weights):  # dh += dG's product, one GEMM each
                product(np, m, dg, buf)
                np.add(gp[k], buf, out=gp[k])
            gn, gp = gp, gn
            if k_ % 8 == 7:  # subnormal gradients would slow every later step
                flush(*gn)
        return tuple(gn)
