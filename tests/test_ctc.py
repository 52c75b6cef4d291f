"""CTC: the loss against torch.nn.functional.ctc_loss, gradcheck, the decoders against
brute-force enumeration of alignments, the error rate."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend, decoding
from tinyseq.metrics import MetricSums, edit_distance, error_rate
from tinyseq.testing import gradcheck

REDUCTIONS = ("none", "sum", "mean")


@pytest.fixture
def torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


def host(a: Any) -> np.ndarray:
    return backend.to_numpy(a.data if isinstance(a, ts.Tensor) else a)


def log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def random_case(seed: int) -> dict[str, Any]:
    """A batch holding each hard case: repeated labels, a blank not at 0, an empty
    target, an input exactly as long as its target needs, and an impossible target."""
    rng = np.random.default_rng(seed)
    C = int(rng.integers(3, 7))
    blank = int(rng.integers(0, C))
    labels = [c for c in range(C) if c != blank]
    S, N = 4, 6
    T = 9
    targets = rng.choice(labels, size=(N, S))
    targets[0, 1] = targets[0, 0]  # a repeat: the blank between them is compulsory
    targets[1, 2:] = targets[1, 1]
    tl = rng.integers(1, S + 1, N)
    tl[0], tl[1] = S, S
    tl[2] = 0  # empty target
    il = rng.integers(1, T + 1, N)

    def needed(i: int) -> int:
        t = targets[i, : tl[i]]
        return int(tl[i] + np.sum(t[1:] == t[:-1]))

    il[1] = needed(1)  # the minimum: no frame to spare
    il[2] = int(rng.integers(0, T + 1))
    tl[3] = max(tl[3], 2)
    il[3] = needed(3) - 1  # one frame too few: impossible
    for i in (0, 4, 5):
        il[i] = max(il[i], needed(i))
    targets[tl[:, None] <= np.arange(S)[None]] = blank  # padding may hold anything
    x = 2 * rng.standard_normal((T, N, C))
    return {"x": x, "targets": targets, "il": il, "tl": tl, "blank": blank, "C": C}


def torch_ctc(torch, case: dict[str, Any], lp: Any, reduction: str, zero_infinity: bool):  # type: ignore[no-untyped-def]
    return torch.nn.functional.ctc_loss(
        lp, torch.tensor(case["targets"]), torch.tensor(case["il"]), torch.tensor(case["tl"]),
        blank=case["blank"], reduction=reduction, zero_infinity=zero_infinity)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_matches_torch_float64(torch, device: str, seed: int, reduction: str,  # type: ignore[no-untyped-def]
                                   zero_infinity: bool) -> None:
    case = random_case(seed)
    x = case["x"]
    upstream = np.random.default_rng(seed + 100).standard_normal(x.shape[1] if reduction == "none" else ())
    # gradients to the logits through log_softmax: PyTorch's convention and ours agree
    logits = ts.tensor(x, device=device, requires_grad=True)
    loss = ts.ctc_loss(ts.log_softmax(logits), case["targets"], case["il"], case["tl"],
                       blank=case["blank"], reduction=reduction, zero_infinity=zero_infinity)
    loss.backward(ts.tensor(upstream, device=device))
    tx = torch.tensor(x, requires_grad=True)
    ref = torch_ctc(torch, case, tx.log_softmax(-1), reduction, zero_infinity)
    ref.backward(torch.tensor(upstream))
    np.testing.assert_allclose(host(loss), ref.detach().numpy(), rtol=1e-9, atol=1e-9)
    ours, theirs = host(logits.grad), tx.grad.numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(np.nan_to_num(ours), np.nan_to_num(theirs), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradient_to_log_probs_is_exact_and_torch_adds_exp_log_probs(torch, reduction: str) -> None:  # type: ignore[no-untyped-def]
    case = random_case(7)
    lp = log_softmax(case["x"])
    mine = ts.tensor(lp, requires_grad=True)
    ts.ctc_loss(mine, case["targets"], case["il"], case["tl"], blank=case["blank"],
                reduction=reduction, zero_infinity=True).sum().backward()
    tlp = torch.tensor(lp, requires_grad=True)
    torch_ctc(torch, case, tlp, reduction, True).sum().backward()
    # torch's gradient w.r.t. log_probs is the exact one plus exp(log_probs) per valid
    # step of every possible target, times that example's weight in the reduction
    possible = np.ones(case["il"].shape, dtype=bool)
    possible[3] = False
    weight = {"none": np.ones(6), "sum": np.ones(6),
              "mean": 1.0 / (np.maximum(case["tl"], 1) * 6)}[reduction] * possible
    steps = np.arange(lp.shape[0])[:, None] < case["il"][None, :]
    expected = tlp.grad.numpy() - np.exp(lp) * (steps * weight)[:, :, None]
    np.testing.assert_allclose(host(mine.grad), expected, rtol=1e-9, atol=1e-9)


def test_impossible_targets(torch) -> None:  # type: ignore[no-untyped-def]
    case = random_case(1)
    lp = ts.tensor(log_softmax(case["x"]), requires_grad=True)
    losses = ts.ctc_loss(lp, case["targets"], case["il"], case["tl"], blank=case["blank"],
                         reduction="none")
    values = host(losses)
    assert np.isinf(values[3]) and np.isfinite(np.delete(values, 3)).all()
    assert values[2] >= 0  # the empty target: all-blank alignments (0 when the input is empty)
    losses.sum().backward()
    g = host(lp.grad)
    assert np.isnan(g[: case["il"][3], 3]).all() and not np.isnan(np.delete(g, 3, axis=1)).any()
    lp.grad = None
    zeroed = ts.ctc_loss(lp, case["targets"], case["il"], case["tl"], blank=case["blank"],
                         reduction="none", zero_infinity=True)
    assert host(zeroed)[3] == 0
    zeroed.sum().backward()
    assert (host(lp.grad)[:, 3] == 0).all() and np.isfinite(host(lp.grad)).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float32_matches_torch(torch, reduction: str) -> None:  # type: ignore[no-untyped-def]
    case = random_case(2)
    x = case["x"].astype(np.float32)
    logits = ts.tensor(x, requires_grad=True)
    loss = ts.ctc_loss(ts.log_softmax(logits), case["targets"], case["il"], case["tl"],
                       blank=case["blank"], reduction=reduction, zero_infinity=True)
    assert loss.dtype == np.float32
    loss.sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    torch_ctc(torch, case, tx.log_softmax(-1), reduction, True).sum().backward()
    ref = torch_ctc(torch, case, torch.tensor(x).log_softmax(-1), reduction, True)
    np.testing.assert_allclose(host(loss), ref.numpy(), rtol=1e-5, atol=1e-5)
    assert host(logits.grad).dtype == np.float32
    np.testing.assert_allclose(host(logits.grad), tx.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_concatenated_and_unbatched_targets_equal_padded() -> None:
    case = random_case(3)
    lp = ts.tensor(log_softmax(case["x"]))
    args = dict(blank=case["blank"], reduction="none", zero_infinity=True)
    padded = host(ts.ctc_loss(lp, case["targets"], case["il"], case["tl"], **args))
    flat = np.concatenate([case["targets"][i, : case["tl"][i]] for i in range(6)])
    concat = host(ts.ctc_loss(lp, flat, case["il"], case["tl"], **args))
    np.testing.assert_array_equal(padded, concat)
    one = ts.ctc_loss(lp[:, 0], case["targets"][0], case["il"][0], case["tl"][0], **args)
    assert one.shape == () and host(one) == pytest.approx(padded[0], rel=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_on_unnormalised_log_probs(reduction: str) -> None:
    rng = np.random.default_rng(0)
    x = ts.tensor(rng.standard_normal((5, 3, 4)), dtype=ts.float64, requires_grad=True)
    targets = np.array([[1, 1], [2, 3], [3, 0]])
    assert gradcheck(lambda a: ts.ctc_loss(a, targets, [5, 4, 3], [2, 2, 0], reduction=reduction), [x])
    assert gradcheck(lambda a: ts.ctc_loss(ts.log_softmax(a), targets, [5, 3, 2], [2, 2, 1], blank=0,
                                           reduction=reduction), [x])


def test_ctc_loss_module_and_bad_input() -> None:
    lp = ts.log_softmax(ts.randn(4, 2, 3))
    loss = ts.nn.CTCLoss(blank=2, reduction="sum")
    assert "blank=2" in repr(loss)
    np.testing.assert_allclose(
        host(loss(lp, [[0, 1], [1, 1]], [4, 4], [2, 2])),
        host(ts.ctc_loss(lp, [[0, 1], [1, 1]], [4, 4], [2, 2], blank=2, reduction="sum")))
    with pytest.raises(ValueError, match="blank index 0"):
        ts.ctc_loss(lp, [[1, 0], [1, 1]], [4, 4], [2, 2])
    with pytest.raises(IndexError, match=r"\[0, 2\] for 3 classes, got values in \[1, 5\]"):
        ts.ctc_loss(lp, [[1, 5], [1, 1]], [4, 4], [2, 2])
    with pytest.raises(ValueError, match=r"input_lengths must be in \[0, T\] = \[0, 4\]"):
        ts.ctc_loss(lp, [[1, 2], [1, 1]], [5, 4], [2, 2])
    with pytest.raises(ValueError, match="target_lengths needs one length per example, 2, got 3"):
        ts.ctc_loss(lp, [[1, 2], [1, 1]], [4, 4], [2, 2, 1])
    with pytest.raises(ValueError, match=r"sum\(target_lengths\) = 4 labels, got 3"):
        ts.ctc_loss(lp, [1, 2, 1], [4, 4], [2, 2])
    with pytest.raises(ValueError, match="exceeds the targets' padded length S = 2"):
        ts.ctc_loss(lp, [[1, 2], [1, 1]], [4, 4], [3, 2])
    with pytest.raises(ValueError, match=r"\(T, N, C\) or \(T, C\), got shape \(4, 2, 3, 1\)"):
        ts.ctc_loss(lp.reshape(4, 2, 3, 1), [[1, 2], [1, 1]], [4, 4], [2, 2])


# ---- decoding ------------------------------------------------------------------------------
def brute_force(lp: np.ndarray, blank: int) -> tuple[dict[tuple[int, ...], float], tuple[int, ...]]:
    """p(labelling) of every labelling, summed over all C**T alignments, and the
    labelling of the single best alignment."""
    T, C = lp.shape
    probs: dict[tuple[int, ...], float] = {}
    best_path, best = None, -np.inf
    for path in itertools.product(range(C), repeat=T):
        score = float(sum(lp[t, c] for t, c in enumerate(path)))
        key = tuple(decoding.ctc_collapse(path, blank))
        probs[key] = probs.get(key, 0.0) + float(np.exp(score))
        if score > best:
            best, best_path = score, key
    assert best_path is not None
    return probs, best_path


@pytest.mark.parametrize("seed", range(6))
def test_decoders_against_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    T, C = int(rng.integers(1, 6)), int(rng.integers(2, 4))
    blank = int(rng.integers(0, C))
    lp = log_softmax(1.5 * rng.standard_normal((T, C)))
    probs, best_path = brute_force(lp, blank)
    assert tuple(decoding.ctc_greedy_decode(lp, blank)) == best_path
    # a beam as wide as every labelling: exact probabilities, the most likely first
    hyps = decoding.ctc_prefix_beam_search(lp, beam_width=len(probs), blank=blank)
    assert {tuple(h.tokens) for h in hyps} == set(probs)
    for h in hyps:
        assert np.exp(h.log_prob) == pytest.approx(probs[tuple(h.tokens)], rel=1e-9)
    assert tuple(hyps[0].tokens) == max(probs, key=probs.__getitem__)
    # and the sum over alignments is what the loss says
    for h in hyps[:3]:
        nll = ts.ctc_loss(ts.tensor(lp), np.array(h.tokens, dtype=np.int64), T, len(h.tokens),
                          blank=blank, reduction="sum")
        assert float(host(nll)) == pytest.approx(-h.log_prob, rel=1e-9)
    narrow = decoding.ctc_prefix_beam_search(lp, beam_width=2, blank=blank)
    assert len(narrow) <= 2


def test_beam_beats_greedy_where_alignments_add_up() -> None:
    # best single path is blank-blank ("") but "1" collects more mass over alignments
    p = np.array([[0.55, 0.45], [0.55, 0.45]])
    lp = np.log(p)
    assert decoding.ctc_greedy_decode(lp) == []
    assert decoding.ctc_prefix_beam_search(lp, beam_width=4)[0].tokens == [1]
    with pytest.raises(ValueError, match=r"\(T, C\), got shape \(2,\)"):
        decoding.ctc_greedy_decode(lp[0])
    with pytest.raises(ValueError, match="beam_width must be at least 1, got 0"):
        decoding.ctc_prefix_beam_search(lp, beam_width=0)


def test_edit_distance_and_error_rate() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2 and edit_distance([1, 2], []) == 2
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert error_rate([[1, 2], [3]], [[1, 3], [3, 4]]) == pytest.approx(2 / 4)
    sums = MetricSums()
    sums.add({"edits": 1, "ref_tokens": 2})
    sums.add({"edits": 0, "ref_tokens": 3})
    assert sums.summary()["error_rate"] == pytest.approx(1 / 5)
