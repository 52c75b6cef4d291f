"""The decoder shared by the generating patterns (encoder-decoder, one to many):
teacher forcing, scheduled sampling, greedy, sampling and beam search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backend, decoding
from ..data.batching import Batch
from ..functional import dropout as dropout_fn
from ..losses import cross_entropy
from ..nn import Embedding, Linear, Module
from ..nn.attention import Attention
from ..nn.recurrent import Recurrent
from ..tensor import Tensor, concatenate, no_grad, stack, tanh
from .base import (
    Arr,
    SequenceModel,
    State,
    StepResult,
    _on,
    select_state,
)


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
