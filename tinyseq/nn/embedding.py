"""Embedding table: integer ids -> vectors."""

from __future__ import annotations

from typing import Any

from .. import backend
from ..backend import Device
from ..functional import embedding
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    """Look up rows of ``weight`` (num_embeddings, embedding_dim) by integer ids.

    ids (...) -> (..., embedding_dim). Initialised N(0, 1) like PyTorch; the row at
    ``padding_idx`` (if given) starts at zero and receives no gradient.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        device: str | Device | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        dev = backend.get_device(device)
        dt = dtype or backend.get_default_dtype()
        self.weight = Parameter(Tensor(dev.xp.zeros((num_embeddings, embedding_dim), dtype=dt)))
        init.normal_(self.weight)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    @classmethod
    def from_pretrained(
        cls, weights: Any, freeze: bool = True, padding_idx: int | None = None
    ) -> Embedding:
        """An embedding whose table is ``weights`` (V, D); frozen unless freeze=False."""
        w = weights if isinstance(weights, Tensor) else Tensor(weights)
        if w.ndim != 2:
            raise ValueError(f"pretrained weights must be 2-D (V, D), got shape {w.shape}")
        emb = cls(w.shape[0], w.shape[1], padding_idx=padding_idx, device=w.device, dtype=w.dtype)
        emb.weight.data[...] = w.data
        emb.weight.requires_grad = not freeze
        return emb

    def forward(self, ids: Any) -> Tensor:
        out = embedding(ids, self.weight)
        if self.padding_idx is not None and out.requires_grad:
            # the padding row gets no gradient, as in PyTorch
            pad = self.padding_idx
            xp = self.weight.device.xp
            ids_arr = ids.data if isinstance(ids, Tensor) else ids
            keep = (ids_arr != pad)[..., None].astype(out.dtype)
            return out * Tensor(xp.asarray(keep), device=self.weight.device)
        return out

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
