"""One to many: a generator conditioned on a vector (or on an image's features)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..data.batching import Batch
from ..nn import Linear
from ..nn.patches import PatchEncoder
from ..tensor import Tensor, _wrap, tanh
from .base import (
    State,
)
from .generating import _Decoder, _Generating


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
