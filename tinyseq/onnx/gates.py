"""Gate order and biases: tinyseq's cells (PyTorch's layout) against ONNX's RNN/GRU/LSTM.

tinyseq stacks gate blocks of H rows as PyTorch does: LSTM (i, f, g, o), GRU (r, z, n),
with separate ``bias_ih`` and ``bias_hh``. ONNX stacks LSTM (i, o, f, c) and GRU
(z, r, h), and one ``B`` = [Wb, Rb] per direction: Wb is ``bias_ih``, Rb ``bias_hh``
in ONNX's gate order (for the GRU, Rb's h block is PyTorch's b_hn in both forms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import backend
from ..cell import Cell

__all__ = ["ONNX_OPS", "CELL_OF_OP", "to_onnx_order", "from_onnx_order", "onnx_weights",
           "set_onnx_weights"]

Arr = npt.NDArray[Any]

ONNX_OPS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}  # tinyseq cell -> ONNX op
CELL_OF_OP = {op: cell for cell, op in ONNX_OPS.items()}

# _TO_ONNX[op][k]: the tinyseq gate block that becomes ONNX's block k
_TO_ONNX = {"RNN": (0,), "GRU": (1, 0, 2), "LSTM": (0, 3, 1, 2)}
_FROM_ONNX = {op: tuple(int(i) for i in np.argsort(order)) for op, order in _TO_ONNX.items()}


def _reorder(rows: Arr, order: tuple[int, ...]) -> Arr:
    """Gate blocks of ``rows`` (G*H, ...) taken in ``order``."""
    blocks = np.split(np.asarray(rows), len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


def to_onnx_order(op: str, rows: Arr) -> Arr:
    """tinyseq/PyTorch gate blocks (G*H, ...) -> ONNX's order for ``op`` (RNN/GRU/LSTM)."""
    return _reorder(rows, _TO_ONNX[op])


def from_onnx_order(op: str, rows: Arr) -> Arr:
    """ONNX gate blocks (G*H, ...) of ``op`` -> tinyseq/PyTorch's order."""
    return _reorder(rows, _FROM_ONNX[op])


def onnx_weights(op: str, cell: Cell) -> tuple[Arr, Arr, Arr | None]:
    """One direction's W (G*H, I), R (G*H, H) and B (2*G*H,) or None (no bias)."""
    def host(name: str) -> Arr | None:
        p = getattr(cell, name, None)
        return None if p is None else backend.to_numpy(p.data)

    w, r = host("weight_ih"), host("weight_hh")
    if w is None or r is None:
        raise ValueError(f"{type(cell).__name__} has no weight_ih/weight_hh")
    b_ih, b_hh = host("bias_ih"), host("bias_hh")
    bias = None
    if b_ih is not None and b_hh is not None:
        bias = np.concatenate([to_onnx_order(op, b_ih), to_onnx_order(op, b_hh)])
    return to_onnx_order(op, w), to_onnx_order(op, r), bias


def set_onnx_weights(op: str, cell: Cell, w: Arr, r: Arr, b: Arr | None) -> None:
    """Copy one direction's ONNX W (G*H, I), R (G*H, H), B (2*G*H,) into ``cell``."""
    values = {"weight_ih": from_onnx_order(op, w), "weight_hh": from_onnx_order(op, r)}
    if b is not None:
        wb, rb = np.split(np.asarray(b), 2)
        values["bias_ih"] = from_onnx_order(op, wb)
        values["bias_hh"] = from_onnx_order(op, rb)
    for name, value in values.items():
        p = getattr(cell, name)
        if tuple(p.shape) != value.shape:
            raise ValueError(
                f"{type(cell).__name__}.{name} has shape {tuple(p.shape)}, the ONNX "
                f"weights give {value.shape}"
            )
        p.data[...] = p.device.xp.asarray(value.astype(p.dtype))
