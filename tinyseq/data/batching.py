"""Batches: padding with masks, bucketing by length, seeded shuffling, and id streams
cut into consecutive windows for truncated backpropagation through time.

Data-parallel training takes a *shard* of every batch: ``data.shard(rank, size)`` (or
:func:`shard` for any data source) yields rows ``shard_rows(B, rank, size)`` of each
global batch of B rows, so the global batches are those of one process whatever the
number of processes.

Arrays in a :class:`Batch` are host NumPy arrays, batch first; models move them to
their device and lay them out time-major for the recurrent layer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Batch", "pad_sequences", "pad_characters", "lengths_to_mask", "SequenceDataset",
           "StreamDataset", "shard_rows", "shard", "ShardedSource"]

Arr = npt.NDArray[Any]


def _fingerprint(arrays: Sequence[Arr], settings: Sequence[Any]) -> str:
    """A short hash of arrays' dtypes, shapes and bytes and of batching settings: a
    checkpoint stores it, so a resume can tell whether it runs on the same batches."""
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(tuple(settings)).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def pad_sequences(
    seqs: Sequence[Any], pad_value: float = 0, dtype: Any = None, length: int | None = None
) -> tuple[Arr, Arr]:
    """Stack variable-length sequences (each (T_i, ...)) into (B, T, ...) plus lengths (B,).

    Steps past a sequence's length hold ``pad_value``; ``length`` fixes T (>= the longest).
    """
    arrays = [np.asarray(s) for s in seqs]
    if not arrays:
        raise ValueError("pad_sequences needs at least one sequence")
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    longest = int(lengths.max())
    t = longest if length is None else length
    if t < longest:
        raise ValueError(f"pad_sequences: length={length} is shorter than the longest sequence ({longest})")
    tail = arrays[0].shape[1:]
    for a in arrays:
        if a.shape[1:] != tail:
            raise ValueError(f"pad_sequences: every sequence needs step shape {tail}, got {a.shape[1:]}")
    dt = dtype if dtype is not None else np.result_type(*arrays)
    out = np.full((len(arrays), t, *tail), pad_value, dtype=dt)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return out, lengths


def pad_characters(words: Sequence[Sequence[Any]], length: int | None = None) -> tuple[Arr, Arr]:
    """Each example's words' character ids ((T_i lists of (C_w,) ids) into chars (B, T, C)
    int64 and char_lengths (B, T); padded words have length 0, padded characters id 0.

    ``length`` fixes T (>= the most words).
    """
    if not words:
        raise ValueError("pad_characters needs at least one example")
    most = max(len(w) for w in words)
    t = most if length is None else length
    if t < most:
        raise ValueError(f"pad_characters: length={length} is shorter than the longest example ({most} words)")
    c = max([len(ch) for example in words for ch in example] + [1])
    chars = np.zeros((len(words), t, c), dtype=np.int64)
    lengths = np.zeros((len(words), t), dtype=np.int64)
    for b, example in enumerate(words):
        for i, ch in enumerate(example):
            chars[b, i, : len(ch)] = ch
            lengths[b, i] = len(ch)
    return chars, lengths


def lengths_to_mask(lengths: Any, length: int | None = None) -> Arr:
    """Bool mask (B, T): True at the valid steps of each sequence."""
    lens = np.asarray(lengths, dtype=np.int64)
    t = int(lens.max()) if length is None else length
    return np.arange(t)[None, :] < lens[:, None]


@dataclass
class Batch:
    """One batch, batch first.

    x: (B, Tx) ids, (B, Tx, F) floats, or (B, F) for fixed-size inputs.
    y: (B,) labels, (B, Ty) ids, (B, Ty, F) floats, or (B, F).
    x_lengths / y_lengths: (B,) valid steps, or None when x / y is not a sequence.
    chars / char_lengths: (B, Tx, C) character ids of each input word and (B, Tx) their
        counts (0 for padded words), for character-level word features; else None.
    """

    x: Arr
    y: Arr
    x_lengths: Arr | None = None
    y_lengths: Arr | None = None
    chars: Arr | None = None
    char_lengths: Arr | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def x_mask(self) -> Arr | None:
        """(B, Tx) bool, True at valid input steps."""
        if self.x_lengths is None:
            return None
        return lengths_to_mask(self.x_lengths, self.x.shape[1])

    @property
    def y_mask(self) -> Arr | None:
        """(B, Ty) bool, True at valid target steps."""
        if self.y_lengths is None:
            return None
        return lengths_to_mask(self.y_lengths, self.y.shape[1])

    def rows(self, index: slice) -> Batch:
        """The batch of rows ``index`` (views of this batch's arrays)."""
        def part(a: Arr | None) -> Arr | None:
            return None if a is None else a[index]
        return Batch(x=self.x[index], y=self.y[index], x_lengths=part(self.x_lengths),
                     y_lengths=part(self.y_lengths), chars=part(self.chars),
                     char_lengths=part(self.char_lengths))

    @property
    def num_tokens(self) -> int:
        """Input steps in the batch that are not padding (rows for fixed-size inputs)."""
        if self.x_lengths is not None:
            return int(self.x_lengths.sum())
        if self.x.ndim >= 2 and self.x.dtype.kind in "iu":
            return int(self.x.size)
        return len(self)


class SequenceDataset:
    """Examples (x, y) batched with padding; optional bucketing and seeded shuffling.

    x and y are each either variable-length sequences (arrays (T_i, ...)) or fixed-size
    items (a label int, or a vector) — say which with ``x_is_sequence`` /
    ``y_is_sequence``. ``bucket`` groups examples of similar length (sorting within
    windows of ``bucket`` batches) so batches waste little padding; the batch order is
    still shuffled. Epoch ``e`` with seed ``s`` always gives the same batches.

    ``chars``: for each example, one array of character ids per input word (as many as
    the example's steps); batches then carry ``chars`` and ``char_lengths``.
    """

    carries_state = False

    def __init__(
        self,
        xs: Sequence[Any],
        ys: Sequence[Any],
        batch_size: int = 32,
        x_is_sequence: bool = True,
        y_is_sequence: bool = False,
        shuffle: bool = True,
        bucket: int = 0,
        seed: int = 0,
        x_pad: float = 0,
        y_pad: float = 0,
        chars: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        if len(xs) != len(ys):
            raise ValueError(f"SequenceDataset: {len(xs)} inputs but {len(ys)} targets")
        if len(xs) == 0:
            raise ValueError("SequenceDataset: no examples")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.xs = [np.asarray(x) for x in xs]
        self.ys = [np.asarray(y) for y in ys]
        for name, items, is_seq in (("x", self.xs, x_is_sequence), ("y", self.ys, y_is_sequence)):
            if is_seq:
                for i, a in enumerate(items):
                    if a.ndim == 0 or a.shape[0] == 0:
                        raise ValueError(f"SequenceDataset: example {i} has an empty {name} sequence")
        self.chars: list[list[Arr]] | None = None
        if chars is not None:
            if len(chars) != len(self.xs) or not x_is_sequence:
                raise ValueError(f"SequenceDataset: chars needs one entry per example of a sequence "
                                 f"input, got {len(chars)} for {len(self.xs)} examples")
            self.chars = [[np.asarray(c, dtype=np.int64) for c in words] for words in chars]
            for i, (words, x) in enumerate(zip(self.chars, self.xs)):
                if len(words) != x.shape[0]:
                    raise ValueError(f"SequenceDataset: example {i} has {x.shape[0]} steps but "
                                     f"characters for {len(words)} words")
        self.batch_size = batch_size
        self.x_is_sequence = x_is_sequence
        self.y_is_sequence = y_is_sequence
        self.shuffle = shuffle
        self.bucket = bucket
        self.seed = seed
        self.x_pad = x_pad
        self.y_pad = y_pad

    def __len__(self) -> int:
        """Number of batches per epoch."""
        return math.ceil(len(self.xs) / self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.xs)

    def fingerprint(self) -> str:
        """A hash of the examples and the batching (equal hashes: the same batches)."""
        # each example's characters with its word lengths (so "ab c" and "a bc" differ)
        extra = [] if self.chars is None else [
            np.concatenate([np.array([len(c) for c in w], dtype=np.int64), *w]) for w in self.chars]
        return _fingerprint([*self.xs, *self.ys, *extra], (type(self).__name__, self.batch_size, self.shuffle,
                                                   self.bucket, self.seed, self.x_pad, self.y_pad))

    def _order(self, epoch: int) -> list[Arr]:
        n = len(self.xs)
        rng = np.random.default_rng([self.seed, epoch])
        idx = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket and self.x_is_sequence:
            window = self.bucket * self.batch_size
            lens = np.array([self.xs[i].shape[0] for i in idx])
            for start in range(0, n, window):
                part = slice(start, start + window)
                idx[part] = idx[part][np.argsort(lens[part], kind="stable")]
        batches = [idx[i: i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.shuffle and self.bucket:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """The batches of one epoch, from batch number ``start`` on."""
        for ids in self._order(epoch)[start:]:
            yield self.collate(ids)

    def shard(self, rank: int, size: int) -> ShardedSource:
        """Rank ``rank`` of ``size``'s part of every batch (padded to its own longest example)."""
        return _SequenceShard(self, rank, size)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(0)

    def collate(self, ids: Any) -> Batch:
        """The batch of examples ``ids`` (none: a batch of 0 rows)."""
        if len(ids) == 0:
            return self.collate(np.arange(1)).rows(slice(0, 0))  # dtypes and step shapes kept
        xs = [self.xs[i] for i in ids]
        ys = [self.ys[i] for i in ids]
        x_len = y_len = None
        if self.x_is_sequence:
            x, x_len = pad_sequences(xs, self.x_pad)
        else:
            x = np.stack(xs)
        if self.y_is_sequence:
            y, y_len = pad_sequences(ys, self.y_pad)
        else:
            y = np.stack(ys)
        chars = char_len = None
        if self.chars is not None:
            chars, char_len = pad_characters([self.chars[i] for i in ids], x.shape[1])
        return Batch(x=x, y=y, x_lengths=x_len, y_lengths=y_len, chars=chars, char_lengths=char_len)


class StreamDataset:
    """One long id stream for a language model, as ``batch_size`` parallel streams.

    The stream (N,) is cut into ``batch_size`` equal rows; batch ``k`` holds steps
    ``[k*T, (k+1)*T)`` of every row as x and the following step of each as y, so the
    recurrent state at the end of one batch is the right start for the next
    (truncated BPTT). Every epoch sees the same windows in the same order.
    """

    carries_state = True

    def __init__(self, ids: Any, batch_size: int = 32, seq_len: int = 100) -> None:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"StreamDataset expects a 1-D id stream, got shape {arr.shape}")
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
        rows = (arr.shape[0] - 1) // batch_size
        if rows < 2:
            raise ValueError(
                f"StreamDataset: a stream of {arr.shape[0]} tokens is too short for "
                f"batch_size={batch_size}; give more text or a smaller batch"
            )
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.inputs = arr[: rows * batch_size].reshape(batch_size, rows)
        self.targets = arr[1: rows * batch_size + 1].reshape(batch_size, rows)
        self.num_tokens = rows * batch_size

    def __len__(self) -> int:
        return math.ceil(self.inputs.shape[1] / self.seq_len)

    def fingerprint(self) -> str:
        """A hash of the stream and the windows (equal hashes: the same batches)."""
        # the targets are the inputs shifted by one: their last column adds the rest
        return _fingerprint([self.inputs, self.targets[:, -1:]],
                            (type(self).__name__, self.batch_size, self.seq_len))

    def shard(self, rank: int, size: int) -> ShardedSource:
        """Rank ``rank`` of ``size``'s rows of every window: its own streams, whose state it carries."""
        return ShardedSource(self, rank, size)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """Consecutive windows (B, <=T) of the parallel streams, from window ``start``."""
        del epoch  # the order is fixed: the carried state needs consecutive windows
        rows = self.inputs.shape[1]
        for k in range(start, len(self)):
            a, b = k * self.seq_len, min(rows, (k + 1) * self.seq_len)
            yield Batch(x=self.inputs[:, a:b], y=self.targets[:, a:b])

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(0)


# ---- shards for data-parallel training ------------------------------------------------
def shard_rows(n: int, rank: int, size: int) -> slice:
    """Rows of a batch of ``n`` rows that rank ``rank`` of ``size`` takes: contiguous,
    ``[rank*n/size, (rank+1)*n/size)`` rounded down (``n/size`` each when it divides)."""
    if not 0 <= rank < size:
        raise ValueError(f"shard: rank must be in [0, {size}), got {rank}")
    return slice(rank * n // size, (rank + 1) * n // size)


class ShardedSource:
    """Rank ``rank`` of ``size``'s rows of every batch of ``data`` (any data source).

    Same length, order, ``carries_state`` and fingerprint as ``data``: a checkpoint
    speaks of the global batches. A shard can be empty (a batch of 0 rows) when a batch
    has fewer rows than there are ranks.
    """

    def __init__(self, data: Any, rank: int, size: int) -> None:
        shard_rows(1, rank, size)  # the range check
        self.data = data
        self.rank = rank
        self.size = size
        self.carries_state = bool(getattr(data, "carries_state", False))

    def __len__(self) -> int:
        return len(self.data)

    def fingerprint(self) -> str | None:
        own = getattr(self.data, "fingerprint", None)
        return str(own()) if callable(own) else None

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        for batch in self.data.batches(epoch, start):
            yield batch.rows(shard_rows(len(batch), self.rank, self.size))


class _SequenceShard(ShardedSource):
    """A SequenceDataset's shard that collates only its own examples."""

    data: SequenceDataset

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        for ids in self.data._order(epoch)[start:]:
            yield self.data.collate(ids[shard_rows(len(ids), self.rank, self.size)])


def shard(data: Any, rank: int, size: int) -> Any:
    """``data``'s shard for rank ``rank`` of ``size`` (``data`` itself for one process)."""
    if size == 1:
        return data
    own = getattr(data, "shard", None)
    return own(rank, size) if callable(own) else ShardedSource(data, rank, size)
