"""Fused simplified GRU (the lecture's update-gate-only cell) over a whole sequence.

Gates (u, c~): u = sigmoid(W_iu x + b_iu + W_hu c + b_hu), c~ = tanh(W_ic x + b_ic +
W_hc c + b_hc), c = u * c~ + (1 - u) * c_prev. Saved for backward: the activated gates
(T, B, 2H) and the states (T + 1, B, H) — 3 numbers per T*B*H.
"""

from __future__ import annotations

from typing import Any

from .sequence import MaskInfo, Steps
from .workspace import add_biases, dsigmoid_, dtanh_, sigmoid_, workspace

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
    shape = (T, B, 2 * H)
    gates = xp.empty(shape, dtype=dt) if training else workspace.take(xp, shape, dt)
    flat = gates.reshape(T * B, 2 * H)
    xp.matmul(x.reshape(T * B, n_in), w_ih.T, out=flat)
    bias = add_biases(xp, b_ih, b_hh)
    if bias is not None:
        xp.add(flat, bias, out=flat)
    hs = xp.empty((T + 1, B, H), dtype=dt)
    hs[steps.initial_slot()] = state[0]
    rec = workspace.take(xp, (B, 2 * H), dt)
    w_hh_t = w_hh.T
    for t in steps.order:
        hp, hn = hs[t + steps.prev], hs[t + steps.new]
        g = gates[t]
        xp.matmul(hp, w_hh_t, out=rec)
        xp.add(g, rec, out=g)
        u, cand = g[:, :H], g[:, H:]
        sigmoid_(xp, u)
        xp.tanh(cand, out=cand)
        # c = c_prev + u * (c~ - c_prev)
        xp.subtract(cand, hp, out=hn)
        xp.multiply(hn, u, out=hn)
        xp.add(hn, hp, out=hn)
        if mask is not None and mask.padded_steps[t]:
            xp.copyto(hn, hp, where=mask.pad[t])
    workspace.give(xp, rec)
    y = steps.outputs(hs)
    if mask is not None:
        y = y * mask.valid
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
    dgates = workspace.take(xp, (T, B, 2 * H), dt)
    dh = xp.zeros((B, H), dtype=dt) if d_state[0] is None else d_state[0].astype(dt, copy=True)
    dhp = xp.empty((B, H), dtype=dt)
    if dy is not None and mask is not None:
        dy = dy * mask.valid
    tmp = workspace.take(xp, (B, H), dt)
    for t in steps.backward_order:
        if dy is not None:
            xp.add(dh, dy[t], out=dh)
        g, d = gates[t], dgates[t]
        u, cand = g[:, :H], g[:, H:]
        du, dcand = d[:, :H], d[:, H:]
        hp = hs[t + steps.prev]
        xp.subtract(cand, hp, out=du)
        xp.multiply(du, dh, out=du)
        dsigmoid_(xp, du, u, tmp)
        xp.multiply(dh, u, out=dcand)
        dtanh_(xp, dcand, cand, tmp)
        padded = mask is not None and mask.padded_steps[t]
        if padded:
            xp.copyto(d, 0, where=mask.pad[t])
        xp.matmul(d, w_hh, out=dhp)
        # direct path: dc_prev += dh * (1 - u)
        xp.subtract(1.0, u, out=tmp)
        xp.multiply(tmp, dh, out=tmp)
        xp.add(dhp, tmp, out=dhp)
        if padded:
            xp.copyto(dhp, dh, where=mask.pad[t])
        dh, dhp = dhp, dh
    workspace.give(xp, tmp)
    flat = dgates.reshape(T * B, 2 * H)
    dx = xp.matmul(flat, w_ih).reshape(T, B, n_in) if need_dx else None
    dw_ih = xp.matmul(flat.T, x.reshape(T * B, n_in))
    dw_hh = xp.matmul(flat.T, steps.inputs(hs).reshape(T * B, H))
    db = flat.sum(axis=0) if has_bias else None
    workspace.give(xp, dgates)
    return dx, dh, dw_ih, dw_hh, db, db
