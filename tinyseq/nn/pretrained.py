"""Pretrained word vectors from GloVe or word2vec text files.

    vecs = ts.nn.load_word_vectors("glove.6B.50d.txt", vocab)   # vocab: list or dict
    emb = ts.nn.Embedding.from_pretrained(vecs.vectors, freeze=False)
    print(f"{vecs.found} of {len(vecs.words)} words found; missing: {vecs.missing[:10]}")

Both text formats are one word per line followed by its numbers, separated by
spaces; word2vec's starts with a header line "count dim", GloVe's has none. Files
ending in ``.gz`` are read compressed. (word2vec's binary format is not supported.)
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["WordVectors", "load_word_vectors"]


@dataclass
class WordVectors:
    """Vectors for a vocabulary, row i for ``words[i]``.

    vectors: (V, D) NumPy array. found: how many vocabulary rows came from the file.
    missing: vocabulary words not in the file (their rows were filled by ``unknown``).
    """

    vectors: np.ndarray
    words: list[str]
    found: int
    missing: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def _open(path: str | os.PathLike[str], encoding: str) -> io.TextIOBase:
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding)
    return open(path, encoding=encoding)  # noqa: SIM115 (closed by the caller's with)


def _rows(vocab: Sequence[str] | Mapping[str, int] | None) -> tuple[list[str], dict[str, list[int]]]:
    """(word of each row, rows of each word) for a list or word -> id vocabulary."""
    if vocab is None:
        return [], {}
    if isinstance(vocab, Mapping):
        if not vocab:
            return [], {}
        ids = list(vocab.values())
        if min(ids) < 0:
            raise ValueError(f"vocabulary ids must be >= 0, got {min(ids)}")
        words = [""] * (max(ids) + 1)
        for w, i in vocab.items():
            words[i] = w
    else:
        words = list(vocab)
    where: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        if w:
            where.setdefault(w, []).append(i)
    return words, where


def load_word_vectors(
    path: str | os.PathLike[str],
    vocab: Sequence[str] | Mapping[str, int] | None = None,
    unknown: str = "random",
    *,
    dtype: Any = np.float32,
    seed: int = 0,
    std: float | None = None,
    lowercase: bool = False,
    limit: int | None = None,
    encoding: str = "utf-8",
) -> WordVectors:
    """Read a GloVe or word2vec text file into a (V, D) array for ``vocab``.

    path: text file (``.gz`` allowed). vocab: a list of words (row i is word i) or a
    dict word -> id (row = id; ids missing from the dict count as unknown); None keeps
    every word of the file, in file order. unknown: how rows of words not in the file
    are filled, ``"random"`` (N(0, std²) from ``seed``, std defaulting to that of the
    vectors found, so they are on the same scale) or ``"zeros"``. lowercase: match a
    vocabulary word by its lowercase form when the exact form is absent. limit: read
    only the first ``limit`` vectors (files are usually sorted by frequency). The
    first vector of a word wins if the file repeats it.

    Returns :class:`WordVectors` (``vectors``, ``words``, ``found``, ``missing``).
    A malformed line raises
    ValueError naming the file, the line number and what was expected.
    """
    if unknown not in ("random", "zeros"):
        raise ValueError(f"unknown must be 'random' or 'zeros', got {unknown!r}")
    words, where = _rows(vocab)
    keep_all = vocab is None
    fallback: dict[str, list[int]] = {}
    if lowercase:
        for w, word_rows in where.items():
            fallback.setdefault(w.lower(), []).extend(word_rows)
    name = os.fspath(path)
    found_rows: dict[int, np.ndarray] = {}
    file_words: list[str] = []
    file_vecs: list[np.ndarray] = []
    exact: set[int] = set()
    dim: int | None = None
    declared: int | None = None
    count = 0
    try:
        with _open(path, encoding) as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.rstrip("\r\n").rstrip(" ").split(" ")
                if lineno == 1 and len(fields) == 2 and all(x.isdigit() for x in fields):
                    declared, dim = int(fields[0]), int(fields[1])  # word2vec header
                    continue
                if fields == [""]:
                    continue  # blank line (e.g. at the end)
                if dim is None:
                    dim = len(fields) - 1
                    if dim < 1:
                        raise ValueError(
                            f"{name}, line {lineno}: expected a word followed by numbers, "
                            f"got {line.strip()[:40]!r}"
                        )
                if len(fields) != dim + 1:
                    raise ValueError(
                        f"{name}, line {lineno}: expected {dim + 1} fields (word + {dim} "
                        f"numbers), got {len(fields)}"
                    )
                if limit is not None and count >= limit:
                    break
                count += 1
                word = fields[0]
                rows: list[int] | None = where.get(word)
                is_exact = rows is not None
                if rows is None and lowercase:
                    rows = fallback.get(word.lower())
                if rows is None and not keep_all:
                    continue
                try:
                    vec = np.array(fields[1:], dtype=np.float64)
                except ValueError:
                    bad = next(x for x in fields[1:] if not _is_number(x))
                    raise ValueError(
                        f"{name}, line {lineno}: expected {dim} numbers after the word "
                        f"{word!r}, got {bad[:20]!r}"
                    ) from None
                if keep_all:
                    if word not in where:
                        where[word] = [len(file_words)]
                        file_words.append(word)
                        file_vecs.append(vec)
                    continue
                for r in rows or ():
                    # an exact match beats a lowercase one; otherwise the first one wins
                    if r not in found_rows or (is_exact and r not in exact):
                        found_rows[r] = vec
                        if is_exact:
                            exact.add(r)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{name}: not a {encoding} text file ({err}); binary word2vec files are not "
            "supported, convert them to the text format"
        ) from None
    if dim is None:
        raise ValueError(f"{name}: no vectors found (the file is empty)")
    if declared is not None and limit is None and count != declared:
        raise ValueError(
            f"{name}: the header declares {declared} vectors, but the file has {count}"
        )
    if keep_all:
        table = np.array(file_vecs, dtype=np.float64).reshape(len(file_vecs), dim)
        return WordVectors(table.astype(dtype), file_words, len(file_words), [])
    table = np.zeros((len(words), dim), dtype=np.float64)
    for r, vec in found_rows.items():
        table[r] = vec
    missing_rows = [r for r in range(len(words)) if r not in found_rows]
    if unknown == "random" and missing_rows:
        if std is None:
            std = float(np.stack(list(found_rows.values())).std()) if found_rows else 1.0
        rng = np.random.default_rng(seed)
        table[missing_rows] = rng.normal(0.0, std, size=(len(missing_rows), dim))
    missing = [words[r] for r in missing_rows]
    return WordVectors(table.astype(dtype), words, len(found_rows), missing)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
