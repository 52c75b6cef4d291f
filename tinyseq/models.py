"""Models for every input/output pattern, with one contract the trainer relies on.

| pattern               | model                  | lecture example                   |
|-----------------------|------------------------|-----------------------------------|
| one to one            | :class:`OneToOne`      | a plain feed-forward network      |
| one to many           | :class:`OneToMany`     | music composition, captioning     |
| many to one           | :class:`SequenceClassifier` | text classification          |
| many to many, Tx = Ty | :class:`SequenceTagger`, :class:`LanguageModel`, :class:`SequenceRegressor` | named entities, next character |
| many to many, Tx ≠ Ty, CTC | :class:`SequenceTranscriber` | speech recognition |
| many to many, Tx ≠ Ty | :class:`Seq2Seq`       | translation, chatbot (attention)  |

The trainer's contract (:class:`SequenceModel`):
    ``loss(batch, state) -> StepResult``  mean loss over ``count`` predictions, and the
        recurrent state to carry into the next batch (language models only);
    ``evaluate_batch(batch, state) -> (counts, state)``  additive metric counts (see
        :class:`tinyseq.metrics.MetricSums`);
    ``config``  the constructor's arguments (JSON), so a checkpoint can rebuild the model.

Every recurrent part is a ``tinyseq.nn.Recurrent`` with any registered cell, stacked
layers and (for encoders) both directions. Batches are batch first (host NumPy);
models lay them out time-major (T, B, ...) for the recurrent layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from . import backend, decoding
from .backend import Device
from .ctc import ctc_loss
from .data.batching import Batch
from .functional import dropout as dropout_fn
from .functional import log_softmax
from .losses import binary_cross_entropy_with_logits, cross_entropy
from .metrics import entity_counts, error_counts, token_counts
from .nn import CRF, CharFeatures, Embedding, Linear, Module
from .nn.attention import SCORES, Attention
from .nn.patches import PatchEncoder
from .nn.recurrent import Recurrent
from .tensor import Tensor, _wrap, concatenate, no_grad, stack, tanh, where

__all__ = [
    "StepResult",
    "SequenceModel",
    "LanguageModel",
    "SequenceClassifier",
    "SequenceTagger",
    "SequenceRegressor",
    "SequenceTranscriber",
    "Seq2Seq",
    "OneToMany",
    "OneToOne",
    "MultiLabelTagger",
    "ImageCaptioner",
    "MODELS",
    "build_model",
    "detach_state",
    "select_state",
]

Arr = npt.NDArray[Any]
State = Any  # a Tensor (L*D, B, H), a tuple of such (LSTM), or None


@dataclass
class StepResult:
    """One training step's output: ``loss`` (scalar Tensor, mean over ``count``)."""

    loss: Tensor
    count: int
    state: State = None
    extra: dict[str, float] = field(default_factory=dict)


def detach_state(state: State) -> State:
    """The state cut from the graph (truncated BPTT keeps values, drops history)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(detach_state(s) for s in state)


def select_state(state: State, index: Arr, axis: int = 1) -> State:
    """The state of the batch rows ``index`` (beam search reorders hypotheses this way)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        idx = (slice(None),) * axis + (state.device.xp.asarray(index),)
        return state[idx]
    return tuple(select_state(s, index, axis) for s in state)


def _on(dev: Device, arr: Any) -> Any:
    """A host array on ``dev`` (no copy on cpu)."""
    a = np.asarray(arr)
    return a if dev.name == "cpu" else dev.xp.asarray(a)


def _top_hidden(state: State, directions: int) -> Tensor:
    """The top layer's final h, directions concatenated: (B, D*H)."""
    h = state if isinstance(state, Tensor) else state[0]
    parts = [h[h.shape[0] - directions + d] for d in range(directions)]
    return parts[0] if directions == 1 else concatenate(parts, axis=1)


class SequenceModel(Module):
    """Base class of the pattern models: records the constructor config, moves data."""

    kind: ClassVar[str] = ""
    bits: ClassVar[bool] = False  # report bits per token and perplexity

    def __init__(self, **config: Any) -> None:
        super().__init__()
        object.__setattr__(self, "config", dict(config))
        self.config: dict[str, Any]

    def _ids(self, arr: Arr) -> Any:
        return _on(self.device, np.asarray(arr, dtype=np.int64))

    def _floats(self, arr: Arr) -> Tensor:
        dtype = next(iter(self.parameters())).dtype
        return _wrap(_on(self.device, np.asarray(arr, dtype=dtype)), self.device)

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        raise NotImplementedError

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items() if not isinstance(v, list))


class _InputLayer(Module):
    """Token ids -> embeddings, or float features passed through: (T, B[, F]) -> (T, B, E)."""

    def __init__(self, vocab_size: int | None, input_size: int | None, embedding_dim: int) -> None:
        super().__init__()
        if (vocab_size is None) == (input_size is None):
            raise ValueError(
                "give exactly one of vocab_size (token ids) or input_size (float features), "
                f"got vocab_size={vocab_size}, input_size={input_size}"
            )
        self.embedding = Embedding(vocab_size, embedding_dim, padding_idx=0) if vocab_size else None
        self.size = embedding_dim if vocab_size else int(input_size or 0)

    def forward(self, x: Any, model: SequenceModel) -> Tensor:
        if self.embedding is not None:
            if x.dtype.kind not in "iu":
                raise TypeError(f"this model embeds token ids; expected integer inputs, got {x.dtype}")
            return self.embedding(model._ids(x))  # type: ignore[no-any-return]
        if x.dtype.kind != "f":
            raise TypeError(f"this model reads float features; expected float inputs, got {x.dtype}")
        if x.shape[-1] != self.size:
            raise ValueError(f"expected {self.size} input features per step, got shape {x.shape}")
        return model._floats(x)


def _char_options(char_features: bool, char_vocab_size: int | None, char_embedding_dim: int,
                  char_hidden_size: int, char_layer: str, char_width: int) -> dict[str, Any]:
    """The character-feature entries of a model's config (none when they are off, so that
    configs without them stay as they were)."""
    if not char_features:
        return {}
    if char_vocab_size is None:
        raise ValueError("char_features=True needs char_vocab_size (the character vocabulary's size)")
    return {"char_features": True, "char_vocab_size": char_vocab_size,
            "char_embedding_dim": char_embedding_dim, "char_hidden_size": char_hidden_size,
            "char_layer": char_layer, "char_width": char_width}


