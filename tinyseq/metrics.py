"""Metrics for sequence models: accuracy, perplexity, bits per token, BIO F1, exact match,
edit distance and character/token error rate, BLEU.

Evaluation over many batches accumulates additive counts (a :class:`MetricSums`) and
turns them into metrics at the end, so batch sizes never bias an average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "perplexity",
    "bits_per_token",
    "bio_spans",
    "entity_counts",
    "token_counts",
    "f1_from_counts",
    "entity_f1",
    "token_f1",
    "exact_match",
    "bleu",
    "edit_distance",
    "error_counts",
    "error_rate",
    "MetricSums",
]

LN2 = math.log(2.0)


def accuracy(pred: Any, target: Any, mask: Any = None) -> float:
    """Fraction of positions where pred == target (only where mask is True, if given)."""
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"accuracy: pred has shape {p.shape}, target {t.shape}")
    hits = p == t
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        return float(hits[m].mean()) if m.any() else 0.0
    return float(hits.mean()) if hits.size else 0.0


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token, in nats)."""
    return float(math.exp(min(mean_nll, 700.0)))


def bits_per_token(mean_nll: float) -> float:
    """Mean negative log-likelihood in bits (bits per character for a character model)."""
    return mean_nll / LN2


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities (type, start, end-exclusive) in a BIO tag sequence.

    An ``I-X`` that does not continue an ``X`` entity starts a new one (the usual
    lenient reading, as in conlleval).
    """
    spans = set()
    kind: str | None = None
    start = 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and kind == label
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return spans


def entity_counts(
    pred: Iterable[Sequence[str]], gold: Iterable[Sequence[str]]
) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of exact entity spans."""
    tp = fp = fn = 0
    for p, g in zip(pred, gold):
        ps, gs = bio_spans(p), bio_spans(g)
        tp += len(ps & gs)
        fp += len(ps - gs)
        fn += len(gs - ps)
    return tp, fp, fn


def token_counts(
    pred: Iterable[Sequence[str]], gold: Iterable[Sequence[str]], outside: str = "O"
) -> tuple[int, int, int]:
    """(tp, fp, fn) over tokens, counting a token as positive when its tag is not O."""
    tp = fp = fn = 0
    for p, g in zip(pred, gold):
        for a, b in zip(p, g):
            if a == b and a != outside:
                tp += 1
            else:
                fp += a != outside
                fn += b != outside
    return tp, fp, fn


def f1_from_counts(tp: float, fp: float, fn: float) -> dict[str, float]:
    """precision, recall and F1 from counts (0 where undefined)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_f1(pred: Iterable[Sequence[str]], gold: Iterable[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision/recall/F1 for BIO tag sequences (exact span and type)."""
    return f1_from_counts(*entity_counts(pred, gold))


def token_f1(pred: Iterable[Sequence[str]], gold: Iterable[Sequence[str]]) -> dict[str, float]:
    """Token-level micro precision/recall/F1 over the non-O tags."""
    return f1_from_counts(*token_counts(pred, gold))


def exact_match(pred: Iterable[Sequence[Any]], gold: Iterable[Sequence[Any]]) -> float:
    """Fraction of outputs equal to their reference as whole sequences."""
    pairs = list(zip(pred, gold))
    if not pairs:
        return 0.0
    return sum(list(p) == list(g) for p, g in pairs) / len(pairs)


