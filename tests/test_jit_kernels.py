"""The fused LSTM with and without the compiled element-wise pass (numba, the jit extra):
both agree with the step-by-step reference; the float32 tanh's error is bounded; the
switch (``TINYSEQ_JIT``, ``use_jit``) turns it off."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from test_fused import FakeCell, assert_close, lengths_mask, make_inputs, run_both

import tinyseq as ts
from tinyseq import fused
from tinyseq.kernels import jit

pytest.importorskip("numba")

LSTM = [{"variant": "standard"}, {"variant": "lecture"}]
LSTM_IDS = ["standard", "lecture"]


@pytest.fixture(params=[True, False], ids=["jit", "numpy"])
def accelerator(request: pytest.FixtureRequest) -> Any:
    with jit.use_jit(request.param, float64=True):
        yield request.param


class Counting:
    """Counts the compiled step calls (so a test knows which path ran)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from tinyseq.kernels import jit_lstm

        self.calls = {"forward_step": 0, "backward_step": 0}
        for name in self.calls:
            original = getattr(jit_lstm, name)

            def wrapped(*args: Any, _name: str = name, _f: Any = original) -> None:
                self.calls[_name] += 1
                _f(*args)

            monkeypatch.setattr(jit_lstm, name, wrapped)


@pytest.mark.parametrize("opts", LSTM, ids=LSTM_IDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("B", [1, 4], ids=["B1", "B4"])
def test_lstm_float64_matches_step_reference(
    accelerator: bool, opts: dict[str, Any], reverse: bool, B: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting(monkeypatch)
    T = 6
    mask = lengths_mask([6, 3, 1, 5][:B], T) if B > 1 else None
    got, ref = run_both("lstm", opts, T, B, 5, 3, np.float64, mask, reverse)
    assert_close(got, ref, 1e-10)
    expected = T if accelerator else 0
    assert counting.calls == {"forward_step": expected, "backward_step": expected}


@pytest.mark.parametrize("opts", LSTM, ids=LSTM_IDS)
@pytest.mark.parametrize("B", [1, 3], ids=["B1", "B3"])
def test_lstm_float32_matches_step_reference(
    accelerator: bool, opts: dict[str, Any], B: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting(monkeypatch)
    mask = lengths_mask([7, 4, 2][:B], 7)
    got, ref = run_both("lstm", opts, 7, B, 6, 16, np.float32, mask, reverse=True)
    assert got[0].dtype == np.float32
    assert_close(got, ref, 1e-5)
    assert (counting.calls["forward_step"] == 7) is accelerator


def test_float64_runs_numpy_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # numba's scalar float64 tanh is slower than NumPy's: float64 stays on NumPy by default
    counting = Counting(monkeypatch)
    with jit.use_jit(True):
        run_both("lstm", {}, 3, 2, 3, 4, np.float64, None, False)
        assert counting.calls["forward_step"] == 0
        run_both("lstm", {}, 3, 2, 3, 4, np.float32, None, False)
        assert counting.calls["forward_step"] == 3
    assert jit.compiled(np, np.float16) is None
    assert jit.compiled(ts.backend.get_device("testcpu").xp, np.float32) is None


def test_padding_nan_does_not_leak_on_the_compiled_path() -> None:
    T, B, n_in, H = 5, 3, 4, 8
    mask = lengths_mask([5, 2, 3], T)
    with jit.use_jit(True):
        cell = FakeCell("lstm", n_in, H, np.float32)
        x, state = make_inputs("lstm", T, B, n_in, H, np.float32)
        data = x.data.copy()
        data[~mask] = np.nan
        data[4, 2] = np.inf
        x = ts.tensor(data, requires_grad=True)
        res = fused.run("lstm", cell, x, state, mask, False)
        assert res is not None
        y, (h, c) = res
        assert np.isfinite(y.data).all() and np.isfinite(h.data).all()
        np.testing.assert_array_equal(y.data[~mask], 0)
        (y.sum() + h.sum() + c.sum()).backward()
        assert x.grad is not None and np.isfinite(x.grad.data).all()
        np.testing.assert_array_equal(x.grad.data[~mask], 0)
        # the state is carried unchanged through the padded tail of sequence 1
        short = fused.run(
            "lstm", cell, ts.tensor(data[:2, 1:2]), (state[0][1:2], state[1][1:2]), None, False
        )
        assert short is not None
        np.testing.assert_allclose(h.data[1], short[1][0].data[0], atol=1e-6)


def test_nan_in_a_valid_step_propagates() -> None:
    # the float32 tanh clamps with comparisons, which let NaN through (as np.tanh does)
    from tinyseq.kernels.jit_lstm import tanh_float32

    out = tanh_float32(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32))
    assert np.isnan(out[0]) and out[1] == 1 and out[2] == -1
    assert out[3] == 0 and np.signbit(out[4])


def test_float32_tanh_error_over_the_float32_range() -> None:
    from tinyseq.kernels.jit_lstm import tanh_float32

    rng = np.random.default_rng(0)
    # every float32 bit pattern in [1e-6, 10] would be ~1e9 values: sample 2e6 of them
    # log-uniformly, plus a dense grid and the clamp region
    x = np.concatenate(
        [
            np.exp(rng.uniform(np.log(1e-6), np.log(10.0), 2_000_000)),
            np.linspace(0, 10, 1_000_001),
            np.linspace(7.8, 9.2, 1001),
        ]
    ).astype(np.float32)
    x = np.concatenate([x, -x])
    got = tanh_float32(x).astype(np.float64)
    exact = np.tanh(x.astype(np.float64))
    assert float(np.abs(got - exact).max()) < 3.5e-7
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert float((np.abs(got - exact) / ulp).max()) <= 6
    assert np.all(np.abs(got) <= 1)


def test_use_jit_switches_and_restores() -> None:
    before = jit.jit_enabled()
    with jit.use_jit(False):
        assert not jit.jit_enabled()
        assert jit.compiled(np, np.float32) is None
        with jit.use_jit(True):
            assert jit.compiled(np, np.float32) is not None
        assert not jit.jit_enabled()
    assert jit.jit_enabled() == before


def test_environment_variable_turns_it_off_and_numba_is_not_imported() -> None:
    # with TINYSEQ_JIT=0 a float32 LSTM runs on NumPy and numba is never imported
    code = (
        "import sys, numpy as np, tinyseq as ts\n"
        "from tinyseq.kernels import jit\n"
        "layer = ts.nn.Recurrent('lstm', 3, 4)\n"
        "layer(ts.tensor(np.ones((2, 1, 3), np.float32)))\n"
        "print(jit.jit_enabled(), 'numba' in sys.modules, jit.jit_available())\n"
    )
    env = dict(os.environ, TINYSEQ_JIT="0")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False", "True"]


def test_a_numba_that_cannot_compile_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    # numba imports but its compile fails (an LLVM or cache problem): one warning, then
    # the NumPy kernels, with the same results
    module = importlib.import_module("tinyseq.kernels.jit_lstm")

    def broken() -> None:
        raise RuntimeError("LLVM says no")

    monkeypatch.setattr(module, "warm_up", broken)
    monkeypatch.setattr(jit, "_module", [])
    with pytest.warns(RuntimeWarning, match="compiled LSTM pass is off.*LLVM says no"):
        assert not jit.jit_available()
    assert jit.compiled(np, np.float32) is None
    ts.manual_seed(0)
    layer = ts.nn.Recurrent("lstm", 3, 4)
    x = ts.tensor(np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32))
    got, _ = layer(x)
    with jit.use_jit(False):
        want, _ = layer(x)
    np.testing.assert_array_equal(got.data, want.data)
