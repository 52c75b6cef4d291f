"""Data formats, vocabularies, batching and the default corpus."""

from __future__ import annotations

import numpy as np
import pytest

from tinyseq.data import (
    DataFormatError,
    SequenceDataset,
    StreamDataset,
    Vocab,
    default_corpus,
    lengths_to_mask,
    pad_sequences,
    read_conll,
    read_numeric,
    read_text,
    read_tsv,
    split_text,
    tokenize,
)


def test_vocab_specials_and_roundtrip() -> None:
    v = Vocab.build([tokenize("hello world", "char")])
    assert v.pad_id == 0 and v.unk_id == 1 and v.bos_id == 2 and v.eos_id == 3
    assert v.itos[4] == "l"  # most frequent first
    ids = v.encode_text("hold", bos=True, eos=True)
    assert ids[0] == v.bos_id and ids[-1] == v.eos_id
    assert v.decode_text(ids) == "hold"
    assert v.encode_text("z") == [v.unk_id]
    assert Vocab.from_dict(v.to_dict()) == v


def test_word_vocab_and_label_vocab() -> None:
    v = Vocab.build([tokenize("the cat, the dog.", "word")], level="word", min_freq=2)
    assert "the" in v and "cat" not in v
    assert v.decode_text(v.encode_text("the the")) == "the the"
    labels = Vocab(["neg", "pos"], specials=())
    assert labels.index("pos") == 1
    with pytest.raises(KeyError, match="unknown token 'meh'; expected one of"):
        labels.index("meh")
    with pytest.raises(ValueError, match="level must be one of"):
        tokenize("x", "byte")


def test_read_tsv_and_errors(tmp_path) -> None:
    p = tmp_path / "d.tsv"
    p.write_text("good movie\tpos\n\nbad one\tneg\n")
    assert read_tsv(p) == [("good movie", "pos"), ("bad one", "neg")]
    p.write_text("good movie\tpos\nno label here\n")
    with pytest.raises(DataFormatError) as e:
        read_tsv(p)
    assert str(e.value) == (
        f"{p}, line 2: expected 2 tab-separated fields (text<TAB>label), got 1: 'no label here'"
    )
    p.write_text("a\t \n")
    with pytest.raises(DataFormatError, match=r"line 1: expected a non-empty target field"):
        read_tsv(p, fields=("source", "target"))


def test_read_conll_and_errors(tmp_path) -> None:
    p = tmp_path / "d.conll"
    p.write_text("-DOCSTART- O\n\nJohn NNP B-PER\nlives VBZ O\n\nParis NNP B-LOC\n")
    assert read_conll(p) == [(["John", "lives"], ["B-PER", "O"]), (["Paris"], ["B-LOC"])]
    p.write_text("John B-PER\nlives\n")
    with pytest.raises(DataFormatError, match=r"d.conll, line 2: expected at least 2 whitespace-separated columns"):
        read_conll(p)


def test_read_text_reports_bad_utf8_line(tmp_path) -> None:
    p = tmp_path / "t.txt"
    p.write_bytes(b"ok\nfine\nbad \xff here\n")
    with pytest.raises(DataFormatError, match=r"t.txt, line 3: expected UTF-8 text, found byte 0xff"):
        read_text(p)
    with pytest.raises(FileNotFoundError, match="data file not found"):
        read_text(tmp_path / "missing.txt")


def test_read_numeric(tmp_path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((4, 5, 2)), y=np.array([0, 1, 0, 1]), x_lengths=np.array([5, 3, 2, 1]))
    d = read_numeric(p)
    assert d.x.dtype == np.float32 and d.x_lengths is not None and len(d) == 4
    np.savez(p, a=np.zeros(3))
    with pytest.raises(DataFormatError, match=r"expected arrays 'x' and 'y'.*found \['a'\]"):
        read_numeric(p)
    np.savez(p, x=np.zeros((4, 5, 2)), y=np.zeros(4), x_lengths=np.array([9, 1, 1, 1]))
    with pytest.raises(DataFormatError, match=r"expected 'x_lengths' in \[1, 5\]"):
        read_numeric(p)
    q = tmp_path / "s.npy"
    np.save(q, np.arange(12.0).reshape(2, 6))
    d = read_numeric(q)
    assert d.x.shape == (2, 5, 1) and d.y[0, 0, 0] == 1.0
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="bad.npz: expected a NumPy"):
        read_numeric(bad)


