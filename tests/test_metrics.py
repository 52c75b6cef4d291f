"""Metrics: accuracy, bits, BIO entity/token F1, exact match, accumulation."""

from __future__ import annotations

import math

import pytest

from tinyseq.metrics import (
    MetricSums,
    accuracy,
    bio_spans,
    bits_per_token,
    entity_f1,
    exact_match,
    perplexity,
    token_f1,
)


def test_accuracy_with_mask() -> None:
    assert accuracy([1, 2, 3], [1, 0, 3]) == pytest.approx(2 / 3)
    assert accuracy([[1, 2], [3, 4]], [[1, 0], [0, 0]], mask=[[True, False], [False, False]]) == 1.0
    with pytest.raises(ValueError, match="pred has shape"):
        accuracy([1], [1, 2])


def test_bits_and_perplexity() -> None:
    assert bits_per_token(math.log(2)) == pytest.approx(1.0)
    assert perplexity(math.log(7)) == pytest.approx(7.0)


def test_bio_spans() -> None:
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG", "I-ORG"]
    assert bio_spans(tags) == {("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 7)}


def test_entity_and_token_f1() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]  # PER span cut short: entity wrong, one token right
    e = entity_f1(pred, gold)
    assert e["precision"] == 0.5 and e["recall"] == 0.5 and e["f1"] == 0.5
    t = token_f1(pred, gold)
    assert t["precision"] == 1.0 and t["recall"] == pytest.approx(2 / 3)
    assert entity_f1(gold, gold)["f1"] == 1.0


def test_exact_match_and_sums() -> None:
    assert exact_match([[1, 2], [3]], [[1, 2], [4]]) == 0.5
    s = MetricSums()
    s.add({"loss_sum": 2 * math.log(2), "count": 2, "correct": 1})
    s.add({"loss_sum": 2 * math.log(2), "count": 2, "correct": 2, "entity_tp": 1, "entity_fp": 1, "entity_fn": 0})
    out = s.summary(bits=True)
    assert out["bpc"] == pytest.approx(1.0) and out["accuracy"] == 0.75
    assert out["entity_precision"] == 0.5 and out["entity_recall"] == 1.0
