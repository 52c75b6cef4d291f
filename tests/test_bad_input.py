"""Bad settings and data on the command line: one `error:` line naming the flag or file,
what was expected and what was given, exit status 1, and nothing written."""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest

from tinyseq import backend
from tinyseq.cli import main
from tinyseq.config import QUICK, ConfigError, TrainConfig, load_toml, make_config

QUIET = ["--no-progress"]


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the command, check it failed with exit status 1, return stderr."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: "), captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes | str]:
    """A tiny trained language model run and the bytes of its checkpoints."""
    out = tmp_path_factory.mktemp("lm") / "run"
    assert main(["train", "--quick", "--max-steps", "2", "--out", str(out), *QUIET]) == 0
    return {"out": str(out), **{name: (out / name).read_bytes() for name in ("best.npz", "last.npz")}}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("cls")
    (d / "t.tsv").write_text("".join(f"{w} film\t{lab}\n" for w, lab in [("good", "pos"), ("bad", "neg")] * 20))
    assert main(["train", "--task", "classify", "--train", str(d / "t.tsv"), "--max-steps", "1",
                 "--hidden-size", "8", "--embedding-dim", "4", "--out", str(d / "r"), *QUIET]) == 0
    return str(d / "r" / "best.npz")


# ---- numeric flags ------------------------------------------------------------------------
BAD_FLAGS = [
    ("--max-time", "-1", "a number of seconds > 0", "-1.0"),
    ("--max-time", "nan", "a number of seconds > 0", "nan"),
    ("--max-time", "0", "a number of seconds > 0", "0.0"),
    ("--max-steps", "-5", "an integer >= 1", "-5"),
    ("--max-steps", "0", "an integer >= 1", "0"),
    ("--clip-norm", "-1", "a finite number > 0 (or 0: no clipping)", "-1.0"),
    ("--clip-norm", "inf", "a finite number > 0", "inf"),
    ("--lr", "0", "a finite number > 0", "0.0"),
    ("--lr", "nan", "a finite number > 0", "nan"),
    ("--weight-decay", "-0.1", "a finite number >= 0", "-0.1"),
    ("--dropout", "1.5", "a probability in [0, 1)", "1.5"),
    ("--teacher-forcing", "-0.5", "a probability in [0, 1]", "-0.5"),
    ("--valid-fraction", "1", "a number in [0, 1)", "1.0"),
    ("--hidden-size", "0", "an integer >= 1", "0"),
    ("--embedding-dim", "-3", "an integer >= 1", "-3"),
    ("--num-layers", "0", "an integer >= 1", "0"),
    ("--batch-size", "-2", "an integer >= 1", "-2"),
    ("--seq-len", "0", "an integer >= 1", "0"),
    ("--bucket", "-1", "an integer >= 0", "-1"),
    ("--epochs", "0", "an integer >= 1", "0"),
    ("--eval-every", "0", "an integer >= 1", "0"),
    ("--checkpoint-every", "-1", "an integer >= 1", "-1"),
    ("--patience", "0", "an integer >= 1", "0"),
    ("--seed", "-1", "an integer >= 0", "-1"),
    ("--threads", "0", "an integer >= 1", "0"),
    ("--min-freq", "0", "an integer >= 1", "0"),
    ("--max-vocab", "4", "an integer >= 5", "4"),
    ("--sample-length", "0", "an integer >= 1", "0"),
]


@pytest.mark.parametrize(("flag", "value", "expected", "given"), BAD_FLAGS)
def test_bad_numeric_flag_is_refused_before_anything_is_written(
    tmp_path, capsys, flag: str, value: str, expected: str, given: str
) -> None:
    out = tmp_path / "run"
    err = _error(capsys, ["train", "--quick", flag, value, "--out", str(out), *QUIET])
    assert err.startswith(f"error: {flag}: expected {expected}") and f"got {given}" in err
    assert not out.exists()


def test_every_numeric_setting_is_checked() -> None:
    """No int or float field of TrainConfig escapes: wrong types and NaN/negatives fail."""
    for f in dataclasses.fields(TrainConfig):
        kind = str(f.type)
        if "bool" in kind or not ("int" in kind or "float" in kind):
            continue
        flag = "--" + f.name.replace("_", "-")
        bad_values: list[object] = [True, "3", -1]
        if "float" in kind:
            bad_values.append(math.nan)
        else:
            bad_values.append(4.5)
        expected = "an integer" if "float" not in kind else "(a .*number|a probability)"
        for bad in bad_values:
            with pytest.raises(ConfigError, match=f"^{flag}: expected {expected}"):
                make_config({}, {f.name: bad})
            with pytest.raises(ConfigError, match=f"^{f.name} in run.toml: expected {expected}"):
                make_config({f.name: bad}, config_file="run.toml")


