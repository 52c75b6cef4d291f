"""Training configuration: defaults per task, a TOML file, then command-line flags.

    # run.toml  (sections are optional and only group keys)
    task = "tag"
    [data]
    train = "train.conll"
    valid = "dev.conll"
    [model]
    cell = "gru"
    hidden_size = 128
    bidirectional = true
    [train]
    lr = 3e-3
    max_time = 120

Later sources override earlier ones: built-in defaults, the task's defaults, the TOML
file, flags. An unknown key is an error that lists the known keys.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import tomllib

__all__ = ["TrainConfig", "TASKS", "TASK_DEFAULTS", "load_toml", "make_config", "QUICK"]

TASKS = ("lm", "classify", "tag", "regress", "seq2seq", "one_to_many", "one_to_one")


@dataclass
class TrainConfig:
    """Every setting of ``tinyseq train`` (None: the task's default or "not set")."""

    task: str = "lm"
    # data
    train: str | None = None  # lm without a file: the built-in corpus
    valid: str | None = None
    valid_fraction: float = 0.05  # held out when there is no valid file
    format: str | None = None  # text, tsv, conll, numeric (default: from the extension)
    level: str = "char"  # token level of text: char or word
    min_freq: int = 1
    max_vocab: int | None = None
    lowercase: bool = False
    # model
    cell: str = "lstm"
    hidden_size: int | None = None
    embedding_dim: int | None = None
    num_layers: int = 1
    bidirectional: bool | None = None
    dropout: float = 0.0
    pooling: str = "last"
    condition: str = "state"
    teacher_forcing: float = 1.0
    cell_options: dict[str, Any] = field(default_factory=dict)
    # training
    seq_len: int = 100
    batch_size: int | None = None
    bucket: int = 8
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    clip_norm: float | None = 5.0
    epochs: int = 100
    max_steps: int | None = None
    max_time: float | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None
    patience: int | None = None
    monitor: str | None = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None  # BLAS threads (None: the library's default)
    out: str | None = None
    progress: bool = True
    plot: bool = False
    sample_length: int = 300

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# the character language model's defaults are the README's main job: they reach
# <= 1.8 bits per character on the built-in corpus within the time budget on 2 cores.
# One BLAS thread: at these sizes two threads gain little on an idle machine, and on a
# busy one their spinning makes each step several times slower.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "lm": {"hidden_size": 256, "embedding_dim": 64, "batch_size": 16, "lr": 4e-3,
           "seq_len": 100, "max_time": 150.0, "eval_every": 100, "checkpoint_every": 200,
           "out": "runs/charlm", "threads": 1},
    "classify": {"hidden_size": 128, "embedding_dim": 64, "batch_size": 32, "lr": 3e-3,
                 "bidirectional": False, "out": "runs/classify"},
    "tag": {"hidden_size": 128, "embedding_dim": 64, "batch_size": 32, "lr": 3e-3,
            "bidirectional": True, "monitor": None, "out": "runs/tag"},
    "regress": {"hidden_size": 64, "batch_size": 32, "lr": 3e-3, "bidirectional": False,
                "out": "runs/regress"},
    "seq2seq": {"hidden_size": 128, "embedding_dim": 64, "batch_size": 32, "lr": 3e-3,
                "bidirectional": False, "out": "runs/seq2seq"},
    "one_to_many": {"hidden_size": 128, "embedding_dim": 32, "batch_size": 32, "lr": 3e-3,
                    "out": "runs/one_to_many"},
    "one_to_one": {"hidden_size": 64, "batch_size": 32, "lr": 3e-3, "out": "runs/one_to_one"},
}

# --quick: a small model and budget for a smoke test (seconds, not minutes)
QUICK: dict[str, Any] = {"hidden_size": 32, "embedding_dim": 16, "batch_size": 8,
                         "seq_len": 20, "max_steps": 20, "max_time": 30.0, "eval_every": 10,
                         "sample_length": 40}

_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

