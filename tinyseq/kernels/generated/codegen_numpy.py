"""NumPy code for one traced step: the forward and backward time loops as Python source.

The source is plain NumPy on preallocated blocks, (B, w) batch x features (the CPU's
layout above batch 1: the hoisted input and the output need no transposing pass) or
(w, B) features x batch (as :mod:`..columns`; batch 1 and the GPU): every op is one
ufunc call with ``out=``, the recurrent products are ``np.matmul`` into their block,
gate blocks are slices (views, no copies). Backward
is reverse mode over the same graph: each node's gradient gets a block, written by its
first contribution and accumulated by the rest; the products' gradients (and the
input's) go to (R, T, B) buffers so that the weight gradients are one GEMM each after
the loop. What backward reads is saved per step (``SV``) unless it is a state, the
input, or a one-pass op of those (then it is recomputed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .graph import Graph, Node

__all__ = ["Plan", "plan", "forward_source", "backward_source"]

Storage = tuple[str, int, int]  # block name, first row, end row


@dataclass
class Plan:
    """Where each value lives: the forward and backward storages, saves, recomputes."""

    graph: Graph
    fwd: dict[int, Storage] = field(default_factory=dict)
    widths: dict[str, int] = field(default_factory=dict)  # block name -> rows
    saved: list[int] = field(default_factory=list)  # node ids, one SV buffer each
    recomputed: list[int] = field(default_factory=list)
    scratch: list[int] = field(default_factory=list)  # widths of forward scratch blocks
    gemms: list[int] = field(default_factory=list)  # gemm node ids, one PG buffer each
    output_state: int = -1  # state index whose slot is the output, or -1 (Y buffer)
    rows: bool = False  # (B, w) blocks instead of (w, B)

    def saved_bytes_per_tbh(self, itemsize: int) -> float:
        """Bytes kept for backward per step, batch row and hidden unit (states included)."""
        g = self.graph
        rows = g.n_states * g.hidden + sum(g.nodes[i].width for i in self.saved)
        if self.output_state < 0:
            rows += g.nodes[g.output].width
        return rows * itemsize / g.hidden


def _expr(s: Storage, widths: dict[str, int]) -> str:
    name, lo, hi = s
    if (lo, hi) == (0, widths[name]):
        return name
    return f"{name}[:, {lo}:{hi}]" if widths.get(ROWS) else f"{name}[{lo}:{hi}]"


ROWS = " rows"  # a key of Plan.widths: True for the batch x features layout


def plan(g: Graph, rows: bool = False) -> Plan:
    """Decide storages, what to save and what to recompute.

    rows: lay each step out batch x features, (B, w) blocks with gates as column
    slices, instead of features x batch (w, B) blocks with gates as row slices.
    """
    p = Plan(g)
    p.rows = rows
    p.widths[ROWS] = int(rows)
    H = g.hidden
    nodes = g.nodes
    state_of: dict[int, int] = {}
    for k, i in enumerate(g.new_states):
        state_of.setdefault(i, k)
    p.output_state = state_of.get(g.output, -1)
    for k in range(g.n_states):
        p.widths[f"sp{k}"] = p.widths[f"sn{k}"] = H
    p.widths["x"] = g.xin_width
    p.widths["y"] = nodes[g.output].width

    def base(i: int) -> int:
        while nodes[i].op == "slice":
            i = nodes[i].args[0]
        return i

    free = {n.id for n in nodes if n.op in ("state", "xin", "param", "const")}
    free |= set(state_of) | {g.output}
    needed: set[int] = set()
    for n in nodes:
        if n.op == "mul":
            needed.update(n.args)
        elif n.op == "div":
            needed.update((*n.args, n.id))
        elif n.op in ("sigmoid", "tanh", "relu", "exp"):
            needed.add(n.id)
        elif n.op in ("log", "gemm"):
            needed.add(n.args[0])
    for i in sorted({base(i) for i in needed}):
        if i in free or nodes[i].op in ("param", "const"):
            continue
        n = nodes[i]
        if n.op in ("tanh", "relu", "neg", "add", "sub", "mul") and all(
            base(a) in free for a in n.args
        ):  # one pass over values backward has anyway: recompute, do not keep
            p.recomputed.append(i)
        else:
            p.saved.append(i)
    for n in nodes:
        if n.op == "state":
            p.fwd[n.id] = (f"sp{n.attrs['k']}", 0, H)
        elif n.op == "xin":
            p.fwd[n.id] = ("x", 0, n.width)
        elif n.op in ("param", "const"):
            p.fwd[n.id] = (f"p{n.id}" if n.op == "param" else f"c{n.id}", 0, max(n.width, 1))
            p.widths[p.fwd[n.id][0]] = max(n.width, 1)
        elif n.op == "slice":
            b, lo, _ = p.fwd[n.args[0]]
            p.fwd[n.id] = (b, lo + n.attrs["lo"], lo + n.attrs["hi"])
        elif n.id in state_of:
            p.fwd[n.id] = (f"sn{state_of[n.id]}", 0, H)
        elif n.id == g.output:
            p.fwd[n.id] = ("y", 0, n.width)
        elif n.id in p.saved:
            name = f"sv{p.saved.index(n.id)}"
            p.fwd[n.id], p.widths[name] = (name, 0, n.width), n.width
        else:
            name = f"r{len(p.scratch)}"
            p.scratch.append(n.width)
            p.fwd[n.id], p.widths[name] = (name, 0, n.width), n.width
        if n.op == "gemm":
            p.gemms.append(n.id)
    return p


_UFUNC = {"add": "add", "sub": "subtract", "mul": "multiply", "div": "divide",
          "neg": "negative", "tanh": "tanh", "exp": "exp", "log": "log"}


def _compute(n: Node, dest: str, arg: list[str], rows: bool = False) -> list[str]:
    """Lines that compute node ``n`` into ``dest`` from its arguments' expressions."""
    if n.op == "gemm":
        if rows:  # a (B, K) @ W.T (K, R), W.T as a contiguous copy (see _prologue)
            w = f"W{n.id}" if n.attrs["transposed"] else f"Wt{n.id}"
            return [f"np.matmul({arg[0]}, {w}, out={dest})"]
        w = f"Wt{n.id}" if n.attrs["transposed"] else f"W{n.id}"
        return [f"np.matmul({w}, {arg[0]}, out={dest})"]
    if n.op == "sigmoid":  # 0.5 * tanh(a / 2) + 0.5: no overflow
        return [f"np.multiply({arg[0]}, half, out={dest})", f"np.tanh({dest}, out={dest})",
                f"np.multiply({dest}, half, out={dest})", f"np.add({dest}, half, out={dest})"]
    if n.op == "relu":
        return [f"np.maximum({arg[0]}, zero, out={dest})"]
    return [f"np.{_UFUNC[n.op]}({', '.join(arg)}, out={dest})"]