def _char_layer(chars: dict[str, Any], cell: str, cell_options: dict[str, Any]) -> CharFeatures | None:
    """The character layer a config asks for (None without character features)."""
    if not chars:
        return None
    return CharFeatures(chars["char_vocab_size"], chars["char_embedding_dim"], chars["char_hidden_size"],
                        cell, layer=chars["char_layer"], width=chars["char_width"], **cell_options)


def _with_chars(model: SequenceModel, x: Tensor, batch: Batch) -> Tensor:
    """Word inputs x (T, B, E) joined with the words' character features (T, B, E + F)."""
    layer: CharFeatures | None = getattr(model, "chars", None)
    if layer is None:
        return x
    if batch.chars is None or batch.char_lengths is None:
        raise ValueError("this model reads character features (char_features=True): the batch "
                         "needs chars (B, T, C) and char_lengths (B, T), e.g. from "
                         "SequenceDataset(..., chars=...) or tinyseq.data.pad_characters")
    if batch.char_lengths.shape != batch.x.shape[:2]:
        raise ValueError(f"char_lengths must be (B, T) = {batch.x.shape[:2]} like x, got "
                         f"{batch.char_lengths.shape}")
    feats = layer(np.swapaxes(batch.chars, 0, 1), batch.char_lengths.T)
    return concatenate([x, feats], axis=2)


# ---- many to many, aligned: language model ---------------------------------------------
class LanguageModel(SequenceModel):
    """Next-token prediction: ids (T, B) -> logits (T, B, V); state carried across batches."""

    kind = "language_model"
    bits = True

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        hidden_size: int = 256,
        cell: str = "lstm",
        num_layers: int = 1,
        dropout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        super().__init__(
            vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
            cell=cell, num_layers=num_layers, dropout=dropout, **cell_options,
        )
        self.embedding = Embedding(vocab_size, embedding_dim)
        self.rnn = Recurrent(cell, embedding_dim, hidden_size, num_layers=num_layers,
                             dropout=dropout, **cell_options)
        self.head = Linear(hidden_size, vocab_size)
        self.dropout = dropout

    def forward(self, ids: Any, state: State = None, lengths: Any = None) -> tuple[Tensor, State]:
        """ids (T, B) -> logits (T, B, V), final state."""
        x = self.embedding(self._ids(ids))
        x = dropout_fn(x, self.dropout, self.training)
        out, state = self.rnn(x, state, lengths=lengths)
        out = dropout_fn(out, self.dropout, self.training)
        return self.head(out), state

    def _logits(self, batch: Batch, state: State) -> tuple[Tensor, Arr, Arr | None, State]:
        ymask = batch.y_mask
        lengths = batch.x_lengths
        logits, state = self(batch.x.T, state, lengths=lengths)
        mask = None if ymask is None else ymask.T
        return logits, batch.y.T, mask, state

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        logits, y, mask, state = self._logits(batch, state)
        loss = cross_entropy(logits, self._ids(y), mask=None if mask is None else _on(self.device, mask))
        count = int(y.size if mask is None else mask.sum())
        return StepResult(loss, count, state)

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            logits, y, mask, state = self._logits(batch, state)
            m = None if mask is None else _on(self.device, mask)
            total = cross_entropy(logits, self._ids(y), mask=m, reduction="sum")
            pred = backend.to_numpy(logits.data.argmax(axis=-1))
        hits = pred == y
        count = y.size if mask is None else int(mask.sum())
        correct = hits.sum() if mask is None else hits[mask].sum()
        return {"loss_sum": total.item(), "count": count, "correct": int(correct)}, state

    def step_fn(self, tokens: Arr, state: State) -> tuple[Arr, State]:
        """Decoding interface: previous tokens (K,) -> logits (K, V) on the host."""
        with no_grad():
            logits, state = self(np.asarray(tokens)[None, :], state)
        return backend.to_numpy(logits.data[0]), state

    def generate(
        self,
        prime: Sequence[int],
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        greedy: bool = False,
        rng: Any = None,
        exclude: Sequence[int] = (),
    ) -> list[int]:
        """Ids that continue ``prime`` (at least one id), ``length`` of them.

        exclude: ids never to produce (e.g. the vocabulary's pad/begin/end tokens).
        """
        if len(prime) == 0:
            raise ValueError("generate needs a non-empty prime (e.g. the <bos> id or some text)")
        was = self.training
        self.eval()
        try:
            with no_grad():
                state: State = None
                if len(prime) > 1:
                    _, state = self(np.asarray(prime[:-1])[:, None], None)
                start = np.asarray(prime[-1:])
                banned = np.asarray(list(exclude), dtype=np.int64)

                def step(tokens: Arr, st: State) -> tuple[Arr, State]:
                    logits, st = self.step_fn(tokens, st)
                    if banned.size:
                        logits = logits.copy()
                        logits[:, banned] = -np.inf
                    return logits, st

                if greedy:
                    return decoding.greedy(step, state, start, length)[0]
                return decoding.sample(step, state, start, length, temperature, top_k, rng=rng)[0]
        finally:
            self.train(was)


