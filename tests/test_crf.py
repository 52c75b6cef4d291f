"""The linear-chain CRF: log Z, NLL and Viterbi against brute-force enumeration, gradients
by central differences, BIO constraints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tinyseq.nn import CRF
from tinyseq.nn.crf import PENALTY, bio_transition_mask, crf_log_partition, viterbi
from tinyseq.tensor import Tensor
from tinyseq.testing import gradcheck

TAGS = ["B-PER", "I-PER", "B-LOC", "I-LOC", "O"]


def _path_score(e, tr, st, en, path):
    s = st[path[0]] + e[0, path[0]] + en[path[-1]]
    for t in range(1, len(path)):
        s += tr[path[t - 1], path[t]] + e[t, path[t]]
    return s


def _brute(e, tr, st, en, length):
    """Every path's score of one sequence's first ``length`` steps: {path: score}."""
    c = e.shape[1]
    return {p: _path_score(e, tr, st, en, p) for p in itertools.product(range(c), repeat=length)}


def _case(seed, t=4, b=3, c=3):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((t, b, c))
    tr, st, en = rng.standard_normal((c, c)), rng.standard_normal(c), rng.standard_normal(c)
    lengths = np.array([t, 1, 2][:b])
    mask = np.arange(t)[:, None] < lengths[None, :]
    return e, tr, st, en, lengths, mask


def _t(a, grad=False):
    return Tensor(a, dtype=np.float64, requires_grad=grad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_partition_and_nll_equal_enumeration_with_masks(seed: int) -> None:
    e, tr, st, en, lengths, mask = _case(seed)
    # padded steps hold garbage that must change nothing
    e = np.where(mask[..., None], e, 1e3)
    crf = CRF(3, dtype=np.float64)
    crf.transitions.data[...] = tr
    crf.start.data[...] = st
    crf.end.data[...] = en
    log_z = crf_log_partition(_t(e), _t(tr), _t(st), _t(en), mask).data
    rng = np.random.default_rng(seed + 10)
    tags = rng.integers(0, 3, size=mask.shape)
    nll = crf.nll(_t(e), tags, mask, reduction="none").data
    for b, n in enumerate(lengths):
        scores = _brute(e[:, b], tr, st, en, int(n))
        vals = np.array(list(scores.values()))
        want = np.log(np.exp(vals - vals.max()).sum()) + vals.max()
        assert abs(log_z[b] - want) < 1e-10
        gold = scores[tuple(int(v) for v in tags[:n, b])]
        assert abs(nll[b] - (want - gold)) < 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_viterbi_equals_brute_force_argmax(seed: int) -> None:
    e, tr, st, en, lengths, mask = _case(seed, t=5, b=3, c=3)
    paths = viterbi(e, tr, st, en, mask)
    for b, n in enumerate(lengths):
        scores = _brute(e[:, b], tr, st, en, int(n))
        best = max(scores, key=scores.__getitem__)
        assert tuple(paths[b]) == best
        assert len(paths[b]) == n


def test_gradcheck_log_partition_and_nll() -> None:
    e, tr, st, en, lengths, mask = _case(4)
    inputs = [_t(e, True), _t(tr, True), _t(st, True), _t(en, True)]
    assert gradcheck(lambda *a: crf_log_partition(*a, mask=mask), inputs, atol=1e-7,
                     names=["emissions", "transitions", "start", "end"])
    tags = np.random.default_rng(0).integers(0, 3, size=mask.shape)
    crf = CRF(3, dtype=np.float64)
    em = _t(e, True)
    assert gradcheck(lambda x, *params: crf.nll(x, tags, mask), [em, *crf.parameters()], atol=1e-7)


def test_marginals_sum_to_one_at_valid_steps_and_zero_at_padding() -> None:
    e, tr, st, en, lengths, mask = _case(5)
    em = _t(e, True)
    crf_log_partition(em, _t(tr), _t(st), _t(en), mask).sum().backward()
    sums = em.grad.data.sum(axis=2)
    np.testing.assert_allclose(sums[mask], 1.0, atol=1e-12)
    assert np.all(em.grad.data[~mask] == 0)


def test_bio_constraints_mask_and_decoding() -> None:
    trans, start = bio_transition_mask(TAGS)
    i_per, i_loc, o = TAGS.index("I-PER"), TAGS.index("I-LOC"), TAGS.index("O")
    assert not trans[o, i_per] and not trans[TAGS.index("B-LOC"), i_per] and not trans[i_loc, i_per]
    assert trans[TAGS.index("B-PER"), i_per] and trans[i_per, i_per] and trans[o, TAGS.index("B-LOC")]
    assert not start[i_per] and start[o]
    crf = CRF(len(TAGS), tag_names=TAGS, constraints=True, dtype=np.float64)
    # emissions that favour I-PER right after O and at the start
    e = np.full((4, 1, len(TAGS)), -1.0)
    e[0, 0, i_per] = 5.0
    e[1, 0, o] = 5.0
    e[2, 0, i_per] = 5.0
    e[3, 0, i_loc] = 5.0
    path = crf.decode(_t(e))[0]
    for a, b in zip(path, path[1:]):
        assert trans[a, b], f"{TAGS[a]} -> {TAGS[b]} decoded in {path}"
    assert start[path[0]]
    unconstrained = CRF(len(TAGS), dtype=np.float64)
    unconstrained.load_state_dict(crf.state_dict())
    assert unconstrained.decode(_t(e))[0] == [i_per, o, i_per, i_loc]
    # the constrained log Z equals enumeration with the penalty added
    t_, s_, e_ = (x.data for x in crf.scores())
    assert t_[o, i_per] == crf.transitions.data[o, i_per] + PENALTY
    scores = _brute(e[:, 0], t_, s_, e_, 4)
    vals = np.array(list(scores.values()))
    want = np.log(np.exp(vals - vals.max()).sum()) + vals.max()
    assert abs(crf.log_partition(_t(e)).data[0] - want) < 1e-10


def test_bad_shapes_are_named() -> None:
    crf = CRF(3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"mask must be \(T, B\) = \(2, 1\)"):
        crf.log_partition(_t(np.zeros((2, 1, 3))), np.ones((1, 2), dtype=bool))
    with pytest.raises(ValueError, match=r"tags must be \(T, B\)"):
        crf.nll(_t(np.zeros((2, 1, 3))), np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="at least one valid step"):
        crf.log_partition(_t(np.zeros((2, 1, 3))), np.zeros((2, 1), dtype=bool))
    with pytest.raises(ValueError, match="needs the 5 tag names"):
        CRF(5, constraints=True)


def test_tagger_with_crf_loss_and_prediction() -> None:
    from tinyseq.data import SequenceDataset
    from tinyseq.models import SequenceTagger

    rng = np.random.default_rng(0)
    xs = [rng.integers(1, 8, size=n) for n in (4, 2, 3)]
    ys = [np.full(len(x), TAGS.index("O")) for x in xs]
    batch = next(iter(SequenceDataset(xs, ys, 3, y_is_sequence=True, shuffle=False)))
    model = SequenceTagger(len(TAGS), vocab_size=8, embedding_dim=4, hidden_size=3, tag_names=TAGS,
                           crf=True)
    assert model.crf is not None and model.crf.constraints
    emissions = model(batch)
    mask = batch.y_mask.T
    want = model.crf.nll(emissions, batch.y.T, mask).item() / mask.sum()
    assert abs(model.loss(batch).loss.item() - want) < 1e-5
    trans, start, end = (t.data.astype(np.float64) for t in model.crf.scores())
    e = emissions.data.astype(np.float64)
    for b, path in enumerate(model.predict(batch)):
        n = int(batch.x_lengths[b])
        scores = _brute(e[:, b], trans, start, end, n)
        assert tuple(path) == max(scores, key=scores.__getitem__)
    counts, _ = model.evaluate_batch(batch)
    assert abs(counts["loss_sum"] - want * mask.sum()) < 1e-4 and counts["count"] == mask.sum()