def _prologue(p: Plan, backward: bool = False) -> list[str]:
    """The loop's constants, parameter views and scratch blocks.

    A product whose weight would be read transposed gets a contiguous copy of ``W.T``
    (``backend.transposed_copy``, blocked: a plain transposing copy is ~4x slower on a
    2048 x 512 matrix), made once per call (in features x batch, above batch 1): OpenBLAS multiplies a
    16-wide block by a transposed view at about 1.5-1.7x the time of the same product
    by a contiguous matrix (measured at an LSTM's S: batch x features forward 25 vs
    16 us, features x batch backward 17 vs 10 us).
    """
    lines = ["half, zero, one = dt(0.5), dt(0.0), dt(1.0)"]
    for n in p.graph.nodes:
        a = n.attrs
        if n.op == "const":
            lines.append(f"c{n.id} = dt({a['value']!r})")
        elif n.op == "param":
            shape = p.graph.param_shapes[a["name"]]
            sel = f"[{a['lo']}]" if len(shape) == 2 else f"[{a['lo']}:{a['hi']}]"
            column = "" if p.rows else "[:, None]"
            lines.append(f"p{n.id} = P[{a['name']!r}]{sel}{column}  # {n.where}")
        elif n.op == "gemm":
            lines.append(f"W{n.id} = P[{a['name']!r}][{a['lo']}:{a['hi']}]  # {n.where}")
            if p.rows and a["transposed"] == backward:
                lines.append(f"Wt{n.id} = transposed_copy(np, W{n.id})")
            elif not p.rows and a["transposed"] != backward:  # at batch 1 (a matrix times
                # a vector) BLAS reads the transposed view row by row: faster than a copy
                lines.append(f"Wt{n.id} = W{n.id}.T if X.shape[-1] == 1 else "
                             f"transposed_copy(np, W{n.id})")
    lines += [f"r{j} = R[{j}]" for j in range(len(p.scratch))]
    return lines


