"""One generic trainer for every sequence pattern.

    trainer = Trainer(model, train_data, valid_data, lr=2e-3, clip_norm=5.0,
                      max_steps=1000, out_dir="runs/tagger")
    summary = trainer.fit()              # or fit(resume="runs/tagger/last.npz")
    trainer.evaluate(test_data)          # {"loss": ..., "accuracy": ..., ...}

The model supplies the pattern (see :mod:`tinyseq.models`); the trainer supplies the
loop: optimizer and gradient clipping, truncated BPTT with the state carried across
batches of a stream, validation, early stopping, the best and the latest checkpoint
(atomic), exact resume, Ctrl-C that saves and stops, a stop with a clear message on a
NaN/Inf loss, a tqdm progress bar and a JSON-lines metrics log.

A run never replaces another run's files unasked: ``fit`` refuses (:class:`RunExistsError`)
when ``out_dir`` already holds ``best.npz``, ``last.npz`` or ``metrics.jsonl``, unless it
resumes a checkpoint of that directory or the trainer was built with ``overwrite=True``.

Exact resume: batches depend only on (seed, epoch), and a checkpoint holds the
weights, the optimizer's state, the random generator's state, the position in the
epoch and the carried recurrent state, so a resumed run repeats the losses and final
weights of an uninterrupted one bit for bit. A checkpoint also records the training
data's batches per epoch and a fingerprint of its content; resumed on other data, the
run goes on from the start of the next epoch, with a warning (the old position means
nothing in other data).

Data-parallel (``comm=`` a :class:`~tinyseq.distributed.Communicator` of N > 1 ranks,
e.g. under ``mpiexec``): every rank holds the whole model and takes its rows of each
global batch (:func:`tinyseq.data.batching.shard`); per step the gradients, weighted by
each rank's number of predictions, go through one all-reduce of one flat buffer (with
the loss, the counts and the stop flag), then clipping by the global norm and the
optimizer step run on every rank on the same numbers, so the weights stay identical
and the run is that of one process on the global batch (up to the order of floating
sums: float64 agrees to ~1e-12). Validation is summed over the ranks' shards. Rank 0
alone checks the run directory, writes checkpoints and metrics and shows progress; a
checkpoint holds every rank's carried state (the global batch's rows), so it resumes
on any number of ranks. Dropout draws from one generator per rank (rank 0's is the
one-process generator), so with dropout a run on N ranks is not the one-process run.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from . import backend, optim
from .checkpoint import load_checkpoint, save_checkpoint
from .checks import check_int, check_number
from .data.batching import Batch, shard, shard_rows
from .distributed import Communicator, on_root
from .metrics import MetricSums
from .models import SequenceModel, build_model, detach_state
from .tensor import Tensor, _wrap

__all__ = ["Trainer", "TrainingError", "RunExistsError", "DataSource", "FitSummary", "load_model",
           "OPTIMIZERS", "RUN_FILES", "check_out_dir", "data_fingerprint"]

OPTIMIZERS: dict[str, Any] = {
    "adam": optim.Adam,
    "adamw": optim.AdamW,
    "sgd": optim.SGD,
    "rmsprop": optim.RMSprop,
    "adagrad": optim.Adagrad,
}
# metrics where larger is better; everything else (loss, bpc, perplexity) is minimised
_MAXIMISE = ("accuracy", "entity_f1", "token_f1", "exact_match", "f1")


# the files that make a directory a run's: a new run into it would replace them
RUN_FILES = ("best.npz", "last.npz", "metrics.jsonl")
# a bar for an evaluation only when it has at least this many batches
_EVAL_BAR_MIN_BATCHES = 10


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


class RunExistsError(FileExistsError):
    """The output directory already holds a run, and neither resume nor overwrite was asked."""


def check_out_dir(
    out_dir: str | os.PathLike[str] | None,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    flags: bool = False,
) -> None:
    """Refuse to start a run whose checkpoints would replace another run's.

    Allowed: a directory without :data:`RUN_FILES`, resuming a checkpoint that lies in
    ``out_dir``, or ``overwrite``. flags: word the advice as command-line flags.
    """
    if out_dir is None:
        return
    out = os.fspath(out_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunExistsError(f"{'--out' if flags else 'out_dir'} {out} is a file, not a directory")
    held = [name for name in RUN_FILES if os.path.exists(os.path.join(out, name))]
    source = os.fspath(resume) if resume is not None else None
    source_dir = os.path.dirname(os.path.abspath(source)) if source is not None else None
    same_dir = (source_dir is not None and os.path.isdir(out) and os.path.isdir(source_dir)
                and os.path.samefile(source_dir, out))
    if same_dir and overwrite:
        raise ValueError(
            f"{'--overwrite' if flags else 'overwrite=True'} replaces the run in {out}, "
            f"{'--resume' if flags else 'resume'} {source} continues it; give one of them")
    if not held or same_dir or overwrite:
        return
    where = f"{out} already holds a run ({', '.join(held)})"
    if source is not None:
        where += f" and {source} is not one of its checkpoints"
    ckpt = next((os.path.join(out, n) for n in ("last.npz", "best.npz") if n in held), None)
    if flags:
        cont = f"Continue it with `--resume {ckpt}`, r" if ckpt else "R"
        advice = f"{cont}eplace it with `--overwrite`, or give another `--out DIR`"
    else:
        cont = f"Continue it with fit(resume={ckpt!r}), r" if ckpt else "R"
        advice = f"{cont}eplace it with Trainer(..., overwrite=True), or give another out_dir"
    raise RunExistsError(f"{where}; a new run would replace its checkpoints, so nothing was written. {advice}.")


def data_fingerprint(data: Any) -> str | None:
    """A data source's ``fingerprint()`` (a hash of its content and batching), or None for
    a source without one (:class:`~tinyseq.data.StreamDataset` and
    :class:`~tinyseq.data.SequenceDataset` have it)."""
    own = getattr(data, "fingerprint", None)
    return str(own()) if callable(own) else None


# what the trainer's real-valued arguments accept: (test, what the message says is expected)
_POSITIVE = (lambda v: 0 < v < math.inf, "a positive finite number")
_NON_NEGATIVE = (lambda v: 0 <= v < math.inf, "a finite number >= 0")


_REQUIRED = ("epochs", "log_every", "lr", "weight_decay")  # the others may be None: not set


def _check_args(ints: dict[str, Any], reals: dict[str, tuple[Any, tuple[Any, str]]]) -> None:
    """Raise ValueError naming the first argument out of range."""
    for name, value in ints.items():
        if value is not None or name in _REQUIRED:
            check_int(value, f"Trainer: {name}", 0 if name == "seed" else 1)
    for name, (value, (test, what)) in reals.items():
        if value is not None or name in _REQUIRED:
            check_number(value, f"Trainer: {name}", test, what)


class DataSource(Protocol):
    """What the trainer iterates: ``batches(epoch, start)`` and ``len()`` (batches/epoch).

    ``carries_state`` True means consecutive batches continue the same sequences, so
    the recurrent state is carried (detached) from one batch to the next.
    """

    carries_state: bool

    def __len__(self) -> int: ...

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]: ...


@dataclass
class FitSummary:
    """What :meth:`Trainer.fit` did."""

    steps: int
    epochs_completed: int
    stop_reason: str
    best: dict[str, Any] = field(default_factory=dict)
    last_valid: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    best_path: str | None = None
    last_path: str | None = None


def _state_parts(state: Any) -> list[Any]:
    """The arrays of a carried state (a Tensor or a tuple of them), each (L*D, B, H)."""
    if state is None:
        return []
    parts = (state,) if isinstance(state, Tensor) else tuple(state)
    return [p.data for p in parts]


def _state_from(arrays: dict[str, Any], n: int, single: bool, dev: Any,
                comm: Communicator | None = None) -> Any:
    """The carried state of a checkpoint; with ``comm``: this rank's rows of it."""
    if n == 0:
        return None
    parts = []
    for i in range(n):
        a = arrays[f"carried_state/{i}"]
        if comm is not None and comm.size > 1:
            a = np.ascontiguousarray(a[:, shard_rows(a.shape[1], comm.rank, comm.size)])
        parts.append(_wrap(a if dev.name == "cpu" else dev.xp.asarray(a), dev))
    return parts[0] if single else tuple(parts)


