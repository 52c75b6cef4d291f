"""Checkpoints: model state, optimizer state, JSON metadata and extra arrays in one file.

    ts.save_checkpoint("run.ckpt", model, opt, metadata={"epoch": 3})
    ckpt = ts.load_checkpoint("run.ckpt", model, opt)      # loads into both
    ckpt.metadata["epoch"]

The file is a NumPy ``.npz`` (a zip of ``.npy`` arrays) read with
``allow_pickle=False``, so loading can never run code. Everything that is not an
array (metadata, optimizer settings and step counts) is JSON, stored as a uint8
array of its UTF-8 bytes.

Saving is atomic (:func:`tinyseq.atomic.atomic_write`): a crash or a failed write leaves
the previous checkpoint intact, and a save cleans up what killed saves left behind.

Loading reads and checks the whole file, and that it fits the model and optimizer,
before changing either. A hostile file cannot make it allocate much: before any array
is read, the zip directory's declared sizes and each ``.npy`` header are checked: every
entry must hold exactly the bytes its header declares, all entries together at most
``max_bytes`` (:data:`MAX_CHECKPOINT_BYTES` by default), and a compressed entry over
:data:`MIN_RATIO_CHECKED_BYTES` may inflate at most :data:`MAX_COMPRESSION_RATIO` times
(tinyseq itself writes uncompressed entries).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from . import backend
from .atomic import atomic_write
from .tensor import Tensor

if TYPE_CHECKING:
    from .nn.module import Module
    from .optim.optimizer import Optimizer

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointNotFoundError",
    "save_checkpoint",
    "load_checkpoint",
    "MAX_CHECKPOINT_BYTES",
]

FORMAT = "tinyseq-checkpoint"
VERSION = 1
_META = "__tinyseq__"

# what a file may make load_checkpoint allocate (the sum of its entries' inflated sizes)
MAX_CHECKPOINT_BYTES = 4 * 2**30
# compressed entries: how far one may inflate, checked for entries bigger than this
MAX_COMPRESSION_RATIO = 200
MIN_RATIO_CHECKED_BYTES = 16 * 2**20

# the .npy writer, looked up at call time (tests replace it to fail mid-write)
_write_array = np.lib.format.write_array


class CheckpointError(Exception):
    """A checkpoint file cannot be written, read, or loaded into a model/optimizer."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (also a ``FileNotFoundError``)."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file.

    model_state: name -> NumPy array (as from ``Module.state_dict``).
    optimizer_state: as from ``Optimizer.state_dict`` (None if none was saved).
    metadata: the JSON metadata dict. arrays: the extra arrays by name.
    """

    path: str
    model_state: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


# ---- encoding: arrays go to the zip, everything else to JSON ------------------------------
def _encode(obj: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        arrays[key] = np.asarray(backend.to_numpy(obj))
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_encode(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, int) and not isinstance(k, bool) for k in obj):
            return {"__intkeys__": {str(k): _encode(v, arrays, f"{key}/{k}") for k, v in obj.items()}}
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, arrays, f"{key}/{k}") for k, v in obj.items()}
    raise TypeError(f"cannot store {type(obj).__name__} at {key!r} in a checkpoint")


def _decode(obj: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        if set(obj) == {"__intkeys__"}:
            return {int(k): _decode(v, arrays) for k, v in obj["__intkeys__"].items()}
        return {k: _decode(v, arrays) for k, v in obj.items()}
    return obj


def _write_npz(f: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", mode="w", force_zip64=True) as out:
                _write_array(out, np.asanyarray(arr), allow_pickle=False)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Module | None,
    optimizer: Optimizer | None = None,
    metadata: Mapping[str, Any] | None = None,
    extra_arrays: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model``'s and ``optimizer``'s state, ``metadata`` and arrays atomically.

    metadata: JSON-able dict (e.g. epoch, config, ``ts.get_rng_state()``, a
    scheduler's ``state_dict()``). extra_arrays: name -> array (any device).
    """
    name = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    try:
        header["model"] = None
        if model is not None:
            state = model.state_dict()
            header["model"] = list(state)
            for k, v in state.items():
                arrays[f"model/{k}"] = v
        header["optimizer"] = (
            _encode(optimizer.state_dict(), arrays, "optimizer") if optimizer is not None else None
        )
        extras = dict(extra_arrays or {})
        for k, v in extras.items():
            if not isinstance(k, str):
                raise TypeError(f"extra array names must be strings, got {k!r}")
            arrays[f"extra/{k}"] = np.asarray(backend.to_numpy(v.data if isinstance(v, Tensor) else v))
        header["arrays"] = list(extras)
        header["metadata"] = dict(metadata or {})
        text = json.dumps(header)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"cannot save checkpoint {name}: {err}") from err
    for key, arr in arrays.items():
        if arr.dtype.hasobject:
            raise CheckpointError(
                f"cannot save checkpoint {name}: array {key!r} has dtype object (it would "
                "need pickle); store numbers or strings"
            )
    arrays[_META] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    try:
        with atomic_write(name) as f:
            _write_npz(f, arrays)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot save checkpoint {name}: {err}") from err


def _open(name: str) -> IO[bytes]:
    """The checkpoint file opened for reading; a directory or unreadable path is a CheckpointError."""
    try:
        return open(name, "rb")
    except FileNotFoundError as err:
        raise CheckpointNotFoundError(f"checkpoint not found: {name}") from err
    except IsADirectoryError as err:
        found = [os.path.join(name, f) for f in ("best.npz", "last.npz")
                 if os.path.isfile(os.path.join(name, f))]
        hint = f"; did you mean {' or '.join(found)}?" if found else ""
        raise CheckpointError(
            f"{name} is a directory; expected a checkpoint file (.npz){hint}"
        ) from err
    except OSError as err:
        raise CheckpointError(
            f"cannot read checkpoint {name}: {err.strerror or err}; expected a readable "
            "checkpoint file (.npz)"
        ) from err