def test_no_clipping_and_no_time_limit_have_a_spelling() -> None:
    cfg = make_config({}, {"clip_norm": 0.0, "max_time": math.inf})
    assert cfg.clip_norm is None and cfg.max_time is None
    assert make_config({"lr": 1}).lr == 1.0 and isinstance(make_config({"lr": 1}).lr, float)


@pytest.mark.parametrize(("flag", "value", "listed"), [
    ("--optimizer", "adm", "adam, adamw, sgd"),
    ("--pooling", "sum", "last, mean, max"),
    ("--condition", "vector", "state, input, both"),
    ("--device", "tpu", "cpu, cuda, testcpu"),
    ("--level", "byte", "char, word"),
    ("--format", "csv", "text, tsv, conll, numeric"),
    ("--task", "translate", "lm, classify, tag"),
    ("--monitor", "acc", "loss, perplexity, bpc, accuracy"),
])
def test_bad_choice_names_flag_value_and_choices(tmp_path, capsys, flag: str, value: str, listed: str) -> None:
    err = _error(capsys, ["train", "--quick", flag, value, "--out", str(tmp_path / "r"), *QUIET])
    assert err.startswith(f"error: {flag}: ") and repr(value) in err and listed in err
    assert not (tmp_path / "r").exists()


def test_resume_with_a_bad_limit_leaves_the_run_unchanged(lm_run, capsys) -> None:
    out = str(lm_run["out"])
    for argv in (["--resume", f"{out}/last.npz", "--max-time", "-1"],
                 ["--resume", f"{out}/last.npz", "--max-steps", "-5"],
                 ["--out", out, "--overwrite", "--max-time", "nan"],
                 ["--out", out, "--overwrite", "--clip-norm", "-1"]):
        err = _error(capsys, ["train", "--quick", *argv, *QUIET])
        assert argv[-2] in err
        for name in ("best.npz", "last.npz"):
            with open(f"{out}/{name}", "rb") as f:
                assert f.read() == lm_run[name], f"{name} changed after {argv}"


# ---- TOML files ---------------------------------------------------------------------------
def test_toml_values_named_with_file_and_section(tmp_path, capsys) -> None:
    cfg = tmp_path / "run.toml"
    for text, expected in [
        ("[model]\nhidden_size = 4.5\n", f"[model] hidden_size in {cfg}: expected an integer >= 1, got 4.5 (float)"),
        ("hidden_size = true\n", f"hidden_size in {cfg}: expected an integer >= 1, got True (bool)"),
        ("[train]\nmax_time = -1\n", f"[train] max_time in {cfg}: expected a number of seconds > 0"),
        ("[train]\nclip_norm = nan\n", f"[train] clip_norm in {cfg}: expected a finite number > 0"),
        ("lowercase = \"yes\"\n", f"lowercase in {cfg}: expected true or false, got 'yes' (str)"),
        ("cell_options = \"forget_bias=1\"\n", f"cell_options in {cfg}: expected a table of cell options"),
        ("[data]\ntrain = 3\n", f"[data] train in {cfg}: expected a non-empty string, got 3 (int)"),
        ("[model]\ncell = \"gru\"\n[train]\noptimizer = \"lbfgs\"\n",
         f"[train] optimizer in {cfg}: unknown optimizer 'lbfgs'; expected one of adam"),
    ]:
        cfg.write_text(text)
        err = _error(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r"), *QUIET])
        assert err.startswith(f"error: {expected}"), err
    assert not (tmp_path / "r").exists()


def test_same_key_in_two_sections_is_an_error(tmp_path, capsys) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("[model]\nhidden_size = 8\n[train]\nhidden_size = 16\n")
    err = _error(capsys, ["train", "--config", str(cfg), *QUIET])
    assert f"{cfg}: hidden_size is set twice, in [model] and in [train]" in err
    cfg.write_text("lr = 0.1\n[train]\nlr = 0.2\n")
    with pytest.raises(ConfigError, match="lr is set twice, at the top level and in \\[train\\]"):
        load_toml(cfg)
    cfg.write_text("[cell_options]\nforget_bias = 1.0\n[model]\ncell_options = {forget_bias = 2.0}\n")
    with pytest.raises(ConfigError, match="cell_options is set twice"):
        load_toml(cfg)


def test_config_that_is_a_directory_or_not_utf8(tmp_path, capsys) -> None:
    err = _error(capsys, ["train", "--config", str(tmp_path), *QUIET])
    assert f"config {tmp_path} is a directory; expected a TOML settings file" in err
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"lr = 0.1\ncell = '\xff'\n")
    err = _error(capsys, ["train", "--config", str(bad), *QUIET])
    assert f"{bad}, line 2: expected a UTF-8 TOML file, found byte 0xff" in err


