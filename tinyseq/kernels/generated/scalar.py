"""A traced step's element-wise part as per-element scalar code, forward and reverse mode.

The compiled targets run a step as its products (BLAS, one per ``gemm`` node, each
reading only the state), then ONE pass over the H*B elements that evaluates every
element-wise op of the step, and in backward ONE pass for their reverse mode before
the dh products. Element (j, b) covers rows j, j + H, ... of every value: a node of
width k*H is computed at the offsets its consumers need (a gate block of a (4H, B)
product is an offset, so no slice is made). :func:`program` writes both passes once;
a :class:`Lang` prints them: C for the CUDA kernels (:mod:`.codegen_cuda`), Python for
the numba loops on the CPU (:mod:`.codegen_numba`). Steps whose products read an
element-wise result (the lecture's GRU) are refused: they need a product inside the
pass, and keep the NumPy code (:mod:`.codegen_numpy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .codegen_numpy import Plan
from .graph import Graph, Node
from .trace import Unsupported

__all__ = ["Lang", "Pass", "program", "check"]


class Lang:
    """How a target prints one scalar statement or expression (C, as the CUDA kernels)."""

    comment = "//"
    end = ";"  # after a statement
    declare = "T "  # before a new variable

    def read(self, array: str, off: int) -> str:
        """Element (j + off, b) of a per-step block."""
        return f"{array}[(j + {off}) * B + b]" if off else f"{array}[j * B + b]"

    def param(self, name: str, start: int) -> str:
        """Entry start + j of an element-wise parameter (flat)."""
        return f"P_{name}[{start} + j]"

    def number(self, value: float) -> str:
        return f"T({value!r})"

    def let(self, var: str, expr: str, const: bool = False) -> str:
        qualifier = "const " if const and self.declare else ""
        return f"{qualifier}{self.declare}{var} = {expr}{self.end}"

    def add_to(self, target: str, expr: str) -> str:
        return f"{target} += {expr}{self.end}"

    def store(self, target: str, expr: str) -> str:
        return f"{target} = {expr}{self.end}"

    def select(self, cond: str, yes: str, no: str) -> str:
        return f"({cond} ? {yes} : {no})"

    def call(self, fn: str, arg: str) -> str:
        """sigmoid, tanh, exp or log of a scalar."""
        return f"ts_sigmoid({arg})" if fn == "sigmoid" else f"{fn}({arg})"


@dataclass
class Pass:
    """One pass: the arrays it reads and writes (per-step blocks), its element-wise
    parameters (flat, read at ``start + j``) and its statements for element (j, b),
    where ``p`` is True at a padded column."""

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def check(g: Graph) -> None:
    """Raise :class:`Unsupported` where the one-pass form does not apply."""
    for n in g.nodes:
        if n.op == "gemm" and g.nodes[n.args[0]].op != "state":
            raise Unsupported("a product of an element-wise result", n.where,
                              "the compiled pass needs the step's products first")
        if n.batched and n.width % g.hidden:
            raise Unsupported(f"a value of width {n.width}", n.where, "not a multiple of H")


class _Emitter:
    """Scalar expressions of (node, offset) pairs, each computed once."""

    def __init__(self, p: Plan, lang: Lang, backward: bool) -> None:
        self.p, self.g, self.lang, self.backward = p, p.graph, lang, backward
        self.done: dict[tuple[int, int], str] = {}
        self.lines: list[str] = []

    def value(self, i: int, off: int) -> str:
        key = (i, off)
        if key in self.done:
            return self.done[key]
        n, L = self.g.nodes[i], self.lang
        name, lo, _ = self.p.fwd[i]
        if n.op == "const":
            out = L.number(n.attrs["value"])
        elif n.op == "param":
            shape = self.g.param_shapes[n.attrs["name"]]
            start = n.attrs["lo"] * (shape[1] if len(shape) == 2 else 1)
            out = L.param(n.attrs["name"], start + off)
        elif n.op == "slice":
            out = self.value(n.args[0], off + n.attrs["lo"])
        elif n.op == "state":
            out = L.read(f"sp{n.attrs['k']}", off)
        elif n.op == "xin":
            out = L.read("x", off)
        elif n.op == "gemm" and not self.backward:
            out = L.read(f"G{i}", off)
        elif self.backward and i not in self.p.recomputed:
            if not (name.startswith(("sn", "sv")) or name == "y"):
                raise Unsupported(f"n{i}", n.where, "not kept for backward")
            out = L.read(name, lo + off)
        else:
            args = [self.value(a, off) for a in n.args]
            var = f"v{i}_{off}"
            self.lines.append(f"{L.let(var, _scalar(n, args, L), const=True)}  "
                              f"{L.comment} {n.where}")
            out = var
        self.done[key] = out
        return out


def _scalar(n: Node, a: list[str], L: Lang) -> str:
    ops = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
    if n.op in ops:
        return f"{a[0]} {ops[n.op]} {a[1]}"
    if n.op == "neg":
        return f"-{a[0]}"
    if n.op == "relu":
        return L.select(f"{a[0]} > {L.number(0.0)}", a[0], L.number(0.0))
    return L.call(n.op, a[0])


def _vector_params(g: Graph) -> list[str]:
    return [name for name in g.params()
            if any(n.op == "param" and n.attrs["name"] == name for n in g.nodes)]


def program(p: Plan, lang: Lang) -> tuple[Pass, Pass]:
    """The forward and backward passes of a planned step (raises :class:`Unsupported`).

    forward reads x, sp<k>, G<gemm id> and writes sn<k>, y (unless the output is a
    state) and sv<saved>; backward reads x, sp, sn, sv, y, gn<k>, dy and writes gp<k>,
    px, pg<gemm id> and adds to acc<param>.
    """
    g = p.graph
    check(g)
    H, L = g.hidden, lang
    params = _vector_params(g)
    # ---- forward: new states, the output, the saved values ----------------------------
    fw = _Emitter(p, L, backward=False)
    f = Pass(inputs=["x", *(f"sp{k}" for k in range(g.n_states)),
                     *(f"G{n.id}" for n in g.nodes if n.op == "gemm")], params=params)
    writes: list[str] = []
    for k, i in enumerate(g.new_states):
        v = fw.value(i, 0)
        writes.append(L.store(L.read(f"sn{k}", 0), L.select("p", L.read(f"sp{k}", 0), v)))
        f.outputs.append(f"sn{k}")
    if p.output_state < 0:
        writes.append(L.store(L.read("y", 0), fw.value(g.output, 0)))
        f.outputs.append("y")
    for s, i in enumerate(p.saved):
        for off in range(0, g.nodes[i].width, H):
            writes.append(L.store(L.read(f"sv{s}", off), fw.value(i, off)))
        f.outputs.append(f"sv{s}")
    f.lines = fw.lines + writes
    # ---- backward: reverse mode over the (node, offset) pairs --------------------------
    bw = _Emitter(p, L, backward=True)
    grads: dict[tuple[int, int], str] = {}
    lines: list[str] = []
    zero = L.number(0.0)

    def add(i: int, off: int, expr: str) -> None:
        n = g.nodes[i]
        if n.op == "const":
            return
        if n.op == "slice":
            add(n.args[0], off + n.attrs["lo"], expr)
            return
        key = (i, off)
        if key in grads:
            lines.append(L.add_to(grads[key], expr))
        else:
            grads[key] = f"d{i}_{off}"
            lines.append(L.let(grads[key], expr))

    for k, i in enumerate(g.new_states):
        add(i, 0, L.select("p", zero, L.read(f"gn{k}", 0)))
    add(g.output, 0, L.select("p", zero, L.read("dy", 0)))
    pairs = sorted(_demand(g, p), key=lambda io: (-io[0], io[1]))
    for i, off in pairs:
        n = g.nodes[i]
        if n.op in ("state", "xin", "param", "const", "slice", "gemm") or (i, off) not in grads:
            continue
        d = grads[(i, off)]
        a = n.args
        if n.op in ("add", "sub"):
            add(a[0], off, d)
            add(a[1], off, d if n.op == "add" else f"-{d}")
        elif n.op == "neg":
            add(a[0], off, f"-{d}")
        elif n.op == "mul":
            add(a[0], off, f"{d} * {bw.value(a[1], off)}")
            add(a[1], off, f"{d} * {bw.value(a[0], off)}")
        elif n.op == "div":
            add(a[0], off, f"{d} / {bw.value(a[1], off)}")
            add(a[1], off, f"-{d} * {bw.value(i, off)} / {bw.value(a[1], off)}")
        elif n.op == "sigmoid":
            y = bw.value(i, off)
            add(a[0], off, f"{d} * {y} * ({L.number(1.0)} - {y})")
        elif n.op == "tanh":
            y = bw.value(i, off)
            add(a[0], off, f"{d} * ({L.number(1.0)} - {y} * {y})")
        elif n.op == "relu":
            add(a[0], off, L.select(f"{bw.value(i, off)} > {zero}", d, zero))
        elif n.op == "exp":
            add(a[0], off, f"{d} * {bw.value(i, off)}")
        elif n.op == "log":
            add(a[0], off, f"{d} / {bw.value(a[0], off)}")
    b = Pass(inputs=["x", *(f"sp{k}" for k in range(g.n_states)),
                     *(f"sn{k}" for k in range(g.n_states)),
                     *(f"sv{j}" for j in range(len(p.saved)))], params=params)
    if p.output_state < 0:
        b.inputs.append("y")
    b.inputs += [f"gn{k}" for k in range(g.n_states)] + ["dy"]
    writes = []
    for k in range(g.n_states):
        leaf = next(n.id for n in g.nodes if n.op == "state" and n.attrs["k"] == k)
        got = grads.get((leaf, 0), zero)
        writes.append(L.store(L.read(f"gp{k}", 0), L.select("p", L.read(f"gn{k}", 0), got)))
        b.outputs.append(f"gp{k}")
    xin = next(n.id for n in g.nodes if n.op == "xin")
    for off in range(0, g.xin_width, H):
        writes.append(L.store(L.read("px", off), grads.get((xin, off), zero)))
    b.outputs.append("px")
    for n in g.nodes:
        if n.op == "gemm":
            for off in range(0, n.width, H):
                writes.append(L.store(L.read(f"pg{n.id}", off), grads.get((n.id, off), zero)))
            b.outputs.append(f"pg{n.id}")
    for j_, i in enumerate(n.id for n in g.nodes if n.op == "param"):
        n = g.nodes[i]
        for off in range(0, n.width, H):
            if (i, off) in grads:
                writes.append(L.add_to(L.read(f"acc{j_}", off), grads[(i, off)]))
        b.outputs.append(f"acc{j_}")
    b.lines = bw.lines + lines + writes
    return f, b


def _demand(g: Graph, p: Plan) -> set[tuple[int, int]]:
    """Every (node, offset) the step computes: from the outputs down to the leaves."""
    H = g.hidden
    seen: set[tuple[int, int]] = set()
    todo = [(i, 0) for i in (*g.new_states, g.output)]
    todo += [(i, off) for i in p.saved for off in range(0, g.nodes[i].width, H)]
    while todo:
        i, off = todo.pop()
        if (i, off) in seen:
            continue
        seen.add((i, off))
        n = g.nodes[i]
        if n.op == "slice":
            todo.append((n.args[0], off + n.attrs["lo"]))
        elif n.op != "gemm":
            todo += [(a, off) for a in n.args]
    return seen
