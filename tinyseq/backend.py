"""The one module that knows NumPy and CuPy: devices, array modules, defaults, RNG.

Everything else asks a :class:`Device` for its array module ``xp`` and never imports
cupy. CuPy is imported lazily, the first time the ``cuda`` device is asked for.

Devices:
    ``cpu``      NumPy arrays.
    ``cuda``     CuPy arrays on the current GPU (aliases ``gpu``, ``cupy``, ``cuda:0``).
    ``testcpu``  NumPy underneath but its own device and array type, like a second
                 device: CI uses it to prove no code path silently assumes NumPy.
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = [
    "Device",
    "DeviceUnavailableError",
    "device",
    "get_device",
    "device_of",
    "get_default_device",
    "set_default_device",
    "get_default_dtype",
    "set_default_dtype",
    "cuda_is_available",
    "to_numpy",
    "scatter_add",
    "transposed_copy",
    "manual_seed",
    "get_rng_state",
    "set_rng_state",
    "random_uniform",
    "random_normal",
    "float32",
    "float64",
]

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

ENV_VAR = "TINYSEQ_DEVICE"
_ALIASES = {
    "cpu": "cpu",
    "numpy": "cpu",
    "cuda": "cuda",
    "cuda:0": "cuda",
    "gpu": "cuda",
    "cupy": "cuda",
    "testcpu": "testcpu",
    "test": "testcpu",
}


class Device:
    """A place where arrays live, with its array module ``xp`` (numpy-like API).

    Also a context manager: ``with ts.device("cuda"): ...`` makes it the default.
    """

    __slots__ = ("name", "xp", "_previous")

    def __init__(self, name: str, xp: Any) -> None:
        self.name = name
        self.xp = xp
        self._previous: list[Device] = []

    def __repr__(self) -> str:
        return f"device(type='{self.name}')"

    def __str__(self) -> str:
        return self.name

    def __enter__(self) -> Device:
        global _default_device
        self._previous.append(_default_device)
        _default_device = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _default_device
        _default_device = self._previous.pop()


class TestArray(np.ndarray):  # type: ignore[type-arg,unused-ignore]
    """The ``testcpu`` device's array type: an ndarray that is not a plain ndarray."""

    __test__ = False  # its name starts with "Test": tell pytest it is not a test class


def _to_test(value: Any) -> Any:
    if type(value) is np.ndarray:
        return value.view(TestArray)
    if isinstance(value, np.generic):
        return np.asarray(value).view(TestArray)
    if isinstance(value, tuple):
        return tuple(_to_test(v) for v in value)
    if isinstance(value, list):
        return [_to_test(v) for v in value]
    return value


class _TestXP(types.ModuleType):
    """numpy's namespace whose functions return :class:`TestArray`."""

    def __init__(self) -> None:
        super().__init__("tinyseq_testxp")
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        cache = self.__dict__["_cache"]
        if name in cache:
            return cache[name]
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type) and name not in ("dtype",):
            wrapped = _wrap_test_fn(attr)
            cache[name] = wrapped
            return wrapped
        cache[name] = attr
        return attr


