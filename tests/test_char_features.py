"""Character-level word features: gradients, masks on the word and character axes, and
unknown words that keep their shape; the models and batches that carry them."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.data import Batch, SequenceDataset, Vocab, pad_characters, pad_sequences
from tinyseq.models import SequenceClassifier, SequenceTagger
from tinyseq.nn import CharFeatures
from tinyseq.testing import gradcheck

CHARS = Vocab.build([list(string.ascii_letters + string.digits + "-.")], level="char")


def _chars(words: list[str]) -> list[np.ndarray]:
    return [np.asarray(CHARS.encode(list(w))) for w in words]


@pytest.mark.parametrize("cell, layer", [("lstm", "cell"), ("gru", "cell"), ("lstm", "cnn")])
def test_gradcheck(cell: str, layer: str) -> None:
    with ts.default_dtype(np.float64):
        ts.manual_seed(0)
        chars_layer = CharFeatures(len(CHARS), embedding_dim=3, hidden_size=2, cell=cell, layer=layer)
    chars, lengths = pad_characters([_chars(["Paris", "is"]), _chars(["a"])])
    assert gradcheck(lambda *p: chars_layer(chars, lengths), list(chars_layer.parameters()), atol=1e-7)


@pytest.mark.parametrize("kind, size", [("cell", 6), ("cnn", 3)])
def test_padded_characters_and_words_change_nothing(kind: str, size: int) -> None:
    ts.manual_seed(0)
    layer = CharFeatures(len(CHARS), embedding_dim=4, hidden_size=3, layer=kind)
    chars, lengths = pad_characters([_chars(["Paris", "is"]), _chars(["a", "city", "in"])])
    out = layer(chars, lengths).data  # (B, T, size)
    assert out.shape == (2, 3, size)
    # garbage ids at padded characters (inside a word's row and in padded words)
    noisy = chars.copy()
    pad = np.arange(chars.shape[2])[None, None, :] >= lengths[..., None]
    noisy[pad] = 5
    np.testing.assert_array_equal(layer(noisy, lengths).data, out)
    # a padded word gets exactly zero; more padding (words and characters) changes nothing
    assert np.all(out[0, 2] == 0)
    wider, wider_len = pad_characters([_chars(["Paris", "is"]), _chars(["a", "city", "in"])], length=5)
    wider = np.concatenate([wider, np.zeros((2, 5, 4), dtype=np.int64)], axis=2)
    np.testing.assert_allclose(layer(wider, wider_len).data[:, :3], out, rtol=1e-6, atol=1e-7)
    # each word alone gives what it gives inside the batch
    alone, alone_len = pad_characters([_chars(["city"])])
    np.testing.assert_allclose(layer(alone, alone_len).data[0, 0], out[1, 1], rtol=1e-6, atol=1e-7)


def test_unknown_capitalised_word_keeps_its_shape() -> None:
    words = Vocab.build([["the", "city"]], level="word")
    x, lens = pad_sequences([np.asarray(words.encode(["Zorblat", "zorblat", "Xu"]))])
    assert (x == words.unk_id).all()  # all three words are unknown
    chars, char_lens = pad_characters([_chars(["Zorblat", "zorblat", "Xu"])])
    batch = Batch(x=x, y=np.zeros_like(x), x_lengths=lens, y_lengths=lens, chars=chars,
                  char_lengths=char_lens)
    ts.manual_seed(0)
    plain = SequenceTagger(3, vocab_size=len(words), embedding_dim=4, hidden_size=3)
    with_chars = SequenceTagger(3, vocab_size=len(words), embedding_dim=4, hidden_size=3,
                                char_features=True, char_vocab_size=len(CHARS))
    e = plain.inputs(x.T, plain).data
    assert np.array_equal(e[0, 0], e[1, 0]) and np.array_equal(e[0, 0], e[2, 0])
    feats = with_chars.chars(chars.swapaxes(0, 1), char_lens.T).data  # (T, B, F)
    assert not np.allclose(feats[0, 0], feats[1, 0])  # capital or not
    assert not np.allclose(feats[0, 0], feats[2, 0])
    # the tagger reads it: its scores for the three unknown words differ
    scores = with_chars(batch).data[:, 0]
    assert not np.allclose(scores[0], scores[1])


def test_models_train_and_rebuild_with_char_features() -> None:
    rng = np.random.default_rng(0)
    texts = [["Paris", "is", "a", "city"], ["France"], ["a", "city", "in", "France"]]
    words = Vocab.build(texts, level="word")
    xs = [np.asarray(words.encode(t)) for t in texts]
    chars = [_chars(t) for t in texts]
    ys = [rng.integers(0, 2, size=len(t)) for t in texts]
    data = SequenceDataset(xs, ys, 2, y_is_sequence=True, chars=chars, shuffle=False)
    batch = next(iter(data))
    assert batch.chars is not None and batch.chars.shape == (2, 4, 6)
    np.testing.assert_array_equal(batch.char_lengths, [[5, 2, 1, 4], [6, 0, 0, 0]])
    assert batch.rows(slice(1, 2)).chars.shape == (1, 4, 6)
    for model in (SequenceTagger(2, vocab_size=len(words), embedding_dim=4, hidden_size=3, crf=True,
                                 char_features=True, char_vocab_size=len(CHARS), char_hidden_size=2),
                  SequenceTagger(2, vocab_size=len(words), embedding_dim=4, hidden_size=3,
                                 char_features=True, char_vocab_size=len(CHARS), char_layer="cnn"),
                  SequenceClassifier(2, vocab_size=len(words), embedding_dim=4, hidden_size=3,
                                     char_features=True, char_vocab_size=len(CHARS))):
        b = batch if model.kind == "tagger" else Batch(x=batch.x, y=np.array([0, 1]),
                                                       x_lengths=batch.x_lengths, chars=batch.chars,
                                                       char_lengths=batch.char_lengths)
        model.loss(b).loss.backward()
        assert np.abs(model.chars.embedding.weight.grad.data).sum() > 0
        again = type(model)(**model.config)
        again.load_state_dict(model.state_dict())
        np.testing.assert_array_equal(again(b).data, model(b).data)
        with pytest.raises(ValueError, match=r"chars \(B, T, C\) and char_lengths"):
            model(Batch(x=b.x, y=b.y, x_lengths=b.x_lengths))


def test_bad_inputs_are_named() -> None:
    layer = CharFeatures(len(CHARS))
    with pytest.raises(ValueError, match=r"chars \(2, 3, 4\), lengths \(3, 2\)"):
        layer(np.zeros((2, 3, 4), dtype=np.int64), np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"lengths must be in \[0, 4\]"):
        layer(np.zeros((1, 1, 4), dtype=np.int64), np.full((1, 1), 5))
    with pytest.raises(ValueError, match="example 0 has 2 steps but characters for 1 words"):
        SequenceDataset([np.array([1, 2])], [np.array([0, 0])], y_is_sequence=True,
                        chars=[[np.array([1])]])
    with pytest.raises(ValueError, match="needs char_vocab_size"):
        SequenceTagger(2, vocab_size=5, char_features=True)
    with pytest.raises(ValueError, match=r"layer must be one of \('cell', 'cnn'\), got 'conv'"):
        CharFeatures(5, layer="conv")


def test_config_shapes_are_predicted_with_char_features_and_crf() -> None:
    from tinyseq.model_shapes import config_mismatch, parameter_shapes

    model = SequenceTagger(3, vocab_size=10, embedding_dim=4, hidden_size=5, tag_names=["B-X", "I-X", "O"],
                           char_features=True, char_vocab_size=7, char_embedding_dim=3,
                           char_hidden_size=2, crf=True)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert parameter_shapes("tagger", model.config) == shapes
    assert "crf.transitions" in shapes and "chars.embedding.weight" in shapes
    problem = config_mismatch("tagger", {**model.config, "char_hidden_size": 9}, shapes)
    assert problem is not None and "char_hidden_size=9" in problem


CONLL = ("Maria B-PER\nSantos I-PER\nflew O\nto O\nLisbon B-LOC\n, O\nin O\n1990 B-DATE\n. O\n\n"
         "John B-PER\nmet O\nDr. B-PER\nKhan I-PER\nin O\nOslo B-LOC\n. O\n\n")


def test_cli_tagger_with_char_features_and_crf(tmp_path: Any, capsys: Any) -> None:
    from tinyseq.checkpoint import load_checkpoint
    from tinyseq.cli import main

    (tmp_path / "t.conll").write_text(CONLL * 4)
    out = tmp_path / "run"
    assert main(["train", "--task", "tag", "--train", str(tmp_path / "t.conll"), "--char-features",
                 "--crf", "--char-hidden-size", "6", "--hidden-size", "8", "--embedding-dim", "8",
                 "--max-steps", "3", "--out", str(out), "--no-progress"]) == 0
    ckpt = load_checkpoint(str(out / "last.npz"))
    assert "M" in ckpt.metadata["vocabs"]["chars"]["tokens"]  # the character vocabulary, case kept
    capsys.readouterr()
    # a raw sentence: punctuation split off, abbreviations and numbers kept
    assert main(["predict", "--checkpoint", str(out / "last.npz"), "--input",
                 "Zorblat met Dr. Quux in Paris, in 1917."]) == 0
    shown = capsys.readouterr().out.split()
    assert [w.rsplit("/", 1)[0] for w in shown] == ["Zorblat", "met", "Dr.", "Quux", "in", "Paris",
                                                   ",", "in", "1917", "."]
    tags = [w.rsplit("/", 1)[1] for w in shown]
    assert all(t in ("B-PER", "I-PER", "B-LOC", "B-DATE", "O") for t in tags)
    assert main(["evaluate", "--checkpoint", str(out / "last.npz"), "--data",
                 str(tmp_path / "t.conll")]) == 0
    assert main(["train", "--task", "lm", "--crf", "--no-progress"]) == 1


def test_cli_classifier_with_char_features_and_resume(tmp_path: Any, capsys: Any) -> None:
    from tinyseq.cli import main

    rows = ["Paris is lovely\tgood", "a dull grey town\tbad", "Lovely Lisbon\tgood", "dull\tbad"] * 4
    (tmp_path / "t.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    flags = ["--task", "classify", "--train", str(tmp_path / "t.tsv"), "--level", "word",
             "--char-features", "--hidden-size", "8", "--embedding-dim", "8", "--no-progress"]
    assert main(["train", *flags, "--max-steps", "2", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out / "last.npz"), "--max-steps", "4", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out / "last.npz"), "--input", "Zorblat is lovely"]) == 0
    label = capsys.readouterr().out.split("\t")[0]
    assert label in ("good", "bad")
    # character features read words: the default character level is refused by name
    assert main(["train", *[f for f in flags if f not in ("--level", "word")], "--out",
                 str(tmp_path / "other")]) == 1
    assert "--char-features" in capsys.readouterr().err


def test_fingerprint_sees_the_characters() -> None:
    x, y = [np.array([1, 1])], [np.array([0, 0])]

    def fp(words: list[str]) -> str:
        return SequenceDataset(x, y, y_is_sequence=True, chars=[_chars(words)]).fingerprint()

    assert fp(["ab", "c"]) == fp(["ab", "c"])
    assert fp(["ab", "c"]) != fp(["a", "bc"])
    assert SequenceDataset(x, y, y_is_sequence=True).fingerprint() != fp(["ab", "c"])
