"""Per-step pointwise gate math of the built-in cells: the portable reference.

One function per cell (and reset form) and direction does all the element-wise work of
one time step, between the step's matrix products, in the row-major layout that
:mod:`.stepwise` uses (cuDNN's): a step's pre-activations and activated gates are
(B, G*H) rows in PyTorch's gate order, states (B, H). The functions are written against
``xp`` and run on every device; on ``cuda`` :mod:`.cuda_pointwise` replaces each with one
fused CUDA kernel of the same signature whose source follows this code line by line
(each of its lines carries the matching comment), and the tests check the two agree.

Conventions shared by every function:
    pad (B, 1) bool: True where the step is padding — the state is kept (and, backward,
    the step's gate gradients are 0 and the state gradient passes through unchanged).
    Outputs are written into the arrays passed in (``out`` style); nothing is returned.
    Backward, the gradient reaching a step's output state is split in two: ``dh_rec``
    (the next step's recurrent product dG @ W_hh) and ``dh_dir`` (its direct, pointwise
    path), plus ``dy`` (the loss gradient at this step's output). Each function reads
    ``dh_dir`` and overwrites it with the direct part for the previous step.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "gru_forward_rz",
    "gru_forward_n",
    "gru_backward_a",
    "gru_backward_b",
    "simple_gru_forward",
    "simple_gru_backward",
]

Array = Any


def _sigmoid(xp: Any, a: Array) -> Array:
    # 0.5 * tanh(a / 2) + 0.5: the logistic sigmoid without overflow for large |a|
    half = a.dtype.type(0.5)
    return half * xp.tanh(half * a) + half


def _keep(xp: Any, out: Array, new: Array, old: Array, pad: Array) -> None:
    """out = old where pad else new (pad (B, 1) broadcasts over H)."""
    out[...] = xp.where(pad, old, new)


# ---- vanilla RNN ----------------------------------------------------------------------
def rnn_forward(
    xp: Any, xw: Array, rec: Array, h_prev: Array, pad: Array, h: Array, relu: bool
) -> None:
    """h = g(xw + rec), g = tanh or relu; padded rows keep h_prev. All (B, H)."""
    a = xw + rec  # F1 pre-activation
    h_new = xp.maximum(a, 0) if relu else xp.tanh(a)  # F2
    _keep(xp, h, h_new, h_prev, pad)  # F3


def rnn_backward(
    xp: Any,
    dh_rec: Array,
    dh_dir: Array,
    dy: Array,
    h: Array,
    pad: Array,
    d: Array,
    relu: bool,
) -> None:
    """d (B, H) = dL/d(pre-activation) from h (the step's output) and the gradients."""
    dh = dh_rec + dh_dir + dy  # B1 total gradient reaching h
    dg = (h > 0).astype(h.dtype) if relu else 1 - h * h  # B2 g'(a) from g(a)
    zero = xp.zeros_like(dh)
    _keep(xp, d, dh * dg, zero, pad)  # B3
    _keep(xp, dh_dir, zero, dh, pad)  # B4 no direct path (padding passes dh on)


# ---- LSTM (gate order i, f, g, o) -------------------------------------------------------
def lstm_forward(
    xp: Any,
    xw: Array,
    rec: Array,
    h_prev: Array,
    c_prev: Array,
    pad: Array,
    gates: Array,
    h: Array,
    c: Array,
    standard: bool,
) -> None:
    """xw, rec, gates (B, 4H); h_prev, c_prev, h, c (B, H).

    standard: h = o * tanh(c); else (the lecture's) h = o * c.
    """
    H = h.shape[1]
    a = xw + rec  # F1 pre-activations
    i = _sigmoid(xp, a[:, :H])  # F2
    f = _sigmoid(xp, a[:, H : 2 * H])  # F3
    g = xp.tanh(a[:, 2 * H : 3 * H])  # F4
    o = _sigmoid(xp, a[:, 3 * H :])  # F5
    c_new = f * c_prev + i * g  # F6
    h_new = o * xp.tanh(c_new) if standard else o * c_new  # F7
    gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :] = i, f, g, o  # F8
    _keep(xp, c, c_new, c_prev, pad)  # F9
    _keep(xp, h, h_new, h_prev, pad)  # F10