def _wrap_test_fn(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _to_test(fn(*args, **kwargs))

    # ufunc methods such as np.add.at / np.maximum.reduce stay reachable
    for attr in ("at", "reduce", "accumulate", "outer"):
        if hasattr(fn, attr):
            setattr(wrapper, attr, getattr(fn, attr))
    wrapper.__name__ = getattr(fn, "__name__", "fn")
    return wrapper


class DeviceUnavailableError(RuntimeError):
    """A device tinyseq knows that this machine cannot provide (e.g. 'cuda' without CuPy)."""


_devices: dict[str, Device] = {}


def _make_device(name: str) -> Device:
    if name == "cpu":
        return Device("cpu", np)
    if name == "testcpu":
        return Device("testcpu", _TestXP())
    if name == "cuda":
        try:
            import cupy  # type: ignore[import-not-found,unused-ignore]  # imported here only: the rest of tinyseq never imports cupy
        except ImportError as err:
            raise DeviceUnavailableError(
                "device 'cuda' needs CuPy: install tinyseq[cuda13] or tinyseq[cuda12]"
                f" (import failed: {err})"
            ) from err
        return Device("cuda", cupy)
    raise AssertionError(name)


def get_device(spec: str | Device | None = None) -> Device:
    """The :class:`Device` named by ``spec`` (``None`` means the default device)."""
    if spec is None:
        return _default_device
    if isinstance(spec, Device):
        return spec
    key = _ALIASES.get(str(spec).lower())
    if key is None:
        raise ValueError(
            f"unknown device {spec!r}; expected one of {sorted(set(_ALIASES))}"
        )
    dev = _devices.get(key)
    if dev is None:
        dev = _devices[key] = _make_device(key)
    return dev


device = get_device


def cuda_is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:
        return False


def device_of(array: Any) -> Device:
    """The device an array lives on."""
    t = type(array)
    if t is np.ndarray or isinstance(array, np.generic):
        return get_device("cpu")
    if t is TestArray:
        return get_device("testcpu")
    mod = t.__module__
    if mod.startswith("cupy"):
        return get_device("cuda")
    raise TypeError(f"not an array tinyseq knows: {t.__name__}")


def to_numpy(array: Any) -> np.ndarray:  # type: ignore[type-arg,unused-ignore]
    """A host NumPy copy (or view for ``cpu``) of an array on any device."""
    if type(array) is np.ndarray:
        return array
    if isinstance(array, np.ndarray):
        return np.asarray(array).view(np.ndarray)
    if isinstance(array, np.generic):
        return np.asarray(array)
    get = getattr(array, "get", None)
    if get is not None:
        return get()  # type: ignore[no-any-return]
    return np.asarray(array)


def scatter_add(dev: Device, target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` with repeated indices accumulated (in place)."""
    if dev.name == "cuda":
        import cupyx  # type: ignore[import-not-found,unused-ignore]

        cupyx.scatter_add(target, index, values)
    elif (
        isinstance(index, np.ndarray) and index.ndim == 1 and index.size > 1
        and isinstance(values, np.ndarray) and values.shape == index.shape + target.shape[1:]
    ):
        # rows by a sorted index, then one sum per distinct row: ~10x faster than add.at
        # (an embedding's backward, 1,600 ids x 64 features: 0.72 ms -> 0.10 ms); the sort is
        # stable, so each row adds its values in the same order as add.at
        order = np.argsort(index, kind="stable")
        ids = index[order]
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        target[ids[starts]] += np.add.reduceat(values[order], starts, axis=0)
    else:
        np.add.at(target, index, values)


def transposed_copy(xp: Any, a: Any, out: Any = None) -> Any:
    """A contiguous copy of the 2-D ``a.T`` (into ``out`` when given).

    On the CPU it is copied 32 rows of ``a`` at a time: a plain transposing copy strides
    through memory and is about four times slower on a 2048 x 512 float32 matrix.
    """
    if not isinstance(a, np.ndarray):  # GPU arrays: the library's transpose is fine
        if out is None:
            return xp.ascontiguousarray(a.T)
        xp.copyto(out, a.T)
        return out
    n = a.shape[0]
    if out is None:
        out = xp.empty((a.shape[1], n), dtype=a.dtype)
    for i in range(0, n, 32):
        xp.copyto(out[:, i : i + 32], a[i : i + 32].T)
    return out


def _initial_default() -> Device:
    name = os.environ.get(ENV_VAR) or os.environ.get("TINYSEQ_BACKEND") or "cpu"
    return get_device(name)


_default_device: Device = get_device("cpu")
_default_device = _initial_default()
_default_dtype: np.dtype[Any] = float32


def get_default_device() -> Device:
    """The device new tensors and modules are created on."""
    return _default_device


def set_default_device(spec: str | Device) -> None:
    """Set the device new tensors and modules are created on."""
    global _default_device
    _default_device = get_device(spec)


def get_default_dtype() -> np.dtype[Any]:
    """The floating dtype of new tensors (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype: Any) -> None:
    """Set the floating dtype of new tensors: float32 or float64."""
    global _default_dtype
    dt = np.dtype(dtype)
    if dt not in (float32, float64):
        raise ValueError(f"default dtype must be float32 or float64, got {dt}")
    _default_dtype = dt


@contextlib.contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """Context manager that sets the default floating dtype for its body."""
    previous = _default_dtype
    set_default_dtype(dtype)
    try:
        yield
    finally:
        set_default_dtype(previous)


# ---- random numbers ---------------------------------------------------------------
# One host generator drives initialisation and dropout on every device, so a seeded run
# gives the same numbers on cpu, testcpu and cuda (masks are made on the host and moved).
_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Seed tinyseq's random number generator."""
    global _rng
    _rng = np.random.default_rng(seed)


def get_rng_state() -> dict[str, Any]:
    """The generator's state as a JSON-serialisable dict."""
    return dict(_rng.bit_generator.state)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    _rng.bit_generator.state = state


def random_uniform(
    dev: Device, shape: tuple[int, ...], low: float, high: float, dtype: Any
) -> Any:
    """Uniform samples in [low, high) on ``dev``."""
    host = _rng.uniform(low, high, size=shape).astype(dtype, copy=False)
    return host if dev.name == "cpu" else dev.xp.asarray(host)


def random_normal(
    dev: Device, shape: tuple[int, ...], mean: float, std: float, dtype: Any
) -> Any:
    """Normal samples on ``dev``."""
    host = _rng.normal(mean, std, size=shape).astype(dtype, copy=False)
    return host if dev.name == "cpu" else dev.xp.asarray(host)
