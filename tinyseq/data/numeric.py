"""Numeric sequences stored as NumPy ``.npz`` / ``.npy`` files (never unpickled).

``.npz`` keys:
    ``x``          (N, T, F) float features or (N, T) integer ids (or (N, F) vectors)
    ``y``          (N,) labels, (N, Ty) ids/tags, (N, Ty, F) or (N, F) float targets
    ``x_lengths``  optional (N,) valid steps of each x (default: all T)
    ``y_lengths``  optional (N,) valid steps of each y
``.npy``: one array x (N, T, F); the targets are the next steps (y<t> = x<t+1>).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import DataFormatError

__all__ = ["NumericData", "read_numeric"]

Arr = npt.NDArray[Any]


@dataclass
class NumericData:
    """Arrays of a numeric data set; lengths default to the full padded length."""

    x: Arr
    y: Arr
    x_lengths: Arr | None = None
    y_lengths: Arr | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


def read_numeric(path: str | os.PathLike[str]) -> NumericData:
    """Load a ``.npz`` (x, y, optional lengths) or ``.npy`` (x; next-step targets) file."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"data file not found: {p}")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataFormatError(p, None, f"expected a NumPy .npy/.npz file without pickled objects ({err})") from None
    if isinstance(loaded, np.ndarray):
        x = loaded
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or x.shape[1] < 2:
            raise DataFormatError(p, None, f"expected an array (N, T, F) with T >= 2, got shape {loaded.shape}")
        x = x.astype(np.float32)
        return NumericData(x=x[:, :-1], y=x[:, 1:])
    with loaded:
        keys = sorted(loaded.files)
        if "x" not in keys or "y" not in keys:
            raise DataFormatError(p, None, f"expected arrays 'x' and 'y' (and optionally 'x_lengths', 'y_lengths'), found {keys}")
        data = NumericData(
            x=loaded["x"], y=loaded["y"],
            x_lengths=loaded["x_lengths"] if "x_lengths" in keys else None,
            y_lengths=loaded["y_lengths"] if "y_lengths" in keys else None,
        )
    n = data.x.shape[0]
    if data.y.shape[0] != n:
        raise DataFormatError(p, None, f"expected 'y' with {n} rows like 'x', got shape {data.y.shape}")
    for name in ("x_lengths", "y_lengths"):
        arr = getattr(data, name)
        if arr is None:
            continue
        full = (data.x if name == "x_lengths" else data.y)
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise DataFormatError(p, None, f"expected '{name}' as {n} integers, got {arr.dtype} shape {arr.shape}")
        if full.ndim < 2 or arr.min() < 1 or arr.max() > full.shape[1]:
            raise DataFormatError(p, None, f"expected '{name}' in [1, {full.shape[1] if full.ndim > 1 else 1}], got [{arr.min()}, {arr.max()}]")
    if data.x.dtype.kind == "f":
        data.x = data.x.astype(np.float32)
    elif data.x.dtype.kind not in "iu":
        raise DataFormatError(p, None, f"expected 'x' of floats or integer ids, got {data.x.dtype}")
    if data.y.dtype.kind == "f":
        data.y = data.y.astype(np.float32)
    return data
