"""Tensor factories: zeros, ones, full, arange, rand, randn (on the default device)."""

from __future__ import annotations

from typing import Any

from . import backend
from .backend import Device
from .tensor import Tensor, _wrap

__all__ = ["zeros", "ones", "full", "zeros_like", "ones_like", "arange", "rand", "randn"]


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(int(n) for n in shape[0])
    return tuple(int(n) for n in shape)


def _new(data: Any, dev: Device, requires_grad: bool) -> Tensor:
    t = _wrap(data, dev)
    if requires_grad:
        t.requires_grad_()
    return t


def full(
    shape: tuple[int, ...], fill_value: float, dtype: Any = None,
    device: str | Device | None = None, requires_grad: bool = False,
) -> Tensor:
    """A tensor of ``shape`` filled with ``fill_value``."""
    dev = backend.get_device(device)
    dt = dtype or backend.get_default_dtype()
    return _new(dev.xp.full(_shape((shape,)), fill_value, dtype=dt), dev, requires_grad)


def zeros(*shape: Any, dtype: Any = None, device: str | Device | None = None,
          requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: ``ts.zeros(2, 3)`` or ``ts.zeros((2, 3))``."""
    return full(_shape(shape), 0.0, dtype, device, requires_grad)


def ones(*shape: Any, dtype: Any = None, device: str | Device | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return full(_shape(shape), 1.0, dtype, device, requires_grad)


def zeros_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return full(t.shape, 0.0, t.dtype, t.device, requires_grad)


def ones_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return full(t.shape, 1.0, t.dtype, t.device, requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None,
           device: str | Device | None = None) -> Tensor:
    """Evenly spaced values in [start, stop) like ``numpy.arange``."""
    dev = backend.get_device(device)
    if stop is None:
        start, stop = 0, start
    if dtype is None and any(isinstance(v, float) for v in (start, stop, step)):
        dtype = backend.get_default_dtype()  # like ts.tensor: float data gets the default
    return _wrap(dev.xp.arange(start, stop, step, dtype=dtype), dev)


def rand(*shape: Any, dtype: Any = None, device: str | Device | None = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from tinyseq's seeded generator."""
    dev = backend.get_device(device)
    dt = dtype or backend.get_default_dtype()
    return _new(backend.random_uniform(dev, _shape(shape), 0.0, 1.0, dt), dev, requires_grad)


def randn(*shape: Any, dtype: Any = None, device: str | Device | None = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples from tinyseq's seeded generator."""
    dev = backend.get_device(device)
    dt = dtype or backend.get_default_dtype()
    return _new(backend.random_normal(dev, _shape(shape), 0.0, 1.0, dt), dev, requires_grad)