def edit_distance(pred: Sequence[Any], gold: Sequence[Any]) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions that
    turn ``pred`` into ``gold``."""
    a, b = list(pred), list(gold)
    row = list(range(len(b) + 1))  # distances from a[:0] to each b[:j]
    for i, x in enumerate(a, 1):
        diag, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (x != y))
    return row[-1]


def error_counts(
    pred: Iterable[Sequence[Any]], gold: Iterable[Sequence[Any]]
) -> tuple[int, int]:
    """(summed edit distance, summed reference length) over pairs of sequences."""
    edits = ref = 0
    for p, g in zip(pred, gold):
        edits += edit_distance(p, g)
        ref += len(g)
    return edits, ref


def error_rate(pred: Iterable[Sequence[Any]], gold: Iterable[Sequence[Any]]) -> float:
    """Character/token (or word) error rate: edits per reference token (can exceed 1).

    Over a corpus, the summed edits over the summed reference lengths (0 for no tokens).
    """
    edits, ref = error_counts(pred, gold)
    return edits / ref if ref else 0.0


def _ngrams(tokens: Sequence[Any], n: int) -> dict[tuple[Any, ...], int]:
    counts: dict[tuple[Any, ...], int] = {}
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i: i + n])
        counts[gram] = counts.get(gram, 0) + 1
    return counts


def bleu(hypotheses: Sequence[Sequence[Any]], references: Sequence[Sequence[Sequence[Any]]],
         max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002), BLEU-4 by default, in [0, 1].

    hypotheses: one token sequence per output; references: for each output, one or more
    reference token sequences. Each n-gram's count is clipped to its largest count in
    any one reference; the clipped counts and the n-gram totals are summed over the
    corpus for each n = 1 .. max_n, and their precisions combine as a geometric mean
    times the brevity penalty exp(1 - r / c) when the hypotheses' total length c is
    below r, the sum of each output's reference length closest to its own (the shorter
    on a tie). No smoothing: a corpus without a single matching max_n-gram scores 0.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"bleu: {len(hypotheses)} hypotheses but references for {len(references)}")
    if max_n < 1:
        raise ValueError(f"bleu: max_n must be >= 1, got {max_n}")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if not refs:
            raise ValueError(f"bleu: hypothesis {i} has no reference; expected at least one")
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            most: dict[tuple[Any, ...], int] = {}
            for r in refs:
                for gram, c in _ngrams(r, n).items():
                    most[gram] = max(most.get(gram, 0), c)
            matches[n - 1] += sum(min(c, most.get(gram, 0)) for gram, c in _ngrams(hyp, n).items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


class MetricSums:
    """Additive evaluation counts, summarised into metrics at the end.

    Keys used: ``loss_sum`` and ``count`` (summed loss and number of predictions),
    ``correct``, ``entity_tp/fp/fn``, ``token_tp/fp/fn``, ``exact`` and ``sequences``,
    ``sq_err`` (summed squared error), ``edits`` and ``ref_tokens`` (error rate).
    ``bits=True`` adds bits per token/perplexity.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}

    def add(self, counts: Mapping[str, float]) -> None:
        for k, v in counts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)

    @classmethod
    def merged(cls, parts: Iterable[Mapping[str, float]]) -> MetricSums:
        """The sums of several evaluations' counts (e.g. each process's shard), in order."""
        out = cls()
        for counts in parts:
            out.add(counts)
        return out

    def summary(self, bits: bool = False) -> dict[str, float]:
        s = self.sums
        out: dict[str, float] = {}
        count = s.get("count", 0.0)
        if count:
            out["loss"] = s.get("loss_sum", 0.0) / count
            if bits:
                out["perplexity"] = perplexity(out["loss"])
                out["bpc"] = bits_per_token(out["loss"])
            if "correct" in s:
                out["accuracy"] = s["correct"] / count
        if "entity_tp" in s:
            f = f1_from_counts(s["entity_tp"], s["entity_fp"], s["entity_fn"])
            out.update({f"entity_{k}": v for k, v in f.items()})
        if "token_tp" in s:
            out["token_f1"] = f1_from_counts(s["token_tp"], s["token_fp"], s["token_fn"])["f1"]
        if "ref_tokens" in s:
            out["error_rate"] = s.get("edits", 0.0) / s["ref_tokens"] if s["ref_tokens"] else 0.0
        if s.get("sequences"):
            out["exact_match"] = s.get("exact", 0.0) / s["sequences"]
        return out
