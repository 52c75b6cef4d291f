"""The time loops around the generated CUDA kernels (:mod:`.codegen_cuda`).

:class:`CudaLoops` has the signature of the generated NumPy ``forward`` and
``backward`` functions (so :mod:`.runner` can use either), and per step runs the
products with ``xp.matmul`` and the element-wise part as ONE kernel launch each way.
``build(in_params, out_params, body, name)`` makes a kernel (CuPy's ElementwiseKernel on
a GPU; the tests pass a host build of the same source). Kernels are called with every
argument ``raw`` and ``size=H*B``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .codegen_cuda import PREAMBLE, cuda_kernels
from .codegen_numpy import Plan

__all__ = ["CudaLoops"]

Array = Any


class CudaLoops:
    """Forward and backward loops of a planned step on generated kernels."""

    def __init__(self, p: Plan, build: Callable[..., Any], name: str = "cell") -> None:
        self.p, self.g = p, p.graph
        fw, bw = cuda_kernels(p, name)
        self.sources = (fw, bw)
        self.fw = build(fw.in_params, fw.out_params, fw.source(), fw.name, preamble=PREAMBLE)
        self.bw = build(bw.in_params, bw.out_params, bw.source(), bw.name, preamble=PREAMBLE)
        self.gemms = [n for n in self.g.nodes if n.op == "gemm"]
        self.vec_params = list(dict.fromkeys(
            n.attrs["name"] for n in self.g.nodes if n.op == "param"))

    def _w(self, P: dict[str, Array], n: Any) -> Array:
        w = P[n.attrs["name"]][n.attrs["lo"] : n.attrs["hi"]]
        return w.T if n.attrs["transposed"] else w

    def _pad(self, np: Any, pad: Array | None, t: int, B: int) -> Array:
        return np.zeros(B, dtype=bool) if pad is None else np.ascontiguousarray(pad[t][0])

    def forward(self, np: Any, X: Array, S: list[Array], SV: list[Array], Y: Array | None,
                P: dict[str, Array], R: Any, order: range, prev: int, new: int,
                pad: Array | None, padded: list[bool], train: bool, dt: Any) -> None:
        g = self.g
        H, B = g.hidden, X.shape[2]
        G = [np.empty((n.width, B), dtype=X.dtype) for n in self.gemms]
        params = [P[name] for name in self.vec_params]
        for t in order:
            s = t if train else 0
            sp = [S[k][t + prev] for k in range(g.n_states)]
            for buf, n in zip(G, self.gemms):
                np.matmul(self._w(P, n), sp[g.nodes[n.args[0]].attrs["k"]], out=buf)
            outs = [S[k][t + new] for k in range(g.n_states)]
            if Y is not None:
                outs.append(Y[t])
            outs += [sv[s] for sv in SV]
            self.fw(X[t], *sp, *G, *params, self._pad(np, pad, t, B), B, *outs, size=H * B)

    def backward(self, np: Any, X: Array, S: list[Array], SV: list[Array], Y: Array | None,
                 P: dict[str, Array], R: Any, GR: Any, border: range, prev: int, new: int,
                 pad: Array | None, padded: list[bool], dt: Any, DY: Array, GN: list[Array],
                 GP: list[Array], PX: Array, PG: list[Array], ACC: list[Array], TMP: Any,
                 Q: Any, KEEP: Any, flush: Callable[..., None]) -> tuple[Array, ...]:
        g = self.g
        H, B = g.hidden, X.shape[2]
        pg = [np.empty((n.width, B), dtype=X.dtype) for n in self.gemms]
        px = np.empty((g.xin_width, B), dtype=X.dtype)
        params = [P[name] for name in self.vec_params]
        gn, gp = list(GN), list(GP)
        for k_, t in enumerate(border):
            sp = [S[k][t + prev] for k in range(g.n_states)]
            sn = [S[k][t + new] for k in range(g.n_states)]
            ins = [X[t], *sp, *sn, *(sv[t] for sv in SV)]
            if Y is not None:
                ins.append(Y[t])
            ins += [*gn, np.ascontiguousarray(DY[t]), *params, self._pad(np, pad, t, B), B]
            self.bw(*ins, *gp, px, *pg, *ACC, size=H * B)
            for buf, n in zip(pg, self.gemms):  # dh += W.T @ dG, one GEMM per product
                w = self._w(P, n)
                k = g.nodes[n.args[0]].attrs["k"]
                gp[k] += np.matmul(w.T, buf)
            PX[t][...] = px
            for dst, buf in zip(PG, pg):
                dst[t][...] = buf
            gn, gp = gp, gn
            if k_ % 8 == 7:
                flush(*gn)
        return tuple(gn)
