"""Decoding algorithms against a hand-made step function (a Markov chain)."""

from __future__ import annotations

import numpy as np
import pytest

from tinyseq.decoding import beam_search, greedy, log_softmax_np, sample

# next-token log-probabilities by previous token: 0 = start, 3 = end
TABLE = np.log(np.array([
    [1e-9, 0.55, 0.45, 1e-9],   # start -> 1 (greedy) or 2
    [1e-9, 1e-9, 0.40, 0.60],   # 1 -> end
    [1e-9, 1e-9, 1e-9, 1.0],    # 2 -> end surely
    [1e-9, 1e-9, 1e-9, 1.0],
]))


def step(tokens, state):
    return TABLE[tokens], state + 1


def reorder(state, index):
    return state


def test_greedy_follows_argmax_and_stops_at_eos() -> None:
    assert greedy(step, 0, np.array([0, 2]), max_len=10, eos_id=3) == [[1, 3], [3]]
    assert greedy(step, 0, np.array([0]), max_len=1) == [[1]]


def test_sampling_temperature_and_top_k() -> None:
    out = sample(step, 0, np.zeros(4000, dtype=np.int64), max_len=1, rng=0)
    frac = np.mean([o[0] == 1 for o in out])
    assert abs(frac - 0.55) < 0.03  # temperature 1 samples the distribution
    cold = sample(step, 0, np.zeros(2000, dtype=np.int64), max_len=1, temperature=0.05, rng=0)
    assert np.mean([o[0] == 1 for o in cold]) > 0.98
    top1 = sample(step, 0, np.zeros(500, dtype=np.int64), max_len=1, top_k=1, rng=0)
    assert all(o[0] == 1 for o in top1)
    same = sample(step, 0, np.zeros(50, dtype=np.int64), max_len=3, rng=7)
    assert same == sample(step, 0, np.zeros(50, dtype=np.int64), max_len=3, rng=7)
    with pytest.raises(ValueError, match="temperature must be positive"):
        sample(step, 0, [0], 1, temperature=0)


def test_beam_search_finds_better_sequence_than_greedy() -> None:
    # greedy: 1 then end = 0.55 * 0.6 = 0.33; beam: 2 then end = 0.45
    hyps = beam_search(step, reorder, 0, start_id=0, max_len=5, beam_width=2, eos_id=3, length_penalty=0.0)
    assert hyps[0].tokens == [2, 3]
    assert hyps[0].log_prob == pytest.approx(np.log(0.45))
    assert hyps[1].tokens == [1, 3]
    width1 = beam_search(step, reorder, 0, start_id=0, max_len=5, beam_width=1, eos_id=3)
    assert width1[0].tokens == [1, 3]  # width 1 is greedy


def test_log_softmax_np() -> None:
    z = log_softmax_np(np.array([[1.0, 2.0, 3.0]]))
    assert np.exp(z).sum() == pytest.approx(1.0)


def test_beam_search_is_not_cut_short_by_unlikely_endings() -> None:
    # 0 = start, 3 = end; the likely output is 1 2 4 <end> (p = 0.729), while several
    # unlikely short endings turn up on the way
    table = np.full((5, 5), 1e-9)
    table[0, [1, 2, 4, 3]] = [0.90, 0.04, 0.03, 0.03]
    table[1, [2, 3, 4]] = [0.90, 0.05, 0.05]
    table[2, [4, 3]] = [0.90, 0.10]
    table[4, 3] = 1.0
    table[3, 3] = 1.0
    logp = np.log(table)

    def chain(tokens, state):
        return logp[tokens], state

    for width in (1, 2, 3, 4):
        best = beam_search(chain, reorder, 0, start_id=0, max_len=8, beam_width=width, eos_id=3)[0]
        assert best.tokens == [1, 2, 4, 3], width
        assert best.log_prob == pytest.approx(np.log(0.729))