HELP: dict[str, str] = {
    "task": "what to train: " + ", ".join(TASKS) + " (default lm)",
    "train": "training data file (lm without one: the built-in corpus)",
    "valid": "validation data file (default: hold out --valid-fraction of the training data)",
    "valid_fraction": "share held out for validation when there is no --valid file",
    "format": "text, tsv, conll or numeric (default: from the file extension)",
    "level": "text tokens: char or word",
    "min_freq": "rarer tokens become <unk>",
    "max_vocab": "keep at most this many tokens (specials included)",
    "lowercase": "lowercase all text",
    "cell": "any registered cell: rnn, simple_gru, gru, lstm or a plugin's",
    "hidden_size": "hidden units per layer and direction",
    "embedding_dim": "size of token embeddings",
    "num_layers": "stacked recurrent layers",
    "bidirectional": "read sequences both ways (encoders, taggers, classifiers)",
    "dropout": "dropout on embeddings, between layers and before the output",
    "pooling": "many-to-one summary: last (last valid step), mean or max",
    "condition": "one-to-many: the vector sets the initial state, joins each input, or both",
    "teacher_forcing": "probability of feeding the gold token (< 1: scheduled sampling)",
    "seq_len": "language model: steps per window of truncated BPTT",
    "batch_size": "sequences per batch",
    "bucket": "group examples of similar length over this many batches (0: off)",
    "optimizer": "adam, adamw, sgd, rmsprop or adagrad",
    "lr": "learning rate",
    "weight_decay": "weight decay of the optimizer",
    "clip_norm": "clip the joint gradient norm to this value",
    "epochs": "stop after this many epochs",
    "max_steps": "stop after this many steps",
    "max_time": "stop after this many seconds of training (across resumes)",
    "eval_every": "validate every N steps (default: every epoch)",
    "checkpoint_every": "write last.npz every N steps (always at the end)",
    "patience": "stop after this many validations without improvement",
    "monitor": "validation metric for best.npz and early stopping (default bpc or loss)",
    "seed": "random seed (weights, shuffling, dropout)",
    "device": "cpu, cuda or testcpu",
    "threads": "BLAS threads (needs threadpoolctl)",
    "out": "directory for best.npz, last.npz and metrics.jsonl",
    "progress": "show a progress bar",
    "plot": "write curves.png and gradient_norms.png (needs matplotlib)",
    "sample_length": "characters sampled after a language model is trained",
}


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML file, sections flattened ([data], [model], [train], ...)."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{p}: not valid TOML: {err}") from None
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key not in ("cell_options",):
            for k, v in value.items():
                flat[k] = v
        else:
            flat[key] = value
    # paths in the file are relative to the file
    base = os.path.dirname(os.path.abspath(p))
    for key in ("train", "valid", "out"):
        if isinstance(flat.get(key), str) and not os.path.isabs(flat[key]):
            flat[key] = os.path.join(base, flat[key])
    _check_keys(flat, p)
    return flat


def _check_keys(values: dict[str, Any], where: str) -> None:
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ValueError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; expected keys among: "
            f"{', '.join(sorted(_FIELDS))}"
        )


def make_config(
    toml_values: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    quick: bool = False,
) -> TrainConfig:
    """Merge defaults, the task's defaults, [quick settings,] TOML values and overrides."""
    toml_values = dict(toml_values or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(toml_values, "config")
    _check_keys(overrides, "flags")
    task = overrides.get("task", toml_values.get("task", "lm"))
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    values: dict[str, Any] = dict(TASK_DEFAULTS[task])
    if quick:
        values.update(QUICK)
    values.update(toml_values)
    values.update(overrides)
    values["task"] = task
    cfg = TrainConfig(**values)
    _validate(cfg)
    return cfg


def _validate(cfg: TrainConfig) -> None:
    if cfg.level not in ("char", "word"):
        raise ValueError(f"level must be 'char' or 'word', got {cfg.level!r}")
    if cfg.format is not None and cfg.format not in ("text", "tsv", "conll", "numeric"):
        raise ValueError(f"format must be text, tsv, conll or numeric, got {cfg.format!r}")
    for name in ("hidden_size", "batch_size", "seq_len", "num_layers", "epochs"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if cfg.task != "lm" and cfg.train is None:
        raise ValueError(f"task {cfg.task!r} needs training data: give --train FILE (or train = ... in the config)")
