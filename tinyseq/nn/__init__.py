"""Layers: Module, Parameter, Linear, Embedding, Dropout, Sequential, losses, recurrent layers,
attention, character-level word features, a linear-chain CRF."""

from . import init
from .attention import Attention
from .char_features import CharFeatures
from .crf import CRF
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, CTCLoss, MSELoss
from .module import Module, ModuleList, Parameter
from .pretrained import WordVectors, load_word_vectors
from .recurrent import Recurrent
from .sequential import Sequential

__all__ = [
    "init",
    "Module",
    "ModuleList",
    "Parameter",
    "Linear",
    "Embedding",
    "Dropout",
    "Sequential",
    "CrossEntropyLoss",
    "BCEWithLogitsLoss",
    "MSELoss",
    "CTCLoss",
    "WordVectors",
    "load_word_vectors",
    "Recurrent",
    "Attention",
    "CharFeatures",
    "CRF",
]
