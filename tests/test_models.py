"""End to end, one per pattern: each model learns a small generated task in seconds.

Every test states its threshold: the loss must fall well below chance (log C for C
classes) and a task metric must be reached.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.data import SequenceDataset, StreamDataset, Vocab
from tinyseq.data.batching import Batch
from tinyseq.models import (
    LanguageModel,
    OneToMany,
    OneToOne,
    Seq2Seq,
    SequenceClassifier,
    SequenceRegressor,
    SequenceTagger,
    build_model,
)
from tinyseq.trainer import Trainer


def fit(model, train, valid=None, steps=100, lr=1e-2, **kw):
    trainer = Trainer(model, train, valid, lr=lr, max_steps=steps, epochs=10_000,
                      progress=False, seed=0, **kw)
    summary = trainer.fit()
    return trainer, summary


def test_language_model_learns_a_repeating_text(device) -> None:
    ts.set_default_device(device)
    text = "the cat sat on the mat. " * 60
    vocab = Vocab.build([list(text)])
    ids = vocab.encode_text(text)
    model = LanguageModel(len(vocab), embedding_dim=8, hidden_size=32)
    trainer, _ = fit(model, StreamDataset(ids, 8, 20), StreamDataset(ids[:400], 4, 20), steps=80)
    metrics = trainer.evaluate()
    chance_bits = math.log2(len(vocab) - 4)
    assert metrics["bpc"] < 0.25 * chance_bits, metrics
    assert metrics["accuracy"] > 0.85
    out = vocab.decode_text(model.generate(vocab.encode_text("the c"), 12, greedy=True))
    assert out == "at sat on th"
    assert model.device.name == device


def _first_token_data(n: int, seed: int):
    # many to one: the label is the FIRST token, so it must survive to the last valid step
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        length = int(rng.integers(2, 9))
        seq = rng.integers(1, 5, size=length)
        xs.append(seq)
        ys.append(int(seq[0]) - 1)
    return xs, ys


@pytest.mark.parametrize("cell,bidirectional,pooling", [("gru", False, "last"), ("lstm", True, "last"),
                                                        ("lstm", False, "mean")])
def test_classifier_reads_last_valid_step(cell, bidirectional, pooling) -> None:
    xs, ys = _first_token_data(400, 0)
    vx, vy = _first_token_data(100, 1)
    model = SequenceClassifier(4, vocab_size=5, embedding_dim=8, hidden_size=32, cell=cell,
                               bidirectional=bidirectional, pooling=pooling)
    train = SequenceDataset(xs, ys, 32, bucket=4)
    trainer, _ = fit(model, train, SequenceDataset(vx, vy, 50, shuffle=False), steps=120)
    m = trainer.evaluate()
    assert m["loss"] < 0.3 * math.log(4), m
    assert m["accuracy"] >= 0.9, m


def test_classifier_output_does_not_depend_on_padding() -> None:
    model = SequenceClassifier(3, vocab_size=6, embedding_dim=4, hidden_size=8, bidirectional=True)
    model.eval()
    seq = np.array([1, 2, 3])
    alone = SequenceDataset([seq], [0], 1, shuffle=False).collate([0])
    padded = SequenceDataset([seq, np.array([1, 2, 3, 4, 5, 1, 2])], [0, 0], 2, shuffle=False).collate([0, 1])
    a = model(alone).detach().numpy()[0]
    b = model(padded).detach().numpy()[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _ner_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    words = ["john", "smith", "paris", "went", "to", "the", "big", "city", "mary"]
    tags_of = {"john": "B-PER", "mary": "B-PER", "paris": "B-LOC"}
    sents = []
    for _ in range(n):
        toks, tags = [], []
        for _ in range(int(rng.integers(3, 9))):
            w = words[int(rng.integers(0, len(words)))]
            if w == "smith":  # "smith" continues a person only right after a first name
                tag = "I-PER" if toks and toks[-1] in ("john", "mary") else "O"
            else:
                tag = tags_of.get(w, "O")
            toks.append(w)
            tags.append(tag)
        sents.append((toks, tags))
    return sents


def test_tagger_learns_bio_entities() -> None:
    train_s, valid_s = _ner_data(300, 0), _ner_data(80, 1)
    vocab = Vocab.build([s for s, _ in train_s], level="word")
    tags = Vocab(["O", "B-PER", "I-PER", "B-LOC"], specials=())

    def ds(sents, shuffle=True):
        return SequenceDataset([np.array(vocab.encode(s)) for s, _ in sents],
                               [np.array(tags.encode(t)) for _, t in sents], 32, y_is_sequence=True,
                               shuffle=shuffle)

    model = SequenceTagger(len(tags), vocab_size=len(vocab), embedding_dim=8, hidden_size=24,
                           tag_names=tags.itos, cell="gru")
    trainer, _ = fit(model, ds(train_s), ds(valid_s, False), steps=100, monitor="entity_f1")
    m = trainer.evaluate()
    assert m["loss"] < 0.2 * math.log(4), m
    assert m["entity_f1"] >= 0.95 and m["token_f1"] >= 0.95, m
    assert trainer.maximise


def _reverse_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        seq = rng.integers(4, 8, size=int(rng.integers(1, 5)))
        xs.append(seq)
        ys.append(np.concatenate([seq[::-1], seq[:1], [3]]))  # Ty = Tx + 2 (with <eos>=3)
    return xs, ys


@pytest.mark.parametrize("bidirectional,teacher_forcing", [(True, 1.0), (False, 0.75)])
def test_seq2seq_learns_reverse(bidirectional, teacher_forcing) -> None:
    xs, ys = _reverse_data(600, 0)
    vx, vy = _reverse_data(60, 1)
    model = Seq2Seq(8, src_vocab_size=8, embedding_dim=12, hidden_size=64, cell="lstm",
                    bidirectional=bidirectional, teacher_forcing=teacher_forcing)
    train = SequenceDataset(xs, ys, 32, y_is_sequence=True, bucket=4)
    valid = SequenceDataset(vx, vy, 60, y_is_sequence=True, shuffle=False)
    trainer, _ = fit(model, train, valid, steps=150, lr=1e-2, monitor="exact_match")
    m = trainer.evaluate()
    assert m["loss"] < 0.2 * math.log(8), m
    assert m["exact_match"] >= 0.8, m
    batch = valid.collate(range(5))
    beams = model.decode(batch, max_len=10, method="beam", beam_width=3)
    greedy = model.decode(batch, max_len=10)
    assert sum(b == g for b, g in zip(beams, greedy)) >= 4  # a confident model: beams agree


@pytest.mark.parametrize("condition", ["state", "input", "both"])
def test_one_to_many_generates_the_sequence_of_its_condition(condition) -> None:
    rng = np.random.default_rng(0)
    patterns = {0: [4, 5, 4, 5], 1: [6, 6, 7], 2: [5, 7, 4, 6, 5], 3: [7]}
    labels = rng.integers(0, 4, size=200)
    xs = [np.eye(4, dtype=np.float32)[k] + rng.normal(0, 0.05, 4).astype(np.float32) for k in labels]
    ys = [np.array(patterns[int(k)] + [3]) for k in labels]
    model = OneToMany(4, 8, embedding_dim=8, hidden_size=32, cell="gru", condition=condition)
    data = SequenceDataset(xs, ys, 32, x_is_sequence=False, y_is_sequence=True)
    trainer, _ = fit(model, data, steps=120)
    batch = data.collate(range(40))
    out = model.decode(batch, max_len=8)
    exact = np.mean([o == list(y) for o, y in zip(out, ys[:40])])
    assert exact >= 0.95
    assert trainer.evaluate(data)["exact_match"] >= 0.95
    sampled = model.decode(batch, max_len=8, method="sample", temperature=0.3, rng=0)
    assert np.mean([o == list(y) for o, y in zip(sampled, ys[:40])]) >= 0.8
    beams = model.decode(data.collate(range(10)), max_len=8, method="beam", beam_width=3)
    assert np.mean([o == list(y) for o, y in zip(beams, ys[:10])]) >= 0.9


def test_one_to_one_classifies_and_regresses() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)  # XOR: needs the hidden layer
    model = OneToOne(2, 32, num_classes=2)
    data = SequenceDataset(list(x), list(y), 32, x_is_sequence=False)
    trainer, _ = fit(model, data, steps=300)
    m = trainer.evaluate(data)
    assert m["accuracy"] >= 0.9 and m["loss"] < 0.5 * math.log(2), m
    target = np.stack([x[:, 0] * x[:, 1], x[:, 0]], axis=1).astype(np.float32)
    reg = OneToOne(2, 32, output_size=2)
    trainer, _ = fit(reg, SequenceDataset(list(x), list(target), 32, x_is_sequence=False), steps=300)
    assert trainer.evaluate(SequenceDataset(list(x), list(target), 64, x_is_sequence=False))["loss"] < 0.1


def test_tagger_with_float_features_and_any_registered_cell() -> None:
    # numeric many-to-many: tag each step by the sign of the running sum of features
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(int(rng.integers(3, 10)), 2)).astype(np.float32) for _ in range(300)]
    ys = [(np.cumsum(x[:, 0]) > 0).astype(np.int64) for x in xs]
    for cell in ("rnn", "simple_gru"):
        model = SequenceTagger(2, input_size=2, hidden_size=24, cell=cell, bidirectional=False)
        trainer, _ = fit(model, SequenceDataset(xs, ys, 32, y_is_sequence=True), steps=150)
        m = trainer.evaluate(SequenceDataset(xs, ys, 100, y_is_sequence=True, shuffle=False))
        assert m["accuracy"] >= 0.9, (cell, m)


def test_regressor_predicts_the_next_value_of_sine_waves() -> None:
    # many to many with float targets: the next step of a sine with a random phase/frequency
    rng = np.random.default_rng(0)
    t = np.arange(21)
    waves = [np.sin(rng.uniform(0.3, 0.6) * t + rng.uniform(0, 6))[:, None].astype(np.float32)
             for _ in range(200)]
    xs, ys = [w[:-1] for w in waves], [w[1:] for w in waves]
    model = SequenceRegressor(1, input_size=1, hidden_size=24, cell="gru")
    trainer, _ = fit(model, SequenceDataset(xs, ys, 32, y_is_sequence=True), steps=150)
    mse = trainer.evaluate(SequenceDataset(xs, ys, 100, y_is_sequence=True, shuffle=False))["loss"]
    assert mse < 0.05 * np.var(np.concatenate(ys)), mse  # far below predicting the mean
    pred = model.predict(SequenceDataset(xs[:2], ys[:2], 2, y_is_sequence=True).collate([0, 1]))
    assert pred[0].shape == (20, 1)
    again = build_model(model.kind, model.config)
    assert again.config == model.config


def test_regressor_ignores_nan_targets_at_padded_steps() -> None:
    # padding is a user's choice (NaN marks "no value" in many series files): it must not reach
    # the loss or a gradient, which it did when the mask multiplied the error
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    y = rng.normal(size=(2, 5, 2)).astype(np.float32)
    lengths = np.array([5, 3])
    model = SequenceRegressor(2, input_size=3, hidden_size=4)
    clean = model.loss(Batch(x, y, lengths, lengths)).loss.item()
    y[1, 3:] = np.nan
    result = model.loss(Batch(x, y, lengths, lengths))
    result.loss.backward()
    assert result.loss.item() == pytest.approx(clean, rel=1e-6)
    assert all(np.isfinite(p.grad.data).all() for p in model.parameters())


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stacked_bidirectional_encoder_decoder_runs(cell) -> None:
    xs, ys = _reverse_data(8, 0)
    model = Seq2Seq(8, src_vocab_size=8, embedding_dim=4, hidden_size=6, cell=cell, num_layers=2,
                    bidirectional=True, dropout=0.1)
    batch = SequenceDataset(xs, ys, 8, y_is_sequence=True).collate(range(8))
    result = model.loss(batch)
    result.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    out = model.decode(batch, max_len=4, method="beam", beam_width=2)
    assert len(out) == 8 and all(1 <= len(o) <= 4 for o in out)


def test_build_model_from_config_roundtrip() -> None:
    model = SequenceTagger(5, vocab_size=10, hidden_size=8, num_layers=2, tag_names=list("OABCD"))
    again = build_model(model.kind, model.config)
    again.load_state_dict(model.state_dict())
    assert again.config == model.config
    with pytest.raises(ValueError, match="unknown model kind 'nope'"):
        build_model("nope", {})
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        SequenceClassifier(2)


def test_every_model_runs_on_the_test_device(device) -> None:
    # one training step, an evaluation and decoding per model, with arrays of the device
    ts.set_default_device(device)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 6, size=int(n)) for n in (3, 5, 2, 4)]
    floats = [rng.normal(size=(len(s), 2)).astype(np.float32) for s in seqs]
    cases = [
        (SequenceClassifier(3, vocab_size=6, hidden_size=4, bidirectional=True),
         SequenceDataset(seqs, [0, 1, 2, 1], 4)),
        (SequenceClassifier(3, input_size=2, hidden_size=4, pooling="max"),
         SequenceDataset(floats, [0, 1, 2, 1], 4)),
        (SequenceTagger(3, vocab_size=6, hidden_size=4, tag_names=["O", "B-X", "I-X"]),
         SequenceDataset(seqs, [s % 3 for s in seqs], 4, y_is_sequence=True)),
        (SequenceRegressor(2, input_size=2, hidden_size=4), SequenceDataset(floats, floats, 4, y_is_sequence=True)),
        (Seq2Seq(6, src_vocab_size=6, hidden_size=4, bidirectional=True, teacher_forcing=0.5),
         SequenceDataset(seqs, [np.append(s[::-1], 3) for s in seqs], 4, y_is_sequence=True)),
        (OneToMany(2, 6, hidden_size=4, cell="lstm", condition="both"),
         SequenceDataset([f[0] for f in floats], [np.append(s, 3) for s in seqs], 4, x_is_sequence=False,
                         y_is_sequence=True)),
        (OneToOne(2, 4, num_classes=3), SequenceDataset([f[0] for f in floats], [0, 1, 2, 0], 4,
                                                        x_is_sequence=False)),
    ]
    for model, data in cases:
        assert model.device.name == device
        trainer = Trainer(model, data, data, max_steps=2, progress=False)
        trainer.fit()
        assert np.isfinite(trainer.history).all() and trainer.evaluate()["loss"] > 0
        if isinstance(model, (Seq2Seq, OneToMany)):
            assert len(model.decode(data.collate(range(4)), max_len=3, method="beam", beam_width=2)) == 4
