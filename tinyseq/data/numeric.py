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
    if os.path.isdir(p):
        raise DataFormatError(p, None, "expected a .npz or .npy file, got a directory")
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
        _check_finite(p, "x", x)
        return NumericData(x=x[:, :-1], y=x[:, 1:])
    with loaded:
        keys = sorted(loaded.files)
        if "x" not in keys or "y" not in keys:
            raise DataFormatError(p, None, f"expected arrays 'x' and 'y' (and optionally 'x_lengths', 'y_lengths'), found {keys}")
        arrays = {name: _member(loaded, name, p) for name in _KEYS if name in keys}
    data = NumericData(**arrays)
    if data.x.ndim not in (2, 3) or 0 in data.x.shape:
        raise DataFormatError(p, None, f"expected 'x' as (N, T) ids, (N, T, F) features or (N, F) "
                              f"vectors with no empty axis, got shape {data.x.shape}")
    if data.y.ndim == 0:
        raise DataFormatError(p, None, "expected 'y' with one row per example of 'x', got a scalar")
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
    elif data.y.dtype.kind not in "iu":
        raise DataFormatError(p, None, f"expected 'y' of floats or integer ids, got {data.y.dtype}")
    for name in ("x", "y"):
        _check_finite(p, name, getattr(data, name))
    return data


_KEYS = ("x", "y", "x_lengths", "y_lengths")


def _member(loaded: Any, name: str, path: str) -> Arr:
    """One array of an open .npz; object arrays (which need pickle) are refused."""
    try:
        return np.asarray(loaded[name])
    except ValueError as err:  # NumPy: "Object arrays cannot be loaded when allow_pickle=False"
        raise DataFormatError(path, None, f"expected numeric arrays, but '{name}' holds Python "
                              f"objects, which tinyseq never unpickles ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataFormatError(path, None, f"array '{name}' cannot be read: {err}") from None


def _check_finite(path: str, name: str, arr: Arr) -> None:
    """Float data without NaN or infinity (they would only show up later as a NaN loss)."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataFormatError(path, None, f"expected finite numbers in '{name}', found "
                              f"{arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
