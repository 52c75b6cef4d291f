"""Tab-separated files: ``text<TAB>label`` (classification), ``source<TAB>target`` (pairs)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .errors import DataFormatError
from .text import read_lines

__all__ = ["read_tsv"]


def read_tsv(
    path: str | os.PathLike[str], fields: Sequence[str] = ("text", "label")
) -> list[tuple[str, ...]]:
    """Rows of exactly ``len(fields)`` non-empty tab-separated fields; blank lines skipped.

    A row with another number of fields, or an empty field, raises
    :class:`DataFormatError` naming the file, line and the expected layout.
    """
    layout = "<TAB>".join(fields)
    rows = []
    for n, line in read_lines(path):
        parts = line.split("\t")
        if len(parts) != len(fields):
            raise DataFormatError(
                path, n,
                f"expected {len(fields)} tab-separated fields ({layout}), got {len(parts)}: "
                f"{_clip(line)!r}",
            )
        for name, value in zip(fields, parts):
            if not value.strip():
                raise DataFormatError(path, n, f"expected a non-empty {name} field ({layout})")
        rows.append(tuple(p.strip() for p in parts))
    if not rows:
        raise DataFormatError(path, None, f"expected at least one row ({layout}), the file is empty")
    return rows


def _clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[:n] + "..."