def _refuse_pickled(name: str, key: str | None) -> CheckpointError:
    return CheckpointError(
        f"{name}: refused: entry {key!r} holds pickled Python objects, which checkpoints "
        "never load (loading them could run code)"
    )


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) from the header of the .npy entry opened as ``f``."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not supported (expected 1.0 or 2.0)")
    return shape, dtype


def _check_sizes(name: str, f: IO[bytes], max_bytes: int) -> None:
    """Refuse a file whose entries would inflate beyond their headers or ``max_bytes``.

    Reads only the zip directory and each .npy header, so nothing large is allocated.
    """
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{name}: corrupt or truncated checkpoint ({err})") from err
    total = 0
    with zf:
        for info in zf.infolist():
            key = info.filename.removesuffix(".npy")
            total += info.file_size
            if total > max_bytes:
                raise CheckpointError(
                    f"{name}: refused: its entries inflate to more than {max_bytes} bytes "
                    f"(the limit; entry {key!r} reaches {total}); pass a larger max_bytes "
                    "to load_checkpoint if the file is trusted"
                )
            ratio = info.file_size / max(info.compress_size, 1)
            if (info.compress_type != zipfile.ZIP_STORED and info.file_size > MIN_RATIO_CHECKED_BYTES
                    and ratio > MAX_COMPRESSION_RATIO):
                raise CheckpointError(
                    f"{name}: refused: entry {key!r} inflates {ratio:.0f}-fold "
                    f"({info.compress_size} to {info.file_size} bytes; at most "
                    f"{MAX_COMPRESSION_RATIO}-fold is accepted)"
                )
            if not info.filename.endswith(".npy"):
                continue
            try:
                with zf.open(info) as entry:
                    shape, dtype = _npy_header(entry)
                    header_bytes = entry.tell()
            except Exception as err:  # zip, zlib, EOF and header errors: the file is damaged
                raise CheckpointError(
                    f"{name}: corrupt or truncated checkpoint in entry {key!r} "
                    f"({type(err).__name__}: {err})"
                ) from err
            if dtype.hasobject:
                raise _refuse_pickled(name, key)
            declared = header_bytes + int(np.prod(shape, dtype=object)) * dtype.itemsize
            if declared != info.file_size:
                raise CheckpointError(
                    f"{name}: corrupt checkpoint: entry {key!r} declares shape {tuple(shape)} "
                    f"{dtype} ({declared} bytes with its header) but holds {info.file_size} bytes"
                )


def _read(name: str, max_bytes: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a checkpoint file, fully read and checked."""
    with _open(name) as f:
        magic = f.read(4)
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise CheckpointError(f"{name}: not a checkpoint (not an .npz/zip archive)")
        f.seek(0)
        _check_sizes(name, f, max_bytes)
        f.seek(0)
        arrays: dict[str, np.ndarray] = {}
        key = None
        try:
            with np.load(f, allow_pickle=False) as loaded:
                for key in loaded.files:
                    arrays[key] = loaded[key]
        except ValueError as err:
            if "allow_pickle" in str(err):
                raise _refuse_pickled(name, key) from err
            raise CheckpointError(f"{name}: corrupt or truncated checkpoint ({err})") from err
        except Exception as err:  # zip, zlib, EOF and OS errors: the file is damaged
            where = f" in entry {key!r}" if key else ""
            raise CheckpointError(
                f"{name}: corrupt or truncated checkpoint{where} ({type(err).__name__}: {err})"
            ) from err
    if _META not in arrays:
        raise CheckpointError(f"{name}: not a tinyseq checkpoint (no {_META!r} entry)")
    try:
        header = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{name}: corrupt checkpoint header ({err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{name}: not a tinyseq checkpoint (unknown header)")
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"{name}: checkpoint format version {header.get('version')} is not supported "
            f"(expected {VERSION})"
        )
    return header, arrays


def load_checkpoint(
    path: str | os.PathLike[str],
    model: Module | None = None,
    optimizer: Optimizer | None = None,
    strict: bool = True,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> Checkpoint:
    """Read a checkpoint and, if given, load it into ``model`` and ``optimizer``.

    Everything is read and checked first (file integrity, names, shapes, optimizer
    layout); on any problem a :class:`CheckpointError` names the file and the cause,
    and neither the model nor the optimizer has changed. max_bytes: the most the
    file's arrays may take once read (a file declaring more is refused unread). A
    missing file raises :class:`CheckpointNotFoundError` (a ``FileNotFoundError``).
    """
    name = os.fspath(path)
    header, arrays = _read(name, max_bytes)
    try:
        model_state = {k: arrays[f"model/{k}"] for k in header.get("model") or []}
        opt_state = _decode(header.get("optimizer"), arrays)
        extras = {k: arrays[f"extra/{k}"] for k in header.get("arrays") or []}
        metadata = header.get("metadata") or {}
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{name}: corrupt checkpoint (missing entry {err})") from err
    problems = []
    if model is not None:
        if header.get("model") is None:
            problems.append("it holds no model state")
        else:
            problems += model._check_state_dict(model_state, strict)[0]
    if optimizer is not None:
        if opt_state is None:
            problems.append("it holds no optimizer state")
        else:
            problems += optimizer._check_state_dict(opt_state)
    if problems:
        raise CheckpointError(
            f"{name}: does not fit the given model/optimizer: " + "; ".join(problems)
        )
    if model is not None:
        model.load_state_dict(model_state, strict)
    if optimizer is not None and opt_state is not None:
        optimizer.load_state_dict(opt_state)
    return Checkpoint(name, model_state, opt_state, metadata, extras)