def forward_source(p: Plan) -> str:
    """``forward(np, X, S, SV, Y, P, R, order, prev, new, pad, padded, train, dt)``.

    X (T, Gx, B) inputs; S per state (T+1, H, B); SV per saved value (T, w, B), or
    (1, w, B) when not training; Y (T, O, B) unless the output is a state; P the
    parameters by name; R scratch (w, B) blocks; pad[t] (1, B) True at padding.
    """
    g = p.graph
    body = [f"    {line}" for line in _prologue(p)]
    body.append("    for t in order:")
    loop = ["s = t if train else 0", "x = X[t]"]
    for k in range(g.n_states):
        loop.append(f"sp{k}, sn{k} = S[{k}][t + prev], S[{k}][t + new]")
    loop += [f"sv{j} = SV[{j}][s]" for j in range(len(p.saved))]
    if p.output_state < 0:
        loop.append("y = Y[t]")
    for n in g.nodes:
        if n.op in ("state", "xin", "param", "const", "slice"):
            continue
        loop.append(f"# n{n.id} = {n.op}  {n.where}")
        dest = _expr(p.fwd[n.id], p.widths)
        loop += _compute(n, dest, [_expr(p.fwd[a], p.widths) for a in n.args], p.rows)
    for k, i in enumerate(g.new_states):
        if p.fwd[i][0] != f"sn{k}":
            loop.append(f"np.copyto(sn{k}, {_expr(p.fwd[i], p.widths)})")
    if p.output_state < 0 and p.fwd[g.output][0] != "y":
        loop.append(f"np.copyto(y, {_expr(p.fwd[g.output], p.widths)})")
    loop.append("if padded[t]:  # a padded column keeps its state")
    loop += [f"    np.copyto(sn{k}, sp{k}, where=pad[t])" for k in range(g.n_states)]
    body += [f"        {line}" for line in loop]
    head = "def forward(np, X, S, SV, Y, P, R, order, prev, new, pad, padded, train, dt):"
    return "\n".join([head, *body, ""])


