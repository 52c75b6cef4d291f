"""Data for sequence models: vocabularies, file formats, batching, the default corpus.

Formats: plain text (character or word tokens), TSV (``text<TAB>label``,
``source<TAB>target``), CoNLL-style tagging (``token tag`` lines), NumPy ``.npz``/``.npy``.
Malformed input raises :class:`DataFormatError` naming the file, line and expectation.
"""

from .batching import (
    Batch,
    SequenceDataset,
    StreamDataset,
    lengths_to_mask,
    pad_characters,
    pad_sequences,
)
from .conll import read_conll, validate_bio
from .corpus import default_corpus
from .errors import DataFormatError
from .numeric import NumericData, read_numeric
from .pianoroll import (
    PianoRolls,
    next_step_examples,
    read_pianorolls,
    split_pieces,
    write_pianorolls,
)
from .scenes import Scene, SceneObject, captions, make_scenes, render_scenes
from .text import encode_stream, read_lines, read_text, split_text
from .tokenize import word_tokenize
from .tsv import read_tsv
from .vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab, tokenize

__all__ = [
    "Batch",
    "SequenceDataset",
    "StreamDataset",
    "lengths_to_mask",
    "pad_sequences",
    "pad_characters",
    "read_conll",
    "validate_bio",
    "default_corpus",
    "DataFormatError",
    "NumericData",
    "read_numeric",
    "PianoRolls",
    "read_pianorolls",
    "write_pianorolls",
    "split_pieces",
    "next_step_examples",
    "Scene",
    "SceneObject",
    "make_scenes",
    "render_scenes",
    "captions",
    "encode_stream",
    "read_lines",
    "read_text",
    "split_text",
    "read_tsv",
    "Vocab",
    "tokenize",
    "word_tokenize",
    "PAD",
    "UNK",
    "BOS",
    "EOS",
    "SPECIALS",
]
