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

from typing import Any

from .base import SequenceModel, StepResult, detach_state, select_state
from .classifier import SequenceClassifier
from .language_model import LanguageModel
from .one_to_many import ImageCaptioner, OneToMany
from .one_to_one import OneToOne
from .seq2seq import Seq2Seq
from .tagger import MultiLabelTagger, SequenceRegressor, SequenceTagger
from .transcriber import SequenceTranscriber

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

MODELS: dict[str, type[SequenceModel]] = {
    m.kind: m for m in (LanguageModel, SequenceClassifier, SequenceTagger, SequenceRegressor, Seq2Seq,
                        OneToMany, OneToOne, MultiLabelTagger, ImageCaptioner, SequenceTranscriber)
}


def build_model(kind: str, config: dict[str, Any]) -> SequenceModel:
    """A model from its kind and config (as stored in a checkpoint)."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODELS)}")
    return MODELS[kind](**config)
