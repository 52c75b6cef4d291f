"""Patch encoder: images (B, H, W, C) -> vectors, a strided convolution then a linear map."""

from __future__ import annotations

from collections.abc import Sequence

from ..tensor import Tensor, relu, tanh
from .linear import Linear
from .module import Module

__all__ = ["PatchEncoder"]


class PatchEncoder(Module):
    """Images (B, H, W, C) -> vectors (B, out_features).

    Each non-overlapping ``patch`` x ``patch`` square goes through one shared Linear and
    a ReLU: a convolution whose stride is its kernel size, written as a reshape and a
    matrix product (so its gradient is that of ops already checked). The patches'
    features are flattened in order, which keeps where each patch is, and a Linear +
    tanh maps them to the vector.
    """

    def __init__(self, image_shape: Sequence[int], out_features: int, patch: int = 4,
                 channels: int = 16) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {tuple(image_shape)}")
        h, w, c = (int(s) for s in image_shape)
        if patch < 1 or h % patch or w % patch:
            raise ValueError(f"patch {patch} must divide the image's height and width, got "
                             f"image_shape {(h, w, c)}")
        self.image_shape = (h, w, c)
        self.patch = patch
        self.grid = (h // patch, w // patch)
        self.conv = Linear(patch * patch * c, channels)
        self.proj = Linear(self.grid[0] * self.grid[1] * channels, out_features)

    def patches(self, x: Tensor) -> Tensor:
        """x (B, H, W, C) -> its patches (B, H/p * W/p, p * p * C), row by row."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images (B, {', '.join(map(str, self.image_shape))}), "
                             f"got shape {tuple(x.shape)}")
        b, (gh, gw), p, c = x.shape[0], self.grid, self.patch, self.image_shape[2]
        return x.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, p * p * c)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, H, W, C) -> (B, out_features)."""
        features = relu(self.conv(self.patches(x)))  # (B, patches, channels)
        return tanh(self.proj(features.reshape(x.shape[0], -1)))
