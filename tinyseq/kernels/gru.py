"""Fused GRU over a whole sequence, in both reset forms (NumPy-style in-place code).

Gates (r, z, n) as in PyTorch, h = (1 - z) * n + z * h_prev. ``reset_after=True``
(PyTorch, cuDNN): n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); ``reset_after=False``
(the lecture): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), which needs a second
recurrent product per step because r must be known before W_hn is applied.
Saved for backward: the activated gates, gate-major (T, 3, B, H), the states
(T + 1, B, H) and one (T, B, H) buffer — W_hn h + b_hn (reset after) or r * h (reset
before): 5 numbers per T*B*H. Gate gradients are row-major (T, B, 3H) for the GEMMs.
"""

from __future__ import annotations

from typing import Any

from .gates import (
    column_sums,
    gate_blocks,
    initial_grad,
    input_product,
    slot_bias,
    transposed_blocks,
)
from .sequence import FLUSH_EVERY, MaskInfo, Steps, flush_subnormals
from .workspace import sigmoid_from_half_, workspace

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
    reset_after: bool = True,
) -> tuple[Array, tuple[Array, ...], Any]:
    """x (T, B, I), state (h0,) (B, H) -> (y (T, B, H), (h_T,), cache|None)."""
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    steps = Steps(T, reverse)
    # biases that are plain additions to a gate's pre-activation go in once, here
    b_hn = None
    bias = None
    if b_ih is not None or b_hh is not None:
        bias = xp.zeros((3 * H,), dtype=dt)
        if b_ih is not None:
            xp.add(bias, b_ih, out=bias)
        if b_hh is not None:
            if reset_after:
                xp.add(bias[: 2 * H], b_hh[: 2 * H], out=bias[: 2 * H])
                b_hn = b_hh[2 * H :]
            else:
                xp.add(bias, b_hh, out=bias)
    # r and z have their weights and biases halved: sigmoid = 0.5 * tanh(pre / 2) + 0.5
    order = (0, 1, 2)
    bias = slot_bias(xp, bias, 3, order, halved=2)
    xw = input_product(xp, x, transposed_blocks(xp, w_ih, 3, order, halved=2), bias)
    xw_g = xw.reshape(T, B, 3, H).transpose(0, 2, 1, 3)
    shape = (T, 3, B, H)
    gates = xp.empty(shape, dtype=dt) if training else workspace.take(xp, shape, dt)
    hs = xp.empty((T + 1, B, H), dtype=dt)
    hs[steps.initial_slot()] = state[0]
    # (T, B, H) per-step extra: W_hn h + b_hn (reset after) or r * h (reset before)
    extra = xp.empty((T, B, H), dtype=dt) if training else None
    scratch = workspace.take(xp, (B, H), dt)
    rec = workspace.take(xp, (B, 3 * H if reset_after else 2 * H), dt)
    rec_g = gate_blocks(rec, 3 if reset_after else 2)
    w_hh_t = transposed_blocks(xp, w_hh, 3, order, halved=2)
    w_hrz_t, w_hn_t = w_hh_t[:, : 2 * H], w_hh_t[:, 2 * H :]
    for t in steps.order:
        hp, hn = hs[t + steps.prev], hs[t + steps.new]
        g = gates[t]
        rz, r, z, n = g[:2], g[0], g[1], g[2]
        e = extra[t] if extra is not None else scratch
        if reset_after:
            xp.matmul(hp, w_hh_t, out=rec)
            xp.add(rec[:, : 2 * H], xw[t, :, : 2 * H], out=rec[:, : 2 * H])
            xp.tanh(rec_g[:2], out=rz)  # also moves r, z into their blocks
            sigmoid_from_half_(xp, rz)
            if b_hn is not None:
                xp.add(rec_g[2], b_hn, out=e)
            else:
                xp.copyto(e, rec_g[2])
            xp.multiply(r, e, out=hn)  # hn as scratch until the end of the step
        else:
            xp.matmul(hp, w_hrz_t, out=rec)
            xp.add(rec, xw[t, :, : 2 * H], out=rec)
            xp.tanh(rec_g, out=rz)  # also moves r, z into their blocks
            sigmoid_from_half_(xp, rz)
            xp.multiply(r, hp, out=e)
            xp.matmul(e, w_hn_t, out=hn)
        xp.add(xw_g[t, 2], hn, out=n)
        xp.tanh(n, out=n)
        # h = n + z * (h_prev - n)
        xp.subtract(hp, n, out=hn)
        xp.multiply(hn, z, out=hn)
        xp.add(hn, n, out=hn)
        if mask is not None and mask.padded_steps[t]:
            xp.copyto(hn, hp, where=mask.pad[t])
    workspace.give(xp, scratch, rec, xw)
    y = steps.outputs(hs)
    if mask is not None:
        y = y * mask.valid
    h_t = hs[steps.final_slot()].copy()
    if not training:
        workspace.give(xp, gates)
        return y, (h_t,), None
    has_bias = (b_ih is not None, b_hh is not None)
    return y, (h_t,), (xp, x, w_ih, w_hh, has_bias, gates, extra, hs, mask, steps, reset_after)