def test_read_numeric_refuses_what_would_fail_later(tmp_path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.array([[1.0], [1.0, 2.0]], dtype=object), y=np.zeros(2))
    with pytest.raises(DataFormatError, match=r"d.npz: expected numeric arrays, but 'x' holds Python objects"):
        read_numeric(p)
    np.savez(p, x=np.zeros((2, 3)), y=np.array([[1], [2]], dtype=object))
    with pytest.raises(DataFormatError, match=r"d.npz: expected numeric arrays, but 'y' holds Python objects"):
        read_numeric(p)
    for x, shape in ((np.zeros(10), r"\(10,\)"), (np.zeros((3, 0)), r"\(3, 0\)"),
                     (np.zeros((2, 3, 4, 5)), r"\(2, 3, 4, 5\)")):
        np.savez(p, x=x, y=np.zeros(len(x)))
        with pytest.raises(DataFormatError, match=rf"d.npz: expected 'x' as \(N, T\) ids.*got shape {shape}"):
            read_numeric(p)
    y = np.zeros((3, 4), dtype=np.float32)
    y[1, 2] = np.inf
    np.savez(p, x=np.zeros((3, 4, 1)), y=y)
    with pytest.raises(DataFormatError, match=r"expected finite numbers in 'y', found inf at index \(1, 2\)"):
        read_numeric(p)
    q = tmp_path / "s.npy"
    np.save(q, np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(DataFormatError, match=r"s.npy: expected finite numbers in 'x', found nan"):
        read_numeric(q)
    with pytest.raises(DataFormatError, match=r"expected a .npz or .npy file, got a directory"):
        read_numeric(tmp_path)
    with pytest.raises(DataFormatError, match=r"expected a data file, got a directory"):
        read_text(tmp_path)


def test_pad_and_mask() -> None:
    x, lens = pad_sequences([[1, 2, 3], [4]], pad_value=0)
    assert x.tolist() == [[1, 2, 3], [4, 0, 0]] and lens.tolist() == [3, 1]
    assert lengths_to_mask(lens).tolist() == [[True, True, True], [True, False, False]]


def test_sequence_dataset_bucketing_and_seeded_shuffle() -> None:
    rng = np.random.default_rng(0)
    xs = [np.arange(1, rng.integers(1, 40) + 1) for _ in range(200)]
    ys = list(range(200))
    plain = SequenceDataset(xs, ys, batch_size=16, seed=1)
    bucketed = SequenceDataset(xs, ys, batch_size=16, seed=1, bucket=8)
    pad_plain = sum(b.x.size - b.x_lengths.sum() for b in plain.batches(0))
    pad_bucket = sum(b.x.size - b.x_lengths.sum() for b in bucketed.batches(0))
    assert pad_bucket < pad_plain / 3
    e0 = [b.y.tolist() for b in bucketed.batches(0)]
    assert e0 == [b.y.tolist() for b in bucketed.batches(0)]  # same seed and epoch
    assert e0 != [b.y.tolist() for b in bucketed.batches(1)]  # another epoch
    assert sorted(sum(e0, [])) == ys  # every example once
    assert [b.y.tolist() for b in bucketed.batches(0, start=3)] == e0[3:]
    b = next(iter(bucketed))
    assert b.x_mask is not None and b.x_mask.sum() == b.x_lengths.sum()


def test_stream_dataset_windows_are_consecutive() -> None:
    ids = np.arange(1001)
    ds = StreamDataset(ids, batch_size=4, seq_len=30)
    batches = list(ds)
    assert len(batches) == len(ds) == 9  # 250 steps per row
    row0 = np.concatenate([b.x[0] for b in batches])
    assert row0.tolist() == list(range(250))
    assert (batches[0].y == batches[0].x + 1).all()
    with pytest.raises(ValueError, match="too short"):
        StreamDataset(np.arange(3), batch_size=4)


def test_default_corpus_and_split() -> None:
    text = default_corpus()
    assert len(text) > 200_000 and "def" in text
    train, valid = split_text(text, 0.05)
    assert train + valid == text and 0.04 < len(valid) / len(text) < 0.06