class _Grads:
    """Gradient blocks of one backward step and which of their rows hold a value yet."""

    def __init__(self, p: Plan) -> None:
        self.p, self.g = p, p.graph
        self.store: dict[int, Storage] = {}
        self.widths: dict[str, int] = {ROWS: int(p.rows)}
        self.init: dict[str, np.ndarray] = {}
        self.lines: list[str] = []
        self.tmp: list[int] = []  # widths of temporaries
        self.scratch: list[int] = []
        self.accs: list[int] = []  # param node ids with an accumulator

    def block(self, name: str, width: int, initialized: bool) -> None:
        self.widths[name] = width
        self.init[name] = np.full(width, initialized)

    def expr(self, s: Storage) -> str:
        return _expr(s, self.widths)

    def state(self, s: Storage) -> str:
        """'none', 'all' or 'some': how much of the block region holds a gradient."""
        rows = self.init[s[0]][s[1] : s[2]]
        return "all" if rows.all() else "some" if rows.any() else "none"

    def zero_rest(self, s: Storage) -> None:
        rows = self.init[s[0]]
        lo = None
        for r in range(s[1], s[2] + 1):
            unset = r < s[2] and not rows[r]
            if unset and lo is None:
                lo = r
            elif not unset and lo is not None:
                cols = ":, " if self.p.rows else ""
                self.lines.append(f"{s[0]}[{cols}{lo}:{r}] = 0")
                lo = None
        rows[s[1] : s[2]] = True

    def temp(self, width: int) -> str:
        if width not in self.tmp:
            self.tmp.append(width)
        return f"tmp{self.tmp.index(width)}"

    def contribute(self, target: int, make: Any, negate: bool = False) -> None:
        """Add the value ``make(dest)`` writes (negated if asked) to ``target``'s gradient."""
        node = self.g.nodes[target]
        if node.op == "const":
            return
        s = self.store[target]
        dest = self.expr(s)
        src = getattr(make, "source", None)
        if src == dest and not negate:  # the same block (shared): nothing to copy
            self.init[s[0]][s[1] : s[2]] = True
            return
        how = "all" if node.op == "param" else self.state(s)
        if how == "some":
            self.zero_rest(s)
            how = "all"
        if how == "none":
            self.lines += make(dest)
            if negate:
                self.lines.append(f"np.negative({dest}, out={dest})")
            self.init[s[0]][s[1] : s[2]] = True
            return
        src = getattr(make, "source", None)
        if src is not None:  # a plain copy: add the source itself
            self.lines.append(f"np.{'subtract' if negate else 'add'}({dest}, {src}, out={dest})")
            return
        tmp = self.temp(s[2] - s[1])
        self.lines += make(tmp)
        self.lines.append(f"np.{'subtract' if negate else 'add'}({dest}, {tmp}, out={dest})")


def _available(p: Plan, i: int) -> str:
    """The expression of a forward value inside the backward loop."""
    return _expr(p.fwd[i], p.widths) if i not in p.recomputed else f"q{p.recomputed.index(i)}"


