"""Built-in cells against the lecture's equations written out in NumPy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import registry
from tinyseq.cell import chunk, linear, unbind
from tinyseq.nn.recurrent import run_cell
from tinyseq.testing import gradcheck


@pytest.fixture(autouse=True)
def _builtin_cells_only() -> Iterator[None]:
    """Only the built-in cells: nothing installed or set in the environment leaks in."""
    with registry.isolated_plugins():
        yield

I, H, B, T = 3, 4, 2, 5  # noqa: E741 (input size, as in the docs)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def weights(cell: Any) -> dict[str, np.ndarray]:
    return {k: v for k, v in cell.state_dict().items()}


def blocks(w: np.ndarray, n: int) -> list[np.ndarray]:
    return np.split(w, n, axis=0)


def reference(name: str, opts: dict[str, Any], p: dict[str, np.ndarray], x: np.ndarray,
              state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The lecture's equations, one step at a time, W_? [a<t-1>, x<t>] split in two."""
    outs = []
    a = state[0]
    c = state[1] if len(state) > 1 else None
    gates = {"rnn": 1, "simple_gru": 2, "gru": 3, "lstm": 4}[name]
    Wx, Wa = blocks(p["weight_ih"], gates), blocks(p["weight_hh"], gates)
    bx, ba = blocks(p["bias_ih"], gates), blocks(p["bias_hh"], gates)

    def lin(k: int, xt: np.ndarray, at: np.ndarray) -> np.ndarray:
        return xt @ Wx[k].T + bx[k] + at @ Wa[k].T + ba[k]

    for xt in x:
        if name == "rnn":
            pre = lin(0, xt, a)
            a = np.tanh(pre) if opts.get("nonlinearity", "tanh") == "tanh" else np.maximum(pre, 0)
        elif name == "simple_gru":
            gu, c_tilde = sigmoid(lin(0, xt, a)), np.tanh(lin(1, xt, a))
            a = gu * c_tilde + (1 - gu) * a  # c<t> = Γu * c~<t> + (1 - Γu) * c<t-1>
        elif name == "gru":
            r = sigmoid(lin(0, xt, a))  # Γr
            gu = 1 - sigmoid(lin(1, xt, a))  # the lecture's Γu is 1 - z
            if opts.get("reset_after", True):
                c_tilde = np.tanh(xt @ Wx[2].T + bx[2] + r * (a @ Wa[2].T + ba[2]))
            else:  # c~ = tanh(W_c [Γr * c<t-1>, x<t>] + b_c)
                c_tilde = np.tanh(xt @ Wx[2].T + bx[2] + (r * a) @ Wa[2].T + ba[2])
            a = gu * c_tilde + (1 - gu) * a
        else:
            gu, gf = sigmoid(lin(0, xt, a)), sigmoid(lin(1, xt, a))
            c_tilde, go = np.tanh(lin(2, xt, a)), sigmoid(lin(3, xt, a))
            c = gu * c_tilde + gf * c
            a = go * np.tanh(c) if opts.get("variant", "standard") == "standard" else go * c
        outs.append(a)
    return np.stack(outs), [a] if c is None else [a, c]


CASES = [
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu"}),
    ("simple_gru", {}),
    ("gru", {}),
    ("gru", {"reset_after": False}),
    ("lstm", {}),
    ("lstm", {"variant": "lecture"}),
]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
@pytest.mark.parametrize("name,opts", CASES, ids=lambda v: str(v) if v else "default")
def test_cells_follow_the_lecture_equations(name: str, opts: dict[str, Any], fused: bool,
                                            device: str) -> None:
    with ts.default_dtype(ts.float64):
        cell = registry.create_cell(name, I, H, **opts)
    cell.to(device)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    state = [rng.standard_normal((B, H)) * 0.5 for _ in cell.state_names]
    y, final = run_cell(cell, ts.tensor(x, device=device),
                        tuple(ts.tensor(s, device=device) for s in state), fused=fused)
    want_y, want_final = reference(name, opts, weights(cell), x, state)
    np.testing.assert_allclose(y.detach().numpy(), want_y, rtol=1e-12, atol=1e-12)
    for got, want in zip(final, want_final):
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-12)


