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
file, flags. An unknown key, a key set in two sections, and a value of the wrong type or
out of range (negative, zero, NaN) are errors (:class:`ConfigError`) that name the
setting as it was given (``--max-time`` or ``[train] max_time in run.toml``), what was
expected and what was found, before anything is built or written.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import tomllib

from .checks import check_int, check_number, given

__all__ = ["TrainConfig", "ConfigError", "TASKS", "TASK_DEFAULTS", "load_toml", "make_config",
           "QUICK"]

TASKS = ("lm", "classify", "tag", "regress", "seq2seq", "one_to_many", "one_to_one", "music",
         "transcribe")


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
    char_features: bool = False  # taggers, classifiers: a recurrent layer over each word's characters
    char_embedding_dim: int = 16
    char_hidden_size: int = 25
    char_layer: str = "cell"  # cell (a bidirectional --cell) or cnn (convolution, max-pooled)
    char_width: int = 3  # characters per convolution window
    crf: bool = False  # taggers: a linear-chain CRF output layer
    attention: str | None = None  # seq2seq: additive, dot or general (None: no attention)
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
    # frames to labels: both directions see the whole utterance before each frame's output
    "transcribe": {"hidden_size": 128, "batch_size": 16, "lr": 3e-3, "bidirectional": True,
                   "monitor": "error_rate", "out": "runs/transcribe"},
    # piano rolls are dense 88-wide binary steps: no embedding, a unidirectional model
    "music": {"hidden_size": 128, "batch_size": 16, "lr": 3e-3, "bidirectional": False,
              "out": "runs/music"},
}

# --quick: a small model and budget for a smoke test (seconds, not minutes)
QUICK: dict[str, Any] = {"hidden_size": 32, "embedding_dim": 16, "batch_size": 8,
                         "seq_len": 20, "max_steps": 20, "max_time": 30.0, "eval_every": 10,
                         "sample_length": 40}

_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

