"""Fused LSTM over a whole sequence (NumPy-style in-place code; any numpy-like ``xp``).

Gate order (i, f, g, o) as in PyTorch; ``variant="standard"`` gives h = o * tanh(c),
``"lecture"`` h = o * c. Saved for backward: the activated gates (T, 4H, B) and the
states c (T + 1, H, B) and h (T + 1, B, H) — 6 numbers per T*B*H; tanh(c) is recomputed.

Layout (see :mod:`.columns`): each step works features x batch, so the recurrent
product is W_hh (4H, H) @ h (H, B) with the weights as stored — no transposed copy —
and every gate is a contiguous (H, B) block. Gate gradients go to a (4H, T, B) buffer,
so dx, dW_ih and dW_hh are one GEMM each over all steps.
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
from .gates import sequence_grads, transposed
from .jit import compiled
from .sequence import FLUSH_EVERY, MaskInfo, Steps, flush_subnormals
from .workspace import add_biases, sigmoid_from_half_, workspace

__all__ = ["forward", "backward", "release"]

Array = Any
VARIANTS = ("standard", "lecture")


def _sigmoid_rows(H: int) -> tuple[slice, slice]:
    """Row blocks of the sigmoid gates i, f (together) and o in a (4H, B) gate block."""
    return slice(0, 2 * H), slice(3 * H, 4 * H)


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
    sig = _sigmoid_rows(H)
    half = dt.type(0.5)
    xw = InputSteps(xp, x, w_ih, add_biases(xp, b_ih, b_hh))  # xw[t]: (4H, B)
    # pooled even when saved: release() hands them back once backward has run
    gates = workspace.take(xp, (T if training else 1, 4 * H, B), dt)
    hs_c = workspace.take(xp, (T + 1, H, B), dt)  # states as columns, for the recurrence
    to_columns(xp, state[0], out=hs_c[steps.initial_slot()])
    # inference keeps only two cell states and alternates between them
    cs = workspace.take(xp, (T + 1 if training else 2, H, B), dt)
    to_columns(xp, state[1], out=cs[steps.initial_slot() if training else 0])
    tmp = workspace.take(xp, (H, B), dt)
    rec = workspace.take(xp, (4 * H, B), dt)
    jit = compiled(xp, dt)  # the compiled element-wise pass, or None
    for k, t in enumerate(steps.order):
        hp, hn = hs_c[t + steps.prev], hs_c[t + steps.new]
        if training:
            cp, cn = cs[t + steps.prev], cs[t + steps.new]
        else:
            cp, cn = cs[k % 2], cs[(k + 1) % 2]
        g = gates[t if training else 0]
        # the product goes to a warm scratch block; the add then writes the gates
        xp.matmul(w_hh, hp, out=rec)
        if jit is not None:
            xp.add(rec, xw[t], out=rec)  # xw[t] is a strided view: one NumPy pass
            jit.forward_step(rec, cp, g, cn, hn, standard, half)
            if mask is not None and mask.padded_steps[t]:
                pad = mask.pad[t].T
                xp.copyto(hn, hp, where=pad)
                xp.copyto(cn, cp, where=pad)
            continue
        xp.add(rec, xw[t], out=g)
        # one tanh for all gates: sigmoid(a) = 0.5 * tanh(a / 2) + 0.5 (no overflow)
        xp.multiply(g[sig[0]], half, out=g[sig[0]])
        xp.multiply(g[sig[1]], half, out=g[sig[1]])
        xp.tanh(g, out=g)
        sigmoid_from_half_(xp, g[sig[0]])
        sigmoid_from_half_(xp, g[sig[1]])
        i, f, gg, o = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
        xp.multiply(f, cp, out=cn)
        xp.multiply(i, gg, out=tmp)
        xp.add(cn, tmp, out=cn)
        if standard:
            xp.tanh(cn, out=tmp)
            xp.multiply(o, tmp, out=hn)
        else:
            xp.multiply(o, cn, out=hn)
        if mask is not None and mask.padded_steps[t]:
            pad = mask.pad[t].T
            xp.copyto(hn, hp, where=pad)
            xp.copyto(cn, cp, where=pad)
    workspace.give(xp, tmp, rec)
    xw.release()

    hs = to_rows(xp, hs_c)  # (T + 1, B, H): outputs, and the states dW_hh reads
    workspace.give(xp, hs_c)
    y = steps.outputs(hs)
    if mask is not None:
        y = mask.zero_padded(xp, y)
    h_t = hs[steps.final_slot()].copy()
    c_t = to_rows(xp, cs[steps.final_slot()] if training else cs[T % 2])
    if not training:
        workspace.give(xp, gates, cs)
        return y, (h_t, c_t), None
    has_bias = b_ih is not None or b_hh is not None
    cache = (xp, x, w_ih, w_hh, has_bias, gates, hs, cs, mask, steps, standard)
    return y, (h_t, c_t), cache


def backward(
    cache: Any, dy: Array | None, d_state: tuple[Array | None, ...], need_dx: bool = True
) -> tuple[Array | None, ...]:
    """Gradients (dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh) from dy and (dh_T, dc_T)."""
    xp, x, w_ih, w_hh, has_bias, gates, hs, cs, mask, steps, standard = cache
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    dgates_buf, dgates, dflat = step_blocks(xp, 4 * H, T, B, dt)
    dh = grad_columns(xp, d_state[0], B, H, dt)
    dc = grad_columns(xp, d_state[1], B, H, dt)
    dhp = xp.empty((H, B), dtype=dt)
    if dy is not None and mask is not None:
        dy = mask.zero_padded(xp, dy)
    w_hh_t = transposed(xp, w_hh)  # (H, 4H): dh = W_hh.T @ d, fastest from a stored copy
    a = workspace.take(xp, (4 * H, B), dt)  # dL/d(activated gate), then the derivatives
    ds = workspace.take(xp, (4 * H, B), dt)
    t1 = workspace.take(xp, (H, B), dt)
    dc_in = workspace.take(xp, (H, B), dt)
    jit = compiled(xp, dt)
    one = dt.type(1)
    for k, t in enumerate(steps.backward_order):
        if dy is not None:
            xp.add(dh, dy[t].T, out=dh)
        g = gates[t]
        d = dgates[t]
        c, cp = cs[t + steps.new], cs[t + steps.prev]
        padded = mask is not None and mask.padded_steps[t]
        if padded:
            xp.copyto(dc_in, dc)
        if jit is not None:
            # the compiled pass writes contiguous blocks; d is a strided view unless B = 1
            d_out = d if d.flags.c_contiguous else a
            jit.backward_step(g, c, cp, dh, dc, d_out, standard, one)
            if d_out is not d:
                xp.copyto(d, d_out)
        else:
            _backward_step_numpy(xp, H, dh, dc, g, c, cp, d, a, ds, t1, standard)
        if padded:
            pad = mask.pad[t].T
            xp.copyto(d, 0, where=pad)
            xp.copyto(dc, dc_in, where=pad)
        xp.matmul(w_hh_t, d, out=dhp)
        if padded:
            xp.copyto(dhp, dh, where=pad)
        dh, dhp = dhp, dh
        if k % FLUSH_EVERY == FLUSH_EVERY - 1:
            flush_subnormals(xp, dh, dc)
    workspace.give(xp, w_hh_t, a, ds, t1, dc_in)
    dx, dw_ih, dw_hh, db = sequence_grads(xp, dflat, x, steps.inputs(hs), w_ih, has_bias, need_dx)
    workspace.give(xp, dgates_buf)
    return dx, to_rows(xp, dh), to_rows(xp, dc), dw_ih, dw_hh, db, db


def _backward_step_numpy(
    xp: Any,
    H: int,
    dh: Array,
    dc: Array,
    g: Array,
    c: Array,
    cp: Array,
    d: Array,
    a: Array,
    ds: Array,
    t1: Array,
    standard: bool,
) -> None:
    """One step's gate gradients d (4H, B) in NumPy passes; dc: dL/dc_t in, dL/dc_{t-1} out.

    a, ds (4H, B) and t1 (H, B) are scratch.
    """
    one = dc.dtype.type(1)
    i, f, gg, o = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
    a_i, a_f, a_g, a_o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    # dc += dh * dh/dc; a_o = dh * dh/do
    if standard:
        xp.tanh(c, out=t1)
        xp.multiply(dh, t1, out=a_o)
        xp.multiply(t1, t1, out=t1)
        xp.subtract(one, t1, out=t1)
        xp.multiply(t1, o, out=t1)
        xp.multiply(t1, dh, out=t1)
    else:
        xp.multiply(dh, c, out=a_o)
        xp.multiply(dh, o, out=t1)
    xp.add(dc, t1, out=dc)
    xp.multiply(dc, gg, out=a_i)
    xp.multiply(dc, cp, out=a_f)
    xp.multiply(dc, i, out=a_g)
    # derivatives: sigmoid' = s (1 - s) on all rows at once, then the g rows get
    # tanh' = 1 - g**2; one product turns a into the pre-activation gradients
    xp.subtract(one, g, out=ds)
    xp.multiply(ds, g, out=ds)
    xp.multiply(gg, gg, out=t1)
    xp.subtract(one, t1, out=ds[2 * H : 3 * H])
    xp.multiply(a, ds, out=d)
    xp.multiply(dc, f, out=dc)


def release(cache: Any) -> None:
    """Hand the saved buffers back to the scratch pool (backward will not run again)."""
    xp, _, _, _, _, gates, _, cs = cache[:8]
    workspace.give(xp, gates, cs)