def backward(
    cache: Any, dy: Array | None, d_state: tuple[Array | None, ...], need_dx: bool = True
) -> tuple[Array | None, ...]:
    """Gradients (dx, dh0, dW_ih, dW_hh, db_ih, db_hh) from dy and (dh_T,)."""
    xp, x, w_ih, w_hh, has_bias, gates, extra, hs, mask, steps, reset_after = cache
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    one = dt.type(1)
    # d: gradients of the pre-activations as the recurrent product sees them; reset
    # after, its n block is dn_pre * r and dn_pre itself (the input side) goes to dn_x
    d_all = workspace.take(xp, (T, B, 3 * H), dt)
    dn_x: Any = workspace.take(xp, (T, B, H), dt) if reset_after else None
    dh = initial_grad(xp, d_state[0], (B, H), dt)
    dhp = xp.empty((B, H), dtype=dt)
    if dy is not None and mask is not None:
        dy = dy * mask.valid
    t1 = workspace.take(xp, (B, H), dt)
    t2 = workspace.take(xp, (B, H), dt)
    drh = workspace.take(xp, (B, H), dt)
    w_hrz, w_hn = w_hh[: 2 * H], w_hh[2 * H :]
    for k, t in enumerate(steps.backward_order):
        if dy is not None:
            xp.add(dh, dy[t], out=dh)
        g, e = gates[t], extra[t]
        r, z, n = g[0], g[1], g[2]
        d = d_all[t]
        d_g = gate_blocks(d, 3)
        hp = hs[t + steps.prev]
        # dn_pre = dh * (1 - z) * (1 - n**2)
        dnp = dn_x[t] if reset_after else d_g[2]
        xp.subtract(one, z, out=t1)
        xp.multiply(t1, dh, out=t1)
        xp.multiply(n, n, out=t2)
        xp.subtract(one, t2, out=t2)
        xp.multiply(t1, t2, out=dnp)
        # dz_pre = dh * (h_prev - n) * z * (1 - z)
        xp.subtract(hp, n, out=t1)
        xp.multiply(t1, dh, out=t1)
        xp.subtract(one, z, out=t2)
        xp.multiply(t2, z, out=t2)
        xp.multiply(t1, t2, out=d_g[1])
        padded = mask is not None and mask.padded_steps[t]
        # dr_pre = (dn_pre * (W_hn h + b_hn)  or  (dn_pre W_hn) * h_prev) * r * (1 - r)
        if reset_after:
            xp.multiply(dnp, e, out=t1)
        else:
            xp.matmul(dnp, w_hn, out=drh)  # gradient of r * h_prev
            xp.multiply(drh, hp, out=t1)
        xp.subtract(one, r, out=t2)
        xp.multiply(t2, r, out=t2)
        xp.multiply(t1, t2, out=d_g[0])
        if reset_after:
            xp.multiply(dnp, r, out=d_g[2])
            if padded:
                xp.copyto(d, 0, where=mask.pad[t])
                xp.copyto(dnp, 0, where=mask.pad[t])
            xp.matmul(d, w_hh, out=dhp)
        else:
            if padded:
                xp.copyto(d, 0, where=mask.pad[t])
            xp.matmul(d[:, : 2 * H], w_hrz, out=dhp)
            xp.multiply(drh, r, out=drh)
            xp.add(dhp, drh, out=dhp)
        # direct path: dh_prev += dh * z
        xp.multiply(dh, z, out=t1)
        xp.add(dhp, t1, out=dhp)
        if padded:
            xp.copyto(dhp, dh, where=mask.pad[t])
        dh, dhp = dhp, dh
        if k % FLUSH_EVERY == FLUSH_EVERY - 1:
            flush_subnormals(xp, dh)
    workspace.give(xp, t1, t2, drh)
    flat = d_all.reshape(T * B, 3 * H)
    x2 = x.reshape(T * B, n_in)
    h_in = steps.inputs(hs).reshape(T * B, H)
    if reset_after:
        dnx = dn_x.reshape(T * B, H)
        dx = None
        if need_dx:
            dx = xp.matmul(flat[:, : 2 * H], w_ih[: 2 * H])
            dx += xp.matmul(dnx, w_ih[2 * H :])
            dx = dx.reshape(T, B, n_in)
        # (I, 3H) = x2.T @ [d_rz | dn_x], handed back as its transposed view
        dw_ih_t = xp.empty((n_in, 3 * H), dtype=dt)
        xp.matmul(x2.T, flat[:, : 2 * H], out=dw_ih_t[:, : 2 * H])
        xp.matmul(x2.T, dnx, out=dw_ih_t[:, 2 * H :])
        dw_ih = dw_ih_t.T
        dw_hh = xp.matmul(h_in.T, flat).T
        db_hh = column_sums(xp, flat) if has_bias[1] else None
        db_ih = None
        if has_bias[0]:
            db_ih = xp.empty((3 * H,), dtype=dt)
            db_ih[: 2 * H] = (
                db_hh[: 2 * H] if db_hh is not None else column_sums(xp, flat[:, : 2 * H])
            )
            db_ih[2 * H :] = column_sums(xp, dnx)
        workspace.give(xp, dn_x)
    else:
        dx = xp.matmul(flat, w_ih).reshape(T, B, n_in) if need_dx else None
        dw_ih = xp.matmul(x2.T, flat).T
        dw_hh_t = xp.empty((H, 3 * H), dtype=dt)
        xp.matmul(h_in.T, flat[:, : 2 * H], out=dw_hh_t[:, : 2 * H])
        xp.matmul(extra.reshape(T * B, H).T, flat[:, 2 * H :], out=dw_hh_t[:, 2 * H :])
        dw_hh = dw_hh_t.T
        db = column_sums(xp, flat) if any(has_bias) else None
        db_ih = db if has_bias[0] else None
        db_hh = db if has_bias[1] else None
    workspace.give(xp, d_all)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh
