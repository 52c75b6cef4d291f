"""A word tokenizer for English prose: punctuation split off, abbreviations and numbers kept.

    word_tokenize('He settled in the U.S., becoming a citizen in 1940.')
    # ['He', 'settled', 'in', 'the', 'U.S.', ',', 'becoming', 'a', 'citizen', 'in', '1940', '.']

Kept whole: dotted abbreviations ("U.S.", "e.g."), initials ("D."), common titles and
short forms ("Dr.", "Mr.", "Inc.", "Jan."), numbers with thousands separators or a
decimal point or a colon ("1,000", "3.5", "9:30"), years and decades ("1917", "1990s"),
and words with inner hyphens or apostrophes ("large-scale", "don't"). Split off: every
other punctuation mark, "%" and currency signs, and a possessive "'s". An abbreviation
that ends a sentence keeps its dot (the Penn Treebank does the same).
"""

from __future__ import annotations

import re

__all__ = ["word_tokenize", "ABBREVIATIONS"]

# short forms written with a dot, kept as one token (case matters: "No." but not "no.")
ABBREVIATIONS = (
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "Ft", "Gen", "Gov", "Sen", "Rep",
    "Rev", "Capt", "Col", "Lt", "Sgt", "Inc", "Corp", "Ltd", "Co", "Bros", "vs", "etc", "No",
    "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
)

_ABBREVIATIONS = "|".join(sorted(ABBREVIATIONS, key=len, reverse=True))
_TOKEN = re.compile(
    r"""
    (?:[A-Za-z]\.){2,}                        # U.S., e.g., i.e., U.S.A.
  | (?:ABBREVIATIONS)\.(?![A-Za-z])           # Dr., Inc., Jan.
  | [A-Z]\.(?![A-Za-z])                       # an initial: Franklin D. Roosevelt
  | \d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]*\d)  # 1,000 and 12,500.75
  | \d+(?:[.:]\d+)+                           # 3.5, 9:30
  | \d+(?:st|nd|rd|th|s)?(?!\w)               # 1917, 1990s, 21st
  | \w+(?:[-'’]\w+)*?(?=['’][sS](?!\w))       # the word before a possessive 's
  | ['’][sS](?!\w)                            # the possessive itself
  | \w+(?:[-'’]\w+)*                          # words, with inner hyphens and apostrophes
  | \.\.\.|--                                 # an ellipsis, a dash
  | \S                                        # any other mark on its own
    """.replace("ABBREVIATIONS", _ABBREVIATIONS),
    re.VERBOSE,
)


def word_tokenize(text: str) -> list[str]:
    """The words and punctuation marks of ``text``, in order (see the module docstring)."""
    return _TOKEN.findall(text)
