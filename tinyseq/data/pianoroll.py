"""Piano rolls: pieces of music as binary (T, P) arrays, in ``.npz`` files and as scores.

A piano roll has one row per time step (``step`` quarter notes long) and one column per
pitch (MIDI numbers ``low`` .. ``low + P - 1``): 1 where that pitch sounds at the start
of the step. A held note is 1 on every step it covers (no separate onsets), as in the
JSB chorales piano rolls of Boulanger-Lewandowski et al. (2012).

``.npz`` keys (never unpickled):
    ``rolls``    (sum of T_i, P) uint8, the pieces one after another
    ``lengths``  (N,) steps of each piece
    ``low``      () the MIDI number of column 0
    ``step``     () quarter notes per time step
    ``names``    optional (N,) piece names

MusicXML/MIDI conversion uses music21 (``pip install tinyseq[music]``), imported only
when a conversion is asked for.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import DataFormatError

__all__ = ["PianoRolls", "read_pianorolls", "write_pianorolls", "split_pieces",
           "next_step_examples", "score_to_roll", "roll_to_score", "read_score", "read_scores",
           "write_midi",
           "bach_chorales", "PIANO_LOW", "PIANO_PITCHES"]

Arr = npt.NDArray[Any]
PIANO_LOW, PIANO_PITCHES = 21, 88  # A0 .. C8, the piano's 88 keys
_MUSIC_SUFFIXES = (".mid", ".midi", ".musicxml", ".mxl", ".xml", ".krn", ".abc")
_EPS = 1e-6  # offsets are floats (thirds of a beat are inexact): grid tests are inclusive by this


def _music21() -> Any:
    try:
        return importlib.import_module("music21")
    except ImportError:
        raise ImportError("reading and writing scores needs music21: pip install 'tinyseq[music]'") from None


@dataclass
class PianoRolls:
    """N pieces, each a binary (T_i, P) array over pitches ``low`` .. ``low + P - 1``."""

    rolls: list[Arr]
    low: int = PIANO_LOW
    step: float = 1.0
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [str(i) for i in range(len(self.rolls))]
        if len(self.names) != len(self.rolls):
            raise ValueError(f"PianoRolls: {len(self.rolls)} rolls but {len(self.names)} names")
        widths = {int(r.shape[1]) for r in self.rolls if r.ndim == 2}
        if any(r.ndim != 2 for r in self.rolls) or len(widths) > 1:
            shapes = sorted({r.shape for r in self.rolls}, key=str)[:4]
            raise ValueError(f"PianoRolls: expected rolls (T_i, P) of one width P, got shapes {shapes}")

    def __len__(self) -> int:
        return len(self.rolls)

    @property
    def num_pitches(self) -> int:
        return int(self.rolls[0].shape[1]) if self.rolls else PIANO_PITCHES

    def subset(self, index: Sequence[int] | Arr) -> PianoRolls:
        """The pieces ``index`` (in that order)."""
        idx = [int(i) for i in index]
        return PianoRolls([self.rolls[i] for i in idx], self.low, self.step, [self.names[i] for i in idx])


def write_pianorolls(path: str | os.PathLike[str], rolls: PianoRolls) -> None:
    """Write ``rolls`` as one ``.npz`` file (see the module docstring for the keys)."""
    lengths = np.array([r.shape[0] for r in rolls.rolls], dtype=np.int64)
    stacked = (np.concatenate(rolls.rolls, axis=0) if rolls.rolls
               else np.zeros((0, rolls.num_pitches))).astype(np.uint8)
    np.savez_compressed(path, rolls=stacked, lengths=lengths, low=np.int64(rolls.low),
                        step=np.float64(rolls.step), names=np.array(rolls.names, dtype=str))


def read_pianorolls(path: str | os.PathLike[str]) -> PianoRolls:
    """The pieces of a piano-roll ``.npz`` file; DataFormatError naming the file and key
    when a key is missing, a shape does not add up or a value is not 0/1."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"piano-roll file not found: {p}")
    try:
        data = dict(np.load(p, allow_pickle=False))
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataFormatError(p, None, f"expected a piano-roll .npz file ({err})") from None
    missing = [k for k in ("rolls", "lengths") if k not in data]
    if missing:
        raise DataFormatError(p, None, f"expected piano-roll keys 'rolls' (sum T, P) and 'lengths' "
                              f"(N,), missing {', '.join(map(repr, missing))}; found {sorted(data)}")
    rolls, lengths = data["rolls"], data["lengths"]
    if rolls.ndim != 2:
        raise DataFormatError(p, None, f"expected 'rolls' of shape (sum T, P), got {rolls.shape}")
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths < 0).any():
        raise DataFormatError(p, None, f"expected 'lengths' (N,) of step counts >= 0, got "
                              f"{lengths.dtype} {lengths.shape}")
    if int(lengths.sum()) != rolls.shape[0]:
        raise DataFormatError(p, None, f"'lengths' add up to {int(lengths.sum())} steps but 'rolls' "
                              f"holds {rolls.shape[0]}")
    if rolls.size and not np.isin(rolls, (0, 1)).all():
        raise DataFormatError(p, None, f"expected 'rolls' of 0/1 values, found {np.unique(rolls)[:5]}")
    low = int(data["low"]) if "low" in data else PIANO_LOW
    step = float(data["step"]) if "step" in data else 1.0
    names = [str(n) for n in data["names"]] if "names" in data else []
    if names and len(names) != len(lengths):
        raise DataFormatError(p, None, f"'names' holds {len(names)} names for {len(lengths)} pieces")
    pieces = np.split(rolls.astype(np.uint8), np.cumsum(lengths)[:-1]) if len(lengths) else []
    return PianoRolls(list(pieces), low, step, names)


