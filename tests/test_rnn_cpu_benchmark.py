"""Smoke test: the CPU recurrent benchmark runs end to end in its quick mode."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "rnn_cpu.py"


def test_rnn_cpu_benchmark_quick(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("rnn_cpu_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # rnn and gru keep it fast: torch's LSTM spends ~0.3 s setting up each new shape
    results = module.main(["--quick", "--configs", "S", "Long", "--cells", "rnn", "gru"])
    out = capsys.readouterr().out
    assert "/torch: fused" in out and "plugin LSTM" in out and "T=4->40" in out
    layers = results["layers"]
    assert {(r["config"], r["cell"]) for r in layers} == {
        (c, k) for c in ("S", "Long") for k in ("rnn", "gru")
    }
    # with numba, "fused" has the compiled element-wise pass and "numpy" is without it
    impls = {"fused", "step", "torch", "floor"} | ({"numpy"} if results["jit"] else set())
    assert "jit: numba" in out if results["jit"] else "numba not installed" in out
    assert results["sgemm_peak_gflops"] > 0
    for row in layers:
        assert set(row["train_ms"]) == impls and set(row["infer_ms"]) == impls
        assert row["max_abs_diff_vs_torch"] < 1e-4  # same weights, same outputs
        assert row["saved_bytes_per_tbh"]["fused"] > 0
    assert results["plugin"][0]["max_abs_diff_vs_torch"] < 1e-4


def test_main_job_benchmark_workers_run_one_step() -> None:
    pytest.importorskip("torch")
    path = SCRIPT.parent / "main_job.py"
    spec = importlib.util.spec_from_file_location("main_job_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for worker in (module.tinyseq_worker, module.torch_worker):
        result = worker(1, 1)
        assert result["steps_per_s"] > 0 and result["warmup_s"] > 0
