"""`tinyseq check-cell NAME` says whether and how a cell runs fused; --show-kernel prints
the code generated from its step."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tinyseq.cli import main

ROOT = Path(__file__).parent.parent
INDRNN = ROOT / "tutorials" / "cell_plugins" / "indrnn.py"

ABS_CELL = '''
import tinyseq as ts
from tinyseq.cell import Cell, linear
from tinyseq.nn import Parameter


class AbsCell(Cell):
    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.weight_ih = Parameter(ts.randn(hidden_size, input_size))

    def input_projection(self, x):
        return linear(x, self.weight_ih)

    def step(self, x_t, state):
        (h,) = state
        h = ts.tanh(x_t + ts.abs(h))
        return h, (h,)


@ts.hookimpl
def register_cells(register):
    register("abs_cell", AbsCell)
'''


def test_check_cell_says_generated_and_shows_the_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--plugin", str(INDRNN), "check-cell", "indrnn", "--show-kernel"]) == 0
    out = capsys.readouterr().out
    assert "kernels: fused, generated; saves 4 bytes per T*B*H for backward" in out
    assert "n3 = mul(n2, n0)" in out and "indrnn.py:" in out  # the traced graph
    assert "def forward(np, X" in out and "np.maximum(" in out  # relu, in place
    assert "def backward(np, X" in out and "np.greater(" in out
    # the compiled passes are printed with or without numba; the line says which runs
    assert "def forward_pass(x, sp0, P_recurrent, pad, sn0):" in out
    assert "def backward_pass(" in out and "acc0[b, j] +=" in out
    numba = importlib.util.find_spec("numba") is not None
    how = "one compiled pass each way (numba)" if numba else "NumPy calls (install the jit"
    assert f"element-wise part: {how}" in out


def test_check_cell_says_why_not_fused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "abs_cell.py"
    plugin.write_text(ABS_CELL)
    line = ABS_CELL.splitlines().index("        h = ts.tanh(x_t + ts.abs(h))") + 1
    assert main(["--plugin", str(plugin), "check-cell", "abs_cell", "--show-kernel"]) == 0
    out = capsys.readouterr().out
    assert f"kernels: not fused: `abs` at `abs_cell.py:{line}`" in out
    assert "def forward" not in out


def test_check_cell_on_a_built_in_cell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-cell", "lstm", "--check", "state_shapes"]) == 0
    out = capsys.readouterr().out
    assert "kernels: fused, its own fused_sequence (generated kernels also available); " \
           "saves 24 bytes per T*B*H" in out
