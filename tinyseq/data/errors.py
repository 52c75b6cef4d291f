"""The error raised for malformed data files: names the file, the line and what was expected."""

from __future__ import annotations

import os

__all__ = ["DataFormatError"]


class DataFormatError(ValueError):
    """A data file that does not match its format.

    ``str(err)`` reads ``"<file>, line <n>: <what was expected and what was found>"``.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.detail = message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
