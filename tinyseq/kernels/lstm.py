"""Fused LSTM over a whole sequence (NumPy-style in-place code; any numpy-like ``xp``).

Gate order (i, f, g, o) as in PyTorch; ``variant="standard"`` gives h = o * tanh(c),
``"lecture"`` h = o * c. Saved for backward: the activated gates (T, 4, B, H) and the
states h, c (T + 1, B, H) each — 6 numbers per T*B*H; tanh(c) is recomputed.

Layout (see :mod:`.gates`): activations gate-major (T, 4, B, H) in slot order
(i, f, o, g), so the three sigmoid gates are one contiguous block; gate gradients
row-major (T, B, 4H) in PyTorch's order for the weight-gradient GEMMs.
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
VARIANTS = ("standard", "lecture")
# PyTorch gate k (i, f, g, o) is stored in slot SLOT[k]; the map is its own inverse
SLOT = (0, 1, 3, 2)


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
    # slot order (i, f, o, g): the three sigmoid gates are one contiguous block
    # the sigmoid gates' weights and biases halved: one tanh then serves all four gates
    bias = slot_bias(xp, add_biases(xp, b_ih, b_hh), 4, SLOT, halved=3)
    xw = input_product(xp, x, transposed_blocks(xp, w_ih, 4, SLOT, halved=3), bias)
    shape = (T, 4, B, H)
    gates = xp.empty(shape, dtype=dt) if training else workspace.take(xp, shape, dt)
    hs = xp.empty((T + 1, B, H), dtype=dt)
    hs[steps.initial_slot()] = state[0]
    # inference keeps only two cell states and alternates between them
    cs = xp.empty((T + 1, B, H) if training else (2, B, H), dtype=dt)
    cs[steps.initial_slot() if training else 0] = state[1]
    rec = workspace.take(xp, (B, 4 * H), dt)
    rec_g = gate_blocks(rec, 4)
    tmp = workspace.take(xp, (B, H), dt)
    w_hh_t = transposed_blocks(xp, w_hh, 4, SLOT, halved=3)
    for k, t in enumerate(steps.order):
        hp, hn = hs[t + steps.prev], hs[t + steps.new]
        if training:
            cp, cn = cs[t + steps.prev], cs[t + steps.new]
        else:
            cp, cn = cs[k % 2], cs[(k + 1) % 2]
        g = gates[t]
        xp.matmul(hp, w_hh_t, out=rec)
        # add where both operands are row-major, then let tanh move the gates into
        # their blocks (cheaper than an add that reads two transposed views)
        xp.add(rec, xw[t], out=rec)
        xp.tanh(rec_g, out=g)
        sigmoid_from_half_(xp, g[:3])
        i, f, o, gg = g[0], g[1], g[2], g[3]
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
    workspace.give(xp, rec, tmp, xw)

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
    one = dt.type(1)
    dgates = workspace.take(xp, (T, B, 4 * H), dt)
    dh = initial_grad(xp, d_state[0], (B, H), dt)
    dc = initial_grad(xp, d_state[1], (B, H), dt)
    dhp = xp.empty((B, H), dtype=dt)
    if dy is not None and mask is not None:
        dy = dy * mask.valid
    t1 = workspace.take(xp, (B, H), dt)
    dc_in = workspace.take(xp, (B, H), dt)
    # for the sigmoid gates (slots i, f, o): ds = sigmoid'(pre), da = dL/d(activation)
    ds = workspace.take(xp, (3, B, H), dt)
    da = workspace.take(xp, (3, B, H), dt)
    for k, t in enumerate(steps.backward_order):
        if dy is not None:
            xp.add(dh, dy[t], out=dh)
        g = gates[t]
        i, f, o, gg = g[0], g[1], g[2], g[3]
        d = dgates[t]
        d_g = gate_blocks(d, 4)  # PyTorch order: i, f, g, o
        c, cp = cs[t + steps.new], cs[t + steps.prev]
        padded = mask is not None and mask.padded_steps[t]
        if padded:
            xp.copyto(dc_in, dc)
        # dc += dh * dh/dc; da[2] = dh * dh/do
        if standard:
            xp.tanh(c, out=t1)
            xp.multiply(dh, t1, out=da[2])
            xp.multiply(t1, t1, out=t1)
            xp.subtract(one, t1, out=t1)
            xp.multiply(t1, o, out=t1)
            xp.multiply(t1, dh, out=t1)
        else:
            xp.multiply(dh, c, out=da[2])
            xp.multiply(dh, o, out=t1)
        xp.add(dc, t1, out=dc)
        xp.multiply(dc, gg, out=da[0])
        xp.multiply(dc, cp, out=da[1])
        xp.subtract(one, g[:3], out=ds)
        xp.multiply(ds, g[:3], out=ds)
        xp.multiply(da[:2], ds[:2], out=d_g[:2])
        xp.multiply(da[2], ds[2], out=d_g[3])
        # dg = dc * i * (1 - g**2)
        xp.multiply(gg, gg, out=t1)
        xp.subtract(one, t1, out=t1)
        xp.multiply(t1, i, out=t1)
        xp.multiply(t1, dc, out=d_g[2])
        xp.multiply(dc, f, out=dc)
        if padded:
            xp.copyto(d, 0, where=mask.pad[t])
            xp.copyto(dc, dc_in, where=mask.pad[t])
        xp.matmul(d, w_hh, out=dhp)
        if padded:
            xp.copyto(dhp, dh, where=mask.pad[t])
        dh, dhp = dhp, dh
        if k % FLUSH_EVERY == FLUSH_EVERY - 1:
            flush_subnormals(xp, dh, dc)
    workspace.give(xp, t1, dc_in, ds, da)
    dx, dw_ih, dw_hh, db = sequence_grads(xp, dgates, x, steps.inputs(hs), w_ih, has_bias, need_dx)
    workspace.give(xp, dgates)
    return dx, dh, dc, dw_ih, dw_hh, db, db
