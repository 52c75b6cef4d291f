"""Fused vanilla RNN over a whole sequence: h = g(W_ih x + b_ih + W_hh h + b_hh).

g is tanh or relu (``nonlinearity``). The only thing saved for backward is the states
(T + 1, B, H): the input product is written straight into the state slots and
activated in place, and g' is recovered from the output (1 - h**2, or h > 0).
"""

from __future__ import annotations

from typing import Any

from .gates import initial_grad, sequence_grads
from .sequence import FLUSH_EVERY, MaskInfo, Steps, flush_subnormals
from .workspace import add_biases, workspace

__all__ = ["forward", "backward"]

Array = Any
NONLINEARITIES = ("tanh", "relu")


def forward(
    xp: Any,
    x: Array,
    state: tuple[Array, ...],
    w_ih: Array,
    w_hh: Array,
    b_ih: Array | None,
    b_hh: Array | None,
    mask: MaskInfo | None,
    reverse: bool,
    training: bool,
    nonlinearity: str = "tanh",
) -> tuple[Array, tuple[Array, ...], Any]:
    """x (T, B, I), state (h0,) (B, H) -> (y (T, B, H), (h_T,), cache|None)."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"rnn nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    relu = nonlinearity == "relu"
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    steps = Steps(T, reverse)
    hs = xp.empty((T + 1, B, H), dtype=dt)
    pre = steps.outputs(hs)  # each step's slot first holds its input product
    flat = pre.reshape(T * B, H)
    xp.matmul(x.reshape(T * B, n_in), xp.ascontiguousarray(w_ih.T), out=flat)
    bias = add_biases(xp, b_ih, b_hh)
    if bias is not None:
        xp.add(flat, bias, out=flat)
    hs[steps.initial_slot()] = state[0]
    rec = workspace.take(xp, (B, H), dt)
    w_hh_t = xp.ascontiguousarray(w_hh.T)  # BLAS is faster on W.T stored than on a view
    for t in steps.order:
        hp, hn = hs[t + steps.prev], hs[t + steps.new]
        xp.matmul(hp, w_hh_t, out=rec)
        xp.add(hn, rec, out=hn)
        if relu:
            xp.maximum(hn, 0.0, out=hn)
        else:
            xp.tanh(hn, out=hn)
        if mask is not None and mask.padded_steps[t]:
            xp.copyto(hn, hp, where=mask.pad[t])
    workspace.give(xp, rec)
    y = steps.outputs(hs)
    if mask is not None:
        y = mask.zero_padded(xp, y)
    h_t = hs[steps.final_slot()].copy()
    if not training:
        return y, (h_t,), None
    return y, (h_t,), (xp, x, w_ih, w_hh, bias is not None, hs, mask, steps, relu)


def backward(
    cache: Any, dy: Array | None, d_state: tuple[Array | None, ...], need_dx: bool = True
) -> tuple[Array | None, ...]:
    """Gradients (dx, dh0, dW_ih, dW_hh, db_ih, db_hh) from dy and (dh_T,)."""
    xp, x, w_ih, w_hh, has_bias, hs, mask, steps, relu = cache
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    dpre = workspace.take(xp, (T, B, H), dt)
    dh = initial_grad(xp, d_state[0], (B, H), dt)
    dhp = xp.empty((B, H), dtype=dt)
    if dy is not None and mask is not None:
        dy = mask.zero_padded(xp, dy)
    tmp = workspace.take(xp, (B, H), dt)
    for k, t in enumerate(steps.backward_order):
        if dy is not None:
            xp.add(dh, dy[t], out=dh)
        h, d = hs[t + steps.new], dpre[t]
        if relu:
            xp.greater(h, 0.0, out=tmp)  # as 0/1 in the float buffer
            xp.multiply(dh, tmp, out=d)
        else:
            xp.multiply(h, h, out=tmp)
            xp.subtract(tmp.dtype.type(1), tmp, out=tmp)
            xp.multiply(dh, tmp, out=d)
        padded = mask is not None and mask.padded_steps[t]
        if padded:
            xp.copyto(d, 0, where=mask.pad[t])
        xp.matmul(d, w_hh, out=dhp)
        if padded:
            xp.copyto(dhp, dh, where=mask.pad[t])
        dh, dhp = dhp, dh
        if k % FLUSH_EVERY == FLUSH_EVERY - 1:
            flush_subnormals(xp, dh)
    workspace.give(xp, tmp)
    dx, dw_ih, dw_hh, db = sequence_grads(xp, dpre.reshape(T * B, -1).T, x, steps.inputs(hs), w_ih, has_bias, need_dx)
    workspace.give(xp, dpre)
    return dx, dh, dw_ih, dw_hh, db, db