def backward_source(p: Plan) -> tuple[str, dict[str, Any]]:
    """``backward(np, X, S, SV, Y, P, R, GR, border, prev, new, pad, padded, dt, DY, GN,
    GP, PX, PG, ACC, TMP, Q, flush)`` and the sizes of the blocks it needs.

    DY (T, O, B) output gradients; GN/GP per state (H, B), the gradients after and
    before the step (swapped each step, GN holds the initial state's at the end); PX
    (Gx, T, B)-backed per-step blocks of the input's gradient, PG one per product;
    ACC (w, B) accumulators of the element-wise parameters; GR, TMP, Q scratch blocks.
    """
    g = p.graph
    gr = _Grads(p)
    H = g.hidden
    state_of: dict[int, int] = {}
    for k, i in enumerate(g.new_states):
        state_of.setdefault(i, k)
    for k in range(g.n_states):
        gr.block(f"gn{k}", H, True)
        gr.block(f"gp{k}", H, False)
    gr.block("px", g.xin_width, False)
    gr.block("dy", g.nodes[g.output].width, True)
    uses = g.uses()
    merged_px = -1  # the product whose gradient buffer the input's shares, or -1
    for n in g.nodes:  # leaves and products have fixed blocks
        if n.op == "state":
            gr.store[n.id] = (f"gp{n.attrs['k']}", 0, H)
        elif n.op == "xin":
            gr.store[n.id] = ("px", 0, n.width)
        elif n.op == "param":
            name = f"acc{len(gr.accs)}"
            gr.accs.append(n.id)
            gr.block(name, n.width, True)
            gr.store[n.id] = (name, 0, n.width)
        elif n.op == "gemm":
            name = f"pg{p.gemms.index(n.id)}"
            gr.block(name, n.width, False)
            gr.store[n.id] = (name, 0, n.width)
    for n in g.nodes:
        # x_t + W h: the sum's gradient IS the product's (and the input's, when the
        # input is used only here): it is written straight into their buffers
        if n.op != "add" or n.id in state_of or n.id == g.output:
            continue
        a, b = (g.nodes[i] for i in n.args)
        for one, other in ((a, b), (b, a)):
            if one.op == "gemm" and uses[one.id] == [n.id] and one.width == n.width:
                gr.store[n.id] = gr.store[one.id]
                if (other.op == "xin" and uses[other.id] == [n.id] and other.width == n.width
                        and merged_px < 0):
                    merged_px = p.gemms.index(one.id)
                    gr.store[other.id] = gr.store[one.id]
                break
    for n in reversed(g.nodes):  # consumers before operands
        if n.op in ("state", "xin", "param", "const", "slice", "gemm") or n.id in gr.store:
            continue
        if n.id in state_of:
            gr.store[n.id] = (f"gn{state_of[n.id]}", 0, H)
            continue
        if n.id == g.output:
            gr.store[n.id] = ("dy", 0, n.width)
            continue
        (c,) = uses[n.id] if len(uses[n.id]) == 1 else (None,)
        consumer = None if c is None or c < 0 else g.nodes[c]
        if (consumer is not None and consumer.width == n.width and consumer.id in gr.store
                and (consumer.op == "add" or consumer.op == "sub" and consumer.args[0] == n.id)
                and consumer.args[0] != consumer.args[1]):
            gr.store[n.id] = gr.store[consumer.id]  # identity: share the consumer's block
            continue
        name = f"g{len(gr.scratch)}"
        gr.scratch.append(n.width)
        gr.block(name, n.width, False)
        gr.store[n.id] = (name, 0, n.width)
    for n in g.nodes:
        if n.op == "slice":
            b_, lo, _ = gr.store[n.args[0]]
            gr.store[n.id] = (b_, lo + n.attrs["lo"], lo + n.attrs["hi"])

    def copy_from(src: str) -> Any:
        def make(d: str) -> list[str]:
            return [f"np.copyto({d}, {src})"]

        make.source = src  # type: ignore[attr-defined]
        return make

    # the gradients arriving from after the step
    for k, i in enumerate(g.new_states):
        if gr.store[i] != (f"gn{k}", 0, H):
            gr.contribute(i, copy_from(f"gn{k}"))
    if gr.store[g.output] != ("dy", 0, gr.widths["dy"]):
        gr.contribute(g.output, copy_from("dy"))
    def emit(n: Node, d: str, v: list[str], out: str) -> None:
        a0 = n.args[0]
        if n.op in ("add", "sub"):
            gr.contribute(a0, copy_from(d))
            gr.contribute(n.args[1], copy_from(d), negate=n.op == "sub")
        elif n.op == "neg":
            gr.contribute(a0, copy_from(d), negate=True)
        elif n.op == "mul":
            gr.contribute(a0, lambda dst, b=v[1]: [f"np.multiply({d}, {b}, out={dst})"])
            gr.contribute(n.args[1], lambda dst, a=v[0]: [f"np.multiply({d}, {a}, out={dst})"])
        elif n.op == "div":
            gr.contribute(a0, lambda dst: [f"np.divide({d}, {v[1]}, out={dst})"])
            gr.contribute(n.args[1], lambda dst: [f"np.multiply({d}, {out}, out={dst})",
                                                  f"np.divide({dst}, {v[1]}, out={dst})"],
                          negate=True)
        elif n.op == "sigmoid":
            gr.contribute(a0, lambda dst: [f"np.subtract(one, {out}, out={dst})",
                                           f"np.multiply({dst}, {out}, out={dst})",
                                           f"np.multiply({dst}, {d}, out={dst})"])
        elif n.op == "tanh":
            gr.contribute(a0, lambda dst: [f"np.multiply({out}, {out}, out={dst})",
                                           f"np.subtract(one, {dst}, out={dst})",
                                           f"np.multiply({dst}, {d}, out={dst})"])
        elif n.op == "relu":
            gr.contribute(a0, lambda dst: [f"np.greater({out}, zero, out={dst})",
                                           f"np.multiply({dst}, {d}, out={dst})"])
        elif n.op == "exp":
            gr.contribute(a0, lambda dst: [f"np.multiply({d}, {out}, out={dst})"])
        elif n.op == "log":
            gr.contribute(a0, lambda dst: [f"np.divide({d}, {v[0]}, out={dst})"])
        elif n.op == "gemm":
            if p.rows:  # d (B, R) @ W (R, K)
                w = f"Wt{n.id}" if n.attrs["transposed"] else f"W{n.id}"
                gr.contribute(a0, lambda dst: [f"np.matmul({d}, {w}, out={dst})"])
            else:
                w = f"W{n.id}" if n.attrs["transposed"] else f"Wt{n.id}"
                gr.contribute(a0, lambda dst: [f"np.matmul({w}, {d}, out={dst})"])

    for n in reversed(g.nodes):
        if n.op in ("state", "xin", "param", "const", "slice"):
            continue
        s = gr.store[n.id]
        how = gr.state(s)
        if how == "none":
            continue
        gr.lines.append(f"# d n{n.id} = {n.op}  {n.where}")
        if how == "some":
            gr.zero_rest(s)
        d = gr.expr(s)
        v = [_available(p, a) for a in n.args]
        out = _available(p, n.id) if n.op in ("sigmoid", "tanh", "relu", "exp", "div") else ""
        emit(n, d, v, out)
    blocks = [f"gp{k}" for k in range(g.n_states)] + [f"pg{j}" for j in range(len(p.gemms))]
    for name in blocks + (["px"] if merged_px < 0 else []):
        gr.zero_rest((name, 0, gr.widths[name]))

    body = [f"    {line}" for line in _prologue(p, backward=True)]
    body += [f"    gn{k}, gp{k} = GN[{k}], GP[{k}]" for k in range(g.n_states)]
    body += [f"    tmp{j} = TMP[{j}]" for j in range(len(gr.tmp))]
    body += [f"    g{j} = GR[{j}]" for j in range(len(gr.scratch))]
    body += [f"    acc{j} = ACC[{j}]" for j in range(len(gr.accs))]
    body += [f"    q{j} = Q[{j}]" for j in range(len(p.recomputed))]
    body.append("    for k_, t in enumerate(border):")
    loop = ["x, dy, px = X[t], DY[t], PX[t]"]
    for k in range(g.n_states):
        loop.append(f"sp{k}, sn{k} = S[{k}][t + prev], S[{k}][t + new]")
    loop += [f"sv{j} = SV[{j}][t]" for j in range(len(p.saved))]
    loop += [f"pg{j} = PG[{j}][t]" for j in range(len(p.gemms))]
    if p.output_state < 0:
        loop.append("y = Y[t]")
    for j, i in enumerate(p.recomputed):
        n = g.nodes[i]
        loop.append(f"# recomputed: n{i} = {n.op}  {n.where}")
        loop += _compute(n, f"q{j}", [_expr(p.fwd[a], p.widths) for a in n.args], p.rows)
    loop.append("if padded[t]:  # padded columns pass the state's gradient through")
    for k in range(g.n_states):
        loop += [f"    np.copyto(KEEP[{k}], gn{k})", f"    np.copyto(gn{k}, zero, where=pad[t])"]
    loop += gr.lines
    loop.append("if padded[t]:")
    for k in range(g.n_states):
        loop.append(f"    np.copyto(gp{k}, KEEP[{k}], where=pad[t])")
    if merged_px < 0:
        loop.append("    np.copyto(px, zero, where=pad[t])")
    loop += [f"    np.copyto(pg{j}, zero, where=pad[t])" for j in range(len(p.gemms))]
    loop += [f"gn{k}, gp{k} = gp{k}, gn{k}" for k in range(g.n_states)]
    loop.append("if k_ % 8 == 7:  # subnormal gradients would slow every later step")
    loop.append(f"    flush({', '.join(f'gn{k}' for k in range(g.n_states))})")
    body += [f"        {line}" for line in loop]
    body.append(f"    return ({''.join(f'gn{k}, ' for k in range(g.n_states))})")
    head = ("def backward(np, X, S, SV, Y, P, R, GR, border, prev, new, pad, padded, dt, DY, "
            "GN, GP, PX, PG, ACC, TMP, Q, KEEP, flush):")
    sizes = {"tmp": list(gr.tmp), "scratch": list(gr.scratch),
             "accs": list(gr.accs), "merged_px": merged_px}
    return "\n".join([head, *body, ""]), sizes
