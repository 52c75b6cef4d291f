"""The cell conformance kit: every built-in cell passes; each check catches a planted defect."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend, registry
from tinyseq.cell import Cell, State, linear
from tinyseq.nn import Parameter
from tinyseq.nn.recurrent import run_cell
from tinyseq.tensor import Tensor, custom
from tinyseq.testing import CHECKS, CellCheckError, check_cell


@pytest.fixture(autouse=True)
def _builtin_cells_only() -> Iterator[None]:
    """Only the built-in cells: nothing installed or set in the environment leaks in."""
    with registry.isolated_plugins():
        yield

BUILTINS = [
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu"}),
    ("simple_gru", {}),
    ("gru", {}),
    ("gru", {"reset_after": False}),
    ("lstm", {}),
    ("lstm", {"variant": "lecture", "forget_bias": 1.0}),
    ("lstm", {"bias": False}),
]


@pytest.mark.parametrize("name,options", BUILTINS, ids=lambda v: str(v) if v else "default")
def test_every_builtin_cell_passes(name: str, options: dict[str, Any], device: str) -> None:
    report = check_cell(name, options=options, device=device)
    assert report.ok
    assert [r.name for r in report.results] == list(CHECKS)
    assert report["fused"].status == "passed"  # cuda too: it runs the GPU-layout kernels


# ---- planted defects: one per check ----------------------------------------------------------
def _param(*shape: int) -> Parameter:
    dev = backend.get_default_device()
    bound = 1.0 / math.sqrt(shape[0])
    data = backend.random_uniform(dev, shape, -bound, bound, backend.get_default_dtype())
    return Parameter(Tensor(data, device=dev))


class TanhCell(Cell):
    """A correct vanilla tanh cell that the planted defects start from."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = _param(hidden_size, input_size)
        self.weight_hh = _param(hidden_size, hidden_size)

    def pre(self, x_t: Tensor, h: Tensor) -> Tensor:
        return linear(x_t, self.weight_ih) + linear(h, self.weight_hh)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h = ts.tanh(self.pre(x_t, state[0]))
        return h, (h,)


class WrongStateDtype(TanhCell):
    """state_shapes: the initial state ignores the parameters' dtype."""

    def initial_state(self, batch_size: int) -> State:
        dev = self.device
        return (Tensor(dev.xp.zeros((batch_size, self.hidden_size), dtype="float32"), device=dev),)


class SqueezesBatch(TanhCell):
    """batch1_T1: squeeze() drops the batch axis when B == 1."""

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h = ts.tanh(self.pre(x_t, state[0])).squeeze()
        return h, (h,)


class WrongDerivative(TanhCell):
    """gradcheck: a hand-written tanh whose backward forgets the derivative."""

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        pre = self.pre(x_t, state[0])
        h = custom(pre.device.xp.tanh(pre.data), (pre,), lambda g: (g,))
        return h, (h,)


class MixesBatch(TanhCell):
    """padding: mixes the batch (a batch mean), so padded rows leak into valid ones."""

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        pre = self.pre(x_t, state[0])
        h = ts.tanh(pre - pre.mean(axis=0, keepdims=True))
        return h, (h,)


_SHARED: dict[tuple[int, str], Parameter] = {}


class SharesWeights(TanhCell):
    """bidirectional: every instance shares one recurrent weight (class-level cache)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        key = (hidden_size, str(backend.get_default_dtype()))
        if key not in _SHARED:
            _SHARED[key] = self.weight_hh
        self.weight_hh = _SHARED[key]


class FixedInputSize(TanhCell):
    """stacked: ignores input_size and assumes 3 input features."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = _param(hidden_size, 3)


class PlainTensorWeight(TanhCell):
    """state_dict: keeps a weight as a plain Tensor, so it is not saved."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.scale = _param(hidden_size).detach()

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h = ts.tanh(self.pre(x_t, state[0]) * self.scale)
        return h, (h,)


class WrongFused(TanhCell):
    """fused: a fused path that is 1% off the step path (and otherwise consistent)."""

    def fused_sequence(
        self, x: Tensor, state: State, mask: Any, reverse: bool
    ) -> tuple[Tensor, State] | None:
        y, final = run_cell(self, x, state, mask, reverse, fused=False)
        return y * 1.01, final


PLANTED = {
    "state_shapes": WrongStateDtype,
    "batch1_T1": SqueezesBatch,
    "gradcheck": WrongDerivative,
    "padding": MixesBatch,
    "bidirectional": SharesWeights,
    "stacked": FixedInputSize,
    "state_dict": PlainTensorWeight,
    "fused": WrongFused,
}


def test_the_healthy_base_cell_passes() -> None:
    report = check_cell(TanhCell)
    assert report.ok
    assert report["fused"].status == "skipped"


@pytest.mark.parametrize("check", CHECKS)
def test_each_check_fails_on_its_planted_defect(check: str) -> None:
    assert set(PLANTED) == set(CHECKS)
    cell = PLANTED[check]
    with pytest.raises(CellCheckError) as info:
        check_cell(cell)
    report = info.value.report
    assert report[check].status == "failed", str(report)
    assert f"check {check!r} failed" in str(info.value)
    assert report[check].message


def test_planted_messages_say_what_is_wrong() -> None:
    expect = {
        "state_shapes": "float32",
        "batch1_T1": "B=1",
        "gradcheck": "gradient of",
        "padding": "running it alone",
        "bidirectional": "share parameters",
        "stacked": "ValueError",
        "state_dict": "state_dict",
        "fused": "fused outputs vs the step path",
    }
    for check, words in expect.items():
        report = check_cell(PLANTED[check], checks=[check], raise_on_failure=False)
        assert words in report[check].message, (check, report[check].message)


def test_report_lists_every_check_and_subset_runs_only_those() -> None:
    report = check_cell("gru", checks=["state_shapes", "padding"])
    assert [r.name for r in report.results] == ["state_shapes", "padding"]
    assert "all checks passed" in str(report)
    with pytest.raises(ValueError, match="unknown check"):
        check_cell("gru", checks=["nope"])


def test_kit_leaves_the_random_state_alone() -> None:
    ts.manual_seed(5)
    before = ts.rand(3).numpy()
    ts.manual_seed(5)
    check_cell("rnn", checks=["state_dict"])
    np.testing.assert_array_equal(ts.rand(3).numpy(), before)
