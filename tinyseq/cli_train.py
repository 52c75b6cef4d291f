"""`tinyseq` subcommands: train, generate (alias sample), evaluate, predict.

    tinyseq train                       # character LM on the built-in corpus (main job)
    tinyseq train --config run.toml     # any task, flags override the file
    tinyseq generate --checkpoint runs/charlm/best.npz --prime "The " --temperature 0.8
    tinyseq evaluate --checkpoint runs/tag/best.npz --data test.conll
    tinyseq predict --checkpoint runs/classify/best.npz --input "a fine film"
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["add_commands"]

DEFAULT_CHECKPOINT = os.path.join("runs", "charlm", "best.npz")


def _value(text: str) -> Any:
    """A flag value as JSON when it parses (numbers, true/false), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from .config import HELP, TrainConfig

    for f in dataclasses.fields(TrainConfig):
        if f.name == "cell_options":
            continue
        flag = "--" + f.name.replace("_", "-")
        default_type = str(f.type)
        text = HELP.get(f.name)
        if "bool" in default_type:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif "int" in default_type and "float" not in default_type:
            p.add_argument(flag, type=int, default=None, metavar="N", help=text)
        elif "float" in default_type:
            p.add_argument(flag, type=float, default=None, metavar="X", help=text)
        else:
            p.add_argument(flag, default=None, metavar=f.name.split("_")[-1].upper(), help=text)
    p.add_argument("--cell-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the cell, e.g. variant=lecture (repeatable)")


def _friendly(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report bad input (files, data, checkpoints, settings) as one line, exit status 1."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from .backend import DeviceUnavailableError
        from .checkpoint import CheckpointError

        try:
            return fn(args)
        # a path that is a directory, unreadable or in the way is the user's to fix too
        except (CheckpointError, DeviceUnavailableError, FileNotFoundError, IsADirectoryError,
                NotADirectoryError, PermissionError, FileExistsError, ValueError, KeyError,
                TypeError) as err:
            msg = err.args[0] if isinstance(err, KeyError) and err.args else err
            print(f"error: {msg}", file=sys.stderr)
            return 1

    return run


def add_commands(sub: Any) -> None:
    """Register train, generate/sample, evaluate and predict."""
    p = sub.add_parser(
        "train", help="train a model (no arguments: the character language model main job)",
        description="Train any pattern on your data, or with no arguments a character-level "
        "language model on the built-in corpus. Settings: task defaults < --config TOML < flags.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="settings file (flags override it)")
    p.add_argument("--quick", action="store_true",
                   help="tiny model and budget (smoke test), written to runs/<task>-quick by default")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run from its last.npz (in its directory unless --out is given)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run that --out already holds (without it: refuse)")
    p.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                   help="data-parallel over the processes of `mpiexec -n N` (default: on when "
                   "started by mpiexec/mpirun/srun with N > 1; needs tinyseq[mpi]); "
                   "--batch-size is then the global batch, split over the N processes")
    _add_config_flags(p)
    p.set_defaults(func=_friendly(cmd_train))

    for name, aliases in (("generate", ["sample"]),):
        g = sub.add_parser(name, aliases=aliases, help="generate from a checkpoint (language model, "
                           "one-to-many, encoder-decoder)")
        g.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
        g.add_argument("--prime", default=None, help="text the language model continues")
        g.add_argument("--input", action="append", default=[],
                       help="source text (seq2seq) or comma-separated vector (one-to-many); repeatable")
        g.add_argument("--length", type=int, default=300, help="tokens to generate")
        g.add_argument("--temperature", type=float, action="append", default=None,
                       help="sampling temperature (repeatable; default 0.8)")
        g.add_argument("--top-k", type=int, default=None)
        g.add_argument("--greedy", action="store_true", help="most likely token each step")
        g.add_argument("--beam", type=int, default=None, metavar="WIDTH", help="beam search width")
        g.add_argument("--length-penalty", type=float, default=1.0)
        g.add_argument("--seed", type=int, default=None)
        g.set_defaults(func=_friendly(cmd_generate))

    e = sub.add_parser("evaluate", help="metrics of a checkpoint on a data file")
    e.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    e.add_argument("--data", default=None, help="data file (default: the run's validation data)")
    e.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="a progress bar on stderr for a long evaluation")
    e.set_defaults(func=_friendly(cmd_evaluate))

    r = sub.add_parser("predict", help="predictions of a checkpoint for inputs or a file")
    r.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    r.add_argument("--input", action="append", default=[], help="one input (repeatable)")
    r.add_argument("--data", default=None, help="a data file in the training format")
    r.add_argument("--beam", type=int, default=None, metavar="WIDTH")
    r.set_defaults(func=_friendly(cmd_predict))