# ---- cell options -------------------------------------------------------------------------
def test_cell_options_checked_against_the_cell(tmp_path, capsys) -> None:
    run = ["train", "--quick", "--out", str(tmp_path / "r"), *QUIET]
    err = _error(capsys, [*run, "--cell-option", "forget_bias=abc"])
    assert ("--cell-option forget_bias: cell 'lstm' expects a finite number for option "
            "forget_bias (default 0.0), got 'abc' (str)") in err
    err = _error(capsys, [*run, "--cell", "gru", "--cell-option", "reset_after=2"])
    assert "--cell-option reset_after: cell 'gru' expects true or false" in err and "got 2 (int)" in err
    err = _error(capsys, [*run, "--cell-option", "forget_bais=1"])
    assert "cell 'lstm' has no option 'forget_bais'; its options are: variant" in err
    err = _error(capsys, [*run, "--cell", "bidirectional"])
    assert "--cell: 'bidirectional' is a wrapper, not a cell" in err
    (tmp_path / "c.toml").write_text("[cell_options]\nforget_bias = true\n")
    err = _error(capsys, [*run, "--config", str(tmp_path / "c.toml")])
    assert f"cell_options.forget_bias in {tmp_path / 'c.toml'}: cell 'lstm' expects a finite number" in err
    assert not (tmp_path / "r").exists()
    # an integer where the default is a float is fine (and stored as a float)
    cfg = make_config({"cell_options": {"forget_bias": 1}}, {"cell_options": {"variant": "lecture"}})
    assert cfg.cell_options == {"forget_bias": 1.0, "variant": "lecture"}


# ---- data files ---------------------------------------------------------------------------
def test_empty_text_file_for_a_language_model(tmp_path, capsys) -> None:
    (tmp_path / "empty.txt").write_text("")
    err = _error(capsys, ["train", "--quick", "--train", str(tmp_path / "empty.txt"),
                          "--out", str(tmp_path / "r"), *QUIET])
    assert f"{tmp_path / 'empty.txt'}: expected at least {2 * QUICK['batch_size'] + 1} chars" in err
    assert "the file is empty" in err
    (tmp_path / "short.txt").write_text("abcdef\n")
    err = _error(capsys, ["train", "--quick", "--train", str(tmp_path / "short.txt"),
                          "--out", str(tmp_path / "r"), *QUIET])
    assert f"{tmp_path / 'short.txt'}: expected at least 17 chars" in err and "--batch-size" in err


