"""The generated kernels' compiled element-wise passes (numba; skipped without it).

Equality with the step path for every cell, layout and dtype, and gradcheck, are in
``test_generated_kernels.py`` (its ``numba`` cases); here: one pass each way in the
printed source, the steps they refuse, and a pass that does not compile falls back to
the NumPy code with a warning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_generated_kernels import PEEPHOLE  # noqa: E402

import tinyseq as ts
from tinyseq.kernels import generated
from tinyseq.kernels.generated import Unsupported, compile_cell, runner
from tinyseq.kernels.generated.codegen_numba import PyLang, numba_sources
from tinyseq.nn.recurrent import run_cell, use_fused


def _numba_used() -> bool:
    return any(k[1].startswith("numba") and v[1] is not None
               for k, v in runner._loops_cache.items())


def _cell(cell: Any, dtype: Any = np.float64) -> Any:
    with ts.backend.default_dtype(dtype):
        if isinstance(cell, str):
            return ts.registry.get_cell_spec(cell).create(2, 3)
        return cell(2, 3)


def test_one_pass_each_way_and_typed_constants() -> None:
    """No numba needed: the passes are printed text."""
    comp = compile_cell(_cell("lstm"), rows=True)
    fsrc, bsrc, constants, _ = numba_sources(comp.plan)
    assert fsrc.startswith("def forward_pass(") and bsrc.startswith("def backward_pass(")
    for src in (fsrc, bsrc):
        assert "np." not in src and "matmul" not in src  # the products stay BLAS calls
        assert "for b in range(pad.shape[0]):" in src and "for j in range(3):" in src
    assert fsrc.count("tanh(") == 5  # three sigmoid gates, the candidate, tanh(c)
    assert "0.5" not in fsrc and constants[0.5] in fsrc  # a typed global, not a float
    assert "pg3[b, j + 9]" in bsrc and "gp1[b, j]" in bsrc
    assert "[j + 9, b]" in numba_sources(compile_cell(_cell("lstm")).plan)[1]
    lecture_gru = ts.registry.get_cell_spec("gru").create(2, 3, reset_after=False)
    with pytest.raises(Unsupported, match="a product of an element-wise result"):
        numba_sources(compile_cell(lecture_gru, rows=True).plan)


def test_a_pass_that_does_not_compile_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    cell = _cell(PEEPHOLE, np.float32)
    x = ts.tensor(np.random.default_rng(1).normal(size=(5, 2, 2)).astype(np.float32))
    real = PyLang.call

    def broken(self: PyLang, fn: str, arg: str) -> str:
        return f"no_such_function({arg})" if fn == "tanh" else real(self, fn, arg)

    monkeypatch.setattr(PyLang, "call", broken)
    runner._loops_cache.clear()
    with pytest.warns(RuntimeWarning, match="did not compile"):
        out = generated.run(cell, x, cell.initial_state(2), None, False)
    assert out is not None and not _numba_used()  # the NumPy code answered
    with use_fused(False):
        ref, _ = run_cell(cell, x)
    np.testing.assert_allclose(out[0].data, ref.data, atol=1e-6)
    monkeypatch.undo()
    runner._loops_cache.clear()


def _scaled_rnn(factor: float) -> Any:
    class Scaled(ts.cell.Cell):
        def __init__(self, input_size: int, hidden_size: int) -> None:
            super().__init__(input_size, hidden_size)
            self.weight_ih = ts.nn.Parameter(ts.randn(hidden_size, input_size) * 0.5)

        def input_projection(self, x: ts.Tensor) -> ts.Tensor:
            return ts.cell.linear(x, self.weight_ih)

        def step(self, x_t: ts.Tensor, state: Any) -> Any:
            (h,) = state
            h = ts.tanh(x_t + h * factor)  # same source for every factor but K's value
            return h, (h,)

    return Scaled


def test_steps_that_differ_only_in_a_constant_get_their_own_passes() -> None:
    pytest.importorskip("numba")
    x = ts.tensor(np.random.default_rng(2).normal(size=(4, 2, 3)).astype(np.float32))
    for factor in (0.5, 2.0):
        ts.manual_seed(0)
        with ts.backend.default_dtype(np.float32):
            cell = _scaled_rnn(factor)(3, 3)
        out = generated.run(cell, x, cell.initial_state(2), None, False)
        assert out is not None and _numba_used()
        with use_fused(False):
            ref, _ = run_cell(cell, x)
        np.testing.assert_allclose(out[0].data, ref.data, atol=1e-5)