# ---- many to one ----------------------------------------------------------------------
class SequenceClassifier(SequenceModel):
    """One label per sequence from the last *valid* step (or a masked mean/max pool).

    ``pooling="last"`` reads the top layer's final state, which the recurrent layer
    holds at each sequence's own last valid step (both directions when bidirectional:
    the forward pass ends at step len-1, the backward pass at step 0).
    """

    kind = "classifier"
    POOLINGS = ("last", "mean", "max")

    def __init__(
        self,
        num_classes: int,
        vocab_size: int | None = None,
        input_size: int | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        pooling: str = "last",
        dropout: float = 0.0,
        char_features: bool = False,
        char_vocab_size: int | None = None,
        char_embedding_dim: int = 16,
        char_hidden_size: int = 25,
        char_layer: str = "cell",
        char_width: int = 3,
        **cell_options: Any,
    ) -> None:
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        chars = _char_options(char_features, char_vocab_size, char_embedding_dim, char_hidden_size,
                              char_layer, char_width)
        super().__init__(
            num_classes=num_classes, vocab_size=vocab_size, input_size=input_size,
            embedding_dim=embedding_dim, hidden_size=hidden_size, cell=cell,
            num_layers=num_layers, bidirectional=bidirectional, pooling=pooling,
            dropout=dropout, **chars, **cell_options,
        )
        self.inputs = _InputLayer(vocab_size, input_size, embedding_dim)
        self.chars = _char_layer(chars, cell, cell_options)
        width = self.inputs.size + (self.chars.size if self.chars is not None else 0)
        self.rnn = Recurrent(cell, width, hidden_size, num_layers=num_layers,
                             bidirectional=bidirectional, dropout=dropout, **cell_options)
        self.directions = 2 if bidirectional else 1
        self.head = Linear(self.directions * hidden_size, num_classes)
        self.pooling = pooling
        self.dropout = dropout

    def features(self, batch: Batch) -> Tensor:
        """The sequence summary (B, D*H)."""
        x = _with_chars(self, self.inputs(np.swapaxes(batch.x, 0, 1), self), batch)
        x = dropout_fn(x, self.dropout, self.training)
        out, state = self.rnn(x, None, lengths=batch.x_lengths)
        if self.pooling == "last":
            return _top_hidden(state, self.directions)
        mask = batch.x_mask
        if mask is None:
            mask = np.ones(batch.x.shape[:2], dtype=bool)
        m = _on(self.device, mask.T[..., None].astype(out.dtype))
        if self.pooling == "mean":
            denom = _on(self.device, mask.sum(axis=1)[:, None].astype(out.dtype))
            pooled: Tensor = (out * _wrap(m, self.device)).sum(axis=0) / _wrap(denom, self.device)
            return pooled
        masked = where(_on(self.device, mask.T[..., None]), out, -1e30)
        return masked.max(axis=0)

    def forward(self, batch: Batch) -> Tensor:
        """Logits (B, C)."""
        f = dropout_fn(self.features(batch), self.dropout, self.training)
        return self.head(f)  # type: ignore[no-any-return]

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        return StepResult(cross_entropy(self(batch), self._ids(batch.y)), len(batch))

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            logits = self(batch)
            total = cross_entropy(logits, self._ids(batch.y), reduction="sum").item()
            pred = backend.to_numpy(logits.data.argmax(axis=-1))
        return {"loss_sum": total, "count": len(batch), "correct": int((pred == batch.y).sum())}, None

    def predict(self, batch: Batch) -> Arr:
        """Predicted class ids (B,)."""
        self.eval()
        with no_grad():
            return backend.to_numpy(self(batch).data.argmax(axis=-1))


# ---- many to many, aligned: tagging ------------------------------------------------------
class SequenceTagger(SequenceModel):
    """One label per step (Tx = Ty), masked per-step loss; BIO F1 when tags are given.

    ``tag_names``: the tag strings by id; when they look like BIO tags, evaluation adds
    entity-level and token-level F1. ``char_features=True`` joins each word's embedding
    with a bidirectional ``cell`` over its characters (:class:`~tinyseq.nn.CharFeatures`;
    batches then carry ``chars``). ``crf=True`` puts a linear-chain CRF on the per-step
    scores (:class:`~tinyseq.nn.CRF`: the loss is its negative log-likelihood per tag,
    prediction is Viterbi), with BIO constraints when the tags are BIO.
    """

    kind = "tagger"

    def __init__(
        self,
        num_tags: int,
        vocab_size: int | None = None,
        input_size: int | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        tag_names: list[str] | None = None,
        char_features: bool = False,
        char_vocab_size: int | None = None,
        char_embedding_dim: int = 16,
        char_hidden_size: int = 25,
        char_layer: str = "cell",
        char_width: int = 3,
        crf: bool = False,
        **cell_options: Any,
    ) -> None:
        chars = _char_options(char_features, char_vocab_size, char_embedding_dim, char_hidden_size,
                              char_layer, char_width)
        super().__init__(
            num_tags=num_tags, vocab_size=vocab_size, input_size=input_size,
            embedding_dim=embedding_dim, hidden_size=hidden_size, cell=cell,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
            tag_names=tag_names, **chars, **({"crf": True} if crf else {}), **cell_options,
        )
        self.inputs = _InputLayer(vocab_size, input_size, embedding_dim)
        self.chars = _char_layer(chars, cell, cell_options)
        width = self.inputs.size + (self.chars.size if self.chars is not None else 0)
        self.rnn = Recurrent(cell, width, hidden_size, num_layers=num_layers,
                             bidirectional=bidirectional, dropout=dropout, **cell_options)
        self.head = Linear((2 if bidirectional else 1) * hidden_size, num_tags)
        self.dropout = dropout
        self.tag_names = tag_names
        self.bio = bool(tag_names) and all(
            t == "O" or t[:2] in ("B-", "I-") or t.startswith("<") for t in tag_names or ()
        )
        # (a config whose tag names do not match num_tags, as the shape probe builds, has none)
        constrain = self.bio and len(tag_names or ()) == num_tags
        self.crf = CRF(num_tags, tag_names, constraints=constrain) if crf else None

    def forward(self, batch: Batch) -> Tensor:
        """Logits (T, B, C) (with a CRF: its per-step emission scores)."""
        x = _with_chars(self, self.inputs(np.swapaxes(batch.x, 0, 1), self), batch)
        x = dropout_fn(x, self.dropout, self.training)
        out, _ = self.rnn(x, None, lengths=batch.x_lengths)
        out = dropout_fn(out, self.dropout, self.training)
        return self.head(out)  # type: ignore[no-any-return]

    def _mask(self, batch: Batch) -> Arr:
        m = batch.y_mask if batch.y_mask is not None else batch.x_mask
        return np.ones(batch.y.shape[:2], dtype=bool) if m is None else m

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        mask = self._mask(batch)
        count = int(mask.sum())
        if self.crf is not None:  # the sequences' NLL, per tag like the cross-entropy
            nll = self.crf.nll(self(batch), batch.y.T, _on(self.device, mask.T), reduction="sum")
            return StepResult(nll / float(max(count, 1)), count)
        loss = cross_entropy(self(batch), self._ids(batch.y.T), mask=_on(self.device, mask.T))
        return StepResult(loss, count)

    def _decode(self, logits: Tensor, mask: Arr) -> Arr:
        """Predicted tag ids (B, T): Viterbi with a CRF, else the best tag per step."""
        if self.crf is None:
            return backend.to_numpy(logits.data.argmax(axis=-1)).T
        pred = np.zeros(mask.shape, dtype=np.int64)
        for b, path in enumerate(self.crf.decode(logits, mask.T)):
            pred[b, : len(path)] = path
        return pred

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        mask = self._mask(batch)
        with no_grad():
            logits = self(batch)
            if self.crf is not None:
                total = self.crf.nll(logits, batch.y.T, _on(self.device, mask.T)).item()
            else:
                total = cross_entropy(logits, self._ids(batch.y.T), mask=_on(self.device, mask.T),
                                      reduction="sum").item()
            pred = self._decode(logits, mask)  # (B, T)
        counts = {"loss_sum": total, "count": int(mask.sum()),
                  "correct": int((pred == batch.y)[mask].sum())}
        if self.bio and self.tag_names:
            names = self.tag_names
            lens = mask.sum(axis=1)
            p = [[names[i] for i in pred[b, : lens[b]]] for b in range(len(batch))]
            g = [[names[i] for i in batch.y[b, : lens[b]]] for b in range(len(batch))]
            counts.update(zip(("entity_tp", "entity_fp", "entity_fn"), entity_counts(p, g)))
            counts.update(zip(("token_tp", "token_fp", "token_fn"), token_counts(p, g)))
        return counts, None

    def predict(self, batch: Batch) -> list[list[int]]:
        """Predicted tag ids of each sequence's valid steps."""
        self.eval()
        mask = batch.x_mask if batch.x_mask is not None else np.ones(batch.x.shape[:2], dtype=bool)
        with no_grad():
            pred = self._decode(self(batch), mask)
        return [pred[b, : int(mask[b].sum())].tolist() for b in range(len(batch))]


