"""A cell's generated kernels over a whole sequence, as one autograd node.

``run(cell, x, state, mask, reverse)`` traces ``cell.step`` (once per cell class,
options, sizes, dtype and device), hoists the input projection as the step path does
(``cell.input_projection``, an ordinary graph node), then runs the generated forward
loop. The node's parents are the projection (or x), the initial state and the
parameters the step reads; its backward runs the generated backward loop and finishes
the weight gradients with one GEMM each over all steps. None means "use the step path"
(an op outside the traced set, a device without the kernels, T = 0 or B = 0, ...).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ... import backend
from ...cell import Cell
from ...tensor import Tensor, _make, custom_multi, is_grad_enabled
from .. import jit
from ..columns import step_blocks
from ..sequence import MaskInfo, Steps, flush_subnormals
from ..workspace import workspace
from .codegen_numpy import Plan, backward_source, forward_source, plan
from .graph import Graph
from .trace import Unsupported, trace_step

__all__ = ["Compiled", "compile_cell", "run", "use_generated", "generated_enabled",
           "explain", "prefer_generated", "use_layout"]

DEVICES = ("cpu", "testcpu", "cuda")  # cuda: the generated CUDA kernels (.cuda_loops)
_enabled = [os.environ.get("TINYSEQ_GENERATED", "1") != "0"]
_preferred = [False]
_layout: list[bool | None] = [None]  # None: choose (rows for steps without products)
# the compiled passes work batch x features at every batch: measured faster than
# features x batch (generated / hand LSTM, training: S 1.12 vs 1.60x, Long 0.93 vs 1.19x;
# inference at M 0.84 vs 1.00x): features x batch has the faster products, but then the
# input and the output need a transposing pass and the pass writes strided gradient blocks
_numba_rows = True


def generated_enabled() -> bool:
    """Whether cells without a fused path of their own run generated kernels."""
    return _enabled[0]


@contextlib.contextmanager
def use_generated(enabled: bool = True, prefer: bool = False) -> Iterator[None]:
    """Turn the generated kernels on or off (``TINYSEQ_GENERATED=0`` starts them off).

    prefer=True also puts them before a cell's own ``fused_sequence`` (tests and
    benchmarks: the built-in cells through their step).
    """
    old = _enabled[0], _preferred[0]
    _enabled[0], _preferred[0] = enabled, prefer
    try:
        yield
    finally:
        _enabled[0], _preferred[0] = old


@contextlib.contextmanager
def use_layout(rows: bool | None) -> Iterator[None]:
    """Force the step layout (True: batch x features, False: features x batch; tests)."""
    old = _layout[0]
    _layout[0] = rows
    try:
        yield
    finally:
        _layout[0] = old


def prefer_generated() -> bool:
    """Whether the generated kernels go before a cell's own fused path."""
    return _preferred[0] and _enabled[0]


@dataclass
class Compiled:
    """A traced step's plan and its generated functions (source kept for reading)."""

    graph: Graph
    plan: Plan
    forward_src: str
    backward_src: str
    sizes: dict[str, Any]
    forward: Any
    backward: Any


_cache: dict[Any, Compiled | Unsupported] = {}


def _options(cell: Any) -> tuple[Any, ...]:
    simple = (int, float, str, bool, type(None))
    return tuple(sorted((k, v) for k, v in vars(cell).items()
                        if not k.startswith("_") and isinstance(v, simple)))


def compile_cell(cell: Any, rows: bool = False) -> Compiled:
    """The generated kernels of ``cell``'s step (cached; raises :class:`Unsupported`).

    rows: the batch x features layout (see :func:`.codegen_numpy.plan`).
    """
    first = next(cell.parameters(), None)
    dtype = None if first is None else first.dtype
    key = (type(cell), _options(cell), tuple((n, p.shape) for n, p in cell.named_parameters()),
           str(dtype), cell.device.name, rows)
    hit = _cache.get(key)
    if hit is None:
        try:
            g = trace_step(cell)
            p = plan(g, rows)
            fsrc = forward_source(p)
            bsrc, sizes = backward_source(p)
            env: dict[str, Any] = {"transposed_copy": backend.transposed_copy}
            exec(compile(fsrc, f"<generated forward of {type(cell).__name__}>", "exec"), env)
            exec(compile(bsrc, f"<generated backward of {type(cell).__name__}>", "exec"), env)
            hit = Compiled(g, p, fsrc, bsrc, sizes, env["forward"], env["backward"])
        except Unsupported as err:
            hit = err
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = hit
    if isinstance(hit, Unsupported):
        raise hit
    return hit


