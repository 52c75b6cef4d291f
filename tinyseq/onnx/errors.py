"""What tinyseq.onnx refuses, and the optional packages it needs."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["UnsupportedError", "require"]


class UnsupportedError(ValueError):
    """A model, cell, ONNX node or attribute that tinyseq.onnx cannot express."""


def require(name: str) -> Any:
    """The optional package ``name`` ("onnx"), or an ImportError naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(
            f"tinyseq.onnx needs the {name!r} package: pip install 'tinyseq[onnx]' ({err})"
        ) from err
