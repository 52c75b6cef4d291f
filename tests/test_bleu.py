"""Corpus BLEU against cases computed by hand (clipping, brevity, several references)."""

from __future__ import annotations

import math

import pytest

from tinyseq.metrics import bleu


def _t(text: str) -> list[str]:
    return text.split()


def test_bleu4_of_a_two_sentence_corpus_by_hand() -> None:
    hyps = [_t("a small red circle left of a blue square"), _t("the cat sat on the mat")]
    refs = [[_t("a small red circle left of a blue square")], [_t("the cat is on the mat")]]
    # clipped n-gram matches / totals summed over the corpus:
    # 1-grams (9 + 5) / (9 + 6), 2-grams (8 + 3) / (8 + 5) ("the cat", "on the", "the mat"),
    # 3-grams (7 + 1) / (7 + 4) ("on the mat"), 4-grams (6 + 0) / (6 + 3); lengths 15 = 15
    expected = (14 / 15 * 11 / 13 * 8 / 11 * 6 / 9) ** 0.25
    assert bleu(hyps, refs) == pytest.approx(expected, rel=1e-12)
    assert bleu(hyps[:1], refs[:1]) == 1.0
    assert bleu(hyps[1:], refs[1:]) == 0.0  # no matching 4-gram, no smoothing


def test_brevity_penalty_and_clipping() -> None:
    # c = 3 < r = 4: BP = exp(1 - 4/3); 1-grams 3/3, 2-grams 1/2 ("red circle")
    assert bleu([_t("a red circle")], [[_t("a small red circle")]], max_n=2) == pytest.approx(
        math.exp(1 - 4 / 3) * math.sqrt(1.0 * 0.5), rel=1e-12)
    # "the" counts at most twice: its largest count in any one reference
    assert bleu([_t("the the the")], [[_t("the cat"), _t("the the dog")]], max_n=1) == pytest.approx(2 / 3)


def test_closest_reference_length_decides_the_penalty() -> None:
    hyp = _t("a b c")
    # references of 2 and 5 tokens: 2 is closest to 3, so c > r and there is no penalty
    assert bleu([hyp], [[_t("a b"), _t("a b c d e")]], max_n=1) == pytest.approx(1.0)
    # a tie (2 and 4 tokens for 3) takes the shorter one: still no penalty
    assert bleu([hyp], [[_t("a b"), _t("a b c d")]], max_n=1) == pytest.approx(1.0)
    assert bleu([hyp], [[_t("a b c d")]], max_n=1) == pytest.approx(math.exp(1 - 4 / 3))


def test_bad_arguments_say_what_was_expected() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but references for 1"):
        bleu([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match="hypothesis 0 has no reference"):
        bleu([["a"]], [[]])
