"""nn.Attention: each score's value and gradient, masked source steps, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.nn import Attention
from tinyseq.testing import gradcheck

SCORES = ("additive", "dot", "general")
B, T, S, Q, K = 3, 2, 5, 4, 6


def make(score: str, key_size: int = K) -> Attention:
    ts.manual_seed(1)
    return Attention(Q, Q if score == "dot" else key_size, score).double()


def inputs(score: str, seed: int = 0) -> tuple[ts.Tensor, ts.Tensor]:
    rng = np.random.default_rng(seed)
    k = Q if score == "dot" else K
    query = ts.tensor(rng.standard_normal((B, T, Q)), requires_grad=True)
    keys = ts.tensor(rng.standard_normal((B, S, k)), requires_grad=True)
    return query, keys


MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=bool)


def reference(attn: Attention, q: np.ndarray, k: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper formulas in NumPy, one score at a time."""
    params = {n: p.data for n, p in attn.named_parameters()}
    scores = np.zeros((B, T, S))
    for b in range(B):
        for t in range(T):
            for s in range(S):
                if attn.score == "dot":
                    scores[b, t, s] = q[b, t] @ k[b, s]
                elif attn.score == "general":
                    scores[b, t, s] = q[b, t] @ (params["key_proj.weight"] @ k[b, s])
                else:
                    hidden = np.tanh(params["query_proj.weight"] @ q[b, t] + params["query_proj.bias"]
                                     + params["key_proj.weight"] @ k[b, s])
                    scores[b, t, s] = params["v.weight"][0] @ hidden
    e = np.where(mask[:, None, :], np.exp(scores - scores.max(axis=-1, keepdims=True)), 0.0)
    w = e / e.sum(axis=-1, keepdims=True)
    return w @ k, w


@pytest.mark.parametrize("score", SCORES)
def test_values_match_the_formulas(score: str) -> None:
    attn = make(score)
    q, k = inputs(score)
    context, weights = attn(q, k, MASK)
    want_c, want_w = reference(attn, q.detach().numpy(), k.detach().numpy(), MASK)
    np.testing.assert_allclose(weights.detach().numpy(), want_w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(context.detach().numpy(), want_c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights.detach().numpy().sum(axis=-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("score", SCORES)
def test_gradcheck(score: str) -> None:
    attn = make(score)
    q, k = inputs(score)
    params = [p for _, p in attn.named_parameters()]
    names = ["query", "keys"] + [n for n, _ in attn.named_parameters()]

    def fn(query: ts.Tensor, keys: ts.Tensor, *_: ts.Tensor) -> tuple[ts.Tensor, ts.Tensor]:
        return attn(query, keys, MASK)

    assert gradcheck(fn, [q, k, *params], names=names)


@pytest.mark.parametrize("score", SCORES)
def test_padded_steps_get_exactly_zero_weight_and_gradient(score: str) -> None:
    attn = make(score)
    q, k = inputs(score)
    # huge and non-finite-looking values at padded steps must change nothing
    kd = k.data.copy()
    kd[~MASK] = 1e3
    k = ts.tensor(kd, requires_grad=True)
    context, weights = attn(q, k, MASK)
    w = weights.detach().numpy()
    assert np.all(w[~np.broadcast_to(MASK[:, None, :], w.shape)] == 0.0)
    (context * context).sum().backward()
    assert k.grad is not None
    grad = k.grad.numpy()
    assert np.all(grad[~MASK] == 0.0)
    assert np.all(np.isfinite(grad)) and np.any(grad[MASK] != 0.0)
    # and the valid steps see the same result as without the padding at all
    short_q = ts.tensor(q.detach().numpy()[1:2])
    short_k = ts.tensor(kd[1:2, :2])
    c1, w1 = attn(short_q, short_k)
    np.testing.assert_allclose(context.detach().numpy()[1:2], c1.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(w[1:2, :, :2], w1.detach().numpy(), rtol=1e-12)


def test_a_source_without_valid_steps_gets_zero_weights_not_nan() -> None:
    attn = make("general")
    q, k = inputs("general")
    mask = MASK.copy()
    mask[2] = False
    with np.errstate(all="raise"):
        context, weights = attn(q, k, mask)
        (context.sum() + weights.sum()).backward()
    assert np.all(weights.detach().numpy()[2] == 0.0) and np.all(context.detach().numpy()[2] == 0.0)
    assert k.grad is not None and q.grad is not None
    assert np.all(k.grad.numpy()[2] == 0.0) and np.all(np.isfinite(q.grad.numpy()))


def test_a_2d_query_drops_the_time_axis() -> None:
    attn = make("additive")
    q, k = inputs("additive")
    c3, w3 = attn(q, k, MASK)
    c2, w2 = attn(ts.tensor(q.detach().numpy()[:, 0]), k, MASK)
    assert c2.shape == (B, K) and w2.shape == (B, S)
    np.testing.assert_allclose(c2.detach().numpy(), c3.detach().numpy()[:, 0], rtol=1e-12)


def test_float32_matches_float64() -> None:
    attn = make("additive")
    q, k = inputs("additive")
    c64, _ = attn(q, k, MASK)
    attn32 = attn.float()
    c32, _ = attn32(q.float(), k.float(), MASK)
    assert c32.dtype == np.float32
    np.testing.assert_allclose(c32.detach().numpy(), c64.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_bad_arguments_say_what_was_expected() -> None:
    with pytest.raises(ValueError, match="one of additive, dot, general, got 'cosine'"):
        Attention(4, 4, "cosine")
    with pytest.raises(ValueError, match="query_size == key_size, got 4 and 6"):
        Attention(4, 6, "dot")
    attn = make("general")
    q, k = inputs("general")
    with pytest.raises(ValueError, match=r"expected query \(B, T, 4\) and keys \(B, S, 6\)"):
        attn(k, q)
    with pytest.raises(ValueError, match=r"mask must be \(B, S\) = \(3, 5\), got \(3, 4\)"):
        attn(q, k, MASK[:, :4])
