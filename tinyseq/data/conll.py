"""CoNLL-style tagging files: one ``token ... tag`` per line, blank line between sentences."""

from __future__ import annotations

import os

from .errors import DataFormatError
from .text import read_lines

__all__ = ["read_conll", "validate_bio"]


def read_conll(
    path: str | os.PathLike[str], token_column: int = 0, tag_column: int = -1
) -> list[tuple[list[str], list[str]]]:
    """Sentences as (tokens, tags); columns are whitespace-separated.

    ``-DOCSTART-`` lines are skipped. A line with a single column raises
    :class:`DataFormatError` naming the file and line.
    """
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for n, line in read_lines(path, skip_blank=False):
        cols = line.split()
        if not cols:
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if cols[0] == "-DOCSTART-":
            continue
        if len(cols) < 2:
            raise DataFormatError(
                path, n,
                f"expected at least 2 whitespace-separated columns (token ... tag), got "
                f"{len(cols)}: {line.strip()!r}",
            )
        try:
            tokens.append(cols[token_column])
            tags.append(cols[tag_column])
        except IndexError:
            raise DataFormatError(
                path, n,
                f"expected a token in column {token_column} and a tag in column "
                f"{tag_column}, the line has {len(cols)} columns",
            ) from None
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise DataFormatError(path, None, "expected at least one sentence (token tag lines), found none")
    return sentences


def validate_bio(tags: list[str], path: str = "<tags>", line: int | None = None) -> None:
    """Check every tag is ``O``, ``B-TYPE`` or ``I-TYPE`` (raises DataFormatError)."""
    for tag in tags:
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            raise DataFormatError(path, line, f"expected a BIO tag (O, B-TYPE, I-TYPE), got {tag!r}")
