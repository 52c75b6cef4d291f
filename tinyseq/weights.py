"""Weights for other frameworks: a module's parameters in a safetensors file.

    ts.save_weights(model, "model.safetensors")
    ts.load_weights(model, "model.safetensors")     # names, shapes, dtypes checked first

    # PyTorch, a module of the same structure (nn.LSTM where tinyseq has a Recurrent):
    torch_model.load_state_dict(safetensors.torch.load_file("model.safetensors"))

safetensors (the ``safetensors`` package, extra ``tinyseq[safetensors]``) is a header
of JSON and raw little-endian arrays: loading it runs no code, unlike a pickle. The
names are PyTorch's where PyTorch has the same layer: a :class:`~tinyseq.nn.Recurrent`
that :func:`tinyseq.interop.to_torch` can map stores ``<path>.weight_ih_l0``,
``<path>.weight_hh_l0_reverse``, ... (``<path>.`` left out for the module itself), as
``torch.nn.LSTM`` inside a model at ``<path>`` would. Every other tensor keeps its
:meth:`~tinyseq.nn.Module.state_dict` name, which for Linear (``weight`` (out, in),
``bias``) and Embedding (``weight``) is PyTorch's too. A file written by
``safetensors.torch.save_file(torch_model.state_dict())`` therefore loads back.

The header's metadata says ``format: tinyseq`` and the naming ``version``; files from
elsewhere carry other metadata or none, and load the same. Saving writes a temporary
file next to the target and renames it over the target (:mod:`tinyseq.atomic`), so a
failed save leaves the previous file as it was.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from .atomic import atomic_write
from .interop import torch_equivalent, torch_parameter_names
from .nn.module import Module
from .nn.recurrent import Recurrent
from .tensor import Tensor

__all__ = ["save_weights", "load_weights", "weight_names", "FORMAT", "VERSION"]

FORMAT = "tinyseq"
VERSION = "1"

# numpy dtype name -> the safetensors header's, for the dtypes a module holds
_SAFETENSORS_DTYPE = {
    "float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


def _safetensors(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"safetensors weights need the safetensors package (pip install "
            f"'tinyseq[safetensors]'): {err}"
        ) from err


def weight_names(module: Module) -> dict[str, str]:
    """tinyseq state_dict name -> the name in a safetensors file, for every tensor."""
    renamed: dict[str, str] = {}
    for path, sub in module.named_modules():
        if isinstance(sub, Recurrent) and torch_equivalent(sub):
            prefix = f"{path}." if path else ""
            for ours, theirs in torch_parameter_names(sub).items():
                renamed[prefix + ours] = prefix + theirs
    names = {name: renamed.get(name, name) for name in module._state_tensors()}
    seen: dict[str, str] = {}
    for ours, theirs in names.items():
        if theirs in seen:
            raise ValueError(
                f"{type(module).__name__}: tensors {seen[theirs]!r} and {ours!r} would both be "
                f"stored as {theirs!r}"
            )
        seen[theirs] = ours
    return names


def save_weights(module: Module, path: str | os.PathLike[str]) -> None:
    """Write every parameter and buffer of ``module`` to the safetensors file ``path``."""
    numpy_api = _safetensors("safetensors.numpy")
    name = os.fspath(path)
    state = module.state_dict()
    arrays = {
        theirs: np.ascontiguousarray(state[ours]) for ours, theirs in weight_names(module).items()
    }
    data = numpy_api.save(arrays, metadata={"format": FORMAT, "version": VERSION})
    with atomic_write(name) as f:
        f.write(data)


def load_weights(module: Module, path: str | os.PathLike[str]) -> None:
    """Copy the tensors of the safetensors file ``path`` into ``module``.

    The file must hold exactly the tensors :func:`save_weights` would write for
    ``module`` (names as :func:`weight_names`), each with the parameter's shape and
    dtype; nothing changes unless all fit. A mismatch names the file and the tensor.
    """
    safetensors = _safetensors("safetensors")
    name = os.fspath(path)
    names = weight_names(module)
    ours_of = {theirs: ours for ours, theirs in names.items()}
    targets = module._state_tensors()
    if os.path.isdir(name):
        raise IsADirectoryError(f"{name} is a directory; expected a safetensors file")
    try:
        with safetensors.safe_open(name, framework="np") as f:
            metadata = f.metadata() or {}
            keys = list(f.keys())
            problems = _check_header(f, keys, metadata, ours_of, targets)
            if problems:
                raise ValueError(
                    f"{name} does not fit {type(module).__name__}: " + "; ".join(problems)
                )
            arrays = {ours_of[k]: f.get_tensor(k) for k in keys}
    except safetensors.SafetensorError as err:
        raise ValueError(f"{name} is not a readable safetensors file: {err}") from err
    except FileNotFoundError:
        raise  # its message names the file already
    except OSError as err:
        raise OSError(err.errno, f"cannot read weights file {name}: {err}") from err
    module.load_state_dict(arrays)


def _check_header(
    f: Any,
    keys: list[str],
    metadata: dict[str, str],
    ours_of: dict[str, str],
    targets: dict[str, Tensor],
) -> list[str]:
    """What keeps the file's tensors from loading into ``targets`` (read from the header)."""
    problems = []
    if metadata.get("format") == FORMAT and metadata.get("version") != VERSION:
        problems.append(
            f"written by a tinyseq with weights version {metadata.get('version')!r}, this one "
            f"reads version {VERSION!r}"
        )
    missing = [theirs for theirs in ours_of if theirs not in keys]
    unexpected = [k for k in keys if k not in ours_of]
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    for key in keys:
        if key not in ours_of:
            continue
        target = targets[ours_of[key]]
        part = f.get_slice(key)
        shape, dtype = tuple(part.get_shape()), str(part.get_dtype())
        where = key if key == ours_of[key] else f"{key} (tinyseq's {ours_of[key]})"
        if shape != target.shape:
            problems.append(f"tensor {where}: expected shape {target.shape}, the file has {shape}")
        want = _SAFETENSORS_DTYPE.get(target.dtype.name, target.dtype.name)
        if dtype != want:
            problems.append(
                f"tensor {where}: expected dtype {want} ({target.dtype.name}), the file has "
                f"{dtype}; build the model with that dtype, or convert the file"
            )
    return problems
