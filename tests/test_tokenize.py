"""The prose word tokenizer: punctuation split off, abbreviations, numbers and years kept."""

from __future__ import annotations

import pytest

from tinyseq.data import word_tokenize


@pytest.mark.parametrize("text, tokens", [
    ("In 1917, Einstein applied", ["In", "1917", ",", "Einstein", "applied"]),
    ("He settled in the U.S., becoming", ["He", "settled", "in", "the", "U.S.", ",", "becoming"]),
    ("President Franklin D. Roosevelt", ["President", "Franklin", "D.", "Roosevelt"]),
    ("Dr. Haddad and Mr. Brown of Acme Inc. met", ["Dr.", "Haddad", "and", "Mr.", "Brown", "of",
                                                   "Acme", "Inc.", "met"]),
    ("e.g. this, i.e. that", ["e.g.", "this", ",", "i.e.", "that"]),
    ("It cost $3.5 million, about 12% more.", ["It", "cost", "$", "3.5", "million", ",", "about",
                                              "12", "%", "more", "."]),
    ("1,000 people; 12,500.75 euros", ["1,000", "people", ";", "12,500.75", "euros"]),
    ("1,2,3", ["1", ",", "2", ",", "3"]),
    ("at 9:30 in the 1990s, the 21st", ["at", "9:30", "in", "the", "1990s", ",", "the", "21st"]),
    ('"extremely powerful bombs of a new type" and', ['"', "extremely", "powerful", "bombs", "of",
                                                      "a", "new", "type", '"', "and"]),
    ("the Russell-Einstein Manifesto, large-scale", ["the", "Russell-Einstein", "Manifesto", ",",
                                                     "large-scale"]),
    ("Einstein's letter; don't (wait)...", ["Einstein", "'s", "letter", ";", "don't", "(", "wait",
                                            ")", "..."]),
    ("until his death in 1955.", ["until", "his", "death", "in", "1955", "."]),
    ("no. 5 is not No. 5", ["no", ".", "5", "is", "not", "No.", "5"]),
])
def test_word_tokenize(text: str, tokens: list[str]) -> None:
    assert word_tokenize(text) == tokens


def test_tokens_cover_the_text() -> None:
    text = 'On the eve of World War II, he endorsed a letter to President Franklin D. Roosevelt.'
    assert "".join(word_tokenize(text)) == text.replace(" ", "")