HELP: dict[str, str] = {
    # each task by the lecture's input/output pattern (README's pattern table says the same)
    "task": "what to train, by the lecture's input/output pattern: lm (many to many, Tx = Ty: "
            "the next token), classify (many to one), tag (many to many, Tx = Ty: a label per "
            "step), regress (many to many, Tx = Ty: per-step regression), seq2seq (many to many, "
            "Tx != Ty: encoder-decoder), one_to_many (one to many), one_to_one (one to one), "
            "music (many to many, Tx = Ty: the notes of the next step of a piano roll), "
            "transcribe (many to many, Tx != Ty: frames to labels with CTC, unaligned); "
            "default lm",
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
    "char_features": "tag, classify: join each word's embedding with a bidirectional --cell over "
                     "its characters (unknown words keep their shape: capitals, digits, suffixes)",
    "char_embedding_dim": "size of character embeddings (with --char-features)",
    "char_hidden_size": "hidden units per direction of the character layer, or filters of the "
                        "convolution (with --char-features)",
    "char_layer": "character layer: cell (a bidirectional --cell, default) or cnn (a convolution "
                  "over --char-width characters, max-pooled over the word)",
    "char_width": "characters per window of --char-layer cnn",
    "crf": "tag: a linear-chain CRF output layer (transition scores, Viterbi decoding, BIO "
           "constraints when the tags are BIO)",
    "attention": "seq2seq: the decoder attends to the encoder's outputs, scored additive "
                 "(Bahdanau), dot or general (Luong); default none",
    "seq_len": "language model: steps per window of truncated BPTT",
    "batch_size": "sequences per batch",
    "bucket": "group examples of similar length over this many batches (0: off)",
    "optimizer": "adam, adamw, sgd, rmsprop or adagrad",
    "lr": "learning rate",
    "weight_decay": "weight decay of the optimizer",
    "clip_norm": "clip the joint gradient norm to this value (0: no clipping)",
    "epochs": "stop after this many epochs",
    "max_steps": "stop after this many steps",
    "max_time": "stop after this many seconds of training, across resumes (inf: no limit)",
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


class ConfigError(ValueError):
    """A setting that is unknown, set twice, of the wrong type or out of range.

    The message names the setting as the user gave it (a flag, or a key and its file),
    what was expected and what was given.
    """


# what each setting accepts. Integers: the smallest value allowed. max_vocab keeps the 4
# reserved tokens (<pad> <unk> <bos> <eos>) and needs room for at least one more.
_INT_MIN: dict[str, int] = {
    "min_freq": 1, "max_vocab": 5, "hidden_size": 1, "embedding_dim": 1, "num_layers": 1,
    "seq_len": 1, "batch_size": 1, "bucket": 0, "epochs": 1, "max_steps": 1, "eval_every": 1,
    "checkpoint_every": 1, "patience": 1, "seed": 0, "threads": 1, "sample_length": 1,
    "char_embedding_dim": 1, "char_hidden_size": 1, "char_width": 1,
}
# floats: (test, what the message says is expected); NaN never passes
_FLOAT_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "valid_fraction": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
    "dropout": (lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)"),
    "teacher_forcing": (lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]"),
    "lr": (lambda v: 0.0 < v < math.inf, "a finite number > 0"),
    "weight_decay": (lambda v: 0.0 <= v < math.inf, "a finite number >= 0"),
    "clip_norm": (lambda v: 0.0 <= v < math.inf, "a finite number > 0 (or 0: no clipping)"),
    "max_time": (lambda v: v > 0.0, "a number of seconds > 0 (or inf: no limit)"),
}
_BOOLS = ("lowercase", "bidirectional", "progress", "plot", "char_features", "crf")
_PATHS = ("train", "valid", "out")
_FORMATS = ("text", "tsv", "conll", "numeric")
_DEVICES = ("cpu", "cuda", "testcpu")
# the validation metrics each task can report (models' evaluate_batch, MetricSums.summary);
# the tagger's entity_* and token_f1 need BIO tags, which only the data shows
_METRICS: dict[str, tuple[str, ...]] = {
    "lm": ("loss", "perplexity", "bpc", "accuracy"),
    "classify": ("loss", "accuracy"),
    "tag": ("loss", "accuracy", "entity_precision", "entity_recall", "entity_f1", "token_f1"),
    "regress": ("loss",),
    "seq2seq": ("loss", "accuracy", "exact_match"),
    "one_to_many": ("loss", "accuracy", "exact_match"),
    "one_to_one": ("loss", "accuracy"),
    "transcribe": ("loss", "error_rate", "exact_match"),
    "music": ("loss",),  # NLL per step, nats summed over pitches
}
_OPTIONAL = {f.name for f in dataclasses.fields(TrainConfig) if "None" in str(f.type)}


def _choices(name: str) -> tuple[str, ...] | None:
    """The allowed strings of a setting with a fixed set of values (None: any string)."""
    if name == "task":
        return TASKS
    if name == "format":
        return _FORMATS
    if name == "level":
        return ("char", "word")
    if name == "device":
        return _DEVICES
    if name == "pooling":
        from .models import SequenceClassifier

        return tuple(SequenceClassifier.POOLINGS)
    if name == "char_layer":
        from .nn.char_features import CharFeatures

        return tuple(CharFeatures.LAYERS)
    if name == "condition":
        from .models import OneToMany

        return tuple(OneToMany.CONDITIONS)
    if name == "attention":
        from .nn.attention import SCORES

        return ("none", *SCORES)
    if name == "optimizer":
        from .trainer import OPTIMIZERS

        return tuple(OPTIMIZERS)
    return None


def _flag(name: str) -> str:
    return "--cell-option" if name == "cell_options" else "--" + name.replace("_", "-")


