"""PyTorch interop: move weights between ``torch.nn.RNN/GRU/LSTM`` and :class:`Recurrent`.

    rec = tinyseq.interop.from_torch(torch_lstm)       # same outputs, same gradients
    module = tinyseq.interop.to_torch(rec)              # and back
    rec.load_state_dict(...) / load_torch_state_dict(rec, torch_lstm.state_dict())

PyTorch's names ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}`` map to each cell's ``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh`` (same gate order). Only cells PyTorch has can be moved: "rnn" (tanh/relu),
"gru" with reset_after=True, "lstm" with variant="standard"; bidirectional layers must
merge by concat, and PyTorch has no reverse-only layer (``direction="reverse"``).
:func:`load_torch_state_dict` also fills two forms whose weights are laid out as
PyTorch's though the math differs: a "gru" with reset_after=False (ONNX's
``linear_before_reset=0``) and layers with direction="reverse" (the layer's one cell
takes ``*_l{k}``). Both directions carry the training/eval mode too (it decides whether
dropout between layers is applied). torch is imported only when these functions are called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import backend
from .cell import Cell
from .nn.recurrent import Recurrent

__all__ = [
    "from_torch",
    "to_torch",
    "load_torch_state_dict",
    "torch_state_dict",
    "torch_parameter_names",
    "torch_equivalent",
]


def _torch() -> Any:
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"tinyseq.interop needs PyTorch (pip install torch): {err}") from err
    return torch


def _torch_problem(rec: Recurrent, for_loading: bool) -> tuple[str, str | None]:
    """(PyTorch's class name, why ``rec`` cannot be mapped or None).

    for_loading: only the weight layout must match (load_torch_state_dict); otherwise
    the PyTorch module must compute what ``rec`` computes.
    """
    name, opts = rec.cell_name, rec.cell_options
    problem = None
    kind = ""
    if name == "rnn":
        kind = "RNN"
    elif name == "gru":
        kind = "GRU"
        if not opts.get("reset_after", True) and not for_loading:
            problem = "gru with reset_after=False (the lecture's form) has no PyTorch module"
    elif name == "lstm":
        kind = "LSTM"
        if opts.get("variant", "standard") != "standard":
            problem = "lstm with variant='lecture' (a = o * c) has no PyTorch module"
    else:
        problem = f"cell {name!r} has no PyTorch module (only rnn, gru and lstm)"
    if problem is None and any(rec.directions) and not rec.bidirectional:
        problem = "PyTorch needs every layer bidirectional or none"
    if problem is None and "reverse" in rec.layer_directions and not for_loading:
        problem = (
            f"PyTorch has no reverse-only RNN (this layer has direction={rec.direction!r}); "
            "a torch module would read forward. Run it on flipped sequences, or use "
            "bidirectional=True"
        )
    if problem is None and rec.bidirectional and rec.merge != "concat":
        problem = f"PyTorch merges the two directions by concat, this layer by {rec.merge!r}"
    return kind, problem


def _torch_kind(rec: Recurrent) -> str:
    """PyTorch's class name for ``rec``, or an error saying why it has none."""
    kind, problem = _torch_problem(rec, for_loading=False)
    if problem is not None:
        raise ValueError(f"cannot map Recurrent({rec.extra_repr()}) to PyTorch: {problem}")
    return kind


def torch_equivalent(rec: Recurrent) -> bool:
    """Whether a torch.nn.RNN/GRU/LSTM computes what ``rec`` computes (:func:`to_torch` works)."""
    return _torch_problem(rec, for_loading=False)[1] is None


def torch_parameter_names(rec: Recurrent) -> dict[str, str]:
    """tinyseq parameter name -> PyTorch's, for every parameter of ``rec``."""
    path_of = {id(m): name for name, m in rec.named_modules()}
    out: dict[str, str] = {}
    for layer, direction, cell in rec.cells():
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        prefix = path_of[id(cell)]
        for pname, _ in cell.named_parameters():
            out[f"{prefix}.{pname}"] = pname + suffix
    return out


def load_torch_state_dict(rec: Recurrent, state_dict: Mapping[str, Any]) -> None:
    """Copy a torch.nn.RNN/GRU/LSTM ``state_dict()`` into ``rec`` (names and shapes checked).

    A "gru" with reset_after=False and layers with direction="reverse" load too: their
    weights are laid out as PyTorch's (see the module docstring).
    """
    _, problem = _torch_problem(rec, for_loading=True)
    if problem is not None:
        raise ValueError(
            f"cannot load PyTorch weights into Recurrent({rec.extra_repr()}): {problem}"
        )
    names = torch_parameter_names(rec)
    theirs = {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
              for k, v in state_dict.items()}
    missing = sorted(t for t in names.values() if t not in theirs)
    unexpected = sorted(set(theirs) - set(names.values()))
    if missing or unexpected:
        raise ValueError(
            f"PyTorch state_dict does not fit {rec.cell_name!r} with num_layers="
            f"{rec.num_layers}, direction={rec.direction!r}, bias="
            f"{rec.cell_options.get('bias', True)}: missing {missing}, unexpected {unexpected}"
        )
    rec.load_state_dict({ours: theirs[t] for ours, t in names.items()})


def torch_state_dict(rec: Recurrent) -> dict[str, np.ndarray]:
    """``rec``'s parameters under PyTorch's names, as NumPy arrays."""
    _torch_kind(rec)
    ours = rec.state_dict()
    return {t: ours[o] for o, t in torch_parameter_names(rec).items()}


def _cell_options(module: Any) -> tuple[str, dict[str, Any]]:
    torch = _torch()
    if isinstance(module, torch.nn.LSTM):
        if getattr(module, "proj_size", 0):
            raise ValueError("from_torch: LSTM with proj_size > 0 is not supported")
        return "lstm", {}
    if isinstance(module, torch.nn.GRU):
        return "gru", {"reset_after": True}
    if isinstance(module, torch.nn.RNN):
        return "rnn", {"nonlinearity": module.nonlinearity}
    raise TypeError(
        f"from_torch expects torch.nn.RNN, GRU or LSTM, got {type(module).__name__}"
    )


def from_torch(
    module: Any, *, device: str | backend.Device | None = None, fused: bool | None = None
) -> Recurrent:
    """A :class:`Recurrent` with ``module``'s configuration, weights, dtype and mode."""
    cell, options = _cell_options(module)
    weight = next(iter(module.parameters()))
    dtype = np.dtype(str(weight.dtype).replace("torch.", ""))
    rec = Recurrent(
        cell,
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        batch_first=module.batch_first,
        dropout=float(module.dropout),
        fused=fused,
        device=device,
        dtype=dtype,
        bias=module.bias,
        **options,
    )
    load_torch_state_dict(rec, module.state_dict())
    rec.train(module.training)
    return rec


def to_torch(rec: Recurrent) -> Any:
    """The torch.nn.RNN/GRU/LSTM with ``rec``'s configuration, weights and mode (on the CPU)."""
    torch = _torch()
    kind = _torch_kind(rec)
    first: Cell = rec.cell_at(0)
    dtype = getattr(torch, str(next(iter(first.parameters())).dtype))
    kwargs: dict[str, Any] = dict(
        num_layers=rec.num_layers,
        bias=rec.cell_options.get("bias", True),
        batch_first=rec.batch_first,
        dropout=rec.dropout,
        bidirectional=rec.bidirectional,
        dtype=dtype,
    )
    if kind == "RNN":
        kwargs["nonlinearity"] = rec.cell_options.get("nonlinearity", "tanh")
    module = getattr(torch.nn, kind)(rec.input_size, rec.hidden_size, **kwargs)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in torch_state_dict(rec).items()}
    module.load_state_dict(sd)
    module.train(rec.training)
    return module
