"""Fused GRU over a whole sequence, in both reset forms (NumPy-style in-place code).

Gates (r, z, n) as in PyTorch, h = (1 - z) * n + z * h_prev. ``reset_after=True``
(PyTorch, cuDNN): n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); ``reset_after=False``
(the lecture): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), which needs a second
recurrent product per step because r must be known before W_hn is applied.
Layout: features x batch (:mod:`.columns`). Saved for backward: the activated gates
(T, 3H, B), the states h (T + 1, B, H) and one (H, B) block per step — W_hn h + b_hn
(reset after) or r * h (reset before): 5 numbers per T*B*H.
"""

from __future__ import annotations

from typing import Any

from .columns import (
    InputSteps,
    grad_columns,
    step_blocks,
    to_columns,
    to_rows,
)
from .gates import column_sums, transposed
from .sequence import FLUSH_EVERY, MaskInfo, Steps, flush_subnormals
from .workspace import sigmoid_from_half_, workspace

__all__ = ["forward", "backward", "release"]

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
    half = dt.type(0.5)
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
                # as a full (H, B) block: adding a (H, 1) column loops row by row
                b_hn = xp.repeat(b_hh[2 * H :, None], B, axis=1)
            else:
                xp.add(bias, b_hh, out=bias)
    xw = InputSteps(xp, x, w_ih, bias)  # xw[t]: (3H, B)
    # pooled even when saved: release() hands them back once backward has run
    gates = workspace.take(xp, (T if training else 1, 3 * H, B), dt)
    hs_c = workspace.take(xp, (T + 1, H, B), dt)  # states as columns, for the recurrence
    to_columns(xp, state[0], out=hs_c[steps.initial_slot()])
    # per step: W_hn h + b_hn (reset after) or r * h (reset before); reset before, it is
    # the operand of dW_hn, so it is kept in the all-steps GEMM layout
    extra_buf: Any = None
    extra: Any = None
    extra_flat: Any = None
    if training:
        if reset_after:
            extra = extra_buf = workspace.take(xp, (T, H, B), dt)
        else:
            extra_buf, extra, extra_flat = step_blocks(xp, H, T, B, dt)
    scratch = workspace.take(xp, (H, B), dt)
    rec = workspace.take(xp, (3 * H, B), dt)
    w_hrz, w_hn = w_hh[: 2 * H], w_hh[2 * H :]
    for t in steps.order:
        hp, hn = hs_c[t + steps.prev], hs_c[t + steps.new]
        g = gates[t if training else 0]
        rz, r, z, n = g[: 2 * H], g[:H], g[H : 2 * H], g[2 * H :]
        x_t = xw[t]
        e = extra[t] if extra is not None else scratch
        if reset_after:
            xp.matmul(w_hh, hp, out=rec)
        else:
            xp.matmul(w_hrz, hp, out=rec[: 2 * H])
        xp.add(rec[: 2 * H], x_t[: 2 * H], out=rz)
        # sigmoid(a) = 0.5 * tanh(a / 2) + 0.5 (no overflow)
        xp.multiply(rz, half, out=rz)
        xp.tanh(rz, out=rz)
        sigmoid_from_half_(xp, rz)
        if reset_after:
            if b_hn is not None:
                xp.add(rec[2 * H :], b_hn, out=e)
            elif extra is not None:
                xp.copyto(e, rec[2 * H :])
            else:
                e = rec[2 * H :]
            xp.multiply(r, e, out=hn)  # hn as scratch until the end of the step
        else:
            xp.multiply(r, hp, out=e)
            xp.matmul(w_hn, e, out=hn)
        xp.add(x_t[2 * H :], hn, out=n)
        xp.tanh(n, out=n)
        # h = n + z * (h_prev - n)
        xp.subtract(hp, n, out=hn)
        xp.multiply(hn, z, out=hn)
        xp.add(hn, n, out=hn)
        if mask is not None and mask.padded_steps[t]:
            xp.copyto(hn, hp, where=mask.pad[t].T)
    workspace.give(xp, scratch, rec)
    xw.release()
    hs = to_rows(xp, hs_c)  # (T + 1, B, H): outputs, and the states dW_hh reads
    workspace.give(xp, hs_c)
    y = steps.outputs(hs)
    if mask is not None:
        y = mask.zero_padded(xp, y)
    h_t = hs[steps.final_slot()].copy()
    if not training:
        workspace.give(xp, gates)
        return y, (h_t,), None
    has_bias = (b_ih is not None, b_hh is not None)
    extras = (extra_buf, extra, extra_flat)
    return y, (h_t,), (xp, x, w_ih, w_hh, has_bias, gates, extras, hs, mask, steps, reset_after)


