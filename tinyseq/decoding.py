"""Decoding from a step function: greedy, temperature/top-k sampling, beam search;
and decoding of per-frame CTC outputs: greedy and prefix beam search.

Every model that generates (language model, one-to-many, encoder-decoder) exposes the
same small interface, so the algorithms here know nothing about cells or layers:

    step(tokens, state) -> (logits, state)
        tokens: (K,) int ids of the previous outputs; logits: (K, V) host NumPy array;
        state: anything the model carries (e.g. recurrent state tensors).
    reorder(state, index) -> state
        the state of the K' hypotheses picked by ``index`` (K',) (beam search only).

The CTC decoders read one example's per-frame log-probabilities (T, C) instead: a
labelling is an alignment with repeats collapsed and blanks dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["StepFn", "ReorderFn", "greedy", "sample", "beam_search", "Hypothesis", "log_softmax_np",
           "ctc_collapse", "ctc_greedy_decode", "ctc_prefix_beam_search"]

Arr = npt.NDArray[Any]
StepFn = Callable[[Arr, Any], tuple[Arr, Any]]
ReorderFn = Callable[[Any, Arr], Any]


def log_softmax_np(logits: Arr) -> Arr:
    """Row-wise log-softmax of a host array (K, V), computed in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # type: ignore[no-any-return]


def _run(
    step: StepFn, state: Any, start: Arr, max_len: int, eos_id: int | None,
    choose: Callable[[Arr], Arr],
) -> list[list[int]]:
    tokens = np.asarray(start, dtype=np.int64).reshape(-1)
    out: list[list[int]] = [[] for _ in range(tokens.shape[0])]
    done = np.zeros(tokens.shape[0], dtype=bool)
    for _ in range(max_len):
        logits, state = step(tokens, state)
        tokens = choose(np.asarray(logits)).astype(np.int64)
        for i, t in enumerate(tokens):
            if not done[i]:
                out[i].append(int(t))
                done[i] = eos_id is not None and int(t) == eos_id
        if done.all():
            break
    return out


def greedy(
    step: StepFn, state: Any, start: Any, max_len: int, eos_id: int | None = None
) -> list[list[int]]:
    """The most likely token at every step, for each of K starts (K,) -> K id lists.

    Each list stops after ``eos_id`` (included) or at ``max_len`` tokens.
    """
    return _run(step, state, start, max_len, eos_id, lambda lg: lg.argmax(axis=-1))


