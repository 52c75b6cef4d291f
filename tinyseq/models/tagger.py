"""Many to many, aligned: a label per step (tagger, optionally with a CRF), a value
per step (regressor), several labels per step (multi-label tagger)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..data.batching import Batch
from ..functional import dropout as dropout_fn
from ..losses import binary_cross_entropy_with_logits, cross_entropy
from ..metrics import entity_counts, token_counts
from ..nn import CRF, Linear
from ..tensor import Tensor, _wrap, no_grad
from .base import (
    Arr,
    State,
    StepResult,
    _char_options,
    _Encoding,
    _on,
)


# ---- many to many, aligned: tagging ------------------------------------------------------
class SequenceTagger(_Encoding):
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
        self.rnn = self._build_encoder(vocab_size, input_size, embedding_dim, chars, cell,
                                  hidden_size, num_layers, bidirectional, dropout, cell_options)
        self.head = Linear((2 if bidirectional else 1) * hidden_size, num_tags)
        self.tag_names = tag_names
        self.bio = bool(tag_names) and all(
            t == "O" or t[:2] in ("B-", "I-") or t.startswith("<") for t in tag_names or ()
        )
        # (a config whose tag names do not match num_tags, as the shape probe builds, has none)
        constrain = self.bio and len(tag_names or ()) == num_tags
        self.crf = CRF(num_tags, tag_names, constraints=constrain) if crf else None

    def forward(self, batch: Batch) -> Tensor:
        """Logits (T, B, C) (with a CRF: its per-step emission scores)."""
        out, _ = self._encode(self.rnn, batch)
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
        _rename_size(self, "output_size")

    def _squared_error(self, batch: Batch) -> tuple[Tensor, Arr]:
        mask = self._mask(batch)
        pred = self(batch)  # (T, B, F)
        # padded steps' targets are selected away, not multiplied by 0: NaN padding stays out
        valid = mask.T[..., None]
        y = np.swapaxes(np.asarray(batch.y), 0, 1).reshape(pred.shape)
        target = self._floats(np.where(valid, y, 0.0))
        weight = _wrap(_on(self.device, valid.astype(pred.dtype)), self.device)
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
        _rename_size(self, "num_labels")

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


def _rename_size(model: SequenceTagger, name: str) -> None:
    """A per-step head's config: its output count under ``name`` instead of the tagger's
    num_tags (and no tag names), so that load_model rebuilds the right class."""
    rest = {k: v for k, v in model.config.items() if k not in ("num_tags", "tag_names")}
    model.config = {name: model.config["num_tags"], **rest}


def _sigmoid(x: Arr) -> Arr:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|