def lstm_backward(
    xp: Any,
    dh_rec: Array,
    dh_dir: Array,
    dy: Array,
    dc: Array,
    gates: Array,
    c: Array,
    c_prev: Array,
    pad: Array,
    d: Array,
    standard: bool,
) -> None:
    """d (B, 4H) gate gradients (i, f, g, o); dc (B, H) in: dL/dc_t, out: dL/dc_{t-1}."""
    H = c.shape[1]
    i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
    dh = dh_rec + dh_dir + dy  # B1
    tc = xp.tanh(c) if standard else c  # B2 what o multiplies
    dct = dc + (dh * o * (1 - tc * tc) if standard else dh * o)  # B3 total dL/dc_t
    di = dct * g * i * (1 - i)  # B4
    df = dct * c_prev * f * (1 - f)  # B5
    dgg = dct * i * (1 - g * g)  # B6
    do = dh * tc * o * (1 - o)  # B7
    zero = xp.zeros_like(dh)
    _keep(xp, d[:, :H], di, zero, pad)  # B8
    _keep(xp, d[:, H : 2 * H], df, zero, pad)  # B9
    _keep(xp, d[:, 2 * H : 3 * H], dgg, zero, pad)  # B10
    _keep(xp, d[:, 3 * H :], do, zero, pad)  # B11
    _keep(xp, dc, dct * f, dc, pad)  # B12 padding passes dc on
    _keep(xp, dh_dir, zero, dh, pad)  # B13


# ---- GRU, reset after the product (PyTorch, cuDNN; gate order r, z, n) ------------------
def gru_forward(
    xp: Any,
    xw: Array,
    rec: Array,
    b_hn: Array,
    h_prev: Array,
    pad: Array,
    gates: Array,
    e: Array,
    h: Array,
) -> None:
    """n = tanh(xw_n + r * (rec_n + b_hn)), h = n + z * (h_prev - n).

    xw (B, 3H) holds W_ih x + b_ih (+ b_hr, b_hz); rec (B, 3H) = h_prev @ W_hh.T;
    b_hn (H,); gates (B, 3H) gets (r, z, n); e (B, H) gets rec_n + b_hn (saved).
    """
    H = h.shape[1]
    r = _sigmoid(xp, xw[:, :H] + rec[:, :H])  # F1
    z = _sigmoid(xp, xw[:, H : 2 * H] + rec[:, H : 2 * H])  # F2
    en = rec[:, 2 * H :] + b_hn  # F3
    n = xp.tanh(xw[:, 2 * H :] + r * en)  # F4
    h_new = n + z * (h_prev - n)  # F5 = (1 - z) * n + z * h_prev
    gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :] = r, z, n  # F6
    e[...] = en  # F7
    _keep(xp, h, h_new, h_prev, pad)  # F8


def gru_backward(
    xp: Any,
    dh_rec: Array,
    dh_dir: Array,
    dy: Array,
    gates: Array,
    e: Array,
    h_prev: Array,
    pad: Array,
    d: Array,
    dx: Array,
) -> None:
    """d (B, 3H): gradients as W_hh sees them (n block dn * r); dx (B, 3H): as W_ih does."""
    H = e.shape[1]
    r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
    dh = dh_rec + dh_dir + dy  # B1
    dn = dh * (1 - z) * (1 - n * n)  # B2 dL/d(n's pre-activation)
    dz = dh * (h_prev - n) * z * (1 - z)  # B3
    dr = dn * e * r * (1 - r)  # B4
    zero = xp.zeros_like(dh)
    _keep(xp, d[:, :H], dr, zero, pad)  # B5
    _keep(xp, d[:, H : 2 * H], dz, zero, pad)  # B6
    _keep(xp, d[:, 2 * H :], dn * r, zero, pad)  # B7
    _keep(xp, dx[:, :H], dr, zero, pad)  # B8
    _keep(xp, dx[:, H : 2 * H], dz, zero, pad)  # B9
    _keep(xp, dx[:, 2 * H :], dn, zero, pad)  # B10
    _keep(xp, dh_dir, dh * z, dh, pad)  # B11


