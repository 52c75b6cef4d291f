"""Sequential container."""

from __future__ import annotations

from typing import Any

from .module import Module

__all__ = ["Sequential"]


class Sequential(Module):
    """Calls its modules in order, each on the previous one's output."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x
