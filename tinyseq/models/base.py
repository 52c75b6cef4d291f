"""The trainer's contract for models (:class:`SequenceModel`) and the parts every
pattern shares: the input layer (ids or features, optional character features),
state helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ..backend import Device
from ..data.batching import Batch
from ..functional import dropout as dropout_fn
from ..nn import CharFeatures, Embedding, Module
from ..nn.recurrent import Recurrent
from ..tensor import Tensor, _wrap, concatenate

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



class _Encoding(SequenceModel):
    """A model that reads its inputs with a recurrent encoder: ids or features
    (``inputs``), optional character features (``chars``), dropout on both sides."""

    inputs: _InputLayer
    chars: CharFeatures | None
    dropout: float

    def _build_encoder(self, vocab_size: int | None, input_size: int | None, embedding_dim: int,
                       chars: dict[str, Any], cell: str, hidden_size: int, num_layers: int,
                       bidirectional: bool, dropout: float,
                       cell_options: dict[str, Any]) -> Recurrent:
        """Set ``inputs``, ``chars`` (None without character features) and ``dropout``;
        return the recurrent encoder over the inputs' and characters' joined width."""
        self.inputs = _InputLayer(vocab_size, input_size, embedding_dim)
        self.chars = _char_layer(chars, cell, cell_options)
        self.dropout = dropout
        width = self.inputs.size + (self.chars.size if self.chars is not None else 0)
        return Recurrent(cell, width, hidden_size, num_layers=num_layers,
                         bidirectional=bidirectional, dropout=dropout, **cell_options)

    def _encode(self, rnn: Recurrent, batch: Batch) -> tuple[Tensor, State]:
        """The encoder's outputs (T, B, D*H) and final state over ``batch.x`` (padded
        steps masked; dropout on its inputs while training)."""
        x = _with_chars(self, self.inputs(np.swapaxes(batch.x, 0, 1), self), batch)
        x = dropout_fn(x, self.dropout, self.training)
        return rnn(x, None, lengths=batch.x_lengths)  # type: ignore[no-any-return]
