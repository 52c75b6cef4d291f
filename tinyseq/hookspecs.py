"""The plugin hooks tinyseq calls: a plugin implements them with ``@tinyseq.hookimpl``.

A plugin is a module (or any object) with a ``register_cells`` function::

    import tinyseq

    @tinyseq.hookimpl
    def register_cells(register):
        register("mycell", MyCell, description="my recurrent cell")

The marker is required: pluggy would skip an unmarked ``register_cells`` without a word,
so tinyseq refuses such a plugin with an error naming it and its file.
"""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl", "register_cells", "PROJECT_NAME"]

PROJECT_NAME = "tinyseq"  # also the entry-point group third-party plugins declare

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_cells(register: Any) -> None:
    """Call ``register(name, factory, description=..., options=...)`` once per cell.

    ``factory(input_size, hidden_size, **options)`` returns a :class:`tinyseq.cell.Cell`;
    description and options default to the factory's docstring and keyword defaults.
    Wrappers (e.g. bidirectional, stacked) pass ``wrapper=True``.
    """