def explain(cell: Any) -> str | None:
    """None when ``cell``'s step is fused, else the reason ("not fused: `op` at `file:line`")."""
    try:
        compile_cell(cell)
    except Unsupported as err:
        return str(err)
    return None


# by (id, target), with the key's object kept: a dropped entry of _cache could otherwise
# free its Compiled and a new one reuse the id
_loops_cache: dict[tuple[int, str], tuple[Compiled, Compiled | None]] = {}


def _with_loops(comp: Compiled, target: str, make: Any) -> Compiled | None:
    """``comp`` with its loops from ``make(comp)`` (built once per step and target; None
    where ``make`` raises :class:`Unsupported`)."""
    entry = _loops_cache.get((id(comp), target))
    if entry is not None and entry[0] is comp:
        return entry[1]
    try:
        loops = make(comp)
        hit: Compiled | None = replace(comp, forward=loops.forward, backward=loops.backward)
    except Unsupported:
        hit = None
    if len(_loops_cache) > 64:
        _loops_cache.clear()
    _loops_cache[(id(comp), target)] = (comp, hit)
    return hit


def _on_gpu(comp: Compiled, xp: Any) -> Compiled | None:
    """``comp`` with its loops on the generated CUDA kernels."""
    from .cuda_loops import CudaLoops

    def build(in_params: str, out_params: str, body: str, name: str, preamble: str) -> Any:
        return xp.ElementwiseKernel(in_params, out_params, body, name, preamble=preamble)

    return _with_loops(comp, "cuda", lambda c: CudaLoops(c.plan, build, type(c.graph).__name__))


def _compiled_cpu(cell: Any, xp: Any, dtype: Any, rows: bool) -> Compiled | None:
    """The kernels of ``cell`` on compiled element-wise passes (numba), or None: numba
    absent or off, a dtype it does not take, or a step it cannot do."""
    module = jit.compiled(xp, dtype)
    if module is None:
        return None
    from .codegen_numba import NumbaLoops

    comp = compile_cell(cell, rows=rows)
    name = type(cell).__name__
    return _with_loops(comp, f"numba-{dtype}", lambda c: NumbaLoops(c.plan, module, dtype, name))


def _cols(xp: Any, a: Any) -> Any:
    """(T, B, W) rows -> a fresh contiguous (T, W, B)."""
    return xp.ascontiguousarray(xp.swapaxes(a, -1, -2))


