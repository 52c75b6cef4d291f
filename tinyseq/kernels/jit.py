"""The switch for the optional compiled element-wise pass (numba, the ``jit`` extra).

With numba installed, the fused LSTM kernel does each step's gate math in one compiled
call (:mod:`.jit_lstm`) instead of a dozen NumPy passes, and so do the kernels
generated from a cell's step (:mod:`.generated.codegen_numba`); the NumPy code stays the
reference and the path without numba. ``TINYSEQ_JIT=0`` in the environment turns the
accelerator off; ``use_jit(False)`` does so from now on, ``with use_jit(False): ...``
for a block (tests run the kernels both ways).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["ENV_VAR", "use_jit", "jit_enabled", "jit_available", "compiled"]

ENV_VAR = "TINYSEQ_JIT"
_enabled = [os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")]
_module: list[ModuleType | None] = []  # [] until the first try to import numba
# float64 off by default: numba's scalar libm tanh makes the compiled float64 step 5-20x
# slower than NumPy's SIMD ufuncs (LSTM at H=512, B=64: 3.0 ms vs 0.15 ms of tanh alone)
_float64 = [False]


def jit_available() -> bool:
    """Whether the compiled pass can run: numba imports and compiles it (tried once).

    ``import numba`` takes ~0.2 s; compiling, on the first use after an install, about a
    second (later processes load it from numba's cache). A numba that imports but cannot
    compile (an LLVM or cache problem) warns once and leaves the NumPy kernels on.
    """
    if not _module:
        _module.append(_load())
    return _module[0] is not None


def _load() -> ModuleType | None:
    try:
        module = importlib.import_module(".jit_lstm", __package__)
    except ImportError:
        return None
    try:
        module.warm_up()
    except Exception as exc:  # numba's errors have no common base; any of them means "off"
        warnings.warn(
            f"tinyseq: the compiled LSTM pass is off, numba could not compile it "
            f"({type(exc).__name__}: {exc}); the NumPy kernels run instead "
            f"(set {ENV_VAR}=0 to skip the attempt)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return module


def jit_enabled() -> bool:
    """Whether the fused kernels use the compiled element-wise pass (on and available)."""
    return _enabled[0] and jit_available()


class use_jit(contextlib.AbstractContextManager["use_jit"]):
    """Turn the compiled element-wise pass on or off: ``use_jit(False)`` from now on, or
    ``with use_jit(False): ...`` for a block. Turning it on without numba does nothing.

    float64: also run float64 through it (exact functions, but slower than NumPy; for
    tests). float32 always uses it when on.
    """

    def __init__(self, enabled: bool = True, float64: bool = False) -> None:
        self._previous = (_enabled[0], _float64[0])
        _enabled[0] = bool(enabled)
        _float64[0] = bool(float64)

    def __exit__(self, *exc: object) -> None:
        _enabled[0], _float64[0] = self._previous


def compiled(xp: Any, dtype: Any) -> Any:
    """The compiled module (:mod:`.jit_lstm`: the LSTM step functions, numba, its float32
    tanh) for plain NumPy float32 (float64 where asked) arrays, or None."""
    dt = np.dtype(dtype)
    if xp is not np or not (dt == np.float32 or (dt == np.float64 and _float64[0])):
        return None
    if not jit_enabled():
        return None
    return _module[0]
