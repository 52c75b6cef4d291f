"""Recurrent edge cases: empty batches, zero steps, non-finite padding, bad states.

Each runs every built-in cell on both paths (fused kernels and the step loop), and the
fused ones also in the GPU layout (``use_stepwise_kernels``), in float64.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from cell_variants import IDS, VARIANTS

import tinyseq as ts
from tinyseq import registry
from tinyseq.kernels.dispatch import use_stepwise_kernels
from tinyseq.nn.recurrent import run_cell

PATHS = [("fused", True, False), ("stepwise", True, True), ("step", False, False)]
PATH_IDS = [p[0] for p in PATHS]
I, H = 3, 4  # noqa: E741 (input size, as in the docs)


@pytest.fixture(autouse=True)
def _builtin_cells_only() -> Iterator[None]:
    with registry.isolated_plugins():
        yield


def make(kind: str, opts: dict[str, Any], fused: bool, **kwargs: Any) -> ts.nn.Recurrent:
    ts.manual_seed(0)
    return ts.nn.Recurrent(kind, I, H, fused=fused, dtype=ts.float64, **opts, **kwargs)


def as_tuple(state: Any) -> tuple[ts.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def run(
    rec: ts.nn.Recurrent,
    x: np.ndarray,
    stepwise: bool,
    state: list[np.ndarray] | None = None,
    lengths: list[int] | None = None,
    seed: int = 1,
) -> dict[str, np.ndarray]:
    """Forward and backward of a random linear loss of output and final state."""
    rec.zero_grad()
    rng = np.random.default_rng(seed)
    xt = ts.tensor(x, requires_grad=True)
    st = None if state is None else [ts.tensor(s, requires_grad=True) for s in state]
    given = None if st is None else (st[0] if len(st) == 1 else tuple(st))
    with use_stepwise_kernels(stepwise):
        y, final = rec(xt, given, lengths=lengths)
        final = as_tuple(final)
        loss = (y * ts.tensor(rng.standard_normal(y.shape))).sum()
        for f in final:
            loss = loss + (f * ts.tensor(rng.standard_normal(f.shape))).sum()
        loss.backward()
    out = {"y": y.detach().numpy(), "grad_x": xt.grad.numpy()}
    out.update({f"final{i}": f.detach().numpy() for i, f in enumerate(final)})
    if st is not None:
        out.update({f"grad_state{i}": s.grad.numpy() for i, s in enumerate(st)})
    for name, p in rec.named_parameters():
        assert p.grad is not None, name
        out[f"grad_{name}"] = p.grad.numpy()
    return out


def test_the_issue_example_empty_batch() -> None:
    out, h = ts.nn.Recurrent("gru", 3, 4)(ts.randn(5, 0, 3))
    assert out.shape == (5, 0, 4) and h.shape == (1, 0, 4)


@pytest.mark.parametrize("path,fused,stepwise", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
@pytest.mark.parametrize("layers,bidi", [(1, False), (2, True)], ids=["L1", "L2bi"])
@pytest.mark.parametrize("T,B", [(5, 0), (0, 2), (0, 0)])
def test_empty_batch_or_no_steps(
    kind: str, opts: dict[str, Any], path: str, fused: bool, stepwise: bool,
    layers: int, bidi: bool, T: int, B: int,
) -> None:
    rec = make(kind, opts, fused, num_layers=layers, bidirectional=bidi, dropout=0.5)
    D = 2 if bidi else 1
    rng = np.random.default_rng(0)
    n_state = len(rec.state_names)
    state = [rng.standard_normal((layers * D, B, H)) for _ in range(n_state)]
    for given in (None, state):
        got = run(rec, rng.standard_normal((T, B, I)), stepwise, given)
        assert got["y"].shape == (T, B, D * H)
        assert got["grad_x"].shape == (T, B, I) and not got["grad_x"].any()
        for k in range(n_state):
            want = np.zeros_like(state[k]) if given is None else state[k]
            np.testing.assert_array_equal(got[f"final{k}"], want)  # the state is unchanged
        for name, g in got.items():
            if name.startswith("grad_") and not name.startswith("grad_state"):
                assert not g.any(), name  # nothing ran: zero parameter gradients
    # with zero steps the final state is the given one, so its gradient passes through
    if T == 0 and B:
        rng = np.random.default_rng(1)
        rng.standard_normal((0, B, D * H))  # the loss weights of the (empty) output
        for k in range(n_state):
            np.testing.assert_array_equal(
                got[f"grad_state{k}"], rng.standard_normal((layers * D, B, H))
            )


def test_empty_batch_with_lengths_and_batch_first() -> None:
    rec = ts.nn.Recurrent("lstm", I, H, num_layers=2, bidirectional=True, batch_first=True)
    y, (h, c) = rec(ts.randn(0, 6, I), lengths=np.zeros(0, dtype=int))
    assert y.shape == (0, 6, 2 * H) and h.shape == c.shape == (4, 0, H)


@pytest.mark.parametrize("path,fused,stepwise", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_nonfinite_padding_reaches_nothing(
    kind: str, opts: dict[str, Any], path: str, fused: bool, stepwise: bool
) -> None:
    rec = make(kind, opts, fused, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(0)
    lengths = [6, 2, 0, 5]
    x = rng.standard_normal((6, 4, I))
    state = [rng.standard_normal((4, 4, H)) for _ in rec.state_names]
    padded = np.arange(6)[:, None] >= np.array(lengths)[None, :]
    x[padded] = 0.0
    want = run(rec, x, stepwise, state, lengths)
    assert not want["y"][padded].any()
    for fill in (np.nan, np.inf, -np.inf, 1e300):
        bad = x.copy()
        bad[padded] = fill
        got = run(rec, bad, stepwise, state, lengths)
        for name, value in got.items():
            assert np.isfinite(value).all(), (fill, name)
            # exactly the result with zeros in the padded steps
            np.testing.assert_array_equal(value, want[name], err_msg=f"{fill} {name}")


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_nan_gradient_at_padded_outputs_stays_there(fused: bool) -> None:
    """A loss whose gradient is inf/NaN at padded outputs (log of their zeros) must not
    spread: a padded output is a constant 0, not 0 * something."""
    rec = make("lstm", {}, fused)
    x = ts.tensor(np.random.default_rng(0).standard_normal((4, 2, I)), requires_grad=True)
    y, _ = rec(x, lengths=[4, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        (y * y).sqrt().sum().backward()  # d sqrt(u)/du is inf at the zeros
    for name, p in rec.named_parameters():
        assert np.isfinite(p.grad.numpy()).all(), name
    assert not x.grad.numpy()[1:, 1].any()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_bad_states_are_refused_at_every_entry(fused: bool) -> None:
    x = ts.randn(5, 2, I)
    gru = ts.nn.Recurrent("gru", I, H, fused=fused)
    lstm = ts.nn.Recurrent("lstm", I, H, num_layers=2, bidirectional=True, fused=fused)
    layout = r"\(num_layers \* num_directions, B, H\) = "
    with pytest.raises(ValueError, match=rf"state 'h' must have shape {layout}\(1, 2, 4\), got \(2, 1\)"):
        gru(x, ts.randn(2, 1))  # would broadcast
    with pytest.raises(ValueError, match=rf"{layout}\(1, 2, 4\), got \(1, 1, 4\)"):
        gru(x, ts.randn(1, 1, 4))  # would broadcast over the batch
    with pytest.raises(ValueError, match=r"2 tensor\(s\) \('h', 'c'\).*got a single Tensor of shape \(4, 2, 4\)"):
        lstm(x, ts.randn(4, 2, 4))
    with pytest.raises(ValueError, match=rf"state 'c' must have shape {layout}\(4, 2, 4\), got \(2, 2, 4\)"):
        lstm(x, (ts.randn(4, 2, 4), ts.randn(2, 2, 4)))
    with pytest.raises(ValueError, match=r"got ndarray"):
        gru(x, np.zeros((1, 2, 4)))
    # the wrappers and the cell-level functions, called directly
    with pytest.raises(ValueError, match=r"Stacked: state 'h' must have shape \(num_slots, B, H\) = \(1, 2, 4\), got \(1, 1, 4\)"):
        gru.layers(x, (ts.randn(1, 1, 4),))
    with pytest.raises(ValueError, match=r"Stacked expects a state of 2 tensor\(s\).*single Tensor"):
        lstm.layers.forward_sequence(x, ts.randn(4, 2, 4), None, fused)
    bidi = lstm.layers[0]
    with pytest.raises(ValueError, match=r"Bidirectional: state 'h' .* = \(2, 2, 4\), got \(2, 1, 4\)"):
        bidi.forward_sequence(x, (ts.randn(2, 1, 4), ts.randn(2, 1, 4)), None, fused)
    with pytest.raises(ValueError, match=r"GRUCell: state 'h' must have shape \(B, H\) = \(2, 4\), got \(1, 4\)"):
        run_cell(gru.cell_at(0), x, (ts.randn(1, 4),), fused=fused)
    with pytest.raises(ValueError, match=r"LSTMCell expects a state of 2 tensor\(s\).*single Tensor of shape \(2, 4\)"):
        lstm.cell_at(0)(x[0], ts.randn(2, 4))  # used to unpack the rows as (h, c)
    # right shapes still pass everywhere, as a tuple or (one component) a bare tensor
    assert gru(x, ts.zeros(1, 2, H))[0].shape == (5, 2, H)
    assert gru.layers(x, ts.zeros(1, 2, H))[0].shape == (5, 2, H)
    assert lstm(x, (ts.zeros(4, 2, H), ts.zeros(4, 2, H)))[0].shape == (5, 2, 2 * H)


def test_a_carried_state_is_checked_like_a_given_one() -> None:
    rec = ts.nn.Recurrent("gru", I, H, stateful=True)
    rec(ts.randn(5, 2, I))
    with pytest.raises(ValueError, match="batch size 2, got a batch of 3; call reset_state"):
        rec(ts.randn(5, 3, I))
    rec.to(dtype=ts.float64)
    with pytest.raises(ValueError, match=r"state 'h' is float32 .* input is float64.*reset_state\(\)"):
        rec(ts.randn(5, 2, I).to(dtype=ts.float64))
    rec.reset_state()
    assert rec(ts.randn(5, 2, I).to(dtype=ts.float64))[1].dtype == ts.float64
