"""Which fused kernels a device runs: NumPy in-place kernels or the GPU-layout ones.

``cpu`` and ``testcpu`` run :data:`tinyseq.kernels.KERNELS` (NumPy-tuned, in place);
``cuda`` runs :data:`.stepwise.STEPWISE_KERNELS` (one GEMM and one fused CUDA kernel
per step, optionally in a CUDA graph). ``use_stepwise_kernels(True)`` — or the
environment variable ``TINYSEQ_STEPWISE_KERNELS=1`` — makes every device run the GPU
layout, with the portable pointwise functions off ``cuda``: that is how CI exercises
the ``cuda`` code path on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from . import KERNELS
from .stepwise import STEPWISE_KERNELS

__all__ = ["kernels_for", "use_stepwise_kernels", "stepwise_forced", "ENV_VAR"]

ENV_VAR = "TINYSEQ_STEPWISE_KERNELS"
_forced = [os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")]


def stepwise_forced() -> bool:
    """Whether every device runs the GPU-layout kernels."""
    return _forced[0]


class use_stepwise_kernels(contextlib.AbstractContextManager["use_stepwise_kernels"]):
    """Make every device run the GPU-layout kernels: ``use_stepwise_kernels(True)`` from
    now on, or ``with use_stepwise_kernels(True): ...`` for a block."""

    def __init__(self, enabled: bool = True) -> None:
        self._previous = _forced[0]
        _forced[0] = bool(enabled)

    def __exit__(self, *exc: object) -> None:
        _forced[0] = self._previous


def kernels_for(device_name: str) -> Mapping[str, Any]:
    """The fused kernels for a device, keyed by cell kind (empty: no fused path)."""
    if device_name == "cuda" or _forced[0]:
        return STEPWISE_KERNELS
    if device_name in ("cpu", "testcpu"):
        return KERNELS
    return {}
