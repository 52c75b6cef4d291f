"""Plain text files: read (with line-numbered decoding errors) and turn into id streams."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from .errors import DataFormatError
from .vocab import Vocab

__all__ = ["read_text", "read_lines", "encode_stream", "split_text"]


def read_text(path: str | os.PathLike[str]) -> str:
    """The whole file as UTF-8 text; a decoding error names the line."""
    raw = _read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataFormatError(
            path, line, f"expected UTF-8 text, found byte 0x{raw[err.start]:02x}"
        ) from None


def read_lines(path: str | os.PathLike[str], skip_blank: bool = True) -> list[tuple[int, str]]:
    """(line number, text) for each line (without its newline); blank lines skipped."""
    out = []
    for n, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if skip_blank and not line.strip():
            continue
        out.append((n, line))
    return out


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"data file not found: {os.fspath(path)}") from None
    except IsADirectoryError:
        raise DataFormatError(path, None, "expected a data file, got a directory") from None
    except OSError as err:
        raise DataFormatError(path, None, f"cannot be read: {err.strerror}") from None


def encode_stream(text: str, vocab: Vocab) -> npt.NDArray[np.int64]:
    """The text as one int64 id array (T,), tokenized at the vocabulary's level."""
    return np.asarray(vocab.encode_text(text), dtype=np.int64)


def split_text(text: str, valid_fraction: float) -> tuple[str, str]:
    """(train, valid): the last ``valid_fraction`` of the text is held out, cut at a line."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    cut = int(len(text) * (1.0 - valid_fraction))
    nl = text.find("\n", cut)
    if nl != -1 and nl < len(text) - 1:
        cut = nl + 1
    return text[:cut], text[cut:]
