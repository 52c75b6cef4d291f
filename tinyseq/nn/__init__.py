"""Layers: Module, Parameter, Linear, Embedding, Dropout, Sequential, recurrent layers."""

from . import init
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .module import Module, ModuleList, Parameter
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
]
