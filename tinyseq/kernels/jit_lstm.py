"""One LSTM step's element-wise work as one compiled loop (numba; the ``jit`` extra).

Imported only through :mod:`.jit` (importing this module imports numba). The fused
kernel (:mod:`.lstm`) keeps its GEMMs and step loop and calls, per step,
:func:`forward_step` after the recurrent product and :func:`backward_step` before the
dh product; these replace its dozen NumPy passes with one pass over the gate blocks.

Why the code looks like this (measured on 2 cores, see DESIGN.md):
- numba's pip build has no SVML, so ``math.tanh`` runs scalar libm, slower than NumPy's
  SIMD tanh. In float32, tanh is therefore a clamped 13/6 rational function written as
  plain arithmetic (Eigen's ``generic_fast_tanh_float`` coefficients), which LLVM
  vectorizes: at most 5 ulp / 3e-7 absolute error over the float32 range (see
  :func:`tanh_float32`). float64 uses the exact ``math.tanh``.
- Loops are flat over contiguous rows of the gate blocks, outputs never alias inputs,
  ``error_model="numpy"``, no ``prange`` (its threads fight OpenBLAS's for the cores).
- ``cache=True``: the compiled code is kept next to this file, so only the first process
  pays the compile (a few seconds); later ones load it in about 0.1 s.

Every array is contiguous: the loop runs flat over the H*B elements of each gate block
(a (4, H*B) view of a (4H, B) block; the gate index is a constant, so numba needs no
negative-index check and LLVM vectorizes the loop). The caller adds the input product
into the recurrent one first and copies gate gradients into strided buffers after.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

__all__ = ["forward_step", "backward_step", "tanh_float32", "warm_up", "scalar_tanh",
           "COMPILE_OPTIONS"]

numba: Any = importlib.import_module("numba")
_extending: Any = importlib.import_module("numba.extending")
_types: Any = importlib.import_module("numba.core.types")

Array = Any
_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}

_f32 = np.float32
# tanh(x) = x P(x^2) / Q(x^2) on [-7.905, 7.905], +-1 (to float32) beyond
_CLAMP = _f32(7.90531110763549805)
_TINY = _f32(0.0004)
_A1, _A3, _A5, _A7 = (
    _f32(4.89352455891786e-03),
    _f32(6.37261928875436e-04),
    _f32(1.48572235717979e-05),
    _f32(5.12229709037114e-08),
)
_A9, _A11, _A13 = (
    _f32(-8.60467152213735e-11),
    _f32(2.00018790482477e-13),
    _f32(-2.76076847742355e-16),
)
_B0, _B2, _B4, _B6 = (
    _f32(4.89352518554385e-03),
    _f32(2.26843463243900e-03),
    _f32(1.18534705686654e-04),
    _f32(1.19825839466702e-06),
)


_ONE = _f32(1)
_SATURATED = _f32(9)  # tanh(x) rounds to 1 in float32 from x = 8.7 on


def _tanh_rational(x: Any) -> Any:
    # comparisons, not min/max: a NaN fails both and stays NaN
    y = x
    if y > _CLAMP:
        y = _CLAMP
    elif y < -_CLAMP:
        y = -_CLAMP
    y2 = y * y
    p = _A13 * y2 + _A11
    p = p * y2 + _A9
    p = p * y2 + _A7
    p = p * y2 + _A5
    p = p * y2 + _A3
    p = p * y2 + _A1
    p = p * y
    q = _B6 * y2 + _B4
    q = q * y2 + _B2
    q = q * y2 + _B0
    # below 4e-4, tanh(x) = x to float32 precision (and keeps -0.0 and subnormals exact)
    r = y if abs(y) < _TINY else p / q
    # exactly +-1 where float32 tanh is (sigmoid gates then saturate at exactly 0 and 1)
    if x > _SATURATED:
        r = _ONE
    elif x < -_SATURATED:
        r = -_ONE
    return r


def _tanh(x: Any) -> Any:
    """tanh for the compiled loops: rational in float32, exact otherwise."""
    return math.tanh(x)


def _tanh_overload(x: Any) -> Any:
    # chosen by numba at compile time from the argument's type
    if x == _types.float32:
        return _tanh_rational
    return _tanh


_extending.overload(_tanh, jit_options={"fastmath": {"contract"}})(_tanh_overload)
# for other compiled loops (the generated kernels): the tanh and the options used here
scalar_tanh = _tanh
COMPILE_OPTIONS = dict(_JIT)


def _forward_step(
    a: Array, cp: Array, g: Array, cn: Array, hn: Array, standard: bool, half: Any
) -> None:
    """Gates g = act(a), cn = f * cp + i * gg, hn = o * tanh(cn) (or o * cn).

    a, g: contiguous (4H, B) pre-activations and activated gates, order (i, f, g, o);
    cp, cn, hn: contiguous (H, B); half: 0.5 in their dtype. g, cn, hn are written and
    must not overlap a or cp.
    """
    n = cp.size
    # (4, H*B) views: a constant gate index and a flat loop over each gate block
    a4, g4 = a.reshape(4, n), g.reshape(4, n)
    c_p, c_n, h_n = cp.reshape(n), cn.reshape(n), hn.reshape(n)
    for j in range(n):
        # sigmoid(a) = 0.5 * tanh(a / 2) + 0.5: no overflow for large |a|
        i = half * _tanh(half * a4[0, j]) + half
        f = half * _tanh(half * a4[1, j]) + half
        gg = _tanh(a4[2, j])
        o = half * _tanh(half * a4[3, j]) + half
        c = f * c_p[j] + i * gg
        g4[0, j] = i
        g4[1, j] = f
        g4[2, j] = gg
        g4[3, j] = o
        c_n[j] = c
        h_n[j] = o * _tanh(c) if standard else o * c


def _backward_step(
    g: Array, c: Array, cp: Array, dh: Array, dc: Array, d: Array, standard: bool, one: Any
) -> None:
    """Gate gradients d (4H, B) from dh and the saved gates g (4H, B), states c, cp (H, B).

    dc (H, B) is dL/dc_t on entry and dL/dc_{t-1} on return; one: 1 in their dtype.
    All contiguous; d must not overlap the others.
    """
    n = c.size
    g4, d4 = g.reshape(4, n), d.reshape(4, n)
    c_t, c_p, d_h, d_c = c.reshape(n), cp.reshape(n), dh.reshape(n), dc.reshape(n)
    for j in range(n):
        i, f, gg, o = g4[0, j], g4[1, j], g4[2, j], g4[3, j]
        dhj = d_h[j]
        if standard:
            tc = _tanh(c_t[j])
            a_o = dhj * tc
            dct = d_c[j] + dhj * o * (one - tc * tc)
        else:
            a_o = dhj * c_t[j]
            dct = d_c[j] + dhj * o
        d4[0, j] = dct * gg * i * (one - i)
        d4[1, j] = dct * c_p[j] * f * (one - f)
        d4[2, j] = dct * i * (one - gg * gg)
        d4[3, j] = a_o * o * (one - o)
        d_c[j] = dct * f


def _tanh_array(x: Array, out: Array) -> None:
    for k in range(x.shape[0]):
        out[k] = _tanh(x[k])


# called straight from the time loop: a Python wrapper would add ~2 us per step
_forward_jit = numba.njit(**_JIT)(_forward_step)
_backward_jit = numba.njit(**_JIT)(_backward_step)
forward_step, backward_step = _forward_jit, _backward_jit
_tanh_array_jit = numba.njit(**_JIT)(_tanh_array)


def tanh_float32(x: Array) -> Array:
    """The compiled loops' float32 tanh on a 1-D float32 array (for tests and accuracy)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _tanh_array_jit(x, out)
    return out


def warm_up() -> None:
    """Compile (or load from the cache) the float32 step functions now, on tiny blocks,
    so that a numba that cannot compile them fails here, where the caller can fall back."""
    f32 = np.float32
    a, g, d = (np.zeros((4, 2), f32) for _ in range(3))
    cp, cn, hn, dh, dc = (np.zeros((1, 2), f32) for _ in range(5))
    for standard in (True, False):
        _forward_jit(a, cp, g, cn, hn, standard, f32(0.5))
        _backward_jit(g, cn, cp, dh, dc, d, standard, f32(1))
