"""Property-based tests of the recurrent layer (hypothesis, a test-only dependency).

Random shapes, masks and lengths — B = 0, T = 0, all-padded rows, holes in the middle
of a sequence, NaN/inf in the padded steps — for every built-in cell on both paths:

- the fused and the step path give the same outputs, final states and gradients;
- a padded step is invisible: each sequence run alone on its valid steps only (no mask)
  gives the same outputs and final state, so padded outputs are zero and padded steps
  leave the state unchanged (a sequence with no valid step keeps its initial state);
- every gradient is finite, and zero at the padded input steps.

Each cell runs a bounded, derandomized set of examples, so CI is reproducible.
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

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

I, H = 2, 3  # noqa: E741 (input size, as in the docs)
FILLS = [0.0, np.nan, np.inf, -1e300]
SETTINGS = hypothesis.settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _builtin_cells_only() -> Iterator[None]:
    with registry.isolated_plugins():
        yield


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    """One random layer configuration, batch and mask."""
    T = draw(st.integers(0, 5))
    B = draw(st.integers(0, 4))
    style = draw(st.sampled_from(["lengths", "mask", "none"]))
    if style == "lengths":
        lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
        mask = np.arange(T)[:, None] < np.array(lengths, dtype=int).reshape(1, B)
    elif style == "mask":
        rows = draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B))
        mask = np.array(rows, dtype=bool).reshape(B, T).T
    else:
        mask = np.ones((T, B), dtype=bool)
    return {
        "T": T,
        "B": B,
        "style": style,
        "lengths": lengths if style == "lengths" else None,
        "mask": mask,
        "layers": draw(st.integers(1, 2)),
        "bidirectional": draw(st.booleans()),
        "given_state": draw(st.booleans()),
        "fill": draw(st.sampled_from(FILLS)),
        "stepwise": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def forward_backward(
    rec: ts.nn.Recurrent,
    x: np.ndarray,
    state: list[np.ndarray] | None,
    lengths: list[int] | None,
    mask: np.ndarray | None,
    weights: list[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Outputs, final states and the gradients of a random linear loss of both."""
    rec.zero_grad()
    xt = ts.tensor(x, requires_grad=True)
    st_ = None if state is None else [ts.tensor(s, requires_grad=True) for s in state]
    given = None if st_ is None else (st_[0] if len(st_) == 1 else tuple(st_))
    y, final = rec(xt, given, lengths=lengths, mask=mask)
    final = final if isinstance(final, tuple) else (final,)
    out = {"y": y.detach().numpy()}
    out.update({f"final{k}": f.detach().numpy() for k, f in enumerate(final)})
    if weights is None:
        return out
    loss = (y * ts.tensor(weights[0])).sum()
    for f, w in zip(final, weights[1:]):
        loss = loss + (f * ts.tensor(w)).sum()
    loss.backward()
    out["grad_x"] = xt.grad.numpy()
    if st_ is not None:
        out.update({f"grad_state{k}": s.grad.numpy() for k, s in enumerate(st_)})
    out.update({f"grad_{n}": p.grad.numpy() for n, p in rec.named_parameters()})
    return out


def check(kind: str, opts: dict[str, Any], case: dict[str, Any]) -> None:
    T, B, mask = case["T"], case["B"], case["mask"]
    rng = np.random.default_rng(case["seed"])
    ts.manual_seed(case["seed"])
    rec = ts.nn.Recurrent(kind, I, H, num_layers=case["layers"],
                          bidirectional=case["bidirectional"], dtype=ts.float64, **opts)
    slots = case["layers"] * rec.num_directions
    x = rng.standard_normal((T, B, I))
    x[~mask] = case["fill"]  # whatever padding holds must not matter
    state = None
    if case["given_state"]:
        state = [rng.standard_normal((slots, B, H)) for _ in rec.state_names]
    weights = [rng.standard_normal((T, B, rec.output_size))]
    weights += [rng.standard_normal((slots, B, H)) for _ in rec.state_names]
    lengths = case["lengths"]
    as_mask = mask if case["style"] == "mask" else None

    results = []
    for fused in (True, False):
        rec.fused = fused
        with use_stepwise_kernels(case["stepwise"]):
            results.append(forward_backward(rec, x, state, lengths, as_mask, weights))
    fused_out, step_out = results
    assert set(fused_out) == set(step_out)
    for name in fused_out:
        assert fused_out[name].shape == step_out[name].shape, name
        assert np.isfinite(fused_out[name]).all() and np.isfinite(step_out[name]).all(), name
        np.testing.assert_allclose(fused_out[name], step_out[name], rtol=1e-10, atol=1e-12,
                                   err_msg=f"fused vs step: {name}")
    assert not fused_out["y"][~mask].any()  # padded outputs are exactly zero
    assert not fused_out["grad_x"][~mask].any()  # and padded inputs get no gradient

    # each sequence alone, on its valid steps only: the same outputs and final state
    rec.fused = None
    for b in range(B):
        steps = np.flatnonzero(mask[:, b])
        alone_state = None if state is None else [s[:, b : b + 1] for s in state]
        alone = forward_backward(rec, x[steps, b : b + 1], alone_state, None, None)
        np.testing.assert_allclose(fused_out["y"][steps, b], alone["y"][:, 0],
                                   rtol=1e-10, atol=1e-12, err_msg=f"row {b}: outputs")
        for k in range(len(rec.state_names)):
            np.testing.assert_allclose(fused_out[f"final{k}"][:, b], alone[f"final{k}"][:, 0],
                                       rtol=1e-10, atol=1e-12, err_msg=f"row {b}: final {k}")
            if steps.size == 0:  # no valid step: the initial state, unchanged
                initial = 0.0 if state is None else state[k][:, b]
                np.testing.assert_array_equal(fused_out[f"final{k}"][:, b], initial)


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_random_shapes_lengths_and_masks(kind: str, opts: dict[str, Any]) -> None:
    @SETTINGS
    @hypothesis.given(case=cases())
    def run(case: dict[str, Any]) -> None:
        check(kind, opts, case)

    run()