# ---- train ----------------------------------------------------------------------------------
def _resume_mismatch(path: str, stored: dict[str, Any], model: Any) -> str | None:
    """What of the model this run builds differs from the one the checkpoint holds, named
    by setting (None when they agree or the checkpoint does not say)."""
    kind, config = stored.get("kind"), stored.get("config")
    if kind is None or not isinstance(config, dict):
        return None
    if kind != model.kind:
        return (f"{path} holds a {kind} model, this run builds a {model.kind}: a resumed run "
                f"keeps the task it was trained on (drop --task)")
    keys = sorted(set(config) | set(model.config))
    changed = [k for k in keys if config.get(k) != model.config.get(k)]
    if not changed:
        return None
    was = ", ".join(f"{k}={config.get(k)!r}" for k in changed)
    now = ", ".join(f"{k}={model.config.get(k)!r}" for k in changed)
    flags = ", ".join("--" + k.replace("_", "-") for k in changed)
    return (f"{path} was trained with {was}; this run asks for {now}. A resumed run keeps the "
            f"model it was trained with: drop {flags}, or train a new model into another --out")


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    from .config import TrainConfig

    out = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name != "cell_options" and getattr(args, f.name, None) is not None:
            out[f.name] = getattr(args, f.name)
    if args.cell_option:
        opts = {}
        for item in args.cell_option:
            key, sep, val = item.partition("=")
            if not sep:
                raise ValueError(f"--cell-option expects KEY=VALUE, got {item!r}")
            opts[key] = _value(val)
        out["cell_options"] = opts
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """Train; under mpiexec (or --distributed) on every process, rank 0 alone reporting.

    With several processes an error met by one of them ends them all (MPI abort, the
    message prefixed by its rank); errors every rank meets together (a run directory in
    the way, a NaN loss) are reported once by rank 0 and exit with status 1.
    """
    from .distributed import get_comm

    try:
        comm = get_comm(getattr(args, "distributed", None))
    except ImportError as err:  # --distributed without mpi4py
        print(f"error: {err}", file=sys.stderr)
        return 1
    if comm.size == 1:
        return _train(args, comm)
    try:
        return _train(args, comm)
    except Exception as err:  # one rank's: the others would wait for it forever
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        comm.abort(f"error: {msg}")