class SequenceRegressor(SequenceTagger):
    """Values per step (Tx = Ty): x (B, T, I) -> y (B, T, F), masked mean squared error.

    E.g. next-step prediction of a numeric series (``.npy`` data). ``output_size`` = F.
    """

    kind = "regressor"

    def __init__(
        self,
        output_size: int,
        input_size: int | None = None,
        vocab_size: int | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        super().__init__(output_size, vocab_size=vocab_size, input_size=input_size,
                         embedding_dim=embedding_dim, hidden_size=hidden_size, cell=cell,
                         num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
                         **cell_options)
        self.config = {"output_size": output_size, **{k: v for k, v in self.config.items()
                                                      if k not in ("num_tags", "tag_names")}}

    def _squared_error(self, batch: Batch) -> tuple[Tensor, Arr]:
        mask = self._mask(batch)
        pred = self(batch)  # (T, B, F)
        target = self._floats(np.swapaxes(batch.y, 0, 1).reshape(pred.shape))
        weight = _wrap(_on(self.device, mask.T[..., None].astype(pred.dtype)), self.device)
        diff = (pred - target) * weight
        return (diff * diff).sum(), mask

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        total, mask = self._squared_error(batch)
        count = int(mask.sum())
        return StepResult(total / float(count * self.config["output_size"]), count)

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            total, mask = self._squared_error(batch)
        # loss = mean squared error per value
        return {"loss_sum": total.item() / self.config["output_size"], "count": int(mask.sum())}, None

    def predict(self, batch: Batch) -> list[Arr]:  # type: ignore[override]
        """Predicted values (T_i, F) of each sequence's valid steps."""
        self.eval()
        with no_grad():
            pred = backend.to_numpy(self(batch).data).swapaxes(0, 1)
        mask = self._mask(batch)
        return [pred[b, : int(mask[b].sum())] for b in range(len(batch))]


# ---- many to many, aligned: several labels per step ------------------------------------------
class MultiLabelTagger(SequenceTagger):
    """Any number of labels per step (Tx = Ty): a sigmoid per label, masked binary
    cross-entropy. E.g. the notes of a piano roll's next step.

    x (B, T, F) floats or (B, T) ids; y (B, T, L) in [0, 1] (``num_labels`` = L). The
    loss is the negative log-likelihood per step in nats, summed over the L labels (as
    polyphonic music models report it); padded steps contribute nothing.
    """

    kind = "multilabel"

    def __init__(
        self,
        num_labels: int,
        input_size: int | None = None,
        vocab_size: int | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        super().__init__(num_labels, vocab_size=vocab_size, input_size=input_size,
                         embedding_dim=embedding_dim, hidden_size=hidden_size, cell=cell,
                         num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
                         **cell_options)
        self.config = {"num_labels": num_labels, **{k: v for k, v in self.config.items()
                                                    if k not in ("num_tags", "tag_names")}}

    def _nll(self, batch: Batch) -> tuple[Tensor, Arr]:
        """Summed negative log-likelihood of the valid steps, and the mask (B, T)."""
        mask = self._mask(batch)
        logits = self(batch)  # (T, B, L)
        y = np.swapaxes(np.asarray(batch.y), 0, 1)
        if tuple(y.shape) != tuple(logits.shape):
            raise ValueError(f"expected targets (B, T, {self.config['num_labels']}) aligned with the "
                             f"inputs {tuple(batch.x.shape)}, got {tuple(batch.y.shape)}")
        dtype = logits.dtype
        weight = _on(self.device, mask.T[..., None].astype(dtype))  # 0 at padded steps
        total = binary_cross_entropy_with_logits(logits, _on(self.device, y.astype(dtype)),
                                                 weight=weight, reduction="sum")
        return total, mask

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        total, mask = self._nll(batch)
        count = int(mask.sum())
        return StepResult(total / float(max(count, 1)), count)

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            total, mask = self._nll(batch)
        return {"loss_sum": total.item(), "count": int(mask.sum())}, None

    def predict(self, batch: Batch) -> list[Arr]:  # type: ignore[override]
        """Each label's probability (T_i, L) at each sequence's valid steps."""
        self.eval()
        with no_grad():
            logits = backend.to_numpy(self(batch).data).swapaxes(0, 1)
        mask = self._mask(batch)
        return [_sigmoid(logits[b, : int(mask[b].sum())]) for b in range(len(batch))]

    def generate(self, prime: Arr, length: int, temperature: float = 1.0, rng: Any = None) -> Arr:
        """``prime`` (T0 >= 1, L) binary steps and ``length`` sampled ones: (T0 + length, L) uint8.

        Each new step's labels are drawn independently, label l on with probability
        sigmoid(logit_l / temperature) given every step before, and fed back as the next
        input (so the input size must be L). rng: a NumPy Generator (None: a fresh one).
        """
        n = int(self.config["num_labels"])
        if self.config["bidirectional"] or self.inputs.embedding is not None or self.inputs.size != n:
            raise ValueError(f"generate feeds each step back as the next input: it needs a "
                             f"unidirectional model with input_size == num_labels ({n}), got "
                             f"input_size={self.config['input_size']}, "
                             f"bidirectional={self.config['bidirectional']}")
        p = np.asarray(prime, dtype=np.float32)
        if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] != n:
            raise ValueError(f"expected a prime of shape (T0 >= 1, {n}), got {p.shape}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        gen = rng if rng is not None else np.random.default_rng()
        was = self.training
        self.eval()
        try:
            with no_grad():
                out, state = self.rnn(self._floats(p[:, None, :]), None)
                steps = [p]
                for _ in range(length):
                    logits = backend.to_numpy(self.head(out[out.shape[0] - 1]).data)[0]
                    frame = (gen.random(n) < _sigmoid(logits / temperature)).astype(np.float32)
                    steps.append(frame[None])
                    out, state = self.rnn(self._floats(frame[None, None, :]), state)
        finally:
            self.train(was)
        return np.concatenate(steps).astype(np.uint8)


def _sigmoid(x: Arr) -> Arr:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


# ---- many to many, unaligned: transcription (CTC) --------------------------------------------
class SequenceTranscriber(SequenceModel):
    """Frames in, a shorter label sequence out, with no alignment given: CTC.

    x: (B, T, F) float frames (or (B, T) ids) with x_lengths; y: (B, S) label ids in
    [1, num_classes) with y_lengths. Id 0 is the CTC blank (and the padding), so
    ``num_classes`` counts it. A recurrent encoder (bidirectional by default, any
    registered cell, stacked) gives per-frame log-probabilities (T, B, C). The loss is
    the CTC loss (Graves et al. 2006) summed over the batch and divided by the number
    of target labels (nats per label); a target its input is too short for counts 0
    (``zero_infinity``) instead of making the step nan. Evaluation adds the error rate
    (edit distance per reference label) and exact match of greedy decoding.
    """

    kind = "transcriber"
    blank = 0

    def __init__(
        self,
        num_classes: int,
        input_size: int | None = None,
        vocab_size: int | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes counts the blank (id 0) and at least one label, so it "
                             f"must be >= 2, got {num_classes}")
        super().__init__(
            num_classes=num_classes, input_size=input_size, vocab_size=vocab_size,
            embedding_dim=embedding_dim, hidden_size=hidden_size, cell=cell,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout, **cell_options,
        )
        self.inputs = _InputLayer(vocab_size, input_size, embedding_dim)
        self.rnn = Recurrent(cell, self.inputs.size, hidden_size, num_layers=num_layers,
                             bidirectional=bidirectional, dropout=dropout, **cell_options)
        self.head = Linear((2 if bidirectional else 1) * hidden_size, num_classes)
        self.dropout = dropout

    def forward(self, batch: Batch) -> Tensor:
        """Per-frame log-probabilities (T, B, C); C = num_classes, blank first."""
        x = self.inputs(np.swapaxes(batch.x, 0, 1), self)
        x = dropout_fn(x, self.dropout, self.training)
        out, _ = self.rnn(x, None, lengths=batch.x_lengths)
        out = dropout_fn(out, self.dropout, self.training)
        return log_softmax(self.head(out), axis=-1)

    @staticmethod
    def _lengths(batch: Batch) -> tuple[Arr, Arr]:
        b = len(batch)
        il = batch.x_lengths if batch.x_lengths is not None else np.full(b, batch.x.shape[1])
        tl = batch.y_lengths if batch.y_lengths is not None else np.full(b, batch.y.shape[1])
        return np.asarray(il, dtype=np.int64), np.asarray(tl, dtype=np.int64)

    def _total(self, batch: Batch, log_probs: Tensor) -> Tensor:
        """The summed CTC loss of the batch."""
        if batch.y.ndim != 2 or batch.y.dtype.kind not in "iu":
            raise ValueError(f"a transcriber needs label ids y (B, S), got {batch.y.dtype} "
                             f"{batch.y.shape}")
        il, tl = self._lengths(batch)
        return ctc_loss(log_probs, np.asarray(batch.y, dtype=np.int64), il, tl, blank=self.blank,
                        reduction="sum", zero_infinity=True)

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        count = int(self._lengths(batch)[1].sum())
        return StepResult(self._total(batch, self(batch)) / float(max(count, 1)), count)

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            log_probs = self(batch)
            total = self._total(batch, log_probs).item()
        best = backend.to_numpy(log_probs.data.argmax(axis=-1)).T  # (B, T)
        il, tl = self._lengths(batch)
        pred = [decoding.ctc_collapse(best[b, : il[b]], self.blank) for b in range(len(batch))]
        gold = [batch.y[b, : tl[b]].tolist() for b in range(len(batch))]
        edits, ref = error_counts(pred, gold)
        return {"loss_sum": total, "count": ref, "edits": edits, "ref_tokens": ref,
                "exact": sum(p == g for p, g in zip(pred, gold)), "sequences": len(batch)}, None

    def predict(self, batch: Batch, method: str = "greedy", beam_width: int = 8) -> list[list[int]]:
        """The label ids of each example: "greedy" (best path) or "beam" (prefix beam search)."""
        if method not in ("greedy", "beam"):
            raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")
        was = self.training
        self.eval()
        try:
            with no_grad():
                lp = backend.to_numpy(self(batch).data)  # (T, B, C)
        finally:
            self.train(was)
        il, _ = self._lengths(batch)
        if method == "greedy":
            return [decoding.ctc_greedy_decode(lp[: il[b], b], self.blank) for b in range(len(batch))]
        return [decoding.ctc_prefix_beam_search(lp[: il[b], b], beam_width, self.blank)[0].tokens
                for b in range(len(batch))]


# ---- shared decoder for one-to-many and encoder-decoder ------------------------------------
@dataclass
class _Memory:
    """What a decoder attends to: the encoder's outputs of one batch of sources.

    keys (B, S, K); prepared: :meth:`Attention.prepare` of them (computed once);
    mask (B, S) bool on the host, True at valid source steps.
    """

    keys: Tensor
    prepared: Tensor
    mask: Arr

    def rows(self, index: Arr) -> _Memory:
        """The memory of batch rows ``index`` (beam hypotheses share their source's)."""
        dev_index = _on(self.keys.device, np.asarray(index, dtype=np.int64))
        return _Memory(self.keys[dev_index], self.prepared[dev_index], self.mask[np.asarray(index)])


class _Decoder(Module):
    """Token decoder: embeds the previous token, steps the recurrent layer, projects.

    With ``attention`` (a score of :class:`~tinyseq.nn.Attention`), each step's top
    hidden state h queries the encoder's outputs (Luong et al. 2015): the context c
    and h make the attentional state tanh(W_c [c; h]), which the head projects.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, cell: str,
                 num_layers: int, dropout: float, extra_input: int, cell_options: dict[str, Any],
                 attention: str | None = None, memory_size: int = 0) -> None:
        super().__init__()
        self.embedding = Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.rnn = Recurrent(cell, embedding_dim + extra_input, hidden_size, num_layers=num_layers,
                             dropout=dropout, **cell_options)
        self.attention = Attention(hidden_size, memory_size, attention) if attention else None
        self.combine = Linear(memory_size + hidden_size, hidden_size) if attention else None
        self.head = Linear(hidden_size, vocab_size)
        self.dropout = dropout

    def memory(self, outputs: Tensor, mask: Arr) -> _Memory:
        """The attention memory of encoder outputs (S, B, K) with source mask (B, S)."""
        assert self.attention is not None
        keys = outputs.swapaxes(0, 1)
        return _Memory(keys, self.attention.prepare(keys), np.asarray(mask, dtype=bool))

    def run(self, ids: Any, state: State, lengths: Any = None, extra: Tensor | None = None,
            memory: _Memory | None = None) -> tuple[Tensor, State, Tensor | None]:
        """:meth:`forward`, plus the attention weights (B, T, S) (None without attention)."""
        x = self.embedding(ids)
        if extra is not None:
            t = x.shape[0]
            x = concatenate([x, stack([extra] * t, axis=0)], axis=2)
        x = dropout_fn(x, self.dropout, self.training)
        out, state = self.rnn(x, state, lengths=lengths)
        weights = None
        if self.attention is not None:
            if memory is None:
                raise ValueError("this decoder attends to the source: give the encoder's memory")
            assert self.combine is not None
            h = out.swapaxes(0, 1)  # (B, T, H): every step queries at once
            context, weights = self.attention.attend(h, memory.keys, memory.prepared, memory.mask)
            out = tanh(self.combine(concatenate([context, h], axis=2))).swapaxes(0, 1)
        out = dropout_fn(out, self.dropout, self.training)
        return self.head(out), state, weights

    def forward(self, ids: Any, state: State, lengths: Any = None, extra: Tensor | None = None,
                memory: _Memory | None = None) -> tuple[Tensor, State]:
        """ids (T, B) on the device -> logits (T, B, V); ``extra`` (B, F) joins each step;
        ``memory``: the encoder outputs to attend to (decoders with attention)."""
        logits, state, _ = self.run(ids, state, lengths, extra, memory)
        return logits, state


class _Generating(SequenceModel):
    """Shared training and decoding of models whose output is a token sequence.

    Targets y (B, Ty) end with ``<eos>``; the decoder reads ``<bos>, y<1..Ty-1>``
    (teacher forcing). With ``teacher_forcing < 1`` (scheduled sampling) each step feeds
    the gold token with that probability and the model's own previous guess otherwise.
    """

    decoder: _Decoder
    bos_id: int
    eos_id: int
    teacher_forcing: float

    def initial(self, batch: Batch) -> tuple[State, Tensor | None]:
        """The decoder's start state and per-step extra input for this batch."""
        raise NotImplementedError

    def _start(self, batch: Batch) -> tuple[State, Tensor | None, _Memory | None]:
        """:meth:`initial` and the memory to attend to (None: no attention)."""
        state, extra = self.initial(batch)
        return state, extra, None

    def _decoder_inputs(self, y: Arr) -> Arr:
        y_in = np.empty_like(y)
        y_in[:, 0] = self.bos_id
        y_in[:, 1:] = y[:, :-1]
        return y_in.T  # (T, B)

    def forward(self, batch: Batch) -> Tensor:
        """Logits (Ty, B, V) under teacher forcing (or scheduled sampling when training)."""
        state, extra, memory = self._start(batch)
        y_in = self._decoder_inputs(batch.y)
        if not self.training or self.teacher_forcing >= 1.0:
            logits: Tensor
            logits, _ = self.decoder(self._ids(y_in), state, lengths=batch.y_lengths, extra=extra,
                                     memory=memory)
            return logits
        steps = []
        cpu = backend.get_device("cpu")
        prev: Arr | None = None
        for t in range(y_in.shape[0]):
            tok = y_in[t]
            if prev is not None:
                use_gold = backend.random_uniform(cpu, (tok.shape[0],), 0.0, 1.0, np.float32) < self.teacher_forcing
                tok = np.where(use_gold, tok, prev)
            logits_t, state = self.decoder(self._ids(tok[None, :]), state, extra=extra, memory=memory)
            prev = backend.to_numpy(logits_t.data[0].argmax(axis=-1)).astype(np.int64)
            steps.append(logits_t)
        return concatenate(steps, axis=0)

    def _mask(self, batch: Batch) -> Arr:
        m = batch.y_mask
        return np.ones(batch.y.shape, dtype=bool) if m is None else m

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        mask = self._mask(batch)
        loss = cross_entropy(self(batch), self._ids(batch.y.T), mask=_on(self.device, mask.T))
        return StepResult(loss, int(mask.sum()))

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        mask = self._mask(batch)
        with no_grad():
            logits = self(batch)
            total = cross_entropy(logits, self._ids(batch.y.T), mask=_on(self.device, mask.T),
                                  reduction="sum").item()
            pred = backend.to_numpy(logits.data.argmax(axis=-1)).T
        decoded = self.decode(batch, max_len=batch.y.shape[1] + 5)
        lens = mask.sum(axis=1)
        exact = sum(decoded[b] == batch.y[b, : lens[b]].tolist() for b in range(len(batch)))
        return {"loss_sum": total, "count": int(mask.sum()),
                "correct": int((pred == batch.y)[mask].sum()),
                "exact": exact, "sequences": len(batch)}, None

    def _step(self, extra: Tensor | None, memory: _Memory | None = None) -> decoding.StepFn:
        def step(tokens: Arr, state: State) -> tuple[Arr, State]:
            ex, mem = extra, memory
            # beam search steps K hypotheses of one example: they share its extra input
            # and its source, so row 0 serves them all
            first = np.zeros(tokens.shape[0], dtype=np.int64)
            if ex is not None and ex.shape[0] != tokens.shape[0]:
                ex = ex[_on(self.device, first)]
            if mem is not None and mem.keys.shape[0] != tokens.shape[0]:
                mem = mem.rows(first)
            logits, state = self.decoder(self._ids(np.asarray(tokens)[None, :]), state, extra=ex,
                                         memory=mem)
            return backend.to_numpy(logits.data[0]), state
        return step

    def decode(
        self,
        batch: Batch,
        max_len: int = 50,
        method: str = "greedy",
        beam_width: int = 5,
        length_penalty: float = 1.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        rng: Any = None,
    ) -> list[list[int]]:
        """Output ids of each example (ending with ``<eos>`` when it was produced).

        method: "greedy", "sample" (temperature, top_k) or "beam" (beam_width,
        length_penalty).
        """
        was = self.training
        self.eval()
        try:
            with no_grad():
                state, extra, memory = self._start(batch)
                start = np.full(len(batch), self.bos_id, dtype=np.int64)
                if method == "greedy":
                    return decoding.greedy(self._step(extra, memory), state, start, max_len, self.eos_id)
                if method == "sample":
                    return decoding.sample(self._step(extra, memory), state, start, max_len,
                                           temperature, top_k, self.eos_id, rng)
                if method != "beam":
                    raise ValueError(f"method must be 'greedy', 'sample' or 'beam', got {method!r}")
                out = []
                for b in range(len(batch)):
                    row = np.array([b])
                    st = select_state(state, row)
                    ex = None if extra is None else extra[_on(self.device, row)]
                    mem = None if memory is None else memory.rows(row)
                    hyps = decoding.beam_search(self._step(ex, mem), select_state, st, self.bos_id,
                                                max_len, beam_width, self.eos_id, length_penalty)
                    out.append(hyps[0].tokens)
                return out
        finally:
            self.train(was)

    def attention_weights(self, batch: Batch, outputs: Sequence[Sequence[int]] | None = None) -> list[Arr]:
        """The attention weights behind each output, for plotting: (Ty_i, Sx_i) per example.

        outputs: the ids each example produced (e.g. :meth:`decode`'s, any method), or
        None for the targets ``batch.y``. Row t is the weights over the valid source
        steps when output t was chosen: feeding the outputs back (teacher forcing, in
        eval mode) makes the very steps decoding made.
        """
        if outputs is None:
            mask = self._mask(batch)
            outputs = [batch.y[b, : int(mask[b].sum())].tolist() for b in range(len(batch))]
        lengths = np.array([max(len(o), 1) for o in outputs], dtype=np.int64)
        y = np.zeros((len(outputs), int(lengths.max())), dtype=np.int64)
        for b, o in enumerate(outputs):
            y[b, : len(o)] = o
        was = self.training
        self.eval()
        try:
            with no_grad():
                state, extra, memory = self._start(batch)
                if memory is None:
                    raise ValueError(f"{type(self).__name__} has no attention (attention=None)")
                _, _, weights = self.decoder.run(self._ids(self._decoder_inputs(y)), state,
                                                 lengths=lengths, extra=extra, memory=memory)
        finally:
            self.train(was)
        assert weights is not None
        w = backend.to_numpy(weights.data)
        src = memory.mask.sum(axis=1)
        return [w[b, : len(o), : int(src[b])] for b, o in enumerate(outputs)]


# ---- many to many, Tx != Ty: encoder-decoder -----------------------------------------------
class Seq2Seq(_Generating):
    """Encoder-decoder (Tx ≠ Ty): the encoder's final state starts the decoder.

    A bidirectional encoder's two final states (per layer and state component) are
    summed into the decoder's start state. ``teacher_forcing < 1`` enables scheduled
    sampling during training.

    attention: None, or how each decoder step scores the encoder's outputs (both
    directions concatenated): "additive" (Bahdanau et al. 2015), "dot" or "general"
    (Luong et al. 2015); see :class:`~tinyseq.nn.Attention`. Padded source steps get
    zero weight; :meth:`attention_weights` returns them for plotting.
    """

    kind = "seq2seq"
    ATTENTIONS: ClassVar[tuple[str | None, ...]] = (None, *SCORES)

    def __init__(
        self,
        tgt_vocab_size: int,
        src_vocab_size: int | None = None,
        input_size: int | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        teacher_forcing: float = 1.0,
        bos_id: int = 2,
        eos_id: int = 3,
        attention: str | None = None,
        **cell_options: Any,
    ) -> None:
        if attention not in self.ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(SCORES)} or None, got {attention!r}")
        if attention == "dot" and bidirectional:
            raise ValueError(f"attention='dot' needs the encoder's outputs ({2 * hidden_size} with "
                             f"bidirectional=True) to match the decoder's hidden_size={hidden_size}; "
                             "use attention='general' or 'additive' with a bidirectional encoder")
        super().__init__(
            tgt_vocab_size=tgt_vocab_size, src_vocab_size=src_vocab_size, input_size=input_size,
            embedding_dim=embedding_dim, hidden_size=hidden_size, cell=cell,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
            teacher_forcing=teacher_forcing, bos_id=bos_id, eos_id=eos_id, attention=attention,
            **cell_options,
        )
        self.inputs = _InputLayer(src_vocab_size, input_size, embedding_dim)
        self.encoder = Recurrent(cell, self.inputs.size, hidden_size, num_layers=num_layers,
                                 bidirectional=bidirectional, dropout=dropout, **cell_options)
        directions = 2 if bidirectional else 1
        self.decoder = _Decoder(tgt_vocab_size, embedding_dim, hidden_size, cell, num_layers,
                                dropout, 0, cell_options, attention, directions * hidden_size)
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        self.teacher_forcing = teacher_forcing
        self.bos_id, self.eos_id = bos_id, eos_id
        self.dropout = dropout

    def _bridge(self, h: Tensor) -> Tensor:
        if not self.bidirectional:
            return h
        # (L*2, B, H): rows 2l and 2l+1 are layer l's forward and backward directions
        return stack([h[2 * i] + h[2 * i + 1] for i in range(self.num_layers)], axis=0)

    def initial(self, batch: Batch) -> tuple[State, Tensor | None]:
        state, _, _ = self._start(batch)
        return state, None

    def _start(self, batch: Batch) -> tuple[State, Tensor | None, _Memory | None]:
        x = self.inputs(np.swapaxes(batch.x, 0, 1), self)
        x = dropout_fn(x, self.dropout, self.training)
        out, state = self.encoder(x, None, lengths=batch.x_lengths)
        start = self._bridge(state) if isinstance(state, Tensor) else tuple(self._bridge(s) for s in state)
        if self.decoder.attention is None:
            return start, None, None
        mask = batch.x_mask
        if mask is None:
            mask = np.ones(batch.x.shape[:2], dtype=bool)
        return start, None, self.decoder.memory(out, mask)


# ---- one to many: conditioned generator ------------------------------------------------------
class OneToMany(_Generating):
    """A vector x (B, F) conditions a generated sequence y<1..Ty>.

    condition: "state" (x sets every layer's initial h through tanh(W x + b); other
    state components start at zero), "input" (x joins every step's input), or "both".
    """

    kind = "one_to_many"
    CONDITIONS = ("state", "input", "both")

    def __init__(
        self,
        condition_size: int,
        vocab_size: int,
        embedding_dim: int = 32,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        dropout: float = 0.0,
        condition: str = "state",
        teacher_forcing: float = 1.0,
        bos_id: int = 2,
        eos_id: int = 3,
        **cell_options: Any,
    ) -> None:
        if condition not in self.CONDITIONS:
            raise ValueError(f"condition must be one of {self.CONDITIONS}, got {condition!r}")
        super().__init__(
            condition_size=condition_size, vocab_size=vocab_size, embedding_dim=embedding_dim,
            hidden_size=hidden_size, cell=cell, num_layers=num_layers, dropout=dropout,
            condition=condition, teacher_forcing=teacher_forcing, bos_id=bos_id, eos_id=eos_id,
            **cell_options,
        )
        use_input = condition in ("input", "both")
        self.decoder = _Decoder(vocab_size, embedding_dim, hidden_size, cell, num_layers, dropout,
                                condition_size if use_input else 0, cell_options)
        self.to_state = Linear(condition_size, hidden_size * num_layers) if condition != "input" else None
        self.arity = len(self.decoder.rnn.state_names)
        self.condition = condition
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.teacher_forcing = teacher_forcing
        self.bos_id, self.eos_id = bos_id, eos_id

    def initial(self, batch: Batch) -> tuple[State, Tensor | None]:
        v = self._floats(batch.x)
        if v.ndim != 2 or v.shape[1] != self.config["condition_size"]:
            raise ValueError(f"expected condition vectors (B, {self.config['condition_size']}), got {v.shape}")
        return self.conditioned(v)

    def conditioned(self, v: Tensor) -> tuple[State, Tensor | None]:
        """The decoder's start state and per-step extra input for condition vectors v (B, F)."""
        extra = v if self.condition in ("input", "both") else None
        if self.to_state is None:
            return None, extra
        b = v.shape[0]
        h = tanh(self.to_state(v)).reshape(b, self.num_layers, self.hidden_size).swapaxes(0, 1)
        if self.arity == 1:
            return h, extra
        zeros = _wrap(self.device.xp.zeros(h.shape, dtype=h.dtype), self.device)
        return (h, *([zeros] * (self.arity - 1))), extra


class ImageCaptioner(OneToMany):
    """An image (B, H, W, C) -> a caption: a :class:`~tinyseq.nn.patches.PatchEncoder`'s
    vector (``condition_size``) conditions :class:`OneToMany`'s decoder (``condition``:
    state, input or both); encoder and decoder train together."""

    kind = "captioner"

    def __init__(self, image_shape: Sequence[int], vocab_size: int, patch: int = 4,
                 channels: int = 16, condition_size: int = 64, **decoder: Any) -> None:
        super().__init__(condition_size, vocab_size, **decoder)
        self.config = {"image_shape": [int(s) for s in image_shape], "patch": patch,
                       "channels": channels, **self.config}
        self.encoder = PatchEncoder(image_shape, condition_size, patch, channels)

    def initial(self, batch: Batch) -> tuple[State, Tensor | None]:
        return self.conditioned(self.encoder(self._floats(batch.x)))


# ---- one to one ------------------------------------------------------------------------------
class OneToOne(SequenceModel):
    """A feed-forward network x (B, F) -> y: classes (cross-entropy) or values (MSE)."""

    kind = "one_to_one"

    def __init__(self, input_size: int, hidden_size: int = 64, num_classes: int | None = None,
                 output_size: int | None = None, num_layers: int = 1) -> None:
        if (num_classes is None) == (output_size is None):
            raise ValueError("give exactly one of num_classes (classification) or output_size (regression)")
        super().__init__(input_size=input_size, hidden_size=hidden_size, num_classes=num_classes,
                         output_size=output_size, num_layers=num_layers)
        sizes = [input_size] + [hidden_size] * num_layers
        from .nn import ModuleList
        self.layers = ModuleList(Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = Linear(sizes[-1], num_classes or output_size or 0)
        self.classify = num_classes is not None

    def forward(self, x: Any) -> Tensor:
        h = self._floats(x)
        for layer in self.layers:
            h = tanh(layer(h))
        return self.head(h)  # type: ignore[no-any-return]

    def _loss(self, batch: Batch, reduction: str) -> tuple[Tensor, Tensor]:
        out = self(batch.x)
        if self.classify:
            return cross_entropy(out, self._ids(batch.y), reduction=reduction), out
        diff = out - self._floats(batch.y.reshape(out.shape))
        sq = (diff * diff).sum()
        return (sq / float(diff.size) if reduction == "mean" else sq / float(diff.shape[-1])), out

    def loss(self, batch: Batch, state: State = None) -> StepResult:
        return StepResult(self._loss(batch, "mean")[0], len(batch))

    def evaluate_batch(self, batch: Batch, state: State = None) -> tuple[dict[str, float], State]:
        with no_grad():
            total, out = self._loss(batch, "sum")
        counts = {"loss_sum": total.item(), "count": len(batch)}
        if self.classify:
            counts["correct"] = int((backend.to_numpy(out.data.argmax(axis=-1)) == batch.y).sum())
        return counts, None


MODELS: dict[str, type[SequenceModel]] = {
    m.kind: m for m in (LanguageModel, SequenceClassifier, SequenceTagger, SequenceRegressor, Seq2Seq,
                        OneToMany, OneToOne, MultiLabelTagger, ImageCaptioner, SequenceTranscriber)
}


def build_model(kind: str, config: dict[str, Any]) -> SequenceModel:
    """A model from its kind and config (as stored in a checkpoint)."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODELS)}")
    return MODELS[kind](**config)