def backward(
    cache: Any, dy: Array | None, d_state: tuple[Array | None, ...], need_dx: bool = True
) -> tuple[Array | None, ...]:
    """Gradients (dx, dh0, dW_ih, dW_hh, db_ih, db_hh) from dy and (dh_T,)."""
    xp, x, w_ih, w_hh, has_bias, gates, extras, hs, mask, steps, reset_after = cache
    extra, extra_flat = extras[1:]
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    one = dt.type(1)
    # d: gradients of the pre-activations as the recurrent product sees them; reset
    # after, its n block is dn_pre * r and dn_pre itself (the input side) goes to dn_x
    d_buf, d_all, flat = step_blocks(xp, 3 * H, T, B, dt)
    if reset_after:
        dnx_buf, dn_x, dnx_flat = step_blocks(xp, H, T, B, dt)
    dh = grad_columns(xp, d_state[0], B, H, dt)
    dhp = xp.empty((H, B), dtype=dt)
    if dy is not None and mask is not None:
        dy = mask.zero_padded(xp, dy)
    t1 = workspace.take(xp, (H, B), dt)
    t2 = workspace.take(xp, (H, B), dt)
    drh = workspace.take(xp, (H, B), dt)
    hp = workspace.take(xp, (H, B), dt)
    w_hh_t = transposed(xp, w_hh)  # (H, 3H): dh = W_hh.T @ d, fastest from a stored copy
    w_hn_t = w_hh_t[:, 2 * H :]
    for k, t in enumerate(steps.backward_order):
        if dy is not None:
            xp.add(dh, dy[t].T, out=dh)
        g = gates[t]
        r, z, n = g[:H], g[H : 2 * H], g[2 * H :]
        d = d_all[t]
        xp.copyto(hp, hs[t + steps.prev].T)  # one transposing read, then contiguous
        # dn_pre = dh * (1 - z) * (1 - n**2)
        dnp = dn_x[t] if reset_after else d[2 * H :]
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
        xp.multiply(t1, t2, out=d[H : 2 * H])
        padded = mask is not None and mask.padded_steps[t]
        # dr_pre = (dn_pre * (W_hn h + b_hn)  or  (W_hn.T dn_pre) * h_prev) * r * (1 - r)
        if reset_after:
            xp.multiply(dnp, extra[t], out=t1)
        else:
            xp.matmul(w_hn_t, dnp, out=drh)  # gradient of r * h_prev
            xp.multiply(drh, hp, out=t1)
        xp.subtract(one, r, out=t2)
        xp.multiply(t2, r, out=t2)
        xp.multiply(t1, t2, out=d[:H])
        if reset_after:
            xp.multiply(dnp, r, out=d[2 * H :])
            if padded:
                pad = mask.pad[t].T
                xp.copyto(d, 0, where=pad)
                xp.copyto(dnp, 0, where=pad)
            xp.matmul(w_hh_t, d, out=dhp)
        else:
            if padded:
                xp.copyto(d, 0, where=mask.pad[t].T)
            xp.matmul(w_hh_t[:, : 2 * H], d[: 2 * H], out=dhp)
            xp.multiply(drh, r, out=drh)
            xp.add(dhp, drh, out=dhp)
        # direct path: dh_prev += dh * z
        xp.multiply(dh, z, out=t1)
        xp.add(dhp, t1, out=dhp)
        if padded:
            xp.copyto(dhp, dh, where=mask.pad[t].T)
        dh, dhp = dhp, dh
        if k % FLUSH_EVERY == FLUSH_EVERY - 1:
            flush_subnormals(xp, dh)
    workspace.give(xp, t1, t2, drh, hp, w_hh_t)
    x2 = x.reshape(T * B, n_in)
    h_in = steps.inputs(hs).reshape(T * B, H)
    dw_ih = xp.empty((3 * H, n_in), dtype=dt)
    dw_hh = xp.empty((3 * H, H), dtype=dt)
    if reset_after:
        dx = None
        if need_dx:
            dx = xp.matmul(flat[: 2 * H].T, w_ih[: 2 * H])
            dx += xp.matmul(dnx_flat.T, w_ih[2 * H :])
            dx = dx.reshape(T, B, n_in)
        xp.matmul(flat[: 2 * H], x2, out=dw_ih[: 2 * H])
        xp.matmul(dnx_flat, x2, out=dw_ih[2 * H :])
        xp.matmul(flat, h_in, out=dw_hh)
        db_hh = column_sums(xp, flat.T) if has_bias[1] else None
        db_ih = None
        if has_bias[0]:
            db_ih = xp.empty((3 * H,), dtype=dt)
            db_ih[: 2 * H] = (
                db_hh[: 2 * H] if db_hh is not None else column_sums(xp, flat[: 2 * H].T)
            )
            db_ih[2 * H :] = column_sums(xp, dnx_flat.T)
        workspace.give(xp, dnx_buf)
    else:
        dx = xp.matmul(flat.T, w_ih).reshape(T, B, n_in) if need_dx else None
        xp.matmul(flat, x2, out=dw_ih)
        xp.matmul(flat[: 2 * H], h_in, out=dw_hh[: 2 * H])
        xp.matmul(flat[2 * H :], extra_flat.T, out=dw_hh[2 * H :])
        db = column_sums(xp, flat.T) if any(has_bias) else None
        db_ih = db if has_bias[0] else None
        db_hh = db if has_bias[1] else None
    workspace.give(xp, d_buf)
    return dx, to_rows(xp, dh), dw_ih, dw_hh, db_ih, db_hh


def release(cache: Any) -> None:
    """Hand the saved buffers back to the scratch pool (backward will not run again)."""
    xp, gates, extras = cache[0], cache[5], cache[6]
    workspace.give(xp, gates, extras[0])