def split_pieces(n: int, valid: float = 0.15, test: float = 0.15,
                 seed: int = 0) -> tuple[Arr, Arr, Arr]:
    """(train, valid, test) indices of ``n`` pieces, shuffled with ``seed``: a piece is in
    exactly one split, so no held-out piece shares a step with a training one."""
    if not (0 <= valid and 0 <= test and valid + test < 1):
        raise ValueError(f"split_pieces: expected fractions valid, test >= 0 with valid + test < 1, "
                         f"got valid={valid}, test={test}")
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_valid = int(round(n * test)), int(round(n * valid))
    return (np.sort(order[n_test + n_valid:]), np.sort(order[n_test: n_test + n_valid]),
            np.sort(order[:n_test]))


def next_step_examples(rolls: PianoRolls) -> tuple[list[Arr], list[Arr]]:
    """Inputs roll[:-1] and targets roll[1:] (float32 (T_i - 1, P)) of each piece of at
    least two steps: the model reads the steps so far and predicts the next one."""
    pieces = [r.astype(np.float32) for r in rolls.rolls if r.shape[0] >= 2]
    return [r[:-1] for r in pieces], [r[1:] for r in pieces]


# ---- scores (music21) ---------------------------------------------------------------------
def score_to_roll(score: Any, step: float = 1.0, low: int = PIANO_LOW,
                  pitches: int = PIANO_PITCHES) -> Arr:
    """A music21 stream -> binary (T, P) piano roll, one row per ``step`` quarter notes.

    A pitch is on at step t when one of its notes sounds at time t * step (start <= t *
    step < end): notes shorter than a step that fall between two grid times are dropped,
    as a quantised piano roll must. A pitch outside low .. low + P - 1 is a ValueError.
    """
    if step <= 0:
        raise ValueError(f"step must be > 0 quarter notes, got {step}")
    flat = score.flatten()
    end = float(flat.highestTime)
    roll = np.zeros((int(np.ceil(end / step - _EPS)), pitches), dtype=np.uint8)
    for n in flat.notes:
        start, stop = float(n.offset), float(n.offset + n.quarterLength)
        first, last = int(np.ceil(start / step - _EPS)), int(np.ceil(stop / step - _EPS))
        for p in n.pitches:
            col = int(p.midi) - low
            if not 0 <= col < pitches:
                raise ValueError(f"pitch {p.nameWithOctave} (MIDI {p.midi}) is outside the roll's "
                                 f"range {low}..{low + pitches - 1}; give a wider low/pitches")
            roll[first:last, col] = 1
    return roll