# ---- GRU, reset before the product (the lecture's form): two products per step -------
def gru_forward_rz(
    xp: Any, xw: Array, rec_rz: Array, h_prev: Array, gates: Array, rh: Array
) -> None:
    """r, z from xw (B, 3H) and rec_rz (B, 2H) = h_prev @ W_hrz.T; rh (B, H) = r * h_prev."""
    H = h_prev.shape[1]
    r = _sigmoid(xp, xw[:, :H] + rec_rz[:, :H])  # F1
    z = _sigmoid(xp, xw[:, H : 2 * H] + rec_rz[:, H:])  # F2
    gates[:, :H], gates[:, H : 2 * H] = r, z  # F3
    rh[...] = r * h_prev  # F4


def gru_forward_n(
    xp: Any, xw: Array, rec_n: Array, h_prev: Array, pad: Array, gates: Array, h: Array
) -> None:
    """n = tanh(xw_n + rec_n) (rec_n = (r * h_prev) @ W_hn.T; b_hn is in xw), h update."""
    H = h.shape[1]
    z = gates[:, H : 2 * H]
    n = xp.tanh(xw[:, 2 * H :] + rec_n)  # F5
    h_new = n + z * (h_prev - n)  # F6
    gates[:, 2 * H :] = n  # F7
    _keep(xp, h, h_new, h_prev, pad)  # F8


def gru_backward_a(
    xp: Any,
    dh_rec: Array,
    dh_dir: Array,
    dy: Array,
    gates: Array,
    h_prev: Array,
    pad: Array,
    d: Array,
) -> None:
    """First half of a reset-before step: dz and dn into d (B, 3H), dh_dir = dh * z.

    The caller then forms drh = dn @ W_hn (the gradient of r * h_prev) for the second half.
    """
    H = h_prev.shape[1]
    z, n = gates[:, H : 2 * H], gates[:, 2 * H :]
    dh = dh_rec + dh_dir + dy  # B1
    dn = dh * (1 - z) * (1 - n * n)  # B2
    dz = dh * (h_prev - n) * z * (1 - z)  # B3
    zero = xp.zeros_like(dh)
    _keep(xp, d[:, H : 2 * H], dz, zero, pad)  # B4
    _keep(xp, d[:, 2 * H :], dn, zero, pad)  # B5
    _keep(xp, dh_dir, dh * z, dh, pad)  # B6


def gru_backward_b(
    xp: Any, drh: Array, gates: Array, h_prev: Array, d: Array, dh_dir: Array
) -> None:
    """Second half: dr = drh * h_prev * r * (1 - r) into d; dh_dir += drh * r.

    At padded rows dn is 0, so drh is 0 and this leaves the first half's result alone.
    """
    H = h_prev.shape[1]
    r = gates[:, :H]
    d[:, :H] = drh * h_prev * r * (1 - r)  # B7
    dh_dir += drh * r  # B8


# ---- simplified GRU (u, c~), c = u * c~ + (1 - u) * c_prev -----------------------------
def simple_gru_forward(
    xp: Any, xw: Array, rec: Array, h_prev: Array, pad: Array, gates: Array, h: Array
) -> None:
    """xw, rec, gates (B, 2H) in order (u, c~); h_prev, h (B, H)."""
    H = h.shape[1]
    u = _sigmoid(xp, xw[:, :H] + rec[:, :H])  # F1
    cand = xp.tanh(xw[:, H:] + rec[:, H:])  # F2
    h_new = h_prev + u * (cand - h_prev)  # F3
    gates[:, :H], gates[:, H:] = u, cand  # F4
    _keep(xp, h, h_new, h_prev, pad)  # F5


def simple_gru_backward(
    xp: Any,
    dh_rec: Array,
    dh_dir: Array,
    dy: Array,
    gates: Array,
    h_prev: Array,
    pad: Array,
    d: Array,
) -> None:
    """d (B, 2H) gate gradients (u, c~); dh_dir out: dh * (1 - u)."""
    H = h_prev.shape[1]
    u, cand = gates[:, :H], gates[:, H:]
    dh = dh_rec + dh_dir + dy  # B1
    du = dh * (cand - h_prev) * u * (1 - u)  # B2
    dcand = dh * u * (1 - cand * cand)  # B3
    zero = xp.zeros_like(dh)
    _keep(xp, d[:, :H], du, zero, pad)  # B4
    _keep(xp, d[:, H:], dcand, zero, pad)  # B5
    _keep(xp, dh_dir, dh * (1 - u), dh, pad)  # B6