def test_gru_forms_differ_and_lecture_lstm_differs() -> None:
    x = ts.randn(4, 2, I)
    ts.manual_seed(3)
    a = registry.create_cell("gru", I, H)
    ts.manual_seed(3)
    b = registry.create_cell("gru", I, H, reset_after=False)
    assert not np.allclose(run_cell(a, x)[0].detach().numpy(), run_cell(b, x)[0].detach().numpy())


def test_forget_bias_initialisation() -> None:
    cell = registry.create_cell("lstm", I, H, forget_bias=1.0)
    np.testing.assert_array_equal(cell.bias_ih.detach().numpy()[H : 2 * H], 1.0)
    np.testing.assert_array_equal(cell.bias_hh.detach().numpy()[H : 2 * H], 0.0)
    cell.reset_parameters()
    np.testing.assert_array_equal(cell.bias_ih.detach().numpy()[H : 2 * H], 1.0)
    default = registry.create_cell("lstm", I, H)
    assert np.abs(default.bias_ih.detach().numpy()).max() <= 0.5  # U(-1/sqrt(H), 1/sqrt(H))
    with pytest.raises(ValueError, match="forget_bias needs bias=True"):
        registry.create_cell("lstm", I, H, forget_bias=1.0, bias=False)


def test_pytorch_layout_and_bias_option() -> None:
    for name, gates in [("rnn", 1), ("simple_gru", 2), ("gru", 3), ("lstm", 4)]:
        cell = registry.create_cell(name, I, H)
        assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
        assert cell.weight_ih.shape == (gates * H, I) and cell.weight_hh.shape == (gates * H, H)
        assert [n for n, _ in registry.create_cell(name, I, H, bias=False).named_parameters()] == [
            "weight_ih", "weight_hh"]


def test_bad_options_name_the_choices() -> None:
    with pytest.raises(ValueError, match=r"nonlinearity must be one of \('tanh', 'relu'\), got 'sigmoid'"):
        registry.create_cell("rnn", I, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="variant must be one of"):
        registry.create_cell("lstm", I, H, variant="peephole")
    with pytest.raises(ValueError, match=r"GRUCell: input_size: expected an integer >= 1, got 0"):
        registry.create_cell("gru", 0, H)


def test_single_step_call_applies_the_projection() -> None:
    cell = registry.create_cell("lstm", I, H)
    x = ts.randn(B, I)
    y, (h, c) = cell(x)
    y2, _ = run_cell(cell, x.reshape(1, B, I), fused=False)
    np.testing.assert_allclose(y.detach().numpy(), y2.detach().numpy()[0], rtol=1e-6)


def test_helper_ops_gradients() -> None:
    rng = np.random.default_rng(0)
    x = ts.tensor(rng.standard_normal((3, 2, 4)), requires_grad=True)
    w = ts.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    b = ts.tensor(rng.standard_normal(6), requires_grad=True)
    assert gradcheck(lambda x, w, b: linear(x, w, b), [x, w, b])
    assert gradcheck(lambda x: tuple(chunk(x, [1, 3])), [x])
    assert gradcheck(lambda x: tuple(p * (i + 1) for i, p in enumerate(unbind(x)))[1:], [x])
    with pytest.raises(ValueError, match="does not divide"):
        chunk(x, 3)
    with pytest.raises(ValueError, match="input has 4 features"):
        linear(x, ts.randn(6, 5).double())


@pytest.mark.parametrize("make, text", [
    (lambda: ts.nn.Recurrent("lstm", I, 4.5), "LSTMCell: hidden_size: expected an integer >= 1, got 4.5 (float)"),
    (lambda: ts.nn.Recurrent("gru", True, H), "GRUCell: input_size: expected an integer >= 1, got True (bool)"),
    (lambda: ts.nn.Linear(I, 2.0), "Linear: out_features: expected an integer >= 0, got 2.0 (float)"),
    (lambda: ts.nn.Embedding(10, "8"), "Embedding: embedding_dim: expected an integer >= 0, got '8' (str)"),
])
def test_sizes_that_are_not_integers_are_named(make, text) -> None:
    """Not Python's "'float' object cannot be interpreted as an integer" from deep inside."""
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == text
