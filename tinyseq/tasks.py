"""From a :class:`~tinyseq.config.TrainConfig` to data, vocabularies and a model.

| task        | pattern               | data files                                   |
|-------------|-----------------------|----------------------------------------------|
| lm          | many to many (Tx=Ty)  | plain text (none: the built-in corpus)        |
| classify    | many to one           | TSV ``text<TAB>label``; npz x (N,T[,F]), y (N,) |
| tag         | many to many (Tx=Ty)  | CoNLL ``token ... tag``; npz x, y (N,T)       |
| regress     | many to many (Tx=Ty)  | npz x (N,T,F), y (N,T,K); npy (next step)     |
| seq2seq     | many to many (Tx≠Ty)  | TSV ``source<TAB>target``; npz x, y (N,Ty) ids |
| one_to_many | one to many           | npz x (N,F) vectors, y (N,Ty) ids             |
| one_to_one  | one to one            | npz x (N,F), y (N,) classes or (N,K) values   |
| transcribe  | many to many (Tx≠Ty)  | npz x (N,T,F), y (N,S) ids >= 1, lengths      |
| music       | many to many (Tx=Ty)  | piano-roll npz (``tinyseq.data.pianoroll``)   |

Vocabularies are built from the training file only and stored in every checkpoint
(``metadata["vocabs"]``) so that ``generate``/``evaluate``/``predict`` read the same ids.
In ``.npz`` files integer ids are used as they are; id 0 is padding.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import TrainConfig
from .data import (
    DataFormatError,
    NumericData,
    SequenceDataset,
    StreamDataset,
    Vocab,
    default_corpus,
    encode_stream,
    next_step_examples,
    read_conll,
    read_numeric,
    read_pianorolls,
    read_text,
    read_tsv,
    split_text,
    tokenize,
)
from .models import (
    LanguageModel,
    MultiLabelTagger,
    OneToMany,
    OneToOne,
    Seq2Seq,
    SequenceClassifier,
    SequenceModel,
    SequenceRegressor,
    SequenceTagger,
    SequenceTranscriber,
)

__all__ = ["Task", "build_task", "load_examples", "load_chars", "detect_format"]

Arr = npt.NDArray[Any]
_EXTENSIONS = {".txt": "text", ".text": "text", ".tsv": "tsv", ".conll": "conll", ".bio": "conll",
               ".iob": "conll", ".npz": "numeric", ".npy": "numeric"}
_FORMATS = {"lm": ("text",), "classify": ("tsv", "numeric"), "tag": ("conll", "numeric"),
            "regress": ("numeric",),
            "seq2seq": ("tsv", "numeric"), "one_to_many": ("numeric",), "one_to_one": ("numeric",),
            "transcribe": ("numeric",),
            "music": ("numeric",)}


@dataclass
class Task:
    """What training needs: the model, the data sources and the checkpoint metadata."""

    model: SequenceModel
    train_data: Any
    valid_data: Any
    vocabs: dict[str, Vocab] = field(default_factory=dict)
    description: str = ""

    @property
    def metadata(self) -> dict[str, Any]:
        return {"vocabs": {k: v.to_dict() for k, v in self.vocabs.items()}}


def detect_format(path: str, task: str, given: str | None = None) -> str:
    """The data format of ``path`` for ``task`` (from ``given`` or the file extension)."""
    fmt = given or _EXTENSIONS.get(os.path.splitext(path)[1].lower())
    allowed = _FORMATS[task]
    if fmt is None:
        fmt = allowed[0]
    if fmt not in allowed:
        raise ValueError(f"task {task!r} reads {' or '.join(allowed)} files, got {fmt} ({path})")
    return fmt


def _vocabs_from(meta: dict[str, Any]) -> dict[str, Vocab]:
    return {k: Vocab.from_dict(v) for k, v in meta.get("vocabs", {}).items()}


# ---- reading examples -------------------------------------------------------------------
def _norm(text: str, cfg: TrainConfig) -> str:
    return text.lower() if cfg.lowercase else text


def load_examples(path: str, cfg: TrainConfig, vocabs: dict[str, Vocab], build: bool) -> tuple[list[Any], list[Any], bool, bool]:
    """(xs, ys, x_is_sequence, y_is_sequence) of a data file; builds vocabularies when
    ``build`` (the training file), else uses the given ones."""
    fmt = detect_format(path, cfg.task, cfg.format)
    task = cfg.task
    xs: list[Any]
    ys: list[Any]
    if task == "music":  # next-step prediction: x = roll[:-1], y = roll[1:] of each piece
        xs, ys = next_step_examples(read_pianorolls(path))
        if not xs:
            raise DataFormatError(path, None, "expected pieces of at least 2 steps, found none")
        return xs, ys, True, True
    if fmt == "numeric":
        return _numeric_examples(read_numeric(path), task, path)
    if task == "classify":
        rows = read_tsv(path, ("text", "label"))
        toks = [tokenize(_norm(t, cfg), cfg.level) for t, _ in rows]
        if build:
            vocabs["input"] = Vocab.build(toks, cfg.min_freq, cfg.max_vocab, level=cfg.level)
            vocabs["labels"] = Vocab(sorted({lab for _, lab in rows}), specials=())
        xs = [np.asarray(vocabs["input"].encode(t) or [vocabs["input"].unk_id or 0]) for t in toks]
        ys = [_label(vocabs["labels"], lab, path) for _, lab in rows]
        return xs, ys, True, False
    if task == "tag":
        sents = read_conll(path)
        if build:
            vocabs["input"] = Vocab.build([[_norm(w, cfg) for w in s] for s, _ in sents], cfg.min_freq,
                                          cfg.max_vocab, level="word")
            vocabs["tags"] = Vocab(sorted({t for _, tags in sents for t in tags}), specials=())
        xs = [np.asarray(vocabs["input"].encode(_norm(w, cfg) for w in s)) for s, _ in sents]
        ys = [np.asarray([_label(vocabs["tags"], t, path) for t in tags]) for _, tags in sents]
        return xs, ys, True, True
    if task == "seq2seq":
        rows = read_tsv(path, ("source", "target"))
        src = [tokenize(_norm(s, cfg), cfg.level) for s, _ in rows]
        tgt = [tokenize(_norm(t, cfg), cfg.level) for _, t in rows]
        if build:
            vocabs["source"] = Vocab.build(src, cfg.min_freq, cfg.max_vocab, level=cfg.level)
            vocabs["target"] = Vocab.build(tgt, cfg.min_freq, cfg.max_vocab, level=cfg.level)
        xs = [np.asarray(vocabs["source"].encode(s)) for s in src]
        ys = [np.asarray(vocabs["target"].encode(t, eos=True)) for t in tgt]
        return xs, ys, True, True
    raise ValueError(f"task {task!r} cannot read {fmt} files")


def load_chars(path: str, cfg: TrainConfig, vocabs: dict[str, Vocab], build: bool) -> list[list[Arr]] | None:
    """Each example's words' character ids (as written: case kept) when ``cfg.char_features``,
    else None; builds ``vocabs["chars"]`` from the training file when ``build``."""
    if not cfg.char_features:
        return None
    if detect_format(path, cfg.task, cfg.format) == "numeric":
        raise DataFormatError(path, None, "character features (--char-features) need the words' "
                              "text: expected a CoNLL or TSV file, got numeric ids")
    if cfg.task == "tag":
        words = [list(s) for s, _ in read_conll(path)]
    else:  # as load_examples reads them; an empty text is one (character-less) word
        words = [tokenize(t, cfg.level) or [""] for t, _ in read_tsv(path, ("text", "label"))]
    if build:
        vocabs["chars"] = Vocab.build([[c for w in ws for c in w] for ws in words], level="char")
    if "chars" not in vocabs:
        raise ValueError("this model reads character features but the checkpoint holds no "
                         "character vocabulary ('chars')")
    chars = vocabs["chars"]
    return [[np.asarray(chars.encode(list(w)), dtype=np.int64) for w in ws] for ws in words]


def _label(vocab: Vocab, label: str, path: str) -> int:
    if label not in vocab:
        raise DataFormatError(path, None, f"label {label!r} does not occur in the training data; "
                              f"expected one of {vocab.itos[:20]}")
    return vocab.index(label)


def _rows(arr: Arr, lengths: Arr | None) -> list[Arr]:
    if lengths is None:
        return list(arr)
    return [a[: int(n)] for a, n in zip(arr, lengths)]


def _no_negative(rows: list[Arr] | Arr, name: str, what: str, path: str) -> None:
    """Integer ids and classes index tables: a negative one would fail deep in the loss.

    rows: one array per example, or an array (N,) of one id per example.
    """
    if isinstance(rows, np.ndarray):
        bad = np.flatnonzero(rows < 0) if rows.dtype.kind == "i" else np.zeros(0, dtype=np.intp)
        if bad.size:
            raise DataFormatError(path, None, f"expected {what} >= 0 in '{name}', example "
                                  f"{bad[0]} holds {rows[bad[0]]}")
        return
    for i, r in enumerate(rows):
        if r.dtype.kind == "i" and r.size and r.min() < 0:
            raise DataFormatError(path, None, f"expected {what} >= 0 in '{name}', example {i} "
                                  f"holds {r.min()}")


def _numeric_examples(d: NumericData, task: str, path: str) -> tuple[list[Any], list[Any], bool, bool]:
    if task in ("one_to_one", "one_to_many"):
        if d.x.ndim != 2:
            raise DataFormatError(path, None, f"task {task} expects 'x' as vectors (N, F), got shape {d.x.shape}")
        x = list(d.x.astype(np.float32))
        if task == "one_to_one":
            if d.y.dtype.kind in "iu":
                if d.y.ndim != 1:
                    raise DataFormatError(path, None, f"task one_to_one expects 'y' as class ids (N,) "
                                          f"or float targets (N, K), got {d.y.dtype} {d.y.shape}")
                _no_negative(d.y, "y", "class ids", path)
            return x, list(d.y), False, False
        if d.y.dtype.kind not in "iu" or d.y.ndim != 2:
            raise DataFormatError(path, None, f"task one_to_many expects 'y' as token ids (N, Ty), got {d.y.dtype} {d.y.shape}")
        ys = _rows(d.y, d.y_lengths)
        _no_negative(ys, "y", "token ids", path)
        return x, ys, False, True
    ids = d.x.dtype.kind in "iu"
    if d.x.ndim != (2 if ids else 3):
        raise DataFormatError(path, None, f"task {task} expects 'x' as (N, T) integer ids or (N, T, F) "
                              f"float features, got {d.x.dtype} {d.x.shape}")
    xs = _rows(d.x, d.x_lengths)
    _no_negative(xs, "x", "token ids", path)
    if task == "classify":
        if d.y.ndim != 1 or d.y.dtype.kind not in "iu":
            raise DataFormatError(path, None, f"task classify expects 'y' as class ids (N,), got {d.y.dtype} {d.y.shape}")
        _no_negative(d.y, "y", "class ids", path)
        return xs, list(d.y), True, False
    if task == "tag" and d.y.dtype.kind not in "iu":
        raise DataFormatError(path, None, f"task tag expects integer tags 'y' (N, T), got {d.y.dtype}; "
                              "for float targets use task regress")
    if task == "tag" and (d.y.ndim != 2 or d.y.shape[1] != d.x.shape[1]):
        raise DataFormatError(path, None, f"task tag expects one tag per step, 'y' (N, T) aligned with "
                              f"'x' {d.x.shape}, got {d.y.shape}")
    if task == "seq2seq" and (d.y.dtype.kind not in "iu" or d.y.ndim != 2):
        raise DataFormatError(path, None, f"task seq2seq expects 'y' as target token ids (N, Ty), "
                              f"got {d.y.dtype} {d.y.shape}")
    if task == "transcribe":
        return xs, _transcripts(d, xs, path), True, True
    if task == "regress":
        if d.y.dtype.kind != "f" or d.y.ndim != 3 or d.y.shape[1] != d.x.shape[1]:
            raise DataFormatError(path, None, f"task regress expects float targets 'y' (N, T, K) aligned "
                                  f"with 'x' {d.x.shape}, got {d.y.dtype} {d.y.shape}")
        return xs, _rows(d.y, d.x_lengths), True, True
    ylens = d.y_lengths if d.y_lengths is not None else (d.x_lengths if task == "tag" else None)
    ys = _rows(d.y, ylens)
    _no_negative(ys, "y", "tag ids" if task == "tag" else "token ids", path)
    return xs, ys, True, True


def _transcripts(d: NumericData, xs: list[Arr], path: str) -> list[Arr]:
    """The label ids of each example's transcript (its first y_lengths ids), all >= 1.

    A transcript needs a frame per label plus one per repeated label (the blank between
    repeats); examples with fewer frames are warned about: CTC cannot align them.
    """
    if d.y.dtype.kind not in "iu" or d.y.ndim != 2:
        raise DataFormatError(path, None, f"task transcribe expects 'y' as label ids (N, S) (with "
                              f"'y_lengths' when padded), got {d.y.dtype} {d.y.shape}")
    ys = _rows(d.y, d.y_lengths)
    for i, r in enumerate(ys):
        if r.size and r.min() < 1:
            raise DataFormatError(path, None, f"task transcribe expects label ids >= 1 in 'y' (id 0 "
                                  f"is the CTC blank), example {i} holds {r.min()}")
    needed = [len(y) + int(np.sum(y[1:] == y[:-1])) for y in ys]
    short = [i for i, (x, n) in enumerate(zip(xs, needed)) if len(x) < n]
    if short:
        i = short[0]
        warnings.warn(f"{path}: {len(short)} of {len(ys)} examples have fewer frames than their "
                      f"transcripts need, e.g. example {i}: {len(xs[i])} frames for {len(ys[i])} "
                      f"labels, which need {needed[i]}; CTC cannot align them, so they add "
                      "nothing to the loss (use more frames per second or shorter transcripts)",
                      stacklevel=2)
    return ys


# ---- building everything ------------------------------------------------------------------
def build_task(cfg: TrainConfig, vocabs: dict[str, Vocab] | None = None) -> Task:
    """Data sources and a fresh model for ``cfg`` (vocabularies built from the training data
    unless given, e.g. from a checkpoint being resumed)."""
    if cfg.task == "lm":
        return _lm_task(cfg, vocabs)
    assert cfg.train is not None
    given = vocabs is not None
    vocabs = dict(vocabs or {})
    xs, ys, xseq, yseq = load_examples(cfg.train, cfg, vocabs, build=not given)
    cs = load_chars(cfg.train, cfg, vocabs, build=not given)
    if cfg.valid:
        vx, vy, _, _ = load_examples(cfg.valid, cfg, vocabs, build=False)
        vc = load_chars(cfg.valid, cfg, vocabs, build=False)
    else:
        n_valid = int(round(len(xs) * cfg.valid_fraction))
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(xs))
        hold, keep = order[:n_valid], order[n_valid:]
        vx, vy = [xs[i] for i in hold], [ys[i] for i in hold]
        xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
        vc = None if cs is None else [cs[i] for i in hold]
        cs = None if cs is None else [cs[i] for i in keep]
    bs = cfg.batch_size or 32
    train = SequenceDataset(xs, ys, bs, xseq, yseq, shuffle=True, bucket=cfg.bucket if xseq else 0,
                            seed=cfg.seed, chars=cs)
    valid = SequenceDataset(vx, vy, bs, xseq, yseq, shuffle=False, chars=vc) if vx else None
    model = _model(cfg, vocabs, xs, ys)
    return Task(model, train, valid, vocabs, f"{cfg.task}: {len(xs)} training examples"
                + (f", {len(vx)} validation" if vx else ""))


def _common(cfg: TrainConfig) -> dict[str, Any]:
    return {"hidden_size": cfg.hidden_size or 128, "cell": cfg.cell, "num_layers": cfg.num_layers,
            "dropout": cfg.dropout, **cfg.cell_options}


def _chars(cfg: TrainConfig, vocabs: dict[str, Vocab]) -> dict[str, Any]:
    """The character-feature arguments of a tagger or classifier (none when off)."""
    if not cfg.char_features:
        return {}
    return {"char_features": True, "char_vocab_size": len(vocabs["chars"]),
            "char_embedding_dim": cfg.char_embedding_dim, "char_hidden_size": cfg.char_hidden_size,
            "char_layer": cfg.char_layer, "char_width": cfg.char_width}


def _model(cfg: TrainConfig, vocabs: dict[str, Vocab], xs: list[Any], ys: list[Any]) -> SequenceModel:
    emb = cfg.embedding_dim or 64
    x0 = np.asarray(xs[0])
    ids = x0.dtype.kind in "iu"
    if cfg.task == "one_to_one":
        y0 = np.asarray(ys[0])
        if y0.dtype.kind in "iu":
            return OneToOne(x0.shape[-1], cfg.hidden_size or 64, num_classes=int(max(int(y) for y in ys)) + 1,
                            num_layers=cfg.num_layers)
        return OneToOne(x0.shape[-1], cfg.hidden_size or 64, output_size=int(y0.size), num_layers=cfg.num_layers)
    source: dict[str, Any]
    if "input" in vocabs or "source" in vocabs:
        source = {"vocab_size": len(vocabs.get("input") or vocabs["source"])}
    elif ids:
        source = {"vocab_size": int(max(int(np.max(x)) for x in xs)) + 1}
    else:
        source = {"input_size": int(x0.shape[-1])}
    if cfg.task == "classify":
        n = len(vocabs["labels"]) if "labels" in vocabs else int(max(int(y) for y in ys)) + 1
        return SequenceClassifier(n, **source, embedding_dim=emb, bidirectional=bool(cfg.bidirectional),
                                  pooling=cfg.pooling, **_chars(cfg, vocabs), **_common(cfg))
    if cfg.task == "tag":
        names = vocabs["tags"].itos if "tags" in vocabs else None
        n = len(names) if names else int(max(int(np.max(y)) for y in ys)) + 1
        bidir = True if cfg.bidirectional is None else cfg.bidirectional
        return SequenceTagger(n, **source, embedding_dim=emb, bidirectional=bidir, tag_names=names,
                              crf=cfg.crf, **_chars(cfg, vocabs), **_common(cfg))
    if cfg.task == "regress":
        return SequenceRegressor(int(np.asarray(ys[0]).shape[-1]), **source, embedding_dim=emb,
                                 bidirectional=bool(cfg.bidirectional), **_common(cfg))
    if cfg.task == "seq2seq":
        tgt = len(vocabs["target"]) if "target" in vocabs else int(max(int(np.max(y)) for y in ys)) + 1
        src = {"src_vocab_size": source["vocab_size"]} if "vocab_size" in source else source
        return Seq2Seq(tgt, **src, embedding_dim=emb, bidirectional=bool(cfg.bidirectional),
                       teacher_forcing=cfg.teacher_forcing, attention=cfg.attention, **_common(cfg))
    if cfg.task == "music":
        p = int(np.asarray(ys[0]).shape[-1])
        return MultiLabelTagger(p, input_size=p, bidirectional=False, **_common(cfg))
    if cfg.task == "transcribe":
        n = int(max(int(np.max(y)) for y in ys if len(y))) + 1
        bidir = True if cfg.bidirectional is None else cfg.bidirectional
        return SequenceTranscriber(max(n, 2), **source, embedding_dim=emb, bidirectional=bidir,
                                   **_common(cfg))
    if cfg.task == "one_to_many":
        v = int(max(int(np.max(y)) for y in ys)) + 1
        return OneToMany(x0.shape[-1], max(v, 4), embedding_dim=emb, condition=cfg.condition,
                         teacher_forcing=cfg.teacher_forcing, **_common(cfg))
    raise ValueError(f"unknown task {cfg.task!r}")


def _lm_task(cfg: TrainConfig, vocabs: dict[str, Vocab] | None) -> Task:
    if cfg.train is None:
        text, source = default_corpus(), "the built-in corpus (Python's documentation topics)"
    else:
        text, source = read_text(cfg.train), cfg.train
    text = _norm(text, cfg)
    if cfg.valid:
        train_text, valid_text = text, _norm(read_text(cfg.valid), cfg)
    else:
        train_text, valid_text = split_text(text, cfg.valid_fraction)
    if vocabs is None:
        vocab = Vocab.build([tokenize(train_text, cfg.level)], cfg.min_freq, cfg.max_vocab, level=cfg.level)
        vocabs = {"input": vocab}
    vocab = vocabs["input"]
    bs, t = cfg.batch_size or 32, cfg.seq_len
    ids = encode_stream(train_text, vocab)
    held_out = "" if cfg.valid else f" after holding out valid_fraction {cfg.valid_fraction:g}"
    # StreamDataset cuts the stream into bs rows and needs 2 steps (input and target) in each
    if len(ids) < 2 * bs + 1:
        found = "the file is empty" if not text else f"found {len(ids)}{held_out}"
        raise DataFormatError(
            cfg.train or source, None,
            f"expected at least {2 * bs + 1} {cfg.level}s of training text for batch_size {bs}, "
            f"{found}; give more text or a smaller --batch-size")
    train = StreamDataset(ids, bs, t)
    valid = None
    if valid_text:
        advice = "" if cfg.valid else ", a larger --valid-fraction, or --valid FILE"
        valid = evaluation_stream(encode_stream(valid_text, vocab), cfg, cfg.valid or cfg.train or source,
                                  f"{held_out}; give more text{advice}")
    model = LanguageModel(len(vocab), cfg.embedding_dim or 64, cfg.hidden_size or 256, cfg.cell,
                          cfg.num_layers, cfg.dropout, **cfg.cell_options)
    desc = (f"language model on {source}: {train.num_tokens:,} training and "
            f"{0 if valid is None else valid.num_tokens:,} validation {cfg.level}s, vocabulary {len(vocab)}")
    return Task(model, train, valid, vocabs, desc)


def evaluation_stream(ids: Arr, cfg: TrainConfig, path: str, advice: str = "; give more text") -> StreamDataset:
    """Held-out ids (N,) as a language model's evaluation stream: as many parallel rows as
    the text allows (at most the training batch size), each at least two windows long.

    A text under 3 tokens cannot give one input and one target per row: a
    DataFormatError naming ``path`` (``advice`` is appended to what was found).
    """
    if len(ids) < 3:
        raise DataFormatError(path, None, f"expected at least 3 {cfg.level}s of evaluation text, "
                              f"found {len(ids)}{advice}")
    t = cfg.seq_len
    rows = max(1, min(cfg.batch_size or 32, (len(ids) - 1) // max(2 * t, 2)))
    return StreamDataset(ids, rows, t)


def vocabs_from_metadata(meta: dict[str, Any]) -> dict[str, Vocab]:
    """The vocabularies stored in a checkpoint's metadata."""
    return _vocabs_from(meta)
