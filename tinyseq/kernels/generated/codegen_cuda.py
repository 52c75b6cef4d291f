"""CUDA C for one traced step: the element-wise part as one ElementwiseKernel each way.

A step on the GPU is its products (cuBLAS), then ONE generated kernel for every
element-wise op of the step, then in backward ONE kernel for their reverse mode, then
``dh += W.T @ dG`` per product. The kernels' statements are :mod:`.scalar`'s passes
printed as C; they run over the H*B elements of (H, B) blocks: thread i is row j =
i / B, column b = i % B. Every array is ``raw`` (indexed by hand), so the sources can
be compiled for the host and checked against the NumPy code (:mod:`.codegen_numpy`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .codegen_numpy import Plan
from .scalar import Lang, program

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


def cuda_kernels(p: Plan, name: str = "cell") -> tuple[CudaKernel, CudaKernel]:
    """The forward and backward kernels of a planned step (raises :class:`Unsupported`)."""
    kernels = []
    for way, ps in zip(("forward", "backward"), program(p, Lang())):
        ins = [f"raw T {a}" for a in ps.inputs] + [f"raw T P_{a}" for a in ps.params]
        kernels.append(CudaKernel(f"tinyseq_gen_{name}_{way}",
                                  ", ".join([*ins, "raw bool pad", "int64 B"]),
                                  ", ".join(f"raw T {a}" for a in ps.outputs),
                                  "\n".join(ps.lines)))
    return kernels[0], kernels[1]