def test_bad_npz_files_name_the_file(tmp_path, capsys) -> None:
    path = tmp_path / "d.npz"
    run = ["train", "--task", "classify", "--train", str(path), "--out", str(tmp_path / "r"), *QUIET]
    ids = np.ones((6, 5), dtype=np.int64)
    for arrays, expected in [
        ({"x": ids, "y": np.array([0, 1, -1, 0, 1, 0])}, "expected class ids >= 0 in 'y', example 2 holds -1"),
        ({"x": np.ones(10, dtype=np.int64), "y": np.zeros(10, dtype=np.int64)},
         "expected 'x' as (N, T) ids, (N, T, F) features or (N, F) vectors with no empty axis, got shape (10,)"),
        ({"x": np.array([[1], [1, 2]], dtype=object), "y": np.zeros(2, dtype=np.int64)},
         "expected numeric arrays, but 'x' holds Python objects, which tinyseq never unpickles"),
        ({"x": np.full((6, 5, 2), np.nan, dtype=np.float32), "y": np.zeros(6, dtype=np.int64)},
         "expected finite numbers in 'x', found nan at index (0, 0, 0)"),
        ({"x": -ids, "y": np.zeros(6, dtype=np.int64)}, "expected token ids >= 0 in 'x', example 0 holds -1"),
        ({"x": np.ones((6, 5), dtype=np.float32), "y": np.zeros(6, dtype=np.int64)},
         "task classify expects 'x' as (N, T) integer ids or (N, T, F) float features, got float32 (6, 5)"),
    ]:
        np.savez(path, **arrays)
        err = _error(capsys, run)
        assert err.startswith(f"error: {path}: {expected}"), err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("task", "arrays", "expected"), [
    ("tag", {"x": np.ones((4, 3), dtype=np.int64), "y": np.array([[0, 1, 0]] * 3 + [[0, -1, 0]])},
     "expected tag ids >= 0 in 'y', example 3 holds -1"),
    ("tag", {"x": np.ones((4, 3), dtype=np.int64), "y": np.zeros((4, 5), dtype=np.int64)},
     "task tag expects one tag per step, 'y' (N, T) aligned with 'x' (4, 3), got (4, 5)"),
    ("seq2seq", {"x": np.ones((4, 3), dtype=np.int64), "y": np.zeros((4, 3), dtype=np.float32)},
     "task seq2seq expects 'y' as target token ids (N, Ty), got float32 (4, 3)"),
    ("one_to_many", {"x": np.ones((4, 2), dtype=np.float32), "y": -np.ones((4, 3), dtype=np.int64)},
     "expected token ids >= 0 in 'y', example 0 holds -1"),
    ("one_to_one", {"x": np.ones((4, 2), dtype=np.float32), "y": np.array([0, 1, 2, -4])},
     "expected class ids >= 0 in 'y', example 3 holds -4"),
])
def test_bad_npz_for_other_tasks(tmp_path, capsys, task: str, arrays: dict[str, np.ndarray],
                                 expected: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    err = _error(capsys, ["train", "--task", task, "--train", str(path), "--out", str(tmp_path / "r"), *QUIET])
    assert err.startswith(f"error: {path}: {expected}"), err


def test_predict_with_an_empty_data_file(classifier, tmp_path, capsys) -> None:
    (tmp_path / "empty.tsv").write_text("\n\n")
    err = _error(capsys, ["predict", "--checkpoint", classifier, "--data", str(tmp_path / "empty.tsv")])
    assert f"{tmp_path / 'empty.tsv'}: expected one input per line" in err and "no lines" in err
    err = _error(capsys, ["predict", "--checkpoint", classifier])
    assert "give at least one --input" in err and "--data FILE" in err
    err = _error(capsys, ["predict", "--checkpoint", classifier, "--input", "good", "--beam", "0"])
    assert "--beam: expected an integer >= 1, got 0" in err


# ---- generate and checkpoints -------------------------------------------------------------
@pytest.mark.parametrize(("argv", "expected"), [
    (["--length", "-5"], "--length: expected an integer >= 1, got -5"),
    (["--length", "0"], "--length: expected an integer >= 1, got 0"),
    (["--beam", "0"], "--beam: expected an integer >= 1, got 0"),
    (["--top-k", "0"], "--top-k: expected an integer >= 1, got 0"),
    (["--temperature", "0.8", "--temperature", "0"], "--temperature: expected a finite number > 0, got 0.0"),
    (["--temperature", "nan"], "--temperature: expected a finite number > 0, got nan"),
    (["--length-penalty", "-1"], "--length-penalty: expected a finite number >= 0"),
    (["--seed", "-3"], "--seed: expected an integer >= 0, got -3"),
])
def test_generate_flags(lm_run, capsys, argv: list[str], expected: str) -> None:
    err = _error(capsys, ["generate", "--checkpoint", f"{lm_run['out']}/best.npz", *argv])
    assert err.startswith(f"error: {expected}")


def test_checkpoint_that_is_a_directory(lm_run, capsys) -> None:
    err = _error(capsys, ["generate", "--checkpoint", str(lm_run["out"])])
    assert (f"{lm_run['out']} is a directory; expected a checkpoint file (.npz); did you mean "
            f"{lm_run['out']}/best.npz or {lm_run['out']}/last.npz?") in err


@pytest.mark.parametrize("text, found", [("", "found 0"), ("ab", "found 2")])
def test_evaluate_on_too_little_text_names_the_file(lm_run, tmp_path, capsys, text, found) -> None:
    data = tmp_path / "short.txt"
    data.write_text(text)
    err = _error(capsys, ["evaluate", "--checkpoint", f"{lm_run['out']}/best.npz", "--data", str(data)])
    assert err.startswith(f"error: {data}: expected at least 3 chars of evaluation text, {found}")


def test_cuda_without_cupy_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    monkeypatch.delitem(backend._devices, "cuda", raising=False)
    err = _error(capsys, ["train", "--quick", "--device", "cuda", "--out", str(tmp_path / "r"), *QUIET])
    assert err.startswith("error: device 'cuda' needs CuPy: install tinyseq[cuda13] or tinyseq[cuda12]")
    assert not (tmp_path / "r").exists()


def test_predict_refuses_a_kind_it_cannot_show_before_reading_data(tmp_path, capsys) -> None:
    from tinyseq.data.pianoroll import PianoRolls, write_pianorolls

    rng = np.random.default_rng(0)
    rolls = PianoRolls([(rng.random((12, 6)) < 0.3).astype(np.uint8) for _ in range(10)])
    write_pianorolls(tmp_path / "songs.npz", rolls)
    assert main(["train", "--task", "music", "--train", str(tmp_path / "songs.npz"), "--max-steps", "1",
                 "--hidden-size", "4", "--out", str(tmp_path / "m"), *QUIET]) == 0
    capsys.readouterr()
    err = _error(capsys, ["predict", "--checkpoint", str(tmp_path / "m" / "last.npz"),
                          "--data", str(tmp_path / "songs.npz")])
    assert err.startswith("error: predict does not handle multilabel checkpoints from the command line; "
                          "use `tinyseq evaluate --data FILE`")
