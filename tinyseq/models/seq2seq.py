"""Many to many, Tx != Ty: an encoder-decoder (optionally with attention)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..data.batching import Batch
from ..nn.attention import SCORES
from ..tensor import Tensor, stack
from .base import State, _Encoding
from .generating import _Decoder, _Generating, _Memory


# ---- many to many, Tx != Ty: encoder-decoder -----------------------------------------------
class Seq2Seq(_Generating, _Encoding):
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
        self.encoder = self._build_encoder(src_vocab_size, input_size, embedding_dim, {}, cell,
                                      hidden_size, num_layers, bidirectional, dropout, cell_options)
        directions = 2 if bidirectional else 1
        self.decoder = _Decoder(tgt_vocab_size, embedding_dim, hidden_size, cell, num_layers,
                                dropout, 0, cell_options, attention, directions * hidden_size)
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        self.teacher_forcing = teacher_forcing
        self.bos_id, self.eos_id = bos_id, eos_id

    def _bridge(self, h: Tensor) -> Tensor:
        if not self.bidirectional:
            return h
        # (L*2, B, H): rows 2l and 2l+1 are layer l's forward and backward directions
        return stack([h[2 * i] + h[2 * i + 1] for i in range(self.num_layers)], axis=0)

    def initial(self, batch: Batch) -> tuple[State, Tensor | None]:
        state, _, _ = self._start(batch)
        return state, None

    def _start(self, batch: Batch) -> tuple[State, Tensor | None, _Memory | None]:
        out, state = self._encode(self.encoder, batch)
        start = self._bridge(state) if isinstance(state, Tensor) else tuple(self._bridge(s) for s in state)
        if self.decoder.attention is None:
            return start, None, None
        mask = batch.x_mask
        if mask is None:
            mask = np.ones(batch.x.shape[:2], dtype=bool)
        return start, None, self.decoder.memory(out, mask)
