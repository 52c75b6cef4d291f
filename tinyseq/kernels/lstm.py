"""Fused LSTM over a whole sequence (NumPy-style in-place code; any numpy-like ``xp``).

Gate order (i, f, g, o) as in PyTorch; ``variant="standard"`` gives h = o * tanh(c),
``"lecture"`` h = o * c. Saved for backward: the activated gates (T, B, 4H) and the
states h, c (T + 1, B, H) each — 6 numbers per T*B*H; tanh(c) is recomputed.
"""

from __future__ import annotations

from typing import Any

from .sequence import MaskInfo, Steps
from .workspace import add_biases, dsigmoid_, dtanh_, sigmoid_, workspace

__all__ = ["forward", "backward"]

Array = Any
VARIANTS = ("standard", "lecture")


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
    variant: str = "standard",
) -> tuple[Array, tuple[Array, ...], Any]:
    """x (T, B, I), state (h0, c0) each (B, H) -> (y (T, B, H), (h_T, c_T), cache|None)."""
    if variant not in VARIANTS:
        raise ValueError(f"lstm variant must be one of {VARIANTS}, got {variant!r}")
    standard = variant == "standard"
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    steps = Steps(T, reverse)
    shape = (T, B, 4 * H)
    gates = xp.empty(shape, dtype=dt) if training else workspace.take(xp, shape, dt)
    flat = gates.reshape(T * B, 4 * H)
    xp.matmul(x.reshape(T * B, n_in), w_ih.T, out=flat)
    bias = add_biases(xp, b_ih, b_hh)
    if bias is not None:
        xp.add(flat, bias, out=flat)

    hs = xp.empty((T + 1, B, H), dtype=dt)
    hs[steps.initial_slot()] = state[0]
    # inference keeps only two cell states and alternates between them
    cs = xp.empty((T + 1, B, H) if training else (2, B, H), dtype=dt)
    cs[steps.initial_slot() if training else 0] = state[1]
    rec = workspace.take(xp, (B, 4 * H), dt)
    tmp = workspace.take(xp, (B, H), dt)
    w_hh_t = w_hh.T
    for k, t in enumerate(steps.order):
        hp, hn = hs[t + steps.prev], hs[t + steps.new]
        if training:
            cp, cn = cs[t + steps.prev], cs[t + steps.new]
        else:
            cp, cn = cs[k % 2], cs[(k + 1) % 2]
        g = gates[t]
        xp.matmul(hp, w_hh_t, out=rec)
        xp.add(g, rec, out=g)
        sigmoid_(xp, g[:, : 2 * H])
        xp.tanh(g[:, 2 * H : 3 * H], out=g[:, 2 * H : 3 * H])
        sigmoid_(xp, g[:, 3 * H :])
        i, f, gg, o = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
        xp.multiply(f, cp, out=cn)
        xp.multiply(i, gg, out=tmp)
        xp.add(cn, tmp, out=cn)
        if standard:
            xp.tanh(cn, out=tmp)
            xp.multiply(o, tmp, out=hn)
        else:
            xp.multiply(o, cn, out=hn)
        if mask is not None and mask.padded_steps[t]:
            xp.copyto(hn, hp, where=mask.pad[t])
            xp.copyto(cn, cp, where=mask.pad[t])
    workspace.give(xp, rec, tmp)

    y = steps.outputs(hs)
    if mask is not None:
        y = y * mask.valid
    h_t = hs[steps.final_slot()].copy()
    c_t = (cs[steps.final_slot()] if training else cs[T % 2]).copy()
    if not training:
        workspace.give(xp, gates)
        return y, (h_t, c_t), None
    cache = (xp, x, w_ih, w_hh, bias is not None, gates, hs, cs, mask, steps, standard)
    return y, (h_t, c_t), cache


def backward(
    cache: Any, dy: Array | None, d_state: tuple[Array | None, ...], need_dx: bool = True
) -> tuple[Array | None, ...]:
    """Gradients (dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh) from dy and (dh_T, dc_T)."""
    xp, x, w_ih, w_hh, has_bias, gates, hs, cs, mask, steps, standard = cache
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    dgates = workspace.take(xp, (T, B, 4 * H), dt)
    dh = xp.zeros((B, H), dtype=dt) if d_state[0] is None else d_state[0].astype(dt, copy=True)
    dc = xp.zeros((B, H), dtype=dt) if d_state[1] is None else d_state[1].astype(dt, copy=True)
    dhp = xp.empty((B, H), dtype=dt)
    if dy is not None and mask is not None:
        dy = dy * mask.valid
    t1 = workspace.take(xp, (B, H), dt)
    t2 = workspace.take(xp, (B, H), dt)
    dc_in = workspace.take(xp, (B, H), dt)
    for t in steps.backward_order:
        if dy is not None:
            xp.add(dh, dy[t], out=dh)
        g, d = gates[t], dgates[t]
        i, f, gg, o = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
        di, df, dg, do = d[:, :H], d[:, H : 2 * H], d[:, 2 * H : 3 * H], d[:, 3 * H :]
        c, cp = cs[t + steps.new], cs[t + steps.prev]
        padded = mask is not None and mask.padded_steps[t]
        if padded:
            xp.copyto(dc_in, dc)
        # dc += dh * dh/dc  (then dc is the gradient of the step's new c)
        if standard:
            xp.tanh(c, out=t1)
            xp.multiply(dh, t1, out=do)
            xp.multiply(t1, t1, out=t1)
            xp.subtract(1.0, t1, out=t1)
            xp.multiply(dh, o, out=t2)
            xp.multiply(t2, t1, out=t2)
            xp.add(dc, t2, out=dc)
        else:
            xp.multiply(dh, c, out=do)
            xp.multiply(dh, o, out=t1)
            xp.add(dc, t1, out=dc)
        dsigmoid_(xp, do, o, t1)
        xp.multiply(dc, gg, out=di)
        dsigmoid_(xp, di, i, t1)
        xp.multiply(dc, i, out=dg)
        dtanh_(xp, dg, gg, t1)
        xp.multiply(dc, cp, out=df)
        dsigmoid_(xp, df, f, t1)
        xp.multiply(dc, f, out=dc)
        if padded:
            xp.copyto(d, 0, where=mask.pad[t])
            xp.copyto(dc, dc_in, where=mask.pad[t])
        xp.matmul(d, w_hh, out=dhp)
        if padded:
            xp.copyto(dhp, dh, where=mask.pad[t])
        dh, dhp = dhp, dh
    workspace.give(xp, t1, t2, dc_in)
    flat = dgates.reshape(T * B, 4 * H)
    dx = xp.matmul(flat, w_ih).reshape(T, B, n_in) if need_dx else None
    dw_ih = xp.matmul(flat.T, x.reshape(T * B, n_in))
    dw_hh = xp.matmul(flat.T, steps.inputs(hs).reshape(T * B, H))
    db = flat.sum(axis=0) if has_bias else None
    workspace.give(xp, dgates)
    return dx, dh, dc, dw_ih, dw_hh, db, db