def run(cell: Any, x: Tensor, state: tuple[Tensor, ...], mask: Any,
        reverse: bool) -> tuple[Tensor, tuple[Tensor, ...]] | None:
    """x (T, B, I), state (B, H) each, mask (T, B) bool or None -> (y (T, B, O), final)."""
    dev = x.device
    if not generated_enabled() or dev.name not in DEVICES or x.ndim != 3 or 0 in x.shape[:2]:
        return None
    if type(cell).fused_sequence is not Cell.fused_sequence and not prefer_generated():
        return None  # the cell's own fused path said no: respect it
    dtype = x.dtype
    for t in (*state, *cell.parameters()):
        if t.device is not dev or t.dtype != dtype:
            return None
    xp = dev.xp
    T, B = x.shape[0], x.shape[1]
    try:
        comp = compile_cell(cell)
        # batch x features needs no transposing pass over the input and the output:
        # measured faster in training at S and M (LSTM 0.83x and 0.87x of the columns
        # layout, minGRU 0.84x and 0.68x); at batch 1 features x batch multiplies by the
        # weights as stored (what the hand kernels found fastest there)
        rows = _layout[0] if _layout[0] is not None else (B > 1 or not comp.plan.gemms)
        # with numba, one compiled pass per step each way
        fast = None if dev.name == "cuda" else _compiled_cpu(
            cell, xp, dtype, _layout[0] if _layout[0] is not None else _numba_rows)
        if fast is not None:
            comp = fast
        elif rows and dev.name != "cuda":
            comp = compile_cell(cell, rows=True)
    except Unsupported:
        return None
    if dev.name == "cuda":
        gpu = _on_gpu(comp, xp)
        if gpu is None:
            return None
        comp = gpu
    g, p = comp.graph, comp.plan
    names = g.params()
    params = dict(cell.named_parameters())
    info = MaskInfo.make(xp, mask, T, B)
    if info is not None:
        valid = info.valid

        def select_back(gr: Any) -> tuple[Any]:
            return (xp.where(valid, gr, dtype.type(0)),)

        x = _make(xp.where(valid, x.data, dtype.type(0)), dev, (x,), select_back)
    projected = cell.input_projection(x)
    xin = projected if projected is not None else x
    parents = (xin, *state, *(params[n] for n in names))
    training = is_grad_enabled() and any(q.requires_grad for q in parents)
    H, n_out = g.hidden, g.nodes[g.output].width
    rows = p.rows

    def block(*shape: int) -> tuple[int, ...]:  # (..., w, B) or (..., B, w)
        return (*shape[:-1], B, shape[-1]) if rows else (*shape, B)

    steps = Steps(T, reverse)
    X = xp.ascontiguousarray(xin.data) if rows else _cols(xp, xin.data)
    S = [xp.empty(block(T + 1, H), dtype=dtype) for _ in range(g.n_states)]
    for k, s in enumerate(state):
        S[k][steps.initial_slot()] = s.data if rows else s.data.T
    SV = [xp.empty(block(T if training else 1, g.nodes[i].width), dtype=dtype) for i in p.saved]
    Y = None if p.output_state >= 0 else xp.empty(block(T, n_out), dtype=dtype)
    R = [workspace.take(xp, block(w), dtype) for w in p.scratch]
    P = {n: params[n].data for n in names}
    pad = None if info is None else (info.pad if rows else xp.swapaxes(info.pad, 1, 2))
    padded = [False] * T if info is None else info.padded_steps
    comp.forward(xp, X, S, SV, Y, P, R, steps.order, steps.prev, steps.new, pad, padded,
                 training, dtype.type)
    y_steps = steps.outputs(S[p.output_state]) if Y is None else Y
    y = y_steps if rows else xp.swapaxes(y_steps, 1, 2)
    y = xp.ascontiguousarray(y) if info is None else info.zero_padded(xp, y)
    final = [(S[k][steps.final_slot()] if rows else S[k][steps.final_slot()].T).copy()
             for k in range(g.n_states)]
    if not training:
        workspace.give(xp, *R)
        return Tensor(y, device=dev), tuple(Tensor(f, device=dev) for f in final)

    def backward(grads: list[Any]) -> list[Any]:
        dy, d_final = grads[0], grads[1:]
        sizes = comp.sizes
        if dy is None:
            DY = xp.zeros(block(T, n_out), dtype=dtype)
        else:
            DY = dy.astype(dtype, copy=True) if rows else _cols(xp, dy)
            if info is not None:
                DY = xp.where(info.valid if rows else xp.swapaxes(info.valid, 1, 2), DY,
                              dtype.type(0))
        GN = [xp.zeros(block(H), dtype=dtype) if d is None
              else (d.astype(dtype, copy=True) if rows else xp.ascontiguousarray(d.T))
              for d in d_final]
        GP = [xp.empty(block(H), dtype=dtype) for _ in range(g.n_states)]
        KEEP = [xp.empty(block(H), dtype=dtype) for _ in range(g.n_states)]

        def grad_blocks(w: int, pooled: bool) -> tuple[Any, Any, Any]:
            """(buffer, per-step blocks, (w, T*B) matrix) for all steps' gradients."""
            if not rows:
                return step_blocks(xp, w, T, B, dtype)
            buf = workspace.take(xp, (T, B, w), dtype) if pooled else xp.empty((T, B, w), dtype)
            return buf, buf, buf.reshape(T * B, w).T

        pgs = [grad_blocks(g.nodes[i].width, True) for i in p.gemms]
        merged = sizes["merged_px"]  # the input's gradient shares a product's buffer
        px_buf, PX, px_flat = (None, *pgs[merged][1:]) if merged >= 0 else grad_blocks(
            g.xin_width, not rows)
        ACC = [xp.zeros(block(g.nodes[i].width), dtype=dtype) for i in sizes["accs"]]
        TMP = [workspace.take(xp, block(w), dtype) for w in sizes["tmp"]]
        GR = [workspace.take(xp, block(w), dtype) for w in sizes["scratch"]]
        Q = [workspace.take(xp, block(g.nodes[i].width), dtype) for i in p.recomputed]
        out = comp.backward(xp, X, S, SV, Y, P, R, GR, steps.backward_order, steps.prev,
                            steps.new, pad, padded, dtype.type, DY, GN, GP, PX,
                            [q[1] for q in pgs], ACC, TMP, Q, KEEP,
                            lambda *a: flush_subnormals(xp, *a))
        workspace.give(xp, *TMP, *GR, *Q)
        if rows and px_buf is not None:
            d_xin = px_buf  # fresh, not pooled: handed to the caller as it is
        else:  # a copy: the buffer may be pooled (and at B = 1 px_flat.T is contiguous)
            d_xin = xp.array(px_flat.T, copy=True, order="C").reshape(T, B, g.xin_width)
            if px_buf is not None:
                workspace.give(xp, px_buf)
        pgrads = {n: xp.zeros_like(params[n].data) for n in names}
        for j, i in enumerate(p.gemms):
            n = g.nodes[i]
            a = _all_steps(xp, comp, n.args[0], X, S, SV, Y, steps)
            a_rows = (a if rows else xp.swapaxes(a, 1, 2)).reshape(T * B, -1)
            dw = xp.matmul(pgs[j][2], a_rows)
            a_ = n.attrs
            if a_["transposed"]:
                pgrads[a_["name"]] += dw.T
            else:
                pgrads[a_["name"]][a_["lo"] : a_["hi"]] += dw
            workspace.give(xp, pgs[j][0])
        for acc, i in zip(ACC, sizes["accs"]):
            a_ = g.nodes[i].attrs
            total = acc.sum(axis=0 if rows else 1)
            if len(g.param_shapes[a_["name"]]) == 2:
                pgrads[a_["name"]][a_["lo"]] += total
            else:
                pgrads[a_["name"]][a_["lo"] : a_["hi"]] += total
        d_state = [o.copy() if rows else o.T.copy() for o in out]
        workspace.give(xp, *R)
        return [d_xin, *d_state, *(pgrads[n] for n in names)]

    outs = custom_multi([y, *final], parents, backward, device=dev)
    return outs[0], tuple(outs[1:])


def _all_steps(xp: Any, comp: Compiled, i: int, X: Any, S: Any, SV: Any, Y: Any,
               steps: Steps) -> Any:
    """The (T, w, B) values node i took at every step (a state, the input or a saved value)."""
    p = comp.plan
    name, lo, hi = p.fwd[i]
    if name == "x":
        full = X
    elif name.startswith("sp"):
        full = steps.inputs(S[int(name[2:])])
    elif name.startswith("sn"):
        full = steps.outputs(S[int(name[2:])])
    elif name.startswith("sv"):
        full = SV[int(name[2:])]
    elif name == "y":
        full = Y
    else:
        raise AssertionError(f"n{i} is not kept for backward")
    return full[:, :, lo:hi] if comp.plan.rows else full[:, lo:hi]
