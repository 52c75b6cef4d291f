"""The GPU benchmark script: a clear exit without a GPU, and its whole flow on a stand-in
device (NumPy underneath, named cuda) so the script is known to run before a GPU does."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import types
from typing import Any

import numpy as np
import pytest

from tinyseq import backend

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "rnn_gpu.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("rnn_gpu_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exits_with_a_clear_message_without_a_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(backend, "cuda_is_available", lambda: False)
    assert _load().main(["--quick"]) == 2
    assert "no GPU" in capsys.readouterr().err


class _StandInCupy(types.ModuleType):
    """NumPy plus the few ``cupy.cuda`` calls the script makes."""

    __version__ = "stand-in"

    def __init__(self) -> None:
        super().__init__("standin")
        device = types.SimpleNamespace(synchronize=lambda: None, id=0)
        self.cuda = types.SimpleNamespace(
            Device=lambda *a: device,
            runtime=types.SimpleNamespace(getDeviceProperties=lambda i: {"name": b"stand-in"}),
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def test_quick_run_on_a_stand_in_device(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    monkeypatch.setitem(backend._devices, "cuda", backend.Device("cuda", _StandInCupy()))
    monkeypatch.setattr(backend, "cuda_is_available", lambda: True)
    module = _load()
    monkeypatch.setattr(module, "_torch_or_none", lambda: None)  # no cuDNN side here
    out_json = tmp_path / "gpu.json"
    status = module.main(["--quick", "--configs", "S", "Long", "--cells", "gru", "lstm",
                          "--json", str(out_json)])
    assert status == 0
    out = capsys.readouterr().out
    assert "graph inf" in out and "no cuDNN reference" in out
    figures = json.loads(out_json.read_text())["ms"]
    for cfg in ("S", "Long"):
        for cell in ("gru", "lstm"):
            assert set(figures[cfg][cell]) == {"eager_infer", "eager_train", "graph_infer", "graph_train"}


def test_quick_run_with_the_reference_on_the_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The PyTorch side (run on the host here) and the ratio columns."""
    torch = pytest.importorskip("torch")
    monkeypatch.setitem(backend._devices, "cuda", backend.Device("cuda", _StandInCupy()))
    monkeypatch.setattr(backend, "cuda_is_available", lambda: True)
    module = _load()
    monkeypatch.setattr(module, "_torch_or_none", lambda: torch)
    monkeypatch.setattr(module, "TORCH_DEVICE", "cpu")
    assert module.main(["--quick", "--configs", "S", "--cells", "lstm"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("S ")][0]
    assert "n/a" not in row  # cuDNN column and ratios filled in
