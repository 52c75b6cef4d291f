"""Pretrained word vectors: GloVe and word2vec text files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend
from tinyseq.nn import load_word_vectors

GLOVE = "the 0.1 0.2 0.3\ncat 1 2 3\nDog 4 5 6\nsat -1.5 0 2e-1\n"


@pytest.fixture
def glove(tmp_path: Path) -> Path:
    path = tmp_path / "vectors.txt"
    path.write_text(GLOVE, encoding="utf-8")
    return path


def test_glove_with_word_list(glove: Path) -> None:
    vecs = load_word_vectors(glove, ["<pad>", "cat", "the", "zebra", "sat"])
    assert vecs.vectors.shape == (5, 3) and vecs.vectors.dtype == np.float32 and vecs.dim == 3
    assert vecs.found == 3 and vecs.missing == ["<pad>", "zebra"]
    np.testing.assert_allclose(vecs.vectors[1], [1, 2, 3])
    np.testing.assert_allclose(vecs.vectors[2], [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(vecs.vectors[4], [-1.5, 0, 0.2], rtol=1e-6)
    assert vecs.words[3] == "zebra"


def test_unknown_rows_random_is_seeded_and_scaled(glove: Path) -> None:
    vocab = ["cat"] + [f"w{i}" for i in range(300)]
    a = load_word_vectors(glove, vocab, seed=1).vectors
    b = load_word_vectors(glove, vocab, seed=1).vectors
    c = load_word_vectors(glove, vocab, seed=2).vectors
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[1:], c[1:])
    # default scale: the standard deviation of the vectors found ([1, 2, 3] here)
    assert abs(a[1:].std() - np.std([1.0, 2.0, 3.0])) < 0.05
    assert abs(load_word_vectors(glove, vocab, std=0.01).vectors[1:].std() - 0.01) < 0.001
    zeros = load_word_vectors(glove, vocab, unknown="zeros").vectors
    assert not np.any(zeros[1:]) and np.all(zeros[0] == [1, 2, 3])
    with pytest.raises(ValueError, match="unknown must be 'random' or 'zeros', got 'mean'"):
        load_word_vectors(glove, vocab, unknown="mean")


def test_word2vec_header_and_dict_vocab(tmp_path: Path) -> None:
    path = tmp_path / "w2v.txt"
    path.write_text("4 3\n" + GLOVE, encoding="utf-8")
    vecs = load_word_vectors(path, {"sat": 0, "cat": 2}, unknown="zeros", dtype=np.float64)
    assert vecs.vectors.shape == (3, 3) and vecs.vectors.dtype == np.float64
    np.testing.assert_array_equal(vecs.vectors[0], [-1.5, 0, 0.2])
    np.testing.assert_array_equal(vecs.vectors[2], [1, 2, 3])
    assert vecs.found == 2 and not np.any(vecs.vectors[1])
    path.write_text("5 3\n" + GLOVE, encoding="utf-8")
    with pytest.raises(ValueError, match="header declares 5 vectors, but the file has 4"):
        load_word_vectors(path, ["cat"])


def test_whole_file_lowercase_limit_and_gzip(glove: Path, tmp_path: Path) -> None:
    every = load_word_vectors(glove)
    assert every.words == ["the", "cat", "Dog", "sat"] and every.found == 4
    assert load_word_vectors(glove, ["dog"]).found == 0
    lower = load_word_vectors(glove, ["dog"], lowercase=True)
    np.testing.assert_array_equal(lower.vectors[0], [4, 5, 6])
    assert load_word_vectors(glove, ["cat", "sat"], limit=2).missing == ["sat"]
    gz = tmp_path / "vectors.txt.gz"
    gz.write_bytes(gzip.compress(GLOVE.encode()))
    np.testing.assert_array_equal(load_word_vectors(gz, ["cat"]).vectors, [[1, 2, 3]])


def test_malformed_lines_name_file_line_and_expectation(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("the 0.1 0.2 0.3\ncat 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt, line 2: expected 4 fields \(word \+ 3 numbers\), got 3"):
        load_word_vectors(path, ["the"])
    path.write_text("the 0.1 0.2 0.3\ncat 1 x 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.txt, line 2: expected 3 numbers after the word 'cat', got 'x'"):
        load_word_vectors(path, ["cat"])
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="no vectors found"):
        load_word_vectors(path, ["cat"])
    path.write_bytes(b"2 3\n\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not a utf-8 text file.*binary word2vec"):
        load_word_vectors(path, ["cat"])


def test_embedding_from_loaded_vectors(glove: Path) -> None:
    vecs = load_word_vectors(glove, ["<pad>", "cat", "sat"], unknown="zeros")
    emb = ts.nn.Embedding.from_pretrained(vecs.vectors, padding_idx=0, device="testcpu")
    out = emb(ts.tensor(np.array([1, 2, 0]), device="testcpu"))
    np.testing.assert_allclose(backend.to_numpy(out.data), vecs.vectors[[1, 2, 0]])
    assert not emb.weight.requires_grad