def _train(args: argparse.Namespace, comm: Any) -> int:
    import warnings

    from . import backend
    from .checkpoint import load_checkpoint
    from .config import TASK_DEFAULTS, load_toml, make_config
    from .distributed import on_root
    from .tasks import build_task, vocabs_from_metadata
    from .trainer import RunExistsError, Trainer, TrainingError, check_out_dir

    root = comm.rank == 0
    say = print if root else (lambda *a, **k: None)
    t_start = time.perf_counter()
    toml_values = load_toml(args.config) if args.config else {}
    flags = _flag_values(args)
    vocabs = None
    if args.resume:
        meta = load_checkpoint(args.resume).metadata
        stored = {k: v for k, v in meta.get("config", {}).items()}
        # a resumed run goes on next to its checkpoint, wherever that directory now is
        stored["out"] = os.path.dirname(os.path.abspath(args.resume))
        stored.update(toml_values)
        toml_values = stored
        vocabs = vocabs_from_metadata(meta)
    cfg = make_config(toml_values, flags, quick=args.quick, config_file=args.config or args.resume)
    if args.quick and "out" not in flags and "out" not in toml_values:
        # a smoke test never replaces the real run's checkpoints
        quick_out = str(TASK_DEFAULTS[cfg.task].get("out", os.path.join("runs", cfg.task))) + "-quick"
        cfg = dataclasses.replace(cfg, out=quick_out)
    if args.resume:
        for key in ("train", "valid"):
            path = getattr(cfg, key)
            if key not in flags and isinstance(path, str) and not os.path.exists(path):
                raise FileNotFoundError(
                    f"{args.resume} was trained on --{key} {path}, which is not found from "
                    f"{os.getcwd()}; give its place with --{key} FILE")
    if comm.size > 1:
        batch = cfg.batch_size or 32
        if batch % comm.size:
            lower, upper = batch // comm.size * comm.size, (batch // comm.size + 1) * comm.size
            raise ValueError(
                f"--batch-size {batch} is the global batch and must divide by the {comm.size} "
                f"processes (each takes an equal share); give e.g. --batch-size "
                f"{lower or upper} or {upper}")
    try:  # rank 0 alone looks at the directory; every rank gets its answer
        on_root(comm, lambda: check_out_dir(cfg.out, args.resume, args.overwrite, flags=True))
    except RunExistsError as err:
        say(f"error: {err}", file=sys.stderr)
        return 1
    if cfg.threads is not None:
        _limit_threads(cfg.threads, asked="threads" in flags or "threads" in toml_values)
    backend.manual_seed(cfg.seed)
    if comm.size > 1 and backend.get_device(cfg.device).name == "cuda":
        from .distributed import use_local_gpu

        use_local_gpu()  # one GPU per rank of this machine, before anything is on one
    backend.set_default_device(cfg.device)
    task = build_task(cfg, vocabs)
    if args.resume:
        problem = _resume_mismatch(args.resume, meta.get("model", {}), task.model)
        if problem:
            say(f"error: {problem}", file=sys.stderr)
            return 1
    say(task.description)
    say(f"model: {task.model.kind}, {task.model.num_parameters():,} parameters, cell {cfg.cell}")
    if comm.size > 1:
        say(f"data-parallel on {comm.size} processes, {(cfg.batch_size or 32) // comm.size} "
            f"sequences each per batch of {cfg.batch_size or 32}")
    metadata = task.metadata
    stored_cfg = cfg.to_dict()
    for key in ("train", "valid", "out"):  # absolute, so that a resume works from any directory
        if isinstance(stored_cfg.get(key), str):
            stored_cfg[key] = os.path.abspath(stored_cfg[key])
    metadata["config"] = stored_cfg
    trainer = Trainer(
        task.model, task.train_data, task.valid_data, optimizer=cfg.optimizer, lr=cfg.lr or 2e-3,
        weight_decay=cfg.weight_decay, clip_norm=cfg.clip_norm, epochs=cfg.epochs,
        max_steps=cfg.max_steps, max_time=cfg.max_time, eval_every=cfg.eval_every,
        checkpoint_every=cfg.checkpoint_every, out_dir=cfg.out, monitor=cfg.monitor,
        patience=cfg.patience, seed=cfg.seed, progress=cfg.progress, metadata=metadata,
        overwrite=args.overwrite, comm=comm,
    )

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = show
            summary = trainer.fit(resume=args.resume)
    except (TrainingError, RunExistsError) as err:  # met by every rank at the same step
        say(f"error: {err}", file=sys.stderr)
        return 1
    if not root:  # samples, plots and the summary are rank 0's
        return 130 if summary.stop_reason == "interrupted" else 0
    print(f"stopped after {summary.steps} steps ({summary.stop_reason}), "
          f"{summary.elapsed:.0f} s of training")
    if summary.stop_reason == "interrupted":
        print(f"interrupted: saved {summary.last_path}; continue with "
              f"`tinyseq train --resume {summary.last_path}`", file=sys.stderr)
        return 130
    best = summary.best
    metric = trainer.monitor
    if best.get(metric) is not None:
        print(f"best validation {metric}: {best[metric]:.4f} (step {best['step']})")
    if summary.last_valid:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in summary.last_valid.items())
        print(f"last validation: {shown}")
    if cfg.task == "lm" and summary.best_path:
        _lm_samples(summary.best_path, cfg.sample_length, cfg.seed)
    if cfg.plot and cfg.out:
        _plots(trainer, cfg.out, cfg.cell)
    print(f"checkpoints and metrics log in {cfg.out}/ (best.npz, last.npz, metrics.jsonl)")
    if cfg.task == "lm" and best.get("bpc") is not None:
        unit = "character" if cfg.level == "char" else "word"
        print(f"validation bits per {unit}: {best['bpc']:.3f}; total time "
              f"{time.perf_counter() - t_start:.0f} s")
    return 0


