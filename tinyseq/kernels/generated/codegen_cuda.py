"""CUDA C for one traced step: the element-wise part as one ElementwiseKernel each way.

A step on the GPU is its products (cuBLAS, one per ``gemm`` node, all reading only
the state or the input), then ONE generated kernel for every element-wise op of the
step, then in backward ONE kernel for their reverse mode, then ``dh += W.T @ dG`` per
product. The kernels run over the H*B elements of a (H, B) block: thread i is row j =
i / B, column b = i % B, and a node of width w = k*H is computed at rows j, j + H, ...
where its consumers need it (a gate block of a (4H, B) product is a row offset, so no
slices are materialised). Every array is ``raw`` (indexed by hand), so the sources can
be compiled for the host and checked against the NumPy code (:mod:`.codegen_numpy`).
Steps whose products read an element-wise result (the lecture's GRU) are not generated.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codegen_numpy import Plan
from .graph import Graph, Node
from .trace import Unsupported

__all__ = ["CudaKernel", "cuda_kernels", "PREAMBLE"]

PREAMBLE = r"""
template <typename U> __device__ __forceinline__ U ts_sigmoid(U a) {
    return U(0.5) * tanh(U(0.5) * a) + U(0.5);
}
"""

_PROLOGUE = """const ptrdiff_t j = i / B;
const ptrdiff_t b = i - j * B;
const bool p = pad[b];
(void)p;
"""


@dataclass(frozen=True)
class CudaKernel:
    """One ElementwiseKernel: CuPy parameter strings and the per-element body."""

    name: str
    in_params: str
    out_params: str
    body: str

    def source(self) -> str:
        return _PROLOGUE + self.body


def _check(g: Graph) -> None:
    for n in g.nodes:
        if n.op == "gemm" and g.nodes[n.args[0]].op != "state":
            raise Unsupported("a product of an element-wise result", n.where,
                              "CUDA kernels need the step's products first")
        if n.batched and n.width % g.hidden:
            raise Unsupported(f"a value of width {n.width}", n.where, "not a multiple of H")


class _Emitter:
    """Scalar CUDA expressions of (node, row offset) pairs, each computed once."""

    def __init__(self, p: Plan, backward: bool) -> None:
        self.p, self.g, self.backward = p, p.graph, backward
        self.done: dict[tuple[int, int], str] = {}
        self.lines: list[str] = []

    def read(self, array: str, off: int) -> str:
        return f"{array}[(j + {off}) * B + b]" if off else f"{array}[j * B + b]"

    def value(self, i: int, off: int) -> str:
        key = (i, off)
        if key in self.done:
            return self.done[key]
        n = self.g.nodes[i]
        name, lo, _ = self.p.fwd[i]
        if n.op == "const":
            out = f"T({n.attrs['value']!r})"
        elif n.op == "param":
            shape = self.g.param_shapes[n.attrs["name"]]
            start = n.attrs["lo"] * (shape[1] if len(shape) == 2 else 1)
            out = f"{_param(n)}[{start} + j + {off}]"
        elif n.op == "slice":
            out = self.value(n.args[0], off + n.attrs["lo"])
        elif n.op == "state":
            out = self.read(f"sp{n.attrs['k']}", off)
        elif n.op == "xin":
            out = self.read("x", off)
        elif n.op == "gemm" and not self.backward:
            out = self.read(f"G{i}", off)
        elif self.backward and i not in self.p.recomputed:
            if not (name.startswith(("sn", "sv")) or name == "y"):
                raise Unsupported(f"n{i}", n.where, "not kept for backward")
            out = self.read(name, lo + off)
        else:
            args = [self.value(a, off) for a in n.args]
            var = f"v{i}_{off}"
            self.lines.append(f"const T {var} = {_scalar(n, args)};  // {n.where}")
            out = var
        self.done[key] = out
        return out


def _param(n: Node) -> str:
    return f"P_{n.attrs['name']}"


def _scalar(n: Node, a: list[str]) -> str:
    ops = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
    if n.op in ops:
        return f"{a[0]} {ops[n.op]} {a[1]}"
    return {"neg": f"-{a[0]}", "sigmoid": f"ts_sigmoid({a[0]})", "tanh": f"tanh({a[0]})",
            "relu": f"({a[0]} > T(0) ? {a[0]} : T(0))", "exp": f"exp({a[0]})",
            "log": f"log({a[0]})"}[n.op]


def _inputs(g: Graph, p: Plan, backward: bool) -> list[str]:
    names = ["x"] + [f"sp{k}" for k in range(g.n_states)]
    if not backward:  # backward reads saved values, not the products
        names += [f"G{n.id}" for n in g.nodes if n.op == "gemm"]
    else:
        names += [f"sn{k}" for k in range(g.n_states)] + [f"sv{j}" for j in range(len(p.saved))]
        if p.output_state < 0:
            names.append("y")
        names += [f"gn{k}" for k in range(g.n_states)] + ["dy"]
    names += [f"P_{name}" for name in g.params()
              if any(n.op == "param" and n.attrs["name"] == name for n in g.nodes)]
    return [f"raw T {name}" for name in names] + ["raw bool pad", "int64 B"]


def cuda_kernels(p: Plan, name: str = "cell") -> tuple[CudaKernel, CudaKernel]:
    """The forward and backward kernels of a planned step (raises :class:`Unsupported`)."""
    g = p.graph
    _check(g)
    H = g.hidden
    # ---- forward: new states, the output, the saved values ----------------------------
    fw = _Emitter(p, backward=False)
    outs: list[str] = []
    writes: list[str] = []
    for k, i in enumerate(g.new_states):
        v = fw.value(i, 0)
        writes.append(f"sn{k}[j * B + b] = p ? sp{k}[j * B + b] : {v};")
        outs.append(f"raw T sn{k}")
    if p.output_state < 0:
        writes.append(f"y[j * B + b] = {fw.value(g.output, 0)};")
        outs.append("raw T y")
    for s, i in enumerate(p.saved):
        for off in range(0, g.nodes[i].width, H):
            writes.append(f"{fw.read(f'sv{s}', off)} = {fw.value(i, off)};")
        outs.append(f"raw T sv{s}")
    forward = CudaKernel(f"tinyseq_gen_{name}_forward", ", ".join(_inputs(g, p, False)),
                         ", ".join(outs), "\n".join(fw.lines + writes))
    # ---- backward: reverse mode over the (node, offset) pairs --------------------------
    bw = _Emitter(p, backward=True)
    grads: dict[tuple[int, int], str] = {}
    lines: list[str] = []

    def add(i: int, off: int, expr: str) -> None:
        n = g.nodes[i]
        if n.op == "const":
            return
        if n.op == "slice":
            add(n.args[0], off + n.attrs["lo"], expr)
            return
        key = (i, off)
        if key in grads:
            lines.append(f"{grads[key]} += {expr};")
        else:
            grads[key] = f"d{i}_{off}"
            lines.append(f"T d{i}_{off} = {expr};")

    for k, i in enumerate(g.new_states):
        add(i, 0, f"(p ? T(0) : gn{k}[j * B + b])")
    add(g.output, 0, "(p ? T(0) : dy[j * B + b])")
    pairs = sorted({(i, off) for i, off in _demand(g, p)}, key=lambda io: (-io[0], io[1]))
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
            add(a[0], off, f"{d} * {y} * (T(1) - {y})")
        elif n.op == "tanh":
            y = bw.value(i, off)
            add(a[0], off, f"{d} * (T(1) - {y} * {y})")
        elif n.op == "relu":
            add(a[0], off, f"({bw.value(i, off)} > T(0) ? {d} : T(0))")
        elif n.op == "exp":
            add(a[0], off, f"{d} * {bw.value(i, off)}")
        elif n.op == "log":
            add(a[0], off, f"{d} / {bw.value(a[0], off)}")
    writes = []
    b_outs = []
    for k in range(g.n_states):
        leaf = next(n.id for n in g.nodes if n.op == "state" and n.attrs["k"] == k)
        got = grads.get((leaf, 0), "T(0)")
        writes.append(f"gp{k}[j * B + b] = p ? gn{k}[j * B + b] : {got};")
        b_outs.append(f"raw T gp{k}")
    xin = next(n.id for n in g.nodes if n.op == "xin")
    for off in range(0, g.xin_width, H):
        writes.append(f"{bw.read('px', off)} = {grads.get((xin, off), 'T(0)')};")
    b_outs.append("raw T px")
    for n in g.nodes:
        if n.op == "gemm":
            for off in range(0, n.width, H):
                writes.append(f"{bw.read(f'pg{n.id}', off)} = {grads.get((n.id, off), 'T(0)')};")
            b_outs.append(f"raw T pg{n.id}")
    for j_, i in enumerate(n.id for n in g.nodes if n.op == "param"):
        n = g.nodes[i]
        for off in range(0, n.width, H):
            if (i, off) in grads:
                writes.append(f"{bw.read(f'acc{j_}', off)} += {grads[(i, off)]};")
        b_outs.append(f"raw T acc{j_}")
    backward = CudaKernel(f"tinyseq_gen_{name}_backward", ", ".join(_inputs(g, p, True)),
                          ", ".join(b_outs), "\n".join(bw.lines + lines + writes))
    return forward, backward


def _demand(g: Graph, p: Plan) -> set[tuple[int, int]]:
    """Every (node, row offset) the step computes: from the outputs down to the leaves."""
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
