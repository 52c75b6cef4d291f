"""Vocabulary: tokens <-> integer ids, with reserved pad/unknown/begin/end tokens."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Vocab", "tokenize", "PAD", "UNK", "BOS", "EOS", "SPECIALS"]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
LEVELS = ("char", "word")

# words and single punctuation marks; whitespace separates and is dropped
_WORD_RE = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, level: str = "char") -> list[str]:
    """Split text into characters (``level="char"``) or words and punctuation ("word")."""
    if level == "char":
        return list(text)
    if level == "word":
        return _WORD_RE.findall(text)
    raise ValueError(f"tokenize: level must be one of {LEVELS}, got {level!r}")


class Vocab:
    """An ordered token table. Specials come first: ``<pad>`` = 0, ``<unk>`` = 1, ...

    ``Vocab(tokens, specials=())`` makes a label table with no reserved entries (then
    an unknown token is an error instead of mapping to ``<unk>``).
    """

    def __init__(
        self,
        tokens: Iterable[str] = (),
        specials: Sequence[str] = SPECIALS,
        level: str = "char",
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"Vocab: level must be one of {LEVELS}, got {level!r}")
        self.level = level
        self.specials = tuple(specials)
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        for tok in (*self.specials, *tokens):
            if tok not in self.stoi:
                self.stoi[tok] = len(self.itos)
                self.itos.append(tok)

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = SPECIALS,
        level: str = "char",
    ) -> Vocab:
        """A vocabulary of the tokens in ``sequences``: most frequent first, ties by name."""
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        items = sorted(
            ((t, c) for t, c in counts.items() if c >= min_freq and t not in specials),
            key=lambda tc: (-tc[1], tc[0]),
        )
        if max_size is not None:
            items = items[: max(0, max_size - len(specials))]
        return cls((t for t, _ in items), specials=specials, level=level)

    # ---- lookups ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, level={self.level!r}, specials={list(self.specials)})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocab)
            and self.itos == other.itos
            and self.specials == other.specials
            and self.level == other.level
        )

    def _special_id(self, token: str) -> int | None:
        return self.stoi[token] if token in self.specials else None

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>`` (0 when the vocabulary has specials)."""
        i = self._special_id(PAD)
        if i is None:
            raise ValueError(f"{self!r} has no {PAD} token")
        return i

    @property
    def unk_id(self) -> int | None:
        return self._special_id(UNK)

    @property
    def bos_id(self) -> int:
        i = self._special_id(BOS)
        if i is None:
            raise ValueError(f"{self!r} has no {BOS} token")
        return i

    @property
    def eos_id(self) -> int:
        i = self._special_id(EOS)
        if i is None:
            raise ValueError(f"{self!r} has no {EOS} token")
        return i

    def index(self, token: str) -> int:
        """The id of one token (``<unk>``'s id for unknown tokens, if there is one)."""
        i = self.stoi.get(token)
        if i is not None:
            return i
        unk = self.unk_id
        if unk is None:
            known = self.itos if len(self.itos) <= 20 else self.itos[:20] + ["..."]
            raise KeyError(f"unknown token {token!r}; expected one of {known}")
        return unk

    def encode(self, tokens: Iterable[str], bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``tokens``, optionally wrapped in ``<bos>`` ... ``<eos>``."""
        ids = [self.index(t) for t in tokens]
        if bos:
            ids.insert(0, self.bos_id)
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int], skip_specials: bool = True) -> list[str]:
        """Tokens of ``ids``; stops at ``<eos>`` and drops specials when ``skip_specials``."""
        out = []
        special_ids = {self.stoi[s] for s in self.specials}
        eos = self._special_id(EOS)
        for i in ids:
            i = int(i)
            if skip_specials and i == eos:
                break
            if skip_specials and i in special_ids:
                continue
            if not 0 <= i < len(self.itos):
                raise IndexError(f"id {i} out of range for a vocabulary of {len(self)} tokens")
            out.append(self.itos[i])
        return out

    def tokenize(self, text: str) -> list[str]:
        """Split text at this vocabulary's level."""
        return tokenize(text, self.level)

    def encode_text(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        return self.encode(self.tokenize(text), bos=bos, eos=eos)

    def decode_text(self, ids: Iterable[int], skip_specials: bool = True) -> str:
        """Text of ``ids``: characters joined, or words joined by spaces."""
        sep = "" if self.level == "char" else " "
        return sep.join(self.decode(ids, skip_specials=skip_specials))

    # ---- storage (JSON, kept inside checkpoints) ---------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"tokens": list(self.itos), "specials": list(self.specials), "level": self.level}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        for key in ("tokens", "specials", "level"):
            if key not in d:
                raise ValueError(f"vocabulary record lacks {key!r}; found keys {sorted(d)}")
        specials = list(d["specials"])
        tokens = list(d["tokens"])
        if tokens[: len(specials)] != specials:
            raise ValueError("vocabulary record: the tokens must start with the specials")
        return cls(tokens[len(specials):], specials=specials, level=d["level"])