def _limit_threads(n: int, asked: bool) -> None:
    """Cap the BLAS threads NumPy uses (needs threadpoolctl; a busy machine runs faster
    with fewer threads than cores, because idle BLAS threads spin)."""
    import importlib

    try:
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        if asked:  # a task default is only a preference: no warning then
            print("--threads needs threadpoolctl (pip install threadpoolctl); or set "
                  f"OPENBLAS_NUM_THREADS={n} before starting", file=sys.stderr)
        return
    threadpoolctl.threadpool_limits(limits=n, user_api="blas")


def _lm_samples(path: str, length: int, seed: int) -> None:
    from .models import LanguageModel
    from .tasks import vocabs_from_metadata
    from .trainer import load_model

    model, meta = load_model(path)
    assert isinstance(model, LanguageModel)
    vocab = vocabs_from_metadata(meta)["input"]
    prime = "The "
    for temp in (0.5, 1.0):
        ids = model.generate(vocab.encode_text(prime), length, temperature=temp, rng=seed,
                             exclude=_special_ids(vocab))
        print(f"\n--- sample, temperature {temp} ---\n{prime}{_joiner(vocab)}{vocab.decode_text(ids)}")
    print()


def _joiner(vocab: Any) -> str:
    """What goes between the prime and the generated text: a space between words."""
    return "" if vocab.level == "char" else " "


def _special_ids(vocab: Any) -> list[int]:
    """Ids a language model should never produce as text (the reserved tokens)."""
    return [vocab.stoi[t] for t in vocab.specials]


def _plots(trainer: Any, out: str, cell: str) -> None:
    from .diagnostics import plot_gradient_norms, plot_metrics

    try:
        curves = plot_metrics(os.path.join(out, "metrics.jsonl"), os.path.join(out, "curves.png"))
    except ImportError as err:
        print(f"no plots: {err}", file=sys.stderr)
        return
    print(f"plot: {curves}")
    try:
        norms = trainer.gradient_norms()
    except (TypeError, ValueError) as err:  # a model the diagnostics cannot probe
        print(f"no gradient plot: {err}", file=sys.stderr)
        return
    path = plot_gradient_norms({cell: norms}, os.path.join(out, "gradient_norms.png"),
                               title="||dL/da<t>|| by step t (loss at the last step)")
    print(f"plot: {path}")


# ---- from a checkpoint --------------------------------------------------------------------------
def _load(path: str) -> tuple[Any, dict[str, Any], dict[str, Any], Any]:
    from .config import make_config
    from .tasks import vocabs_from_metadata
    from .trainer import load_model

    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path} (train one with `tinyseq train`)")
    model, meta = load_model(path)
    vocabs = vocabs_from_metadata(meta)
    cfg = make_config({k: v for k, v in meta.get("config", {}).items()},
                      config_file=f"the config stored in {path}")
    return model, meta, vocabs, cfg


def _check_decoding_flags(args: argparse.Namespace) -> None:
    """The numeric flags of generate / predict in range, before any work is done."""
    from .checks import check_int, check_number

    for name, smallest in (("length", 1), ("beam", 1), ("top_k", 1), ("seed", 0)):
        value = getattr(args, name, None)
        if value is not None:
            check_int(value, f"--{name.replace('_', '-')}", smallest)
    for temp in getattr(args, "temperature", None) or []:
        check_number(temp, "--temperature", lambda v: 0 < v < math.inf, "a finite number > 0")
    penalty = getattr(args, "length_penalty", None)
    if penalty is not None:
        check_number(penalty, "--length-penalty", lambda v: 0 <= v < math.inf,
                     "a finite number >= 0 (0: no length normalisation)")


