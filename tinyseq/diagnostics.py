"""Gradient diagnostics and training plots: the lecture's vanishing-gradient picture.

``gradient_norms(model, batch)`` returns ||dL/da<t>|| for every step t: how strongly the
loss at the end of a sequence still reaches each earlier hidden state. A plain tanh
RNN's curve falls off exponentially going back in time; gated cells (GRU, LSTM) keep
it up — which is why they can carry "The cat, which ..., was full" across the gap.

How it is computed: the model's recurrent layer is run one step at a time (each call
is an ordinary ``Recurrent`` call on one step, so any registered cell works, fused or
not); each step's output a<t> and returned state keep their gradients
(``retain_grad()``), and dL/da<t> is the sum of the two — the gradient through the
output head at step t plus the gradient through the recurrence into step t+1. This
is the *total* derivative, not only the direct one a gradient with respect to the
layer's output sequence would give.

Plots need matplotlib (``pip install tinyseq[plot]``), imported only when plotting.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import backend
from .data.batching import Batch
from .losses import cross_entropy
from .models import LanguageModel, SequenceClassifier, SequenceModel, SequenceTagger
from .models.base import _on, _top_hidden
from .tensor import Tensor, concatenate

__all__ = ["gradient_norms", "plot_gradient_norms", "plot_metrics", "read_metrics_log"]

Arr = npt.NDArray[Any]
LossFn = Callable[[list[Tensor], Any], Tensor]


def _pieces(model: SequenceModel, batch: Batch, loss_at: str) -> tuple[Tensor, Any, Arr | None, LossFn]:
    """(inputs (T, B, I), recurrent layer, mask (T, B) or None, loss of the step outputs)."""
    if isinstance(model, LanguageModel):
        x = model.embedding(model._ids(batch.x.T))
        y = batch.y.T
        rnn, mask, head = model.rnn, None, model.head
    elif isinstance(model, SequenceTagger):
        x = model.inputs(np.swapaxes(batch.x, 0, 1), model)
        y = batch.y.T
        m = batch.x_mask
        rnn, mask, head = model.rnn, None if m is None else m.T, model.head
    elif isinstance(model, SequenceClassifier):
        x = model.inputs(np.swapaxes(batch.x, 0, 1), model)
        m = batch.x_mask
        rnn, mask = model.rnn, None if m is None else m.T

        def classifier_loss(outs: list[Tensor], state: Any) -> Tensor:
            return cross_entropy(model.head(_top_hidden(state, 1)), model._ids(batch.y))

        return x, rnn, mask, classifier_loss
    else:
        raise TypeError(
            f"gradient_norms supports language models, taggers and classifiers, got {model.kind}"
        )

    def per_step_loss(outs: list[Tensor], state: Any) -> Tensor:
        if loss_at == "last":
            last = outs[-1]
            return cross_entropy(head(last), model._ids(y[-1]))
        logits = head(concatenate([o.reshape(1, *o.shape) for o in outs], axis=0))
        msk = None if mask is None else _on(model.device, mask)
        return cross_entropy(logits, model._ids(y), mask=msk)

    return x, rnn, mask, per_step_loss


def gradient_norms(model: SequenceModel, batch: Batch, loss_at: str = "last") -> Arr:
    """||dL/da<t>|| of the top recurrent layer for t = 0..T-1 (mean over the batch).

    loss_at: "last" — the loss of the last step's prediction only (classifiers always
    use their one output), the lecture's picture of a long-range dependency; "all" —
    the mean loss over all steps. Needs a unidirectional recurrent layer.
    """
    if loss_at not in ("last", "all"):
        raise ValueError(f"loss_at must be 'last' or 'all', got {loss_at!r}")
    rnn = getattr(model, "rnn", None)
    if rnn is not None and getattr(rnn, "bidirectional", False):
        raise ValueError("gradient_norms needs a unidirectional recurrent layer: a backward "
                         "direction reads the future, so dL/da<t> mixes both passes")
    was = model.training
    model.eval()  # no dropout: the picture is of the network, not of a random mask
    try:
        x, rnn, mask, loss_fn = _pieces(model, batch, loss_at)
        T = x.shape[0]
        state: Any = None
        outs: list[Tensor] = []
        states: list[Tensor] = []
        for t in range(T):
            step_mask = None if mask is None else mask[t: t + 1]
            out, state = rnn(x[t: t + 1], state, mask=step_mask)
            out = out.reshape(out.shape[1], out.shape[2]).retain_grad()
            h = state if isinstance(state, Tensor) else state[0]
            h.retain_grad()
            outs.append(out)
            states.append(h)
        model.zero_grad()
        loss_fn(outs, state).backward()
        norms = np.zeros(T)
        for t in range(T):
            g = np.zeros(outs[t].shape)
            g_out, g_state = outs[t].grad, states[t].grad
            if g_out is not None:
                g = g + backend.to_numpy(g_out.data)
            if g_state is not None:
                g = g + backend.to_numpy(g_state.data[-1])
            norms[t] = float(np.linalg.norm(g, axis=-1).mean())
        model.zero_grad()
        return norms
    finally:
        model.train(was)


def _pyplot() -> Any:
    import importlib

    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'tinyseq[plot]'") from err
    return plt


def plot_gradient_norms(
    norms: Sequence[float] | Arr | dict[str, Any], path: str, title: str = "||dL/da<t>|| by step"
) -> str:
    """Plot one or several (label -> norms) curves on a log scale; returns ``path``."""
    plt = _pyplot()
    curves = norms if isinstance(norms, dict) else {"": norms}
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in curves.items():
        ax.semilogy(np.arange(len(values)), np.maximum(np.asarray(values), 1e-30), label=label or None)
    ax.set_xlabel("step t")
    ax.set_ylabel("||dL/da<t>||")
    ax.set_title(title)
    if any(curves):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_metrics_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSON-lines metrics log."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(log_path: str | os.PathLike[str], path: str) -> str:
    """Training loss and validation metrics from a metrics log; returns ``path``."""
    plt = _pyplot()
    records = read_metrics_log(log_path)
    train = [r for r in records if r.get("event") == "train"]
    valid = [r for r in records if r.get("event") == "valid"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if valid:
        ax.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
