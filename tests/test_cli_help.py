"""``tinyseq train --help`` names the lecture's input/output pattern of every task, and the
README's pattern table says the same, task by task."""

from __future__ import annotations

import re
from pathlib import Path

from tinyseq.cli import build_parser
from tinyseq.config import TASKS

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Every input/output pattern, one trainer"
# the lecture's names for the patterns (its table "Input/output patterns")
LECTURE_PATTERNS = {"one to one", "one to many", "many to one", "many to many, Tx = Ty",
                    "many to many, Tx != Ty"}


def _normal(pattern: str) -> str:
    """One spelling for a pattern: single spaces, '!=' for the lecture's '≠'."""
    return " ".join(pattern.replace("≠", "!=").split())


def _task_help() -> str:
    """The --task entry of `tinyseq train --help` as printed, on one line."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    lines = sub.choices["train"].format_help().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("--task"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("-"))
    return " ".join(" ".join(lines[start:end]).split())


def _help_patterns(entry: str) -> dict[str, str]:
    """task -> pattern; the entry writes each task "name (pattern)" or "name (pattern: ...)"."""
    found = re.findall(r"\b(\w+) \(([^):]+)[):]", entry)
    return {task: _normal(pattern) for task, pattern in found if task in TASKS}


def _readme_patterns() -> dict[str, str]:
    """task -> pattern, read from the README's table under SECTION."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"{README} has no section {SECTION!r}"
    rows = []
    for line in text[text.index(SECTION):].splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]  # rows[1] is the |---| line
    column = header.index("`tinyseq train --task`")
    out: dict[str, str] = {}
    for row in body:
        for task in re.findall(r"`(\w+)`", row[column]):
            assert task not in out, f"README's pattern table lists task {task!r} twice"
            out[task] = _normal(row[0])
    return out


def test_train_help_names_the_lecture_pattern_of_every_task() -> None:
    entry = _task_help()
    found = _help_patterns(entry)
    missing = [t for t in TASKS if t not in found]
    assert not missing, f"tinyseq train --help names no pattern for {missing}: {entry!r}"
    unknown = {t: p for t, p in found.items() if p not in LECTURE_PATTERNS}
    assert not unknown, f"patterns not in the lecture's table {sorted(LECTURE_PATTERNS)}: {unknown}"
    assert (found["classify"], found["seq2seq"]) == ("many to one", "many to many, Tx != Ty")


def test_readme_pattern_table_agrees_with_train_help() -> None:
    in_help = _help_patterns(_task_help())
    in_readme = _readme_patterns()
    assert sorted(in_readme) == sorted(TASKS), \
        f"README's pattern table lists tasks {sorted(in_readme)}, tinyseq has {sorted(TASKS)}"
    differ = {t: (in_readme[t], in_help.get(t)) for t in TASKS if in_readme[t] != in_help.get(t)}
    assert not differ, f"task: (README's pattern, train --help's pattern) disagree: {differ}"