def cmd_generate(args: argparse.Namespace) -> int:
    _check_decoding_flags(args)
    model, _, vocabs, cfg = _load(args.checkpoint)
    temps = args.temperature or [0.8]
    if model.kind == "language_model":
        vocab = vocabs["input"]
        prime = args.prime if args.prime is not None else "The "
        ids = vocab.encode_text(prime) or [vocab.bos_id]
        for temp in temps:
            out = model.generate(ids, args.length, temperature=temp, top_k=args.top_k,
                                 greedy=args.greedy, rng=args.seed, exclude=_special_ids(vocab))
            if len(temps) > 1:
                print(f"--- temperature {temp} ---")
            print(prime + _joiner(vocab) + vocab.decode_text(out))
        return 0
    if model.kind in ("seq2seq", "one_to_many"):
        batch = _inputs_batch(model, vocabs, cfg, args.input)
        method = "beam" if args.beam else ("greedy" if args.greedy else "sample")
        out = model.decode(batch, max_len=args.length, method=method, beam_width=args.beam or 5,
                           length_penalty=args.length_penalty, temperature=temps[0],
                           top_k=args.top_k, rng=args.seed)
        for ids in out:
            print(_show_ids(ids, vocabs.get("target")))
        return 0
    raise ValueError(f"generate works with language_model, seq2seq and one_to_many checkpoints, "
                     f"this one holds a {model.kind}; use `tinyseq predict`")


def _show_ids(ids: list[int], vocab: Any) -> str:
    if vocab is not None:
        return str(vocab.decode_text(ids))
    return " ".join(str(i) for i in ids if i != 3)


def _inputs_batch(model: Any, vocabs: dict[str, Any], cfg: Any, inputs: list[str]) -> Any:
    from .data import Batch, pad_characters, pad_sequences, tokenize, word_tokenize

    if not inputs:
        raise ValueError("no inputs: give at least one --input TEXT (predict also reads --data FILE)")
    n = len(inputs)
    if model.kind == "one_to_many":
        size = int(model.config["condition_size"])
        rows = []
        for s in inputs:
            try:
                row = [float(v) for v in s.split(",")]
            except ValueError:
                row = []
            if len(row) != size:
                raise ValueError(f"--input {s!r}: this one-to-many model expects {size} "
                                 f"comma-separated numbers, e.g. {','.join(['0.5'] * size)}")
            rows.append(row)
        return Batch(x=np.array(rows, dtype=np.float32), y=np.zeros((n, 1), dtype=np.int64))
    key = "source" if "source" in vocabs else "input"
    words: list[list[str]] = []
    if key in vocabs:
        vocab = vocabs[key]
        # a tagger reads prose as words and punctuation; other text at its vocabulary's level
        words = [word_tokenize(s) if model.kind == "tagger" else tokenize(s, vocab.level)
                 for s in inputs]
        seqs = [vocab.encode([w.lower() for w in ws] if cfg.lowercase else ws) or [vocab.unk_id]
                for ws in words]
    else:  # trained on .npz ids: the input is ids too
        seqs = []
        for s in inputs:
            try:
                ids = [int(v) for v in s.split()]
            except ValueError:
                ids = []
            if not ids or min(ids) < 0:
                raise ValueError(f"--input {s!r}: this model was trained on token ids; expected "
                                 "whitespace-separated integers >= 0, e.g. '5 8 2'")
            seqs.append(ids)
    x, lens = pad_sequences(seqs, 0, dtype=np.int64)
    chars = char_lengths = None
    if model.config.get("char_features"):  # each word's characters, as written
        if "chars" not in vocabs or not words:
            raise ValueError("this model reads character features: the checkpoint needs its "
                             "character vocabulary ('chars') and text inputs")
        cv = vocabs["chars"]
        chars, char_lengths = pad_characters(
            [[cv.encode(list(w)) for w in (ws or [""])] for ws in words], x.shape[1])
    return Batch(x=x, y=np.zeros((n, 1), dtype=np.int64), x_lengths=lens,
                 y_lengths=np.ones(n, dtype=np.int64), chars=chars, char_lengths=char_lengths)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .tasks import build_task, evaluation_stream, load_chars, load_examples
    from .trainer import Trainer

    model, _, vocabs, cfg = _load(args.checkpoint)
    if args.data:
        if cfg.task == "lm":
            from .data import encode_stream, read_text

            ids = encode_stream(read_text(args.data), vocabs["input"])
            data: Any = evaluation_stream(ids, cfg, args.data)
        else:
            from .data import SequenceDataset

            xs, ys, xseq, yseq = load_examples(args.data, cfg, dict(vocabs), build=False)
            chars = load_chars(args.data, cfg, dict(vocabs), build=False)
            data = SequenceDataset(xs, ys, cfg.batch_size or 32, xseq, yseq, shuffle=False,
                                   chars=chars)
    else:
        task = build_task(cfg, vocabs)
        data = task.valid_data
        if data is None:
            raise ValueError("the run had no validation data; give --data FILE")
    metrics = Trainer(model, data, progress=args.progress, seed=None).evaluate(data)
    print(json.dumps(metrics, indent=2))
    return 0


