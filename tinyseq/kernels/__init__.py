"""Fused whole-sequence kernels for the built-in cells, keyed by cell kind.

Each kernel module has ``forward(xp, x, state, w_ih, w_hh, b_ih, b_hh, mask, reverse,
training, **options) -> (y, final_state, cache)`` and ``backward(cache, dy, d_state,
need_dx) -> (dx, *d_state0, dW_ih, dW_hh, db_ih, db_hh)`` on raw arrays, and may have
``release(cache)``, called after a backward that does not retain the graph, to hand
the saved buffers back to the scratch pool. They are written against the array module
``xp`` with NumPy-style in-place calls (``out=``), so they run on ``cpu`` and
``testcpu``; :mod:`tinyseq.fused` turns them into one autograd node.

The recipe, per layer and direction: one GEMM for the input product of many steps (all
of them, or for gru and lstm a chunk that stays in cache), one recurrent GEMM per step,
element-wise work in place on preallocated blocks, one tanh for all gates (sigmoid(a) =
0.5 * tanh(a / 2) + 0.5), and in backward one GEMM per step for dh plus one GEMM each
for dx, dW_ih and dW_hh over all steps. Two step layouts:

- ``gru`` and ``lstm`` work features x batch (:mod:`.columns`): the recurrent product
  uses the weights as stored (no transposed copy in forward) and each gate is a
  contiguous (H, B) block. Against the row layout this made batch-1 inference about
  1.5x faster, with no change at batch 64.
- ``rnn`` and ``simple_gru`` work batch x features (:mod:`.gates`): with one or two
  small gates per step, the columns layout's extra transposing passes cost more than
  they save (vanilla RNN, batch 64: training 1.19x instead of 0.96x of PyTorch).

With numba installed (the ``jit`` extra), the lstm kernel does each float32 step's
element-wise work in one compiled, vectorized pass (:mod:`.jit_lstm`) instead of a dozen
NumPy calls; ``TINYSEQ_JIT=0`` or :func:`.jit.use_jit` turns that off (:mod:`.jit`).

Cells without a kernel here run kernels generated from their step
(:mod:`.generated`). These hand-written ones stay where they are faster than the
generated kernels of the same cells (float32, 2 threads, numba installed, generated /
hand, inference / training, one run): rnn 1.47 / 1.24x at S, 1.03 / 1.55x at B1,
0.86 / 1.33x at M, 1.13 / 1.15x at Long; lstm 1.44 / 0.94x at S, 1.05 / 1.22x at B1,
1.00 / 1.07x at M, 0.90 / 1.20x at Long. The generated gru came out as fast or faster
(0.83-1.09x) in that run; the hand gru is not retired yet.
``benchmarks/rnn_cpu.py --only-generated`` measures it.

Scratch buffers, and the gru and lstm saved buffers, come from a bounded pool
(:mod:`.workspace`): fresh arrays of a few MB cost page faults on every call (at
config S they were a fifth of an LSTM training step). Nothing derived from the weights
is cached across calls, so an optimizer step is always seen.
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
