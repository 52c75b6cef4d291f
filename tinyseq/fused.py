"""Fused whole-sequence kernels for the built-in cells (placeholder: step path only)."""

from __future__ import annotations

from typing import Any


def run(kind: str, cell: Any, x: Any, state: Any, mask: Any, reverse: bool, **options: Any) -> Any:
    """Run a built-in cell's fused kernel over a sequence, or None when there is none."""
    del kind, cell, x, state, mask, reverse, options
    return None
