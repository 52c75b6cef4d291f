"""`tinyseq train/generate/evaluate/predict` from the command line (small settings)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyseq.cli import main
from tinyseq.config import load_toml, make_config


def test_quick_main_job_then_generate_and_evaluate(tmp_path, capsys) -> None:
    out = tmp_path / "charlm"
    assert main(["train", "--quick", "--no-progress", "--out", str(out), "--max-steps", "12"]) == 0
    text = capsys.readouterr().out
    assert "built-in corpus" in text and "validation bits per character:" in text
    assert "sample, temperature 0.5" in text and "sample, temperature 1.0" in text
    for name in ("best.npz", "last.npz", "metrics.jsonl"):
        assert (out / name).exists()
    assert main(["generate", "--checkpoint", str(out / "best.npz"), "--prime", "The ",
                 "--temperature", "0.8", "--length", "30", "--seed", "1"]) == 0
    gen = capsys.readouterr().out
    assert gen.startswith("The ") and len(gen.rstrip("\n")) >= 4 + 20
    assert main(["sample", "--checkpoint", str(out / "best.npz"), "--greedy", "--length", "5"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "best.npz")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["bpc"] > 0 and "perplexity" in metrics
    # resume the run for a few more steps
    assert main(["train", "--resume", str(out / "last.npz"), "--max-steps", "14", "--no-progress"]) == 0
    assert "stopped after 14 steps" in capsys.readouterr().out


def test_classifier_from_toml_config_and_predict(tmp_path, capsys) -> None:
    rows = []
    rng = np.random.default_rng(0)
    for _ in range(120):
        good = bool(rng.integers(0, 2))
        words = ["great", "fine", "good"] if good else ["awful", "bad", "poor"]
        filler = ["movie", "plot", "actors", "the", "a"]
        text = " ".join([words[int(rng.integers(0, 3))]] + [filler[int(rng.integers(0, 5))] for _ in range(3)])
        rows.append(f"{text}\t{'pos' if good else 'neg'}")
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "run.toml").write_text(
        'task = "classify"\n[data]\ntrain = "train.tsv"\nlevel = "word"\n'
        '[model]\ncell = "gru"\nhidden_size = 16\nembedding_dim = 8\n'
        '[train]\nmax_steps = 60\nlr = 0.02\nvalid_fraction = 0.2\nout = "run"\n'
    )
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "classifier" in text and "accuracy" in text
    ckpt = tmp_path / "run" / "best.npz"
    assert main(["predict", "--checkpoint", str(ckpt), "--input", "great movie", "--input", "awful plot"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["pos\tgreat movie", "neg\tawful plot"]
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(tmp_path / "train.tsv")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.9


def test_tagger_and_seq2seq_commands(tmp_path, capsys) -> None:
    conll = "john B-PER\nlives O\nin O\nparis B-LOC\n\nmary B-PER\nsmiles O\n\n" * 20
    (tmp_path / "t.conll").write_text(conll)
    assert main(["train", "--task", "tag", "--train", str(tmp_path / "t.conll"), "--hidden-size", "16",
                 "--max-steps", "40", "--lr", "0.03", "--out", str(tmp_path / "tag"), "--no-progress"]) == 0
    assert "entity_f1" in capsys.readouterr().out
    assert main(["predict", "--checkpoint", str(tmp_path / "tag" / "last.npz"), "--input", "john lives in paris"]) == 0
    assert capsys.readouterr().out.strip() == "john/B-PER lives/O in/O paris/B-LOC"

    pairs = "\n".join(f"{w}\t{w[::-1]}" for w in ["abc", "ab", "ba", "cab", "bca", "cc", "a", "b"] * 10)
    (tmp_path / "p.tsv").write_text(pairs + "\n")
    assert main(["train", "--task", "seq2seq", "--train", str(tmp_path / "p.tsv"), "--hidden-size", "16",
                 "--max-steps", "10", "--out", str(tmp_path / "s2s"), "--no-progress"]) == 0
    assert "exact_match" in capsys.readouterr().out
    assert main(["generate", "--checkpoint", str(tmp_path / "s2s" / "last.npz"), "--input", "abc",
                 "--beam", "3", "--length", "6"]) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "s2s" / "last.npz"), "--input", "abc"]) == 0
    assert capsys.readouterr().out.count("abc") >= 1


def test_numeric_npz_one_to_many(tmp_path, capsys) -> None:
    x = np.eye(3, dtype=np.float32)[np.arange(30) % 3]
    y = np.array([[4, 5, 3], [5, 4, 3], [6, 3, 0]])[np.arange(30) % 3]
    lens = np.array([3, 3, 2])[np.arange(30) % 3]
    np.savez(tmp_path / "d.npz", x=x, y=y, y_lengths=lens)
    assert main(["train", "--task", "one_to_many", "--train", str(tmp_path / "d.npz"), "--hidden-size", "16",
                 "--max-steps", "5", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(tmp_path / "o" / "last.npz"), "--input", "1,0,0",
                 "--greedy", "--length", "4"]) == 0


def test_numeric_npy_next_step_regression(tmp_path, capsys) -> None:
    t = np.arange(30)
    np.save(tmp_path / "s.npy", np.stack([np.sin(0.4 * t + p) for p in np.linspace(0, 6, 40)]))
    assert main(["train", "--task", "regress", "--train", str(tmp_path / "s.npy"), "--hidden-size", "8",
                 "--max-steps", "5", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "regressor" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(tmp_path / "r" / "last.npz"),
                 "--data", str(tmp_path / "s.npy")]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] > 0
    assert main(["train", "--task", "tag", "--train", str(tmp_path / "s.npy"), "--no-progress"]) == 1
    assert "s.npy: task tag expects integer tags 'y' (N, T), got float32; for float targets use task regress" \
        in capsys.readouterr().err


def test_malformed_data_and_corrupt_checkpoint_messages(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("fine\tpos\nmissing label\n")
    assert main(["train", "--task", "classify", "--train", str(bad), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}, line 2: expected 2 tab-separated fields (text<TAB>label), got 1" in err
    ckpt = tmp_path / "broken.npz"
    ckpt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    assert main(["generate", "--checkpoint", str(ckpt)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.npz" in err
    assert main(["generate", "--checkpoint", str(tmp_path / "none.npz")]) != 0


def test_config_errors(tmp_path) -> None:
    (tmp_path / "c.toml").write_text("hiden_size = 3\n")
    with pytest.raises(ValueError, match="unknown setting\\(s\\) hiden_size; expected keys among"):
        load_toml(tmp_path / "c.toml")
    with pytest.raises(ValueError, match="unknown task 'translate'"):
        make_config({"task": "translate"})
    with pytest.raises(ValueError, match="task 'tag' needs training data"):
        make_config({}, {"task": "tag"})
    cfg = make_config({"hidden_size": 8}, {"hidden_size": 16, "lr": None})
    assert cfg.hidden_size == 16 and cfg.lr == 4e-3 and cfg.out == "runs/charlm"


def test_every_setting_has_a_flag_with_help(capsys) -> None:
    import dataclasses

    from tinyseq.config import HELP, TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"cell_options"}
    assert names == set(HELP)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in names:
        assert "--" + name.replace("_", "-") in text
    cfg = make_config()  # the main job's defaults, as the README states them
    assert (cfg.hidden_size, cfg.embedding_dim, cfg.seq_len, cfg.batch_size, cfg.lr, cfg.clip_norm,
            cfg.max_time, cfg.out) == (256, 64, 100, 16, 4e-3, 5.0, 150.0, "runs/charlm")


def test_word_level_language_model_on_a_text_file(tmp_path, capsys) -> None:
    (tmp_path / "t.txt").write_text("the cat sat on the mat . the dog sat on the log .\n" * 30)
    assert main(["train", "--train", str(tmp_path / "t.txt"), "--level", "word", "--quick",
                 "--valid-fraction", "0.2", "--out", str(tmp_path / "w"), "--no-progress"]) == 0
    assert "vocabulary 12" in capsys.readouterr().out  # 8 words + 4 reserved tokens
    assert main(["generate", "--checkpoint", str(tmp_path / "w" / "best.npz"), "--prime", "the cat",
                 "--length", "6", "--seed", "0"]) == 0
    words = capsys.readouterr().out.split()
    assert words[:2] == ["the", "cat"] and len(words) == 8
    assert set(words) <= {"the", "cat", "sat", "on", "mat", ".", "dog", "log"}