def _rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of rank ``rank``'s own random numbers (dropout), apart from every other rank's."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


class Trainer:
    """Train a :class:`~tinyseq.models.SequenceModel` on a :class:`DataSource`.

    optimizer: a name in :data:`OPTIMIZERS` (built with ``lr`` and ``weight_decay``) or
    an optimizer instance. scheduler: an optional learning-rate schedule (e.g.
    ``optim.lr_scheduler.StepLR(trainer.optimizer, ...)``, or a function
    ``optimizer -> schedule``), stepped every "epoch" or "step" (``scheduler_interval``)
    and saved in checkpoints. clip_norm: clip the joint gradient norm (None: no clipping).
    Stops at the first of ``epochs``, ``max_steps`` and ``max_time`` (seconds of
    training, across resumes). eval_every: validate every N steps (default: once per
    epoch, and at the end). checkpoint_every: write ``last.npz`` every N steps (it is
    always written at the end); ``best.npz`` whenever the monitored validation metric
    improves. monitor: the metric for "best" and early stopping (default ``bpc`` for
    language models, else ``loss``); patience: evaluations without improvement before
    stopping early. metadata: extra JSON saved in every checkpoint (e.g. vocabularies).
    overwrite: let :meth:`fit` replace a run that ``out_dir`` already holds (its
    checkpoints as this run writes its own, and a fresh ``metrics.jsonl``); without it
    ``fit`` raises :class:`RunExistsError` unless it resumes a checkpoint of ``out_dir``.
    comm: a :class:`~tinyseq.distributed.Communicator` for data-parallel training
    (``tinyseq.distributed.get_comm()``; default: this process alone); the data sources
    are the global ones, every rank is given the same.
    """

    def __init__(
        self,
        model: SequenceModel,
        train_data: DataSource,
        valid_data: DataSource | None = None,
        *,
        optimizer: str | Any = "adam",
        scheduler: Any = None,
        scheduler_interval: str = "epoch",
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        clip_norm: float | None = 5.0,
        epochs: int = 10,
        max_steps: int | None = None,
        max_time: float | None = None,
        eval_every: int | None = None,
        checkpoint_every: int | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        monitor: str | None = None,
        patience: int | None = None,
        seed: int | None = 0,
        progress: bool = True,
        log_every: int = 10,
        metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
        comm: Communicator | None = None,
    ) -> None:
        _check_args(
            {"epochs": epochs, "log_every": log_every, "max_steps": max_steps, "seed": seed,
             "eval_every": eval_every, "checkpoint_every": checkpoint_every, "patience": patience},
            {"lr": (lr, _POSITIVE), "weight_decay": (weight_decay, _NON_NEGATIVE),
             "max_time": (max_time, _POSITIVE), "clip_norm": (clip_norm, _POSITIVE)},
        )
        if not isinstance(overwrite, bool):
            raise ValueError(f"Trainer: overwrite: expected True or False, got {overwrite!r}")
        self.model = model
        self.train_data = train_data
        self.valid_data = valid_data
        if isinstance(optimizer, str):
            key = optimizer.lower()
            if key not in OPTIMIZERS:
                raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {sorted(OPTIMIZERS)}")
            self.optimizer = OPTIMIZERS[key](model.parameters(), lr=lr, weight_decay=weight_decay)
        else:
            self.optimizer = optimizer
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        if scheduler is not None and not hasattr(scheduler, "step"):
            scheduler = scheduler(self.optimizer)  # a factory: optimizer -> schedule
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.lr = lr
        self.clip_norm = clip_norm
        self.epochs = epochs
        self.max_steps = max_steps
        self.max_time = max_time
        self.eval_every = eval_every
        self.checkpoint_every = checkpoint_every
        self.out_dir = os.fspath(out_dir) if out_dir is not None else None
        self.monitor = monitor or ("bpc" if model.bits else "loss")
        self.maximise = self.monitor in _MAXIMISE or self.monitor.endswith("f1")
        self.patience = patience
        self.progress = progress
        self.log_every = log_every
        self.metadata = dict(metadata or {})
        self.overwrite = overwrite
        self.comm = comm if comm is not None else Communicator()
        self._root = self.comm.rank == 0
        self._local_train = shard(train_data, self.comm.rank, self.comm.size)
        self.seed = seed
        if seed is not None:
            backend.manual_seed(seed if self._root else _rank_seed(seed, self.comm.rank))
        # progress through training (all of it saved in checkpoints)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed = 0.0
        self.tokens = 0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.last_valid_step: int | None = None
        self.carried: Any = None
        self.history: list[float] = []  # training loss of every step of this process
        self.valid_history: list[dict[str, float]] = []
        self._stop_requested = False
        self._bar_in_seconds = False
        self._fitting = False
        self._written: set[str] = set()  # checkpoints this run wrote (the only ones it vouches for)
        self._resumed_from: str | None = None
        self._stale: set[str] = set()  # an overwritten run's checkpoints, removed at the first save
        self._log_mode = "a"
        self._fingerprint: str | None = None
        self._saved_data: tuple[Any, Any] | None = None  # (batches per epoch, fingerprint) of a resume
        self._flat: Any = None  # the all-reduce buffer, reused step after step
        self._synced_elapsed = 0.0  # rank 0's clock, as the last all-reduce brought it
        self._start_time = time.perf_counter()

    # ---- paths -----------------------------------------------------------------------
    @property
    def best_path(self) -> str | None:
        return os.path.join(self.out_dir, "best.npz") if self.out_dir else None

    @property
    def last_path(self) -> str | None:
        return os.path.join(self.out_dir, "last.npz") if self.out_dir else None

    @property
    def log_path(self) -> str | None:
        return os.path.join(self.out_dir, "metrics.jsonl") if self.out_dir else None

    # ---- checkpoints -------------------------------------------------------------------
    def _trainer_state(self, n: int, single: bool) -> dict[str, Any]:
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "elapsed": self.elapsed, "tokens": self.tokens, "best_value": self.best_value,
            "best_step": self.best_step, "bad_evals": self.bad_evals, "monitor": self.monitor,
            "last_valid_step": self.last_valid_step,
            "carried_parts": n, "carried_single": single,
            "batches_per_epoch": len(self.train_data), "data_fingerprint": self._data_fingerprint(),
        }

    def _data_fingerprint(self) -> str | None:
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(self.train_data)
        return self._fingerprint

    def _carried_parts(self) -> tuple[list[Any], bool]:
        """The carried state's arrays for a checkpoint, every rank's rows (in rank order)
        on rank 0 (collective under MPI); and whether it is one array (not LSTM's pair)."""
        single = isinstance(self.carried, Tensor)
        parts = _state_parts(self.carried)
        if self.comm.size == 1:
            return parts, single
        host = [backend.to_numpy(a) for a in parts]
        gathered = self.comm.gather((host, single))
        if gathered is None:
            return [], single
        held = [(p, one) for p, one in gathered if p]  # a rank without rows carries nothing
        if not held:
            return [], single
        n = len(held[0][0])
        return [np.concatenate([p[i] for p, _ in held], axis=1) for i in range(n)], held[0][1]

    def save(self, path: str) -> None:
        """Write a checkpoint: weights, optimizer, RNG, position, carried state, metadata.

        Under MPI every rank calls it (it gathers the ranks' carried states and random
        generators) and rank 0 writes.
        """
        parts, single = self._carried_parts()
        rngs = self.comm.gather(backend.get_rng_state())
        self._written.add(os.path.abspath(path))
        if not self._root:
            self._stale = set()
            return
        meta = dict(self.metadata)
        meta["model"] = {"kind": self.model.kind, "config": self.model.config}
        meta["trainer"] = self._trainer_state(len(parts), single)
        meta["rng"] = backend.get_rng_state()
        if self.comm.size > 1:
            meta["rng_ranks"] = rngs
        if self.scheduler is not None:
            meta["scheduler"] = self.scheduler.state_dict()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        save_checkpoint(path, self.model, self.optimizer, metadata=meta,
                        extra_arrays={f"carried_state/{i}": a for i, a in enumerate(parts)})
        # an overwritten run's other checkpoints go now, so the directory never mixes two runs
        for old in sorted(self._stale - {os.path.abspath(path)}):
            if os.path.exists(old):
                os.remove(old)
        self._stale = set()

    def resume(self, path: str | os.PathLike[str]) -> None:
        """Load a checkpoint written by :meth:`save` and continue from where it was.

        Under MPI every rank loads the same file and takes its own rows of the carried state.
        """
        ckpt = load_checkpoint(path, self.model, self.optimizer)
        t = ckpt.metadata.get("trainer")
        if t is None:
            raise ValueError(f"{os.fspath(path)} holds no trainer state (was it written by Trainer.save?)")
        self.step, self.epoch, self.batch_in_epoch = t["step"], t["epoch"], t["batch_in_epoch"]
        self.elapsed, self.tokens = t["elapsed"], t["tokens"]
        self.best_value, self.best_step, self.bad_evals = t["best_value"], t["best_step"], t["bad_evals"]
        self.last_valid_step = t.get("last_valid_step")
        self.carried = _state_from(ckpt.arrays, t["carried_parts"], t["carried_single"], self.model.device,
                                   comm=self.comm)
        rngs = ckpt.metadata.get("rng_ranks")
        if self.comm.size > 1 and isinstance(rngs, list) and len(rngs) == self.comm.size:
            backend.set_rng_state(rngs[self.comm.rank])
        elif self._root:
            backend.set_rng_state(ckpt.metadata["rng"])
        else:  # saved by another number of ranks: a fresh stream of this rank's own
            backend.manual_seed(_rank_seed(self.seed or 0, self.comm.rank, self.step))
        if self.scheduler is not None and "scheduler" in ckpt.metadata:
            self.scheduler.load_state_dict(ckpt.metadata["scheduler"])
        self._saved_data = (t.get("batches_per_epoch"), t.get("data_fingerprint"))
        self._resumed_from = os.fspath(path)

    def _check_resumed_data(self, per_epoch: int) -> None:
        """After a resume on other data: go on from the start of the next epoch, with a warning."""
        if self._saved_data is None:
            return
        saved_len, saved_fp = self._saved_data
        self._saved_data = None
        now_fp = self._data_fingerprint()
        differs = (saved_len is not None and saved_len != per_epoch) or (
            saved_fp is not None and now_fp is not None and saved_fp != now_fp)
        if not differs and self.batch_in_epoch < per_epoch:
            return
        saved = f"{saved_len} batches per epoch" if saved_len is not None else "batches per epoch unknown"
        msg = (f"{self._resumed_from} was trained on other training data ({saved}; this data has "
               f"{per_epoch}, content {'differs' if saved_fp != now_fp else 'unknown'}): ")
        if self.batch_in_epoch > 0:
            msg += (f"its position (epoch {self.epoch}, batch {self.batch_in_epoch}) does not apply, "
                    f"so training goes on from the start of epoch {self.epoch + 1}")
            self.epoch += 1
            self.batch_in_epoch = 0
            self.carried = None
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
        else:
            msg += f"training goes on from the start of epoch {self.epoch}"
        if self._root:
            warnings.warn(msg + "; the resumed run is not the exact continuation of the saved one",
                          UserWarning, stacklevel=3)

    # ---- logging -------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        if self._root:  # the other ranks only note it was written, as rank 0 does
            with open(self.log_path, self._log_mode, encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        self._log_mode = "a"
        self._written.add(os.path.abspath(self.log_path))

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(
        self, data: DataSource | None = None, max_batches: int | None = None, progress: bool | None = None
    ) -> dict[str, float]:
        """Metrics of the model on ``data`` (default: the validation data).

        progress: a bar on stderr (default: the trainer's ``progress``) for data of at
        least 10 batches; during :meth:`fit` it disappears when the evaluation ends.
        Under MPI every rank calls it: each evaluates its rows of every batch, the counts
        are summed over the ranks, and every rank returns the metrics of the whole data.
        """
        source = data if data is not None else self.valid_data
        if source is None:
            raise ValueError("evaluate: no data given and the trainer has no validation data")
        _check_args({"max_batches": max_batches}, {})
        total = len(source) if max_batches is None else min(len(source), max_batches)
        bar = None
        if (self.progress if progress is None else progress) and total >= _EVAL_BAR_MIN_BATCHES and self._root:
            tqdm = importlib.import_module("tqdm.auto").tqdm
            bar = tqdm(total=total, desc="evaluate", unit="batch", dynamic_ncols=True,
                       file=sys.stderr, leave=not self._fitting)
        was = self.model.training
        self.model.eval()
        sums = MetricSums()
        state = None
        try:
            for i, batch in enumerate(shard(source, self.comm.rank, self.comm.size).batches(0)):
                if max_batches is not None and i >= max_batches:
                    break
                if len(batch):  # a rank's shard of a small batch may hold no rows
                    counts, state = self.model.evaluate_batch(batch, state if source.carries_state else None)
                    sums.add(counts)
                if bar is not None:
                    bar.update(1)
        finally:
            self.model.train(was)
            if bar is not None:
                bar.close()
        if self.comm.size > 1:
            sums = MetricSums.merged(self.comm.allgather(sums.sums))
        return sums.summary(bits=self.model.bits)

    def _improved(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.maximise else value < self.best_value

    def _validate(self) -> dict[str, float]:
        metrics = self.evaluate()
        self.last_valid_step = self.step
        self.valid_history.append(metrics)
        value = metrics.get(self.monitor)
        if value is None:
            raise ValueError(f"monitor {self.monitor!r} is not among the validation metrics {sorted(metrics)}")
        improved = self._improved(value)
        if improved:
            self.best_value, self.best_step, self.bad_evals = value, self.step, 0
        else:
            self.bad_evals += 1
        self._log({"event": "valid", "step": self.step, "epoch": self.epoch, **metrics})
        if improved and self.best_path:
            self.save(self.best_path)
        return metrics

    # ---- training ---------------------------------------------------------------------------
    def _train_step(self, batch: Batch) -> tuple[float, float, int]:
        """One optimizer step on ``batch`` (this rank's shard); (loss, gradient norm, tokens)
        of the global batch."""
        model = self.model
        params = list(model.parameters())
        result: Any = None
        if self.comm.size == 1:
            state = self.carried if self.train_data.carries_state else None
            result = model.loss(batch, state)
            loss_value = result.loss.item()
            if not math.isfinite(loss_value):
                self._nonfinite("loss", loss_value)
            self.optimizer.zero_grad()
            result.loss.backward()
            tokens = batch.num_tokens
        else:
            result, loss_value, tokens = self._global_gradients(batch, params)
        if self.clip_norm is not None:
            norm = optim.clip_grad_norm_(params, self.clip_norm)
        else:
            norm = math.sqrt(sum(float((p.grad.data.astype(np.float64) ** 2).sum()) for p in params if p.grad is not None))
        if not math.isfinite(norm):
            self._nonfinite("gradient norm", norm)
        self.optimizer.step()
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        if self.train_data.carries_state and result is not None:
            self.carried = detach_state(result.state)
        return loss_value, norm, tokens

    def _global_gradients(self, batch: Batch, params: Sequence[Tensor]) -> tuple[Any, float, int]:
        """The global batch's mean gradient in every rank's ``.grad``, through one
        all-reduce; returns (this rank's StepResult or None, global loss, global tokens).

        Each rank sends count * its mean gradient (count: its predictions), so the sum
        over ranks divided by the summed counts is the mean over the global batch even
        when shards hold different numbers of tokens (padding, masks). The buffer also
        carries which parameters got a gradient, the loss, the stop flag and rank 0's
        clock, so that every rank takes the same decisions.
        """
        self.optimizer.zero_grad()
        result = None
        count, local_loss = 0, 0.0
        if len(batch):
            state = self.carried if self.train_data.carries_state else None
            result = self.model.loss(batch, state)
            result.loss.backward()
            count, local_loss = int(result.count), result.loss.item()
        xp = self.model.device.xp
        sizes = [int(p.data.size) for p in params]
        total = sum(sizes)
        dtype = np.result_type(*[p.data.dtype for p in params])
        flat = xp.empty(total + len(params) + 5, dtype=dtype)  # fresh: .grad are views of it
        offset = 0
        for p, n in zip(params, sizes):
            part = flat[offset: offset + n]
            if p.grad is not None and count > 0:
                xp.multiply(p.grad.data.reshape(-1), count, out=part)
            else:
                part[...] = 0
            offset += n
        has_grad = [float(p.grad is not None and count > 0) for p in params]
        clock = time.perf_counter() - self._start_time if self._root else 0.0
        flat[total:] = xp.asarray(has_grad + [local_loss * count, count, batch.num_tokens if len(batch) else 0,
                                              float(self._stop_requested), clock], dtype=dtype)
        self.comm.allreduce_(flat)
        tail = backend.to_numpy(flat[total:]).astype(np.float64)
        loss_sum, n_pred, tokens, stop, clock = (float(v) for v in tail[len(params):])
        self._stop_requested = stop > 0
        self._synced_elapsed = clock
        loss_value = loss_sum / n_pred if n_pred > 0 else math.nan
        if not math.isfinite(loss_value):
            self._nonfinite("loss", loss_value)
        offset = 0
        for p, n, got in zip(params, sizes, tail[: len(params)]):
            if got > 0:
                g = flat[offset: offset + n].reshape(p.data.shape)
                g /= n_pred
                p.grad = _wrap(g if g.dtype == p.data.dtype else g.astype(p.data.dtype), p.device)
            else:
                p.grad = None
            offset += n
        return result, loss_value, int(round(tokens))

    def _broadcast_weights(self) -> None:
        """Every rank starts from rank 0's weights (whatever seed built each model)."""
        params = list(self.model.parameters())
        if self.comm.size == 1 or not params:
            return
        xp = self.model.device.xp
        flat = xp.concatenate([p.data.reshape(-1).astype(np.float64) for p in params])
        self.comm.broadcast_(flat)
        offset = 0
        for p in params:
            n = int(p.data.size)
            p.data[...] = flat[offset: offset + n].reshape(p.data.shape).astype(p.data.dtype)
            offset += n

    def _nonfinite(self, what: str, value: float) -> None:
        # only a checkpoint this run wrote (or resumed from) is known to be good: the
        # directory may hold an older run's files
        ours = [p for p in (self.last_path, self.best_path) if p and os.path.abspath(p) in self._written]
        if ours:
            keep = f"the last good checkpoint is kept: {ours[0]}"
        elif self._resumed_from is not None:
            keep = f"the checkpoint it resumed from is kept: {self._resumed_from}"
        else:
            keep = "this run wrote no checkpoint yet"
        raise TrainingError(
            f"the {what} became {value} at step {self.step + 1} (epoch {self.epoch}, batch "
            f"{self.batch_in_epoch}); training stopped without saving these weights; {keep}. "
            f"Try a lower learning rate (now {self.lr}) or gradient clipping (clip_norm="
            f"{self.clip_norm})."
        )

    def _done(self) -> str | None:
        if self._stop_requested:
            return "interrupted"
        if self.max_steps is not None and self.step >= self.max_steps:
            return "max_steps"
        if self.max_time is not None and self.elapsed >= self.max_time:
            return "max_time"
        if self.epoch >= self.epochs:
            return "epochs"
        if self.patience is not None and self.bad_evals >= self.patience:
            return "early_stopping"
        return None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self._stop_requested = True

    def fit(self, resume: str | os.PathLike[str] | None = None) -> FitSummary:
        """Train until a stop condition; returns a :class:`FitSummary`.

        Ctrl-C finishes the current step, saves ``last.npz`` and returns with
        ``stop_reason="interrupted"`` (a second Ctrl-C stops at once).
        """
        # a second fit() of this trainer continues its own run; resume() may have come first
        continues = resume if resume is not None else self._resumed_from
        if not self._written:  # rank 0 looks, the others raise what it found
            on_root(self.comm, lambda: check_out_dir(self.out_dir, continues, self.overwrite))
        per_epoch = len(self.train_data)
        if per_epoch == 0:
            raise ValueError("the training data has no batches")
        if resume is not None:
            self.resume(resume)
        self._check_resumed_data(per_epoch)
        self._stop_requested = False
        if self.out_dir:
            if self.overwrite and not self._written and continues is None:
                # replace the run there: a fresh log now, its checkpoints at this run's first save
                self._log_mode = "w"
                self._stale = {os.path.abspath(p) for p in (self.best_path, self.last_path)
                               if p and os.path.exists(p) and self._root}
            if self._root:
                os.makedirs(self.out_dir, exist_ok=True)
        self._broadcast_weights()
        self.model.train()
        self._log({"event": "start", "step": self.step, "epoch": self.epoch,
                   "parameters": self.model.num_parameters(), "model": self.model.kind})
        old_handler = None
        try:
            old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: Ctrl-C handling stays as it was
            old_handler = None
        bar = self._progress_bar(per_epoch)
        start_time = time.perf_counter() - self.elapsed
        self._start_time = start_time
        window_tokens, window_start = 0, time.perf_counter()
        reason = self._done()
        last_valid: dict[str, float] = {}
        self._fitting = True
        try:
            while reason is None:
                yielded = False
                for batch in self._local_train.batches(self.epoch, self.batch_in_epoch):
                    yielded = True
                    loss_value, norm, tokens = self._train_step(batch)
                    self.step += 1
                    self.batch_in_epoch += 1
                    self.tokens += tokens
                    window_tokens += tokens
                    self.history.append(loss_value)
                    # under MPI rank 0's clock (it came with the all-reduce): one decision on max_time
                    self.elapsed = (time.perf_counter() - start_time if self.comm.size == 1
                                    else self._synced_elapsed)
                    if self.step % self.log_every == 0:
                        now = time.perf_counter()
                        tps = window_tokens / max(now - window_start, 1e-9)
                        window_tokens, window_start = 0, now
                        self._log({"event": "train", "step": self.step, "epoch": self.epoch,
                                   "loss": loss_value, "grad_norm": norm, "tokens_per_s": tps,
                                   "lr": self.optimizer.param_groups[0]["lr"], "time": self.elapsed})
                        if bar is not None:
                            bar.set_postfix(step=self.step, loss=f"{loss_value:.3f}",
                                            tok_s=f"{tps:,.0f}", refresh=False)
                    if bar is not None:
                        # a time-budgeted run counts seconds, otherwise steps
                        done = min(self.elapsed, bar.total) if self._bar_in_seconds else self.step
                        bar.update(done - bar.n)
                    if self.batch_in_epoch >= per_epoch:
                        self.epoch += 1
                        self.batch_in_epoch = 0
                        self.carried = None
                        if self.scheduler is not None and self.scheduler_interval == "epoch":
                            self.scheduler.step()
                        if self.eval_every is None and self.valid_data is not None:
                            last_valid = self._validate()
                    if self.eval_every and self.valid_data is not None and self.step % self.eval_every == 0:
                        last_valid = self._validate()
                        if bar is not None:
                            bar.set_description(f"{self.monitor} {last_valid[self.monitor]:.3f}", refresh=False)
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.last_path:
                        self.save(self.last_path)
                    reason = self._done()
                    if reason is not None:
                        break
                else:
                    if not yielded:  # looping on would spin forever
                        raise TrainingError(
                            f"the training data gave no batch for epoch {self.epoch} from batch "
                            f"{self.batch_in_epoch} on, though it has {per_epoch} batches per epoch "
                            f"(len()); its batches(epoch, start) must yield batches start..len()-1")
                    reason = self._done()
            # a final validation unless one just happened at this step
            if self.valid_data is not None and reason != "interrupted" and self.last_valid_step != self.step:
                last_valid = self._validate()
        finally:
            self._fitting = False
            if bar is not None:
                bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if self.last_path:
            self.save(self.last_path)
        self._log({"event": "end", "step": self.step, "reason": reason, "time": self.elapsed})
        return FitSummary(
            steps=self.step, epochs_completed=self.epoch, stop_reason=reason,
            best={"step": self.best_step, self.monitor: self.best_value},
            last_valid=last_valid, elapsed=self.elapsed,
            best_path=self.best_path if self.best_path and os.path.exists(self.best_path) else None,
            last_path=self.last_path,
        )

    def _progress_bar(self, per_epoch: int) -> Any:
        self._bar_in_seconds = False
        if not self.progress or not self._root:
            return None
        tqdm = importlib.import_module("tqdm.auto").tqdm
        total = self.epochs * per_epoch
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        elif self.max_time is not None:
            # the time budget is what will stop the run: show its progress
            self._bar_in_seconds = True
            return tqdm(total=round(self.max_time), initial=min(round(self.elapsed), round(self.max_time)),
                        unit="s", dynamic_ncols=True, file=sys.stderr, leave=True,
                        bar_format="{desc}{percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s{postfix}")
        return tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True,
                    file=sys.stderr, leave=True)

    # ---- diagnostics ---------------------------------------------------------------------------
    def gradient_norms(self, batch: Batch | None = None, loss_at: str = "last") -> npt.NDArray[Any]:
        """||dL/da<t>|| for every step t of ``batch`` (default: the first training batch).

        See :func:`tinyseq.diagnostics.gradient_norms`.
        """
        from .diagnostics import gradient_norms

        if batch is None:
            batch = next(iter(self.train_data.batches(0)))
        return gradient_norms(self.model, batch, loss_at=loss_at)


def load_model(path: str | os.PathLike[str]) -> tuple[SequenceModel, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint; returns (model in eval mode, metadata).

    The stored config is checked against the stored weights' shapes first (without
    building anything of the config's sizes): a mismatch is a CheckpointError.
    """
    from .checkpoint import CheckpointError
    from .model_shapes import config_mismatch

    ckpt = load_checkpoint(path)
    info = ckpt.metadata.get("model")
    if not isinstance(info, dict) or "kind" not in info:
        raise ValueError(f"{os.fspath(path)} holds no model description (was it written by Trainer.save?)")
    config = dict(info["config"])
    # a config that lies about its sizes must not get to allocate a model of those sizes
    shapes = {k: tuple(v.shape) for k, v in ckpt.model_state.items()}
    problem = config_mismatch(info["kind"], config, shapes)
    if problem is not None:
        raise CheckpointError(
            f"{os.fspath(path)}: its model config does not fit its stored weights ({problem})"
        )
    model = build_model(info["kind"], config)
    model.load_state_dict(ckpt.model_state)
    model.eval()
    return model, ckpt.metadata