def _predict_transcripts(model: Any, args: argparse.Namespace) -> int:
    """A transcriber's label ids for each example of a .npz file of frames: 'x' (N, T, F)
    and optionally 'x_lengths' (N,); one line per example, its index, a tab, the ids."""
    from .data import Batch, DataFormatError

    if args.input or not args.data:
        raise ValueError("a transcriber reads frames, not text: give --data FILE.npz holding 'x' "
                         "(N, T, F) float frames and optionally 'x_lengths' (N,)")
    path = args.data
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in ("x", "x_lengths") if k in f.files}
    except (ValueError, OSError, AttributeError) as err:
        raise DataFormatError(path, None, f"expected a .npz file of numeric arrays ({err})") from None
    x = arrays.get("x")
    size = model.config.get("input_size")
    if x is None or x.ndim != 3 or x.dtype.kind != "f" or x.shape[2] != size:
        got = "no 'x'" if x is None else f"'x' {x.dtype} {x.shape}"
        raise DataFormatError(path, None, f"expected 'x' as float frames (N, T, {size}), got {got}")
    lengths = arrays.get("x_lengths", np.full(x.shape[0], x.shape[1]))
    if lengths.shape != (x.shape[0],) or lengths.dtype.kind not in "iu" or (
            lengths.size and (lengths.min() < 1 or lengths.max() > x.shape[1])):
        raise DataFormatError(path, None, f"expected 'x_lengths' as {x.shape[0]} integers in "
                              f"[1, {x.shape[1]}], got {lengths.dtype} {lengths.shape}")
    method = "beam" if args.beam else "greedy"
    for start in range(0, x.shape[0], 32):
        rows = slice(start, start + 32)
        batch = Batch(x=x[rows].astype(np.float32), y=np.zeros((len(x[rows]), 1), dtype=np.int64),
                      x_lengths=lengths[rows].astype(np.int64))
        for i, ids in enumerate(model.predict(batch, method=method, beam_width=args.beam or 8)):
            print(f"{start + i}\t{' '.join(str(t) for t in ids)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    _check_decoding_flags(args)
    model, _, vocabs, cfg = _load(args.checkpoint)
    if model.kind == "language_model":
        raise ValueError("for a language model use `tinyseq generate --prime TEXT`")
    if model.kind == "transcriber":
        return _predict_transcripts(model, args)
    if model.kind not in ("classifier", "tagger", "seq2seq", "one_to_many"):
        # before reading --data: a file of another format would only give a misleading error
        raise ValueError(f"predict does not handle {model.kind} checkpoints from the command line; "
                         "use `tinyseq evaluate --data FILE`")
    inputs = list(args.input)
    if args.data:
        from .data import DataFormatError, read_lines

        lines = read_lines(args.data)
        if not lines:
            raise DataFormatError(args.data, None, "expected one input per line (the text, "
                                  "optionally a tab and more fields), the file has no lines")
        inputs += [line.split("\t")[0] for _, line in lines]
    batch = _inputs_batch(model, vocabs, cfg, inputs)
    if model.kind == "classifier":
        labels = vocabs.get("labels")
        for text, c in zip(inputs, model.predict(batch)):
            print(f"{labels.itos[int(c)] if labels else int(c)}\t{text}")
    elif model.kind == "tagger":
        from .data import word_tokenize

        tags = vocabs.get("tags")
        for text, pred in zip(inputs, model.predict(batch)):
            words = word_tokenize(text)  # as _inputs_batch split it
            shown = [f"{w}/{tags.itos[t] if tags else t}" for w, t in zip(words, pred)]
            print(" ".join(shown))
    elif model.kind in ("seq2seq", "one_to_many"):
        method = "beam" if args.beam else "greedy"
        for text, ids in zip(inputs, model.decode(batch, max_len=100, method=method, beam_width=args.beam or 5)):
            print(f"{text}\t{_show_ids(ids, vocabs.get('target'))}")
    return 0
