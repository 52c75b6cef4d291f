"""Parameter initialisers (PyTorch's defaults): fill a tensor in place, return it."""

from __future__ import annotations

import math

from .. import backend
from ..tensor import Tensor

__all__ = ["uniform_", "normal_", "zeros_", "ones_", "constant_", "xavier_uniform_", "orthogonal_"]


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b)."""
    t.data[...] = backend.random_uniform(t.device, t.shape, a, b, t.dtype)
    return t


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std²)."""
    t.data[...] = backend.random_normal(t.device, t.shape, mean, std, t.dtype)
    return t


def constant_(t: Tensor, value: float) -> Tensor:
    t.data[...] = value
    return t


def zeros_(t: Tensor) -> Tensor:
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    return constant_(t, 1.0)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot uniform for a (fan_out, fan_in) matrix."""
    fan_out, fan_in = t.shape[0], t.shape[1]
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def orthogonal_(t: Tensor, gain: float = 1.0) -> Tensor:
    """A (semi-)orthogonal matrix, from the QR factorisation of a Gaussian one."""
    import numpy as np

    rows, cols = t.shape[0], int(np.prod(t.shape[1:]))
    flat = backend.to_numpy(backend.random_normal(backend.get_device("cpu"), (rows, cols), 0.0, 1.0, np.float64))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    host = (gain * q).reshape(t.shape).astype(t.dtype)
    t.data[...] = host if t.device.name == "cpu" else t.device.xp.asarray(host)
    return t