def sample(
    step: StepFn,
    state: Any,
    start: Any,
    max_len: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> list[list[int]]:
    """Sample each token from softmax(logits / temperature), optionally the top k only.

    temperature -> 0 approaches greedy; 1 samples the model's distribution.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def choose(logits: Arr) -> Arr:
        z = np.asarray(logits, dtype=np.float64) / temperature
        if top_k is not None and top_k < z.shape[-1]:
            kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
            z = np.where(z < kth, -np.inf, z)
        p = np.exp(log_softmax_np(z))
        u = np.asarray(gen.random(p.shape[0]))[:, None]
        # inverse CDF: first index whose cumulative probability reaches u; dividing by
        # the total makes the last entry exactly 1, so rounding never picks a token
        # of probability 0
        cdf = p.cumsum(axis=-1)
        cdf /= cdf[:, -1:]
        idx = (cdf < u).sum(axis=-1)
        out: Arr = np.minimum(idx, p.shape[-1] - 1)
        return out

    return _run(step, state, start, max_len, eos_id, choose)


@dataclass
class Hypothesis:
    """A finished beam: ``tokens`` (without the start token), total log-probability and
    the length-normalised ``score`` the beams are ranked by."""

    tokens: list[int]
    log_prob: float
    score: float


def beam_search(
    step: StepFn,
    reorder: ReorderFn,
    state: Any,
    start_id: int,
    max_len: int,
    beam_width: int = 5,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
) -> list[Hypothesis]:
    """Beam search for one example; ``state`` is that example's state (batch of 1).

    Keeps the ``beam_width`` best partial outputs by total log-probability; a finished
    output is ranked by ``log_prob / len ** length_penalty`` (0 = no normalisation,
    which favours short outputs). Stops when ``beam_width`` outputs have finished and
    the best live one does not score better, or after ``max_len`` steps (then live
    outputs count as finished). Returns up to ``beam_width`` hypotheses, best first.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    seqs: list[list[int]] = [[]]
    scores = np.zeros(1)
    tokens = np.array([start_id], dtype=np.int64)
    finished: list[Hypothesis] = []

    def norm(lp: float, n: int) -> float:
        return float(lp / max(n, 1) ** length_penalty)

    for t in range(max_len):
        logits, state = step(tokens, state)
        logp = log_softmax_np(np.asarray(logits))  # (K, V)
        v = logp.shape[1]
        total = (scores[:, None] + logp).reshape(-1)
        # take a few extra so finished hypotheses do not starve the beam
        k = min(total.shape[0], 2 * beam_width)
        best = np.argpartition(-total, k - 1)[:k]
        best = best[np.argsort(-total[best], kind="stable")]
        keep_rows, keep_tok, keep_score = [], [], []
        for rank, flat in enumerate(best):
            row, tok = divmod(int(flat), v)
            lp = float(total[flat])
            if eos_id is not None and tok == eos_id:
                # an ending counts only when it ranks within the beam (as in fairseq and
                # Hugging Face); endings further down would crowd out better outputs
                if rank < beam_width:
                    finished.append(Hypothesis(seqs[row] + [tok], lp, norm(lp, t + 1)))
            else:
                keep_rows.append(row)
                keep_tok.append(tok)
                keep_score.append(lp)
            if len(keep_rows) == beam_width:
                break
        if not keep_rows:
            break
        # done when beam_width outputs have finished and no live one scores better now
        if len(finished) >= beam_width:
            kth = sorted((h.score for h in finished), reverse=True)[beam_width - 1]
            if norm(max(keep_score), t + 1) <= kth:
                break
        index = np.array(keep_rows, dtype=np.int64)
        state = reorder(state, index)
        seqs = [seqs[r] + [tok] for r, tok in zip(keep_rows, keep_tok)]
        scores = np.array(keep_score)
        tokens = np.array(keep_tok, dtype=np.int64)
    if len(finished) < beam_width:  # max_len reached: unfinished outputs count too
        for s, lp in zip(seqs, scores):
            finished.append(Hypothesis(list(s), float(lp), norm(float(lp), len(s))))
    finished.sort(key=lambda h: -h.score)
    return finished[:beam_width]


# ---- CTC: per-frame outputs (T, C) to a labelling ------------------------------------------
def ctc_collapse(path: Any, blank: int = 0) -> list[int]:
    """The labelling of one alignment (T,): repeats merged, then blanks dropped."""
    out: list[int] = []
    prev = None
    for c in np.asarray(path).tolist():
        if c != prev and c != blank:
            out.append(int(c))
        prev = c
    return out


def ctc_greedy_decode(log_probs: Any, blank: int = 0) -> list[int]:
    """Best path decoding: the most likely class of each frame (T, C), collapsed.

    This is the labelling of the single most likely alignment, which is not always the
    most likely labelling (:func:`ctc_prefix_beam_search` sums over alignments).
    """
    lp = np.asarray(log_probs)
    if lp.ndim != 2:
        raise ValueError(f"ctc_greedy_decode: expected one example's log-probabilities (T, C), "
                         f"got shape {lp.shape}")
    return ctc_collapse(lp.argmax(axis=-1), blank)


def _add_mass(table: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], which: int,
              value: float) -> None:
    """table[prefix][which] += exp(value), in log space (which: 0 blank-ended, 1 not)."""
    slot = table.setdefault(prefix, [-np.inf, -np.inf])
    slot[which] = float(np.logaddexp(slot[which], value))


def ctc_prefix_beam_search(
    log_probs: Any, beam_width: int = 8, blank: int = 0
) -> list[Hypothesis]:
    """Prefix beam search (Hannun et al. 2014) over one example's frames (T, C).

    Each kept prefix carries the log-probability of all alignments of the frames so far
    that collapse to it, split by whether they end in a blank (the next label may
    repeat the last one) or not (a repeat merges into it). The ``beam_width`` most
    likely prefixes survive each frame; with a beam as wide as the number of prefixes
    the result is exact. Returns up to ``beam_width`` hypotheses, best first, each with
    ``log_prob`` = ``score`` = log p(labelling | frames) (of the kept alignments).
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"ctc_prefix_beam_search: expected one example's log-probabilities "
                         f"(T, C), got shape {lp.shape}")
    n_classes = lp.shape[1]
    if not 0 <= blank < n_classes:
        raise ValueError(f"blank must be a class index in [0, {n_classes - 1}], got {blank}")
    neg = -np.inf
    # prefix -> (log p ending in blank, log p ending in its last label)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}
    for frame in lp:
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_b, p_nb) in beams.items():
            total = float(np.logaddexp(p_b, p_nb))
            _add_mass(nxt, prefix, 0, total + frame[blank])
            last = prefix[-1] if prefix else None
            for c in range(n_classes):
                if c == blank:
                    continue
                y = float(frame[c])
                if c == last:
                    _add_mass(nxt, prefix, 1, p_nb + y)  # the repeat merges into the last label
                    _add_mass(nxt, prefix + (c,), 1, p_b + y)  # a blank between: a new label
                else:
                    _add_mass(nxt, prefix + (c,), 1, total + y)
        ranked = sorted(nxt.items(), key=lambda kv: -float(np.logaddexp(kv[1][0], kv[1][1])))
        beams = {k: (v[0], v[1]) for k, v in ranked[:beam_width]}
    out = [Hypothesis(list(k), float(np.logaddexp(*v)), float(np.logaddexp(*v)))
           for k, v in beams.items()]
    out.sort(key=lambda h: -h.score)
    return out
