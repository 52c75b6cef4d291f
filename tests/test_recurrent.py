"""The Recurrent layer: layouts, states, variable lengths, wrappers, TBPTT, paths."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import registry
from tinyseq.cell import Cell, State, linear
from tinyseq.nn import Parameter
from tinyseq.nn.recurrent import detach_state, run_cell, use_fused
from tinyseq.testing import gradcheck


@pytest.fixture(autouse=True)
def _builtin_cells_only() -> Iterator[None]:
    """Only the built-in cells: nothing installed or set in the environment leaks in."""
    with registry.isolated_plugins():
        yield

CELLS = [("rnn", {}), ("simple_gru", {}), ("gru", {"reset_after": False}), ("lstm", {})]


def as_np(t: ts.Tensor) -> np.ndarray:
    return t.detach().numpy()


def states(state: Any) -> tuple[ts.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("name,opts", CELLS, ids=[c[0] for c in CELLS])
def test_shapes_time_major_and_batch_first(name: str, opts: dict[str, Any], device: str) -> None:
    T, B, I, H = 5, 3, 4, 6  # noqa: E741
    rnn = ts.nn.Recurrent(name, I, H, num_layers=2, bidirectional=True, device=device, **opts)
    out, state = rnn(ts.randn(T, B, I, device=device))
    assert out.shape == (T, B, 2 * H) and out.device.name == device
    for s in states(state):
        assert s.shape == (4, B, H)
    rnn_bf = ts.nn.Recurrent(name, I, H, batch_first=True, device=device, **opts)
    x = ts.randn(B, T, I, device=device)
    out_bf, _ = rnn_bf(x)
    assert out_bf.shape == (B, T, H)
    rnn_tm = ts.nn.Recurrent(name, I, H, device=device, **opts)
    rnn_tm.load_state_dict(rnn_bf.state_dict())
    out_tm, _ = rnn_tm(x.swapaxes(0, 1))
    np.testing.assert_allclose(as_np(out_bf), as_np(out_tm).swapaxes(0, 1), rtol=1e-6, atol=1e-7)
    assert isinstance(state, tuple) == (name == "lstm")


def test_zero_state_equals_no_state_and_state_is_used(device: str) -> None:
    rnn = ts.nn.Recurrent("lstm", 3, 4, num_layers=2, device=device)
    x = ts.randn(4, 2, 3, device=device)
    out0, _ = rnn(x)
    zeros = (ts.zeros(2, 2, 4, device=device), ts.zeros(2, 2, 4, device=device))
    out1, _ = rnn(x, zeros)
    np.testing.assert_array_equal(as_np(out0), as_np(out1))
    out2, _ = rnn(x, (ts.ones(2, 2, 4, device=device), zeros[1]))
    assert not np.allclose(as_np(out0), as_np(out2))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
@pytest.mark.parametrize("name,opts", CELLS, ids=[c[0] for c in CELLS])
def test_padding_is_invisible_bidirectional_stacked(name: str, opts: dict[str, Any], fused: bool,
                                                    device: str) -> None:
    """Each sequence of a padded batch gives what it gives alone; padding is zero output."""
    T, I, H, lengths = 6, 3, 4, [6, 2, 4, 1]  # noqa: E741
    B = len(lengths)
    rnn = ts.nn.Recurrent(name, I, H, num_layers=2, bidirectional=True, batch_first=True,
                          fused=fused, device=device, dtype=ts.float64, **opts)
    rng = np.random.default_rng(0)
    host = rng.standard_normal((B, T, I))
    x = ts.tensor(host, device=device, requires_grad=True)
    out, state = rnn(x, lengths=lengths)
    (out.sum() + sum(s.sum() for s in states(state))).backward()
    garbage = host.copy()
    for b, n in enumerate(lengths):
        garbage[b, n:] = 100.0
    out_g, state_g = rnn(ts.tensor(garbage, device=device), lengths=lengths)
    np.testing.assert_array_equal(as_np(out_g), as_np(out))
    for b, n in enumerate(lengths):
        alone, alone_state = rnn(ts.tensor(host[b : b + 1, :n], device=device))
        np.testing.assert_allclose(as_np(out)[b, :n], as_np(alone)[0], rtol=1e-12, atol=1e-12)
        assert not as_np(out)[b, n:].any()
        assert not x.grad.numpy()[b, n:].any()
        for s, a in zip(states(state), states(alone_state)):
            np.testing.assert_allclose(as_np(s)[:, b], as_np(a)[:, 0], rtol=1e-12, atol=1e-12)


def test_mask_equals_lengths_and_both_is_an_error(device: str) -> None:
    rnn = ts.nn.Recurrent("gru", 3, 4, bidirectional=True, batch_first=True, device=device)
    x = ts.randn(3, 5, 3, device=device)
    lengths = np.array([5, 1, 3])
    out_l, h_l = rnn(x, lengths=lengths)
    mask = np.arange(5)[None, :] < lengths[:, None]  # (B, T) for batch_first
    out_m, h_m = rnn(x, mask=ts.tensor(mask, device=device))
    np.testing.assert_array_equal(as_np(out_l), as_np(out_m))
    np.testing.assert_array_equal(as_np(h_l), as_np(h_m))
    out_t, _ = rnn(x, lengths=ts.tensor(lengths))
    np.testing.assert_array_equal(as_np(out_l), as_np(out_t))
    with pytest.raises(ValueError, match="lengths or mask, not both"):
        rnn(x, lengths=lengths, mask=mask)
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 5\)"):
        rnn(x, mask=mask.T)


def test_backward_direction_starts_at_each_sequences_last_valid_step() -> None:
    rnn = ts.nn.Recurrent("rnn", 2, 3, bidirectional=True, dtype=ts.float64)
    backward_cell = rnn.cell_at(0, 1)
    x = ts.randn(5, 2, 2).double()
    out, _ = rnn(x, lengths=[5, 3])
    # sequence 1 (length 3) read backward from its step 2: same as the reversed 3 steps
    rev = ts.tensor(x.numpy()[2::-1, 1:2].copy())
    y, _ = run_cell(backward_cell, rev)
    np.testing.assert_allclose(as_np(out)[:3, 1, 3:], as_np(y)[::-1, 0], rtol=1e-12)


def test_length_errors_name_what_was_expected() -> None:
    rnn = ts.nn.Recurrent("rnn", 2, 3)
    x = ts.randn(4, 2, 2)
    with pytest.raises(ValueError, match=r"lengths must be in \[0, 4\]"):
        rnn(x, lengths=[5, 1])
    with pytest.raises(ValueError, match="lengths must be 2 integers"):
        rnn(x, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match=r"shape \(T, B, I\) with I = 2"):
        rnn(ts.randn(4, 2, 3))
    with pytest.raises(ValueError, match=r"state 'h' must have shape .* = \(1, 2, 3\)"):
        rnn(x, ts.zeros(2, 2, 3))
    with pytest.raises(ValueError, match=r"expects a state of 2 tensor\(s\)"):
        ts.nn.Recurrent("lstm", 2, 3)(x, ts.zeros(1, 2, 3))
    out, h = rnn(x, lengths=[0, 2])  # an empty sequence keeps its initial state
    assert not as_np(out)[:, 0].any() and not as_np(h)[:, 0].any()
    out, h = rnn(ts.randn(0, 2, 2))  # so does a batch of empty sequences
    assert out.shape == (0, 2, 3) and not as_np(h).any()


def test_merge_modes(device: str) -> None:
    base = ts.nn.Recurrent("gru", 3, 4, bidirectional=True, device=device)
    x = ts.randn(5, 2, 3, device=device)
    cat, _ = base(x, lengths=[5, 2])
    f, b = as_np(cat)[..., :4], as_np(cat)[..., 4:]
    expect = {"sum": f + b, "mean": (f + b) / 2, "product": f * b}
    for merge, want in expect.items():
        rnn = ts.nn.Recurrent("gru", 3, 4, bidirectional=True, merge=merge, device=device)
        rnn.load_state_dict(base.state_dict())
        out, _ = rnn(x, lengths=[5, 2])
        np.testing.assert_allclose(as_np(out), want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="merge must be one of"):
        ts.nn.Recurrent("gru", 3, 4, bidirectional=True, merge="max")


def test_stack_with_per_layer_directions_and_dropout() -> None:
    rnn = ts.nn.Recurrent("lstm", 3, 4, num_layers=3, bidirectional=[True, False, True],
                          dropout=0.5)
    assert [type(layer).__name__ for layer in rnn.layers] == ["Bidirectional", "LSTMCell", "Bidirectional"]
    assert rnn.cell_at(1).input_size == 8 and rnn.cell_at(2, 1).input_size == 4
    x = ts.randn(5, 2, 3)
    out, (h, c) = rnn(x)
    assert out.shape == (5, 2, 8) and h.shape == (5, 2, 4)
    rnn.eval()
    a, _ = rnn(x)
    b, _ = rnn(x)
    np.testing.assert_array_equal(as_np(a), as_np(b))
    rnn.train()
    ts.manual_seed(1)
    d1, _ = rnn(x)
    assert not np.allclose(as_np(d1), as_np(a))
    plain = ts.nn.Recurrent("lstm", 3, 4, num_layers=3, bidirectional=[True, False, True])
    plain.load_state_dict(rnn.state_dict())
    p, _ = plain(x)
    np.testing.assert_allclose(as_np(p), as_np(a), rtol=1e-6)


def test_state_dict_names_follow_the_structure() -> None:
    rnn = ts.nn.Recurrent("gru", 3, 4, num_layers=2, bidirectional=[True, False], bias=False)
    assert list(rnn.state_dict()) == [
        "layers.0.forward_cell.weight_ih", "layers.0.forward_cell.weight_hh",
        "layers.0.backward_cell.weight_ih", "layers.0.backward_cell.weight_hh",
        "layers.1.weight_ih", "layers.1.weight_hh",
    ]


def test_truncated_bptt_with_detach_state_and_stateful() -> None:
    rnn = ts.nn.Recurrent("lstm", 3, 4, dtype=ts.float64)
    x = ts.randn(8, 2, 3).double()
    full, full_state = rnn(x)
    x1 = ts.tensor(x.numpy()[:4], requires_grad=True)
    x2 = ts.tensor(x.numpy()[4:], requires_grad=True)
    out1, state = rnn(x1)
    state = detach_state(state)
    assert isinstance(state, tuple) and not state[0].requires_grad
    out2, state2 = rnn(x2, state)
    np.testing.assert_allclose(as_np(out2), as_np(full)[4:], rtol=1e-12)
    out2.sum().backward()
    assert x1.grad is None and x2.grad is not None  # no gradient crosses the cut
    stateful = ts.nn.Recurrent("lstm", 3, 4, dtype=ts.float64, stateful=True)
    stateful.load_state_dict(rnn.state_dict())
    stateful(x1)
    again, _ = stateful(x2)
    np.testing.assert_allclose(as_np(again), as_np(full)[4:], rtol=1e-12)
    with pytest.raises(ValueError, match="reset_state"):
        stateful(ts.randn(4, 3, 3).double())
    stateful.reset_state()
    fresh, _ = stateful(x1)
    np.testing.assert_allclose(as_np(fresh), as_np(out1), rtol=1e-12)


class CountingCell(Cell):
    """Records how the layer calls it: the projection once per sequence, steps see rows."""

    def __init__(self, input_size: int, hidden_size: int, fused_result: bool = False) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = Parameter(ts.randn(hidden_size, input_size) * 0.5)
        self.weight_hh = Parameter(ts.randn(hidden_size, hidden_size) * 0.5)
        self.calls: dict[str, list[Any]] = {"projection": [], "step": [], "fused": []}
        self.fused_result = fused_result

    def input_projection(self, x: ts.Tensor) -> ts.Tensor:
        self.calls["projection"].append(x.shape)
        return linear(x, self.weight_ih)

    def step(self, x_t: ts.Tensor, state: State) -> tuple[ts.Tensor, State]:
        self.calls["step"].append(x_t.shape)
        h = ts.tanh(x_t + linear(state[0], self.weight_hh))
        return h, (h,)

    def fused_sequence(self, x: ts.Tensor, state: State, mask: Any, reverse: bool) -> Any:
        self.calls["fused"].append((x.shape, None if mask is None else mask.shape, reverse))
        if not self.fused_result:
            return None
        return run_cell(self, x, state, mask, reverse, fused=False)


def test_input_projection_is_hoisted_and_fused_path_is_preferred() -> None:
    rnn = ts.nn.Recurrent(CountingCell, 3, 5, num_layers=2)
    rnn(ts.randn(7, 2, 3), lengths=[7, 4])
    first = rnn.cell_at(0)
    assert first.calls["projection"] == [(7, 2, 3)]  # one product for all 7 steps
    assert first.calls["step"] == [(2, 5)] * 7
    assert first.calls["fused"] == [((7, 2, 3), (7, 2), False)]
    assert rnn.cell_at(1).calls["projection"] == [(7, 2, 5)]
    # a fused path that answers replaces the loop (it runs the steps itself here)
    rnn = ts.nn.Recurrent(CountingCell, 3, 5, bidirectional=True, fused_result=True)
    rnn(ts.randn(4, 2, 3))
    assert [c[2] for c in rnn.cell_at(0, 1).calls["fused"]] == [True]
    for forced in (ts.nn.Recurrent(CountingCell, 3, 5, fused=False, fused_result=True),):
        forced(ts.randn(4, 2, 3))
        assert forced.cell_at(0).calls["fused"] == []
    rnn = ts.nn.Recurrent(CountingCell, 3, 5, fused_result=True)
    with use_fused(False):
        rnn(ts.randn(4, 2, 3))
    assert rnn.cell_at(0).calls["fused"] == []


def test_all_padded_steps_skip_the_cell() -> None:
    rnn = ts.nn.Recurrent(CountingCell, 3, 5)
    out, _ = rnn(ts.randn(6, 2, 3), lengths=[2, 3])
    assert len(rnn.cell_at(0).calls["step"]) == 3
    assert not as_np(out)[3:].any()


def test_gradcheck_through_a_masked_bidirectional_stack(device: str) -> None:
    rnn = ts.nn.Recurrent("gru", 2, 3, num_layers=2, bidirectional=True, fused=False,
                          device=device, dtype=ts.float64)
    x = ts.tensor(np.random.default_rng(0).standard_normal((3, 2, 2)), device=device,
                  requires_grad=True)
    h0 = ts.tensor(np.random.default_rng(1).standard_normal((4, 2, 3)), device=device,
                   requires_grad=True)
    params = list(rnn.parameters())[:4]

    def fn(x: ts.Tensor, h0: ts.Tensor, *_: ts.Tensor) -> tuple[ts.Tensor, ts.Tensor]:
        return rnn(x, h0, lengths=[3, 2])

    assert gradcheck(fn, [x, h0, *params])


def test_cell_class_factory_and_repr() -> None:
    from tinyseq.plugins.lstm import LSTMCell

    rnn = ts.nn.Recurrent(LSTMCell, 3, 4, variant="lecture")
    assert rnn.cell_at(0).variant == "lecture"
    text = repr(ts.nn.Recurrent("lstm", 3, 4, num_layers=2, bidirectional=True, variant="lecture"))
    assert "'lstm', 3, 4, num_layers=2, bidirectional=True, variant='lecture'" in text
    with pytest.raises(TypeError, match="registered cell name or a Cell class"):
        ts.nn.Recurrent(42, 3, 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wrapper"):
        ts.nn.Recurrent("stacked", 3, 4)
    with pytest.raises(ValueError, match="num_layers must be at least 1"):
        ts.nn.Recurrent("rnn", 3, 4, num_layers=0)


def test_float32_training_step_reduces_a_loss() -> None:
    ts.manual_seed(0)
    rnn = ts.nn.Recurrent("lstm", 2, 8, batch_first=True)
    head = ts.nn.Linear(8, 1)
    x = ts.randn(16, 5, 2)
    lengths = [5] * 8 + [3] * 8
    host = x.numpy()
    target = ts.tensor([[host[b, : lengths[b], 0].sum()] for b in range(16)])  # (16, 1)
    params = list(rnn.parameters()) + list(head.parameters())
    losses = []
    for _ in range(60):
        out, (h, _) = rnn(x, lengths=lengths)
        loss = ((head(h[0]) - target) ** 2).mean()
        for p in params:
            p.grad = None
        loss.backward()
        for p in params:
            p.data -= 0.1 * p.grad.data
        losses.append(float(loss.item()))
    assert losses[-1] < 0.5 * losses[0]
