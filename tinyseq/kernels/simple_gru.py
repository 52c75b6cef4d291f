"""Fused simplified GRU (the lecture's update-gate-only cell) over a whole sequence.

Gates (u, c~): u = sigmoid(W_iu x + b_iu + W_hu c + b_hu), c~ = tanh(W_ic x + b_ic +
W_hc c + b_hc), c = u * c~ + (1 - u) * c_prev. Saved for backward: the activated gates,
gate-major (T, 2, B, H), and the states (T + 1, B, H) — 3 numbers per T*B*H.
"""

from __future__ import annotations

from typing import Any

from .gates import (
    gate_blocks,
    initial_grad,
    input_product,
    sequence_grads,
    slot_bias,
    transposed_blocks,
)
from .sequence import FLUSH_EVERY, MaskInfo, Steps, flush_subnormals
from .workspace import add_biases, sigmoid_from_half_, workspace

__all__ = ["forward", "backward"]

Array = Any


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
) -> tuple[Array, tuple[Array, ...], Any]:
    """x (T, B, I), state (c0,) (B, H) -> (y (T, B, H), (c_T,), cache|None)."""
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    steps = Steps(T, reverse)
    # u's weights and bias halved: one tanh serves both gates (see sigmoid_from_half_)
    bias = slot_bias(xp, add_biases(xp, b_ih, b_hh), 2, (0, 1), halved=1)
    xw = input_product(xp, x, transposed_blocks(xp, w_ih, 2, (0, 1), halved=1), bias)
    shape = (T, 2, B, H)
    gates = xp.empty(shape, dtype=dt) if training else workspace.take(xp, shape, dt)
    hs = xp.empty((T + 1, B, H), dtype=dt)
    hs[steps.initial_slot()] = state[0]
    rec = workspace.take(xp, (B, 2 * H), dt)
    rec_g = gate_blocks(rec, 2)
    w_hh_t = transposed_blocks(xp, w_hh, 2, (0, 1), halved=1)
    for t in steps.order:
        hp, hn = hs[t + steps.prev], hs[t + steps.new]
        g = gates[t]
        xp.matmul(hp, w_hh_t, out=rec)
        xp.add(rec, xw[t], out=rec)
        u, cand = g[0], g[1]
        xp.tanh(rec_g, out=g)  # also moves the gates into their blocks
        sigmoid_from_half_(xp, u)
        # c = c_prev + u * (c~ - c_prev)
        xp.subtract(cand, hp, out=hn)
        xp.multiply(hn, u, out=hn)
        xp.add(hn, hp, out=hn)
        if mask is not None and mask.padded_steps[t]:
            xp.copyto(hn, hp, where=mask.pad[t])
    workspace.give(xp, rec, xw)
    y = steps.outputs(hs)
    if mask is not None:
        y = mask.zero_padded(xp, y)
    h_t = hs[steps.final_slot()].copy()
    if not training:
        workspace.give(xp, gates)
        return y, (h_t,), None
    return y, (h_t,), (xp, x, w_ih, w_hh, bias is not None, gates, hs, mask, steps)


def backward(
    cache: Any, dy: Array | None, d_state: tuple[Array | None, ...], need_dx: bool = True
) -> tuple[Array | None, ...]:
    """Gradients (dx, dc0, dW_ih, dW_hh, db_ih, db_hh) from dy and (dc_T,)."""
    xp, x, w_ih, w_hh, has_bias, gates, hs, mask, steps = cache
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    one = dt.type(1)
    dgates = workspace.take(xp, (T, B, 2 * H), dt)
    dh = initial_grad(xp, d_state[0], (B, H), dt)
    dhp = xp.empty((B, H), dtype=dt)
    if dy is not None and mask is not None:
        dy = mask.zero_padded(xp, dy)
    t1 = workspace.take(xp, (B, H), dt)
    t2 = workspace.take(xp, (B, H), dt)
    for k, t in enumerate(steps.backward_order):
        if dy is not None:
            xp.add(dh, dy[t], out=dh)
        g = gates[t]
        u, cand = g[0], g[1]
        d = dgates[t]
        d_g = gate_blocks(d, 2)
        hp = hs[t + steps.prev]
        # du = dh * (c~ - c_prev) * u * (1 - u)
        xp.subtract(cand, hp, out=t1)
        xp.multiply(t1, dh, out=t1)
        xp.subtract(one, u, out=t2)
        xp.multiply(t2, u, out=t2)
        xp.multiply(t1, t2, out=d_g[0])
        # dc~ = dh * u * (1 - c~**2)
        xp.multiply(cand, cand, out=t1)
        xp.subtract(one, t1, out=t1)
        xp.multiply(t1, u, out=t1)
        xp.multiply(t1, dh, out=d_g[1])
        padded = mask is not None and mask.padded_steps[t]
        if padded:
            xp.copyto(d, 0, where=mask.pad[t])
        xp.matmul(d, w_hh, out=dhp)
        # direct path: dc_prev += dh * (1 - u)
        xp.subtract(one, u, out=t1)
        xp.multiply(t1, dh, out=t1)
        xp.add(dhp, t1, out=dhp)
        if padded:
            xp.copyto(dhp, dh, where=mask.pad[t])
        dh, dhp = dhp, dh
        if k % FLUSH_EVERY == FLUSH_EVERY - 1:
            flush_subnormals(xp, dh)
    workspace.give(xp, t1, t2)
    dx, dw_ih, dw_hh, db = sequence_grads(xp, dgates.reshape(T * B, -1).T, x, steps.inputs(hs), w_ih, has_bias, need_dx)
    workspace.give(xp, dgates)
    return dx, dh, dw_ih, dw_hh, db, db
