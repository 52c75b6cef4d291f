"""Every tutorial runs in --quick mode as a plain script and prints its result line.

Each tutorial runs in its own process (as a student would run it), writes its figures
to a temporary folder, and must exit with status 0 and print its ``RESULT:`` line plus
one line that shows it reached its main point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"

# tutorial file -> text its quick run must print (besides "RESULT:")
EXPECTED = {
    "01_autograd_bptt.py": "hand-written BPTT and tinyseq autograd agree",
    "02_next_character.py": "held-out bits per character",
    "03_vanishing_gradients.py": "adding problem T=",
    "04_sentence_checker.py": "sentiment on unseen words",
    "05_named_entities.py": "entity F1 unidirectional",
    "06_translation_dates.py": "date translation exact match",
    "07_write_your_own_cell.py": "check-cell peephole_lstm:",
    "08_speech_recognition.py": "digit error rate",
    "09_chatbot.py": "chatbot held-out perplexity",
    "10_music.py": "held-out NLL per step",
    "11_captioning.py": "captioning exact match",
}


def test_every_tutorial_is_listed() -> None:
    found = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py"))
    assert found == sorted(EXPECTED), f"tutorials on disk {found}, listed {sorted(EXPECTED)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_quick(name: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    # one BLAS thread: tiny matrices gain nothing from more, and spinning BLAS threads
    # slow everything else on a busy CI machine
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("MPLBACKEND", "Agg")
    env.pop("TINYSEQ_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, str(TUTORIALS / name), "--quick", "--figures", str(tmp_path)],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{name} failed (exit {done.returncode}):\n{output[-4000:]}"
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT:")]
    assert len(result) == 1, f"{name} printed {len(result)} RESULT lines:\n{output[-2000:]}"
    assert EXPECTED[name] in done.stdout, f"{name} did not print {EXPECTED[name]!r}:\n{output[-2000:]}"


@pytest.mark.parametrize("name, module, advice", [
    ("10_music.py", "music21", "tinyseq[music]"),
    ("09_chatbot.py", "chatterbot_corpus", "pip install tinyseq[chat]"),
])
def test_without_its_extra_a_tutorial_says_how_to_install_and_exits_cleanly(
    tmp_path: Path, name: str, module: str, advice: str
) -> None:
    # a None entry in sys.modules makes the package look absent (importlib finds no spec)
    code = (f"import runpy, sys; sys.modules[{module!r}] = None; "
            f"sys.argv = [{name!r}, '--quick', '--figures', {str(tmp_path)!r}]; "
            f"runpy.run_path({str(TUTORIALS / name)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT:")]
    assert len(result) == 1 and "skipped" in result[0] and advice in result[0]
    assert not list(tmp_path.iterdir())  # no figure, no MIDI file


def test_speech_without_espeak_says_how_to_install_and_exits_cleanly(tmp_path: Path) -> None:
    # PATH holds only an empty folder: no espeak-ng to find (the tutorial runs as a script)
    env = dict(os.environ, PATH=str(tmp_path), MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(TUTORIALS / "08_speech_recognition.py"), "--quick",
                           "--figures", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT:")]
    assert len(result) == 1 and "skipped (espeak-ng is not installed)" in result[0]
    assert "apt-get install espeak-ng" in done.stdout and not list(tmp_path.glob("*.png"))
