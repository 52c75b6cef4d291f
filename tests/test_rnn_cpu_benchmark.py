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
    assert "fused/torch" in out and "plugin LSTM" in out and "T=4->40" in out
    layers = results["layers"]
    assert {(r["config"], r["cell"]) for r in layers} == {
        (c, k) for c in ("S", "Long") for k in ("rnn", "gru")
    }
    for row in layers:
        assert set(row["train_ms"]) == {"fused", "step", "torch"}
        assert row["max_abs_diff_vs_torch"] < 1e-4  # same weights, same outputs
        assert row["saved_bytes_per_tbh"]["fused"] > 0
    assert results["plugin"][0]["max_abs_diff_vs_torch"] < 1e-4
