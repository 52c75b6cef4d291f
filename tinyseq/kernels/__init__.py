"""Fused whole-sequence kernels for the built-in cells, keyed by cell kind.

Each kernel module has ``forward(xp, x, state, w_ih, w_hh, b_ih, b_hh, mask, reverse,
training, **options) -> (y, final_state, cache)`` and ``backward(cache, dy, d_state,
need_dx) -> (dx, *d_state0, dW_ih, dW_hh, db_ih, db_hh)`` on raw arrays. They are
written against the array module ``xp`` with NumPy-style in-place calls (``out=``),
so they run on ``cpu`` and ``testcpu``; :mod:`tinyseq.fused` turns them into one
autograd node.

The recipe, per layer and direction: the weights transposed once per call (BLAS is
faster on a stored W.T), one GEMM for the input product of all steps, one recurrent
GEMM per step, element-wise work in place on preallocated gate-major blocks
(:mod:`.gates`), one tanh for all gates (sigmoid gates have halved weights), and in
backward one GEMM per step for dh plus one GEMM each for dx, dW_ih and dW_hh over all
steps. Scratch buffers come from a bounded pool (:mod:`.workspace`); nothing derived
from the weights is cached across calls, so an optimizer step is always seen.
"""

from __future__ import annotations

from types import ModuleType

from . import gru, lstm, rnn, simple_gru
from .sequence import MaskInfo, Steps
from .workspace import Workspace, workspace

__all__ = ["KERNELS", "MaskInfo", "Steps", "Workspace", "workspace"]

KERNELS: dict[str, ModuleType] = {
    "rnn": rnn,
    "simple_gru": simple_gru,
    "gru": gru,
    "lstm": lstm,
}
