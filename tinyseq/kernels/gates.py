"""The batch x features ("rows") layout of the rnn and simple_gru kernels, and helpers
both layouts share (``transposed``, ``sequence_grads``, ``column_sums``).

Activations are stored (T, G, B, H): each step's gates are one contiguous block and
each gate a contiguous (B, H) piece of it, so element-wise work runs on contiguous
memory (about twice as fast as on column slices of a (B, G*H) matrix, and fewer calls:
one call covers all the sigmoid gates). Gradients stay row-major (T, B, G*H) in the
weights' gate order, so dx, dW_ih and dW_hh are one GEMM each over all steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend
from .workspace import workspace

__all__ = [
    "gate_blocks",
    "transposed",
    "transposed_blocks",
    "slot_bias",
    "input_product",
    "sequence_grads",
    "initial_grad",
    "column_sums",
]

Array = Any


def gate_blocks(a: Array, n: int) -> Array:
    """The (n, B, H) view of a row-major (B, n*H) gate matrix: block k is gate k."""
    B = a.shape[0]
    return a.reshape(B, n, a.shape[1] // n).transpose(1, 0, 2)


def transposed(xp: Any, w: Array) -> Array:
    """A pooled contiguous copy of w.T (give it back when done)."""
    out = workspace.take(xp, (w.shape[1], w.shape[0]), w.dtype)
    return backend.transposed_copy(xp, w, out)


def transposed_blocks(xp: Any, w: Array, n: int, order: Sequence[int], halved: int = 0) -> Array:
    """W.T stored contiguously, (K, n*H), with column block s = (gate order[s] of w).T.

    w: (n*H, K) with gates stacked in rows. BLAS multiplies faster by a stored W.T than
    by a transposed view, and the permutation puts the gates in the kernel's slot order.
    The first ``halved`` slots are scaled by 1/2 (exact in binary floating point): they
    are sigmoid gates, computed as 0.5 * tanh(a / 2) + 0.5 from the halved product.
    """
    H = w.shape[0] // n
    out = xp.empty((w.shape[1], w.shape[0]), dtype=w.dtype)
    half = w.dtype.type(0.5)
    for s, k in enumerate(order):
        dst = out[:, s * H : (s + 1) * H]
        backend.transposed_copy(xp, w[k * H : (k + 1) * H], out=dst)
        if s < halved:
            xp.multiply(dst, half, out=dst)
    return out


def slot_bias(
    xp: Any, bias: Array | None, n: int, order: Sequence[int], halved: int = 0
) -> Array | None:
    """The (n*H,) bias in slot order with the first ``halved`` slots scaled by 1/2."""
    if bias is None:
        return None
    H = bias.shape[0] // n
    out = xp.empty_like(bias)
    for s, k in enumerate(order):
        out[s * H : (s + 1) * H] = bias[k * H : (k + 1) * H]
    if halved:
        xp.multiply(out[: halved * H], bias.dtype.type(0.5), out=out[: halved * H])
    return out


def input_product(xp: Any, x: Array, w_ih_t: Array, bias: Array | None) -> Array:
    """x (T, B, I) @ w_ih_t (I, G) + bias (G,) for all steps: one GEMM, one bias pass.

    Returns a scratch (T, B, G) array from the workspace (give it back when done).
    Each step then adds its slice to the recurrent product straight into the gate-major
    block (one pass that both sums and moves the gates; a separate transposing pass
    over all steps costs about three times a plain one).
    """
    T, B, n_in = x.shape
    G = w_ih_t.shape[1]
    out = workspace.take(xp, (T, B, G), x.dtype)
    flat = out.reshape(T * B, G)
    xp.matmul(x.reshape(T * B, n_in), w_ih_t, out=flat)
    if bias is not None:
        xp.add(flat, bias, out=flat)
    return out


def sequence_grads(
    xp: Any, flat: Array, x: Array, h_in: Array, w_ih: Array, has_bias: bool, need_dx: bool
) -> tuple[Array | None, Array, Array, Array | None]:
    """(dx, dW_ih, dW_hh, db) from the gate gradients of all steps, one GEMM each.

    flat: (G, T*B) gate gradients — a plain matrix in the columns layout, the transposed
    view of the (T*B, G) gradients in the row layout; x (T, B, I) the inputs; h_in
    (T, B, H) the states the steps read; w_ih (G, I). db is the one bias gradient shared
    by b_ih and b_hh.
    """
    T, B, n_in = x.shape
    dx = xp.matmul(flat.T, w_ih).reshape(T, B, n_in) if need_dx else None
    dw_ih = xp.matmul(flat, x.reshape(T * B, n_in))
    dw_hh = xp.matmul(flat, h_in.reshape(T * B, -1))
    db = column_sums(xp, flat.T) if has_bias else None
    return dx, dw_ih, dw_hh, db


def initial_grad(xp: Any, g: Array | None, shape: tuple[int, ...], dtype: Any) -> Array:
    """A fresh, writable copy of the gradient w.r.t. a final state (zeros if None)."""
    return xp.zeros(shape, dtype=dtype) if g is None else g.astype(dtype, copy=True)


def column_sums(xp: Any, d: Array) -> Array:
    """d.sum(axis=0) for a 2-D d, as a BLAS vector-matrix product (multithreaded)."""
    return xp.matmul(_ones(xp, d.shape[0], d.dtype), d)


_ones_cache: dict[tuple[int, int, str], Array] = {}


def _ones(xp: Any, n: int, dtype: Any) -> Array:
    key = (id(xp), n, np.dtype(dtype).str)
    ones = _ones_cache.get(key)
    if ones is None:
        if len(_ones_cache) > 16:
            _ones_cache.clear()
        ones = _ones_cache[key] = xp.ones((n,), dtype=dtype)
    return ones
