"""The features x batch ("columns") layout for the fused kernels.

Each step keeps its gates as a (G, B) block and its state as (H, B): the recurrent
product is then W_hh (G, H) @ h (H, B), which multiplies by the weights as stored
(no transposed copy per call: a transposing copy of a 512 x 2048 matrix costs more
than a dozen steps at batch 1), every gate is one contiguous (H, B) row block, and at
small batches BLAS runs this product faster than the row-major h (B, H) @ W.T.
The input product is one GEMM per chunk of steps (:class:`InputSteps`); the gate
gradients of all steps fill a (G, T, B) buffer, so dx, dW_ih, dW_hh and db are one
GEMM each.
"""

from __future__ import annotations

from typing import Any

from .workspace import workspace

__all__ = [
    "step_blocks",
    "InputSteps",
    "to_columns",
    "grad_columns",
    "to_rows",
]

Array = Any


def step_blocks(xp: Any, G: int, T: int, B: int, dtype: Any) -> tuple[Array, Array, Array]:
    """A pooled buffer for T steps of (G, B) blocks: (buffer, steps view, flat view).

    ``steps[t]`` is step t's (G, B) block and ``flat`` the (G, T*B) matrix of all
    steps (the operand of the all-steps GEMMs). The memory is (G, T, B), so that flat
    is a plain matrix, except at B = 1, where (T, G, 1) makes each step's block
    contiguous and flat is a transposed view, which BLAS reads as well.
    """
    if B == 1:
        buf = workspace.take(xp, (T, G, 1), dtype)
        return buf, buf, buf.reshape(T, G).T
    buf = workspace.take(xp, (G, T, B), dtype)
    return buf, buf.transpose(1, 0, 2), buf.reshape(G, T * B)


class InputSteps:
    """w_ih (G, I) @ x_t + bias for each step t, computed a chunk of steps at a time.

    ``steps[t]`` is step t's (G, B) block. One GEMM covers a chunk of at least
    ``MIN_COLUMNS`` columns (chunk * B), which runs it near full speed, while the chunk
    stays small enough to be read back from cache: a product of the whole sequence is
    read back from memory, at a stride, and long sequences then cost more per step than
    short ones. Chunks are aligned to multiples of the chunk length, so the steps may be
    visited in either direction. At B = 1 the whole sequence is one (T, G) product and
    each step's block a contiguous row of it. Call :meth:`release` when done.
    """

    MIN_COLUMNS = 256

    def __init__(self, xp: Any, x: Array, w_ih: Array, bias: Array | None) -> None:
        T, B, n_in = x.shape
        G = w_ih.shape[0]
        self.xp, self.w, self.T, self.B = xp, w_ih, T, B
        self.x2 = x.reshape(T * B, n_in)
        self.start = -1  # first step held in buf (chunks only)
        self.bias = None if bias is None else bias[:, None]
        if B == 1:
            self.chunk = T
            self.buf = workspace.take(xp, (T, G), x.dtype)
            xp.matmul(self.x2, w_ih.T, out=self.buf)
            if bias is not None:
                xp.add(self.buf, bias, out=self.buf)
        else:
            self.chunk = min(T, -(-self.MIN_COLUMNS // B))
            self.buf = workspace.take(xp, (G, self.chunk * B), x.dtype)

    def __getitem__(self, t: int) -> Array:
        B = self.B
        if B == 1:
            return self.buf[t][:, None]
        start = t - t % self.chunk
        if start != self.start:
            self._compute(start, min(self.T, start + self.chunk))
        k = t - start
        return self.buf[:, k * B : (k + 1) * B]

    def _compute(self, start: int, stop: int) -> None:
        xp, B = self.xp, self.B
        out = self.buf[:, : (stop - start) * B]
        xp.matmul(self.w, self.x2[start * B : stop * B].T, out=out)
        if self.bias is not None:
            xp.add(out, self.bias, out=out)
        self.start = start

    def release(self) -> None:
        """Give the buffer back to the workspace."""
        workspace.give(self.xp, self.buf)


def to_columns(xp: Any, a: Array, out: Array | None = None) -> Array:
    """a (B, H) as a fresh contiguous (H, B) array (into ``out`` when given)."""
    if out is None:
        return a.T.copy()
    xp.copyto(out, a.T)
    return out


def grad_columns(xp: Any, g: Array | None, B: int, H: int, dtype: Any) -> Array:
    """The gradient w.r.t. a final (B, H) state as a fresh (H, B) array (zeros if None)."""
    if g is None:
        return xp.zeros((H, B), dtype=dtype)
    return to_columns(xp, g, out=xp.empty((H, B), dtype=dtype))


def to_rows(xp: Any, a: Array) -> Array:
    """a (..., H, B) as a fresh contiguous (..., B, H) array (never a view of a)."""
    return xp.swapaxes(a, -1, -2).copy()