def _check_setting(name: str, value: Any, label: str) -> Any:
    """``value`` as setting ``name`` holds it (ints as float where a float is meant);
    ConfigError naming ``label`` when it has the wrong type or is out of range."""
    if value is None and name in _OPTIONAL:
        return None
    if name == "attention" and value == "none":  # a flag cannot say None
        return None
    if name in _INT_MIN:
        return check_int(value, label, _INT_MIN[name], error=ConfigError)
    if name in _FLOAT_RULES:
        return check_number(value, label, *_FLOAT_RULES[name], error=ConfigError)
    if name in _BOOLS:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{label}: expected true or false, got {given(value)}")
    if name == "cell_options":
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise ConfigError(f"{label}: expected a table of cell options, e.g. [cell_options] "
                          f"with forget_bias = 1.0, got {given(value)}")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{label}: expected a non-empty string, got {given(value)}")
    choices = _choices(name)
    if choices is not None:
        case_free = name in ("optimizer", "device")  # as the trainer and backend read them
        if (value.lower() if case_free else value) not in choices:
            raise ConfigError(f"{label}: unknown {name} {value!r}; expected one of "
                              f"{', '.join(choices)}")
    return value


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML file, sections flattened ([data], [model], [train], ...).

    Each value is checked on its own here, so that a message names the file and section.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        raise ConfigError(f"config {p} is a directory; expected a TOML settings file such as "
                          f"{os.path.join(p, 'run.toml')}")
    try:
        with open(p, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {p}") from None
    except OSError as err:
        raise ConfigError(f"config {p} cannot be read: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(f"{p}, line {line}: expected a UTF-8 TOML file, found byte "
                          f"0x{data[err.start]:02x}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from None
    flat: dict[str, Any] = {}
    section: dict[str, str | None] = {}  # key -> the [section] it came from (None: top level)
    for key, value in raw.items():
        if isinstance(value, dict) and key != "cell_options":
            items, where = list(value.items()), key
        else:
            items, where = [(key, value)], None
        for k, v in items:
            if k in flat:
                raise ConfigError(f"{p}: {k} is set twice, {_place(section[k])} and "
                                  f"{_place(where)}; keep one")
            flat[k] = v
            section[k] = where
    _check_keys(flat, p)
    for k, v in flat.items():
        prefix = f"[{section[k]}] " if section[k] else ""
        flat[k] = _check_setting(k, v, f"{prefix}{k} in {p}")
    # paths in the file are relative to the file
    base = os.path.dirname(os.path.abspath(p))
    for key in _PATHS:
        if isinstance(flat.get(key), str) and not os.path.isabs(flat[key]):
            flat[key] = os.path.join(base, flat[key])
    return flat


def _place(section: str | None) -> str:
    return f"in [{section}]" if section else "at the top level"


def _check_keys(values: dict[str, Any], where: str) -> None:
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; expected keys among: "
            f"{', '.join(sorted(_FIELDS))}"
        )


def make_config(
    toml_values: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    quick: bool = False,
    *,
    config_file: str | None = None,
) -> TrainConfig:
    """Merge defaults, the task's defaults, [quick settings,] TOML values and overrides.

    ``overrides`` are the command-line flags (None: not given) and messages name them as
    flags; messages name ``toml_values`` as coming from ``config_file`` ("the config"
    when not given). ``--cell-option`` values add to (and override) the file's.
    """
    where = config_file or "the config"
    toml_values = dict(toml_values or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(toml_values, where)
    _check_keys(overrides, "flags")
    labels: dict[str, str] = {}
    for k, v in toml_values.items():
        labels[k] = f"{k} in {where}"
        toml_values[k] = _check_setting(k, v, labels[k])
    for k, v in overrides.items():
        labels[k] = _flag(k)
        overrides[k] = _check_setting(k, v, labels[k])
    options = dict(toml_values.get("cell_options") or {})
    option_labels = {k: f"cell_options.{k} in {where}" for k in options}
    for k, v in (overrides.get("cell_options") or {}).items():
        options[k] = v
        option_labels[k] = f"--cell-option {k}"
    task = overrides.get("task", toml_values.get("task", "lm"))
    values: dict[str, Any] = dict(TASK_DEFAULTS[task])
    if quick:
        values.update(QUICK)
    values.update(toml_values)
    values.update(overrides)
    values["task"] = task
    values["cell_options"] = options
    # the ways to switch a limit off that a flag can express
    if values.get("clip_norm") == 0.0:
        values["clip_norm"] = None
    if values.get("max_time") == math.inf:
        values["max_time"] = None
    cfg = TrainConfig(**values)
    _validate(cfg, labels, option_labels)
    return cfg


def _validate(cfg: TrainConfig, labels: dict[str, str], option_labels: dict[str, str]) -> None:
    """Checks that involve more than one setting (each value alone is checked already)."""
    if cfg.task != "lm" and cfg.train is None:
        raise ConfigError(f"task {cfg.task!r} needs training data: give --train FILE (or train = ... in the config)")
    if cfg.attention is not None:
        label = labels.get("attention", "attention")
        if cfg.task != "seq2seq":
            raise ConfigError(f"{label}: attention is for task seq2seq (the decoder attends to "
                              f"the encoder), got task {cfg.task!r}")
        if cfg.attention == "dot" and cfg.bidirectional:
            bidir = labels.get("bidirectional", "bidirectional")
            raise ConfigError(f"{label}: dot attention needs encoder outputs of the decoder's size, "
                              f"but a bidirectional encoder ({bidir}) doubles them; use additive "
                              "or general")
    if cfg.task == "music" and cfg.bidirectional:
        raise ConfigError(f"{labels.get('bidirectional', 'bidirectional')}: task music predicts "
                          "each next step, which a bidirectional model would read ahead; drop it")
    if cfg.char_features and cfg.task not in ("tag", "classify"):
        raise ConfigError(f"{labels.get('char_features', 'char_features')}: character features are "
                          f"for task tag or classify (word inputs), got task {cfg.task!r}")
    if cfg.char_features and cfg.task == "classify" and cfg.level != "word":
        raise ConfigError(f"{labels.get('char_features', 'char_features')}: character features "
                          f"read words; task classify needs --level word with them, got level "
                          f"{cfg.level!r}")
    if cfg.crf and cfg.task != "tag":
        raise ConfigError(f"{labels.get('crf', 'crf')}: the CRF output layer is for task tag, "
                          f"got task {cfg.task!r}")
    metrics = _METRICS[cfg.task]
    if cfg.monitor is not None and cfg.monitor not in metrics:
        raise ConfigError(f"{labels.get('monitor', 'monitor')}: task {cfg.task} reports the "
                          f"validation metrics {', '.join(metrics)}, got {cfg.monitor!r}")
    cfg.cell_options = _check_cell_options(cfg.cell, cfg.cell_options,
                                           labels.get("cell", "cell"), option_labels)


def _check_cell_options(cell: str, options: dict[str, Any], cell_label: str,
                        labels: dict[str, str]) -> dict[str, Any]:
    """The options checked against the registered cell's (types from its defaults)."""
    from .registry import get_cell_spec

    spec = get_cell_spec(cell)  # an unknown name lists the registered cells
    if spec.kind != "cell":
        raise ConfigError(f"{cell_label}: {cell!r} is a wrapper, not a cell (use "
                          "--bidirectional or --num-layers for those)")
    known = ", ".join(f"{k} (default {v!r})" for k, v in spec.options.items()) or "none"
    out: dict[str, Any] = {}
    for key, value in options.items():
        label = labels.get(key, f"cell option {key}")
        if key not in spec.options:
            if spec.accepts_any_option:
                out[key] = value
                continue
            raise ConfigError(f"{label}: cell {cell!r} has no option {key!r}; its options are: {known}")
        default = spec.options[key]
        if isinstance(default, bool):
            ok, what = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            what = "a finite number"
            if ok:
                value = float(value)
        elif isinstance(default, str):
            ok, what = isinstance(value, str), "a string"
        else:  # no default to learn the type from: the cell checks it
            ok, what = True, ""
        if not ok:
            raise ConfigError(f"{label}: cell {cell!r} expects {what} for option {key} "
                              f"(default {default!r}), got {given(value)}")
        out[key] = value
    return out