def roll_to_score(roll: Arr, step: float = 1.0, low: int = PIANO_LOW) -> Any:
    """A binary (T, P) piano roll -> a music21 score: each run of 1s in a column is one note
    (a pitch held over steps is one long note)."""
    m21 = _music21()
    r = np.asarray(roll)
    if r.ndim != 2:
        raise ValueError(f"expected a piano roll (T, P), got shape {r.shape}")
    part = m21.stream.Part()
    part.insert(0, m21.instrument.Piano())
    padded = np.pad(r.astype(np.int8) != 0, ((1, 1), (0, 0))).astype(np.int8)
    edges = np.diff(padded, axis=0)  # +1 where a run starts, -1 one past its end
    for col in range(r.shape[1]):
        starts, stops = np.flatnonzero(edges[:, col] == 1), np.flatnonzero(edges[:, col] == -1)
        for a, b in zip(starts, stops):
            note = m21.note.Note(int(low + col))
            note.quarterLength = float((b - a) * step)
            part.insert(float(a * step), note)
    score = m21.stream.Score()
    score.insert(0, part)
    return score


def read_score(path: str | os.PathLike[str], step: float = 1.0, low: int = PIANO_LOW,
               pitches: int = PIANO_PITCHES) -> Arr:
    """A MusicXML, MIDI or other music21-readable file -> binary (T, P) piano roll.

    Rests count as steps, trailing ones too: music21 reads a MIDI file in whole bars, so a
    piece that ends mid-bar comes back with silent steps up to the bar line.
    """
    return score_to_roll(_music21().converter.parse(os.fspath(path)), step, low, pitches)


def read_scores(paths: Sequence[str | os.PathLike[str]], step: float = 1.0, low: int = PIANO_LOW,
                pitches: int = PIANO_PITCHES) -> PianoRolls:
    """Music files (MusicXML, MIDI, ...; or the music files in a folder, sorted) -> PianoRolls
    named by file, ready for :func:`write_pianorolls` and ``tinyseq train --task music``."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(f for f in path.iterdir() if f.suffix.lower() in _MUSIC_SUFFIXES)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"music file not found: {path}")
    if not files:
        raise ValueError(f"no music files ({', '.join(_MUSIC_SUFFIXES)}) in {[str(p) for p in paths]}")
    rolls = []
    for f in files:
        try:
            rolls.append(read_score(f, step, low, pitches))
        except ValueError as err:  # a pitch out of range: say which file
            raise ValueError(f"{f}: {err}") from None
    return PianoRolls(rolls, low, step, [str(f) for f in files])


def write_midi(roll: Arr, path: str | os.PathLike[str], step: float = 1.0, low: int = PIANO_LOW) -> None:
    """Write a binary (T, P) piano roll as a MIDI file (a quarter note per beat)."""
    roll_to_score(roll, step, low).write("midi", fp=os.fspath(path))


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinyseq"


def bach_chorales(cache_dir: str | os.PathLike[str] | None = None, step: float = 1.0,
                  limit: int | None = None, low: int = PIANO_LOW,
                  pitches: int = PIANO_PITCHES) -> PianoRolls:
    """Bach's four-part chorales from music21's corpus (no download) as piano rolls.

    Parsing hundreds of MusicXML files takes a minute, so the rolls are cached as
    ``chorales-step{step}-{limit or 'all'}.npz`` in ``cache_dir`` (default
    ``$XDG_CACHE_HOME/tinyseq`` or ``~/.cache/tinyseq``). ``limit``: the first chorales
    only (in the corpus's Riemenschneider order).
    """
    cache = _cache_dir(cache_dir) / f"chorales-step{step:g}-low{low}-p{pitches}-{limit or 'all'}.npz"
    if cache.exists():
        return read_pianorolls(cache)
    m21 = _music21()
    names = list(m21.corpus.chorales.Iterator(returnType="filename"))
    if limit is not None:
        names = names[:limit]
    rolls, kept = [], []
    for name in names:
        roll = score_to_roll(m21.corpus.parse(name), step, low, pitches)
        if roll.shape[0]:
            rolls.append(roll)
            kept.append(str(name))
    out = PianoRolls(rolls, low, step, kept)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
    write_pianorolls(tmp, out)
    os.replace(tmp, cache)  # a reader never sees half a cache file
    return out
