"""Embedding table: integer ids -> vectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..backend import Device
from ..checks import check_int
from ..functional import embedding
from ..tensor import Array, Tensor, custom, no_grad
from . import init
from .module import Module, Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    """Look up rows of ``weight`` (num_embeddings, embedding_dim) by integer ids.

    ids (...) -> (..., embedding_dim). Initialised N(0, 1) like PyTorch; the row at
    ``padding_idx`` (if given; negative counts from the end) starts at zero and
    receives no gradient.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        device: str | Device | None = None,
        dtype: Any = None,
        _weight: Any = None,
    ) -> None:
        super().__init__()
        num_embeddings = check_int(num_embeddings, "Embedding: num_embeddings", 0)
        embedding_dim = check_int(embedding_dim, "Embedding: embedding_dim", 0)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"padding_idx must be in [-{num_embeddings}, {num_embeddings}) for "
                    f"{num_embeddings} embeddings, got {padding_idx}"
                )
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        dev = backend.get_device(device)
        dt = dtype or backend.get_default_dtype()
        if _weight is not None:  # from_pretrained: take the given table, draw nothing
            self.weight = Parameter(Tensor(_weight, dtype=dt, device=dev))
            return
        self.weight = Parameter(Tensor(dev.xp.zeros((num_embeddings, embedding_dim), dtype=dt)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 1), with the padding row zeroed (PyTorch's default)."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        padding_idx: int | None = None,
        device: str | Device | None = None,
        dtype: Any = None,
    ) -> Embedding:
        """An embedding whose table is a copy of ``embeddings`` (V, D), as in PyTorch.

        embeddings: a Tensor or array (e.g. from :func:`tinyseq.nn.load_word_vectors`);
        it keeps its dtype and device unless ``dtype``/``device`` are given. The table
        is frozen (no gradient) unless ``freeze=False``. The padding row is kept as
        given (PyTorch does not zero it either) but gets no gradient.
        """
        w = embeddings if isinstance(embeddings, Tensor) else Tensor(embeddings)
        if w.ndim != 2:
            raise ValueError(
                f"from_pretrained expects a 2-D table (num_embeddings, embedding_dim), "
                f"got shape {w.shape}"
            )
        dev = backend.get_device(device) if device is not None else w.device
        table = backend.to_numpy(w.data).copy() if dev is not w.device else w.data.copy()
        emb = cls(
            w.shape[0], w.shape[1], padding_idx=padding_idx, device=dev,
            dtype=dtype or w.dtype, _weight=table,
        )
        emb.weight.requires_grad = not freeze
        return emb

    def forward(self, ids: Any) -> Tensor:
        """ids: integer Tensor or array (...) -> (..., embedding_dim)."""
        dev = self.weight.device
        if not isinstance(ids, Tensor):
            # a host array or list of ids: bring it to the table's device
            host = backend.to_numpy(ids) if hasattr(ids, "shape") else np.asarray(ids)
            ids = host if dev.name == "cpu" else dev.xp.asarray(host)
        if self.padding_idx is None or not self.weight.requires_grad:
            return embedding(ids, self.weight)
        with no_grad():  # the lookup with its checks; the graph node is made below
            rows = embedding(ids, self.weight)
        idx = ids.data if isinstance(ids, Tensor) else ids
        pad = self.padding_idx
        wshape = self.weight.shape

        def backward(g: Array) -> tuple[Array]:
            # scatter the gradient into the table, skipping the padding row (PyTorch)
            flat = idx.reshape(-1)
            g2 = g.reshape(-1, wshape[1]) * (flat != pad)[:, None]
            full = dev.xp.zeros(wshape, dtype=g.dtype)
            backend.scatter_add(dev, full, flat, g2)
            return (full,)

        return custom(rows.data, (self.weight,), backward)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
