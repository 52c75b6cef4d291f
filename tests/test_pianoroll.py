"""Piano rolls: the .npz reader and writer, splits by piece, next-step examples, and the
music21 conversions (MusicXML/MIDI <-> rolls; skipped without music21)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyseq.config import make_config
from tinyseq.data import (
    DataFormatError,
    PianoRolls,
    read_pianorolls,
    split_pieces,
    write_pianorolls,
)
from tinyseq.data.pianoroll import next_step_examples
from tinyseq.tasks import build_task


def _rolls(lengths: list[int], pitches: int = 88, seed: int = 0) -> PianoRolls:
    rng = np.random.default_rng(seed)
    return PianoRolls([(rng.random((n, pitches)) < 0.05).astype(np.uint8) for n in lengths],
                      low=21, step=0.5, names=[f"piece{i}" for i in range(len(lengths))])


def test_npz_round_trip_keeps_pieces_shapes_and_grid(tmp_path: Path) -> None:
    rolls = _rolls([5, 9, 1, 30])
    write_pianorolls(tmp_path / "r.npz", rolls)
    back = read_pianorolls(tmp_path / "r.npz")
    assert len(back) == 4 and back.num_pitches == 88
    assert [r.shape for r in back.rolls] == [(5, 88), (9, 88), (1, 88), (30, 88)]
    assert (back.low, back.step, back.names) == (21, 0.5, rolls.names)
    for a, b in zip(rolls.rolls, back.rolls):
        np.testing.assert_array_equal(a, b)
    xs, ys = next_step_examples(back)
    assert [x.shape for x in xs] == [(4, 88), (8, 88), (29, 88)]  # the 1-step piece has no target
    np.testing.assert_array_equal(xs[1][1:], ys[1][:-1])  # y<t> is x<t+1>
    assert xs[0].dtype == np.float32


@pytest.mark.parametrize("arrays, message", [
    ({"rolls": np.zeros((4, 3), np.uint8)}, r"'lengths'.*missing 'lengths'"),
    ({"rolls": np.zeros((4, 3), np.uint8), "lengths": np.array([2, 3])}, "add up to 5 steps but 'rolls' holds 4"),
    ({"rolls": np.full((2, 3), 2, np.uint8), "lengths": np.array([2])}, "0/1 values, found"),
    ({"rolls": np.zeros(4, np.uint8), "lengths": np.array([4])}, r"\(sum T, P\), got \(4,\)"),
])
def test_malformed_files_name_the_file_and_key(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match=message) as err:
        read_pianorolls(path)
    assert str(path) in str(err.value)


def test_splits_are_by_piece_seeded_and_cover_everything() -> None:
    train, valid, test = split_pieces(100, valid=0.15, test=0.2, seed=3)
    assert (len(train), len(valid), len(test)) == (65, 15, 20)
    together = np.concatenate([train, valid, test])
    assert sorted(together.tolist()) == list(range(100))  # each piece in exactly one split
    again = split_pieces(100, valid=0.15, test=0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, valid, test), again))
    assert not np.array_equal(test, split_pieces(100, valid=0.15, test=0.2, seed=4)[2])
    with pytest.raises(ValueError, match="valid=0.5, test=0.5"):
        split_pieces(10, 0.5, 0.5)


def test_music_task_holds_out_whole_pieces(tmp_path: Path) -> None:
    rolls = _rolls([6 + i for i in range(20)], pitches=10)
    write_pianorolls(tmp_path / "m.npz", rolls)
    cfg = make_config({"task": "music", "train": str(tmp_path / "m.npz"), "valid_fraction": 0.25,
                       "hidden_size": 4, "batch_size": 4})
    task = build_task(cfg)
    assert task.model.kind == "multilabel" and task.model.config["num_labels"] == 10
    train_len = sorted(len(x) for x in task.train_data.xs)
    valid_len = sorted(len(x) for x in task.valid_data.xs)
    # every piece has its own length: a held-out piece is held out whole
    assert len(train_len) == 15 and len(valid_len) == 5
    assert sorted(train_len + valid_len) == [5 + i for i in range(20)]


# ---- music21 --------------------------------------------------------------------------------
def test_score_to_roll_samples_each_grid_time() -> None:
    m21 = pytest.importorskip("music21")
    from tinyseq.data.pianoroll import score_to_roll

    part = m21.stream.Part()
    part.insert(0.0, m21.chord.Chord(["C4", "E4", "G4"], quarterLength=2.0))  # 2 steps
    part.insert(2.0, m21.note.Note("D4", quarterLength=0.5))  # on the grid at 2.0
    part.insert(2.5, m21.note.Note("F4", quarterLength=0.5))  # between grid times: dropped
    part.insert(3.0, m21.note.Note("A4", quarterLength=1.0))
    roll = score_to_roll(part, step=1.0, low=60, pitches=12)
    expected = np.zeros((4, 12), np.uint8)
    expected[0:2, [0, 4, 7]] = 1
    expected[2, 2] = 1
    expected[3, 9] = 1
    np.testing.assert_array_equal(roll, expected)
    assert score_to_roll(part, step=0.5, low=60, pitches=12)[5, 5] == 1  # F4 at an eighth grid
    with pytest.raises(ValueError, match=r"A4 \(MIDI 69\) is outside the roll's range 60..67"):
        score_to_roll(part, step=1.0, low=60, pitches=8)


def test_a_short_chorale_survives_midi_and_back(tmp_path: Path) -> None:
    m21 = pytest.importorskip("music21")
    from tinyseq.data.pianoroll import read_score, score_to_roll, write_midi

    chorale = score_to_roll(m21.corpus.parse("bach/bwv269"), step=1.0)
    short = chorale[:16]
    assert short.shape == (16, 88) and short.sum(axis=1).max() >= 3  # four voices, some unisons
    write_midi(short, tmp_path / "c.mid")
    back = read_score(tmp_path / "c.mid", step=1.0)
    np.testing.assert_array_equal(back, short)
    eighths = score_to_roll(m21.corpus.parse("bach/bwv269"), step=0.5)[:16]
    write_midi(eighths, tmp_path / "e.mid", step=0.5)
    np.testing.assert_array_equal(read_score(tmp_path / "e.mid", step=0.5), eighths)


def test_bach_chorales_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m21 = pytest.importorskip("music21")
    from tinyseq.data.pianoroll import bach_chorales

    first = bach_chorales(tmp_path, limit=2)
    assert len(first) == 2 and all(r.shape[1] == 88 and r.shape[0] > 8 for r in first.rolls)
    assert first.names[0].startswith("bach/")
    cached = list(tmp_path.glob("chorales-*.npz"))
    assert len(cached) == 1
    monkeypatch.setattr(m21.corpus, "parse", lambda *a, **k: pytest.fail("parsed again"))
    again = bach_chorales(tmp_path, limit=2)
    assert all(np.array_equal(a, b) for a, b in zip(first.rolls, again.rolls))


def test_music_task_refuses_a_bidirectional_model(tmp_path: Path) -> None:
    from tinyseq.config import ConfigError

    with pytest.raises(ConfigError, match="--bidirectional: task music predicts each next step"):
        make_config({"task": "music", "train": str(tmp_path / "m.npz")}, {"bidirectional": True})


def test_a_folder_of_midi_files_becomes_a_training_file(tmp_path: Path) -> None:
    pytest.importorskip("music21")
    from tinyseq.data.pianoroll import read_scores, write_midi

    rolls = [np.zeros((6, 88), np.uint8), np.zeros((9, 88), np.uint8)]
    rolls[0][:, [40, 44, 47]] = 1  # a held chord
    rolls[1][np.arange(9), 40 + np.arange(9)] = 1  # a rising line
    (tmp_path / "songs").mkdir()
    for i, r in enumerate(rolls):
        write_midi(r, tmp_path / "songs" / f"{i}.mid")
    (tmp_path / "songs" / "notes.txt").write_text("not music")
    got = read_scores([tmp_path / "songs"])
    assert [Path(n).name for n in got.names] == ["0.mid", "1.mid"]
    # music21 reads a MIDI file in whole 4/4 bars: the last one is filled with rests
    assert [r.shape for r in got.rolls] == [(8, 88), (12, 88)]
    for a, b in zip(rolls, got.rolls):
        np.testing.assert_array_equal(b[: len(a)], a)
        assert not b[len(a):].any()
    write_pianorolls(tmp_path / "songs.npz", got)
    assert [r.shape for r in read_pianorolls(tmp_path / "songs.npz").rolls] == [(8, 88), (12, 88)]
    with pytest.raises(FileNotFoundError, match="missing.mid"):
        read_scores([tmp_path / "missing.mid"])
    with pytest.raises(ValueError, match=r"1.mid: pitch .* outside the roll.s range 60..67"):
        read_scores([tmp_path / "songs" / "1.mid"], low=60, pitches=8)
