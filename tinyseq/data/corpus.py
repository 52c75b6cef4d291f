"""The built-in default corpus: Python's own documentation topics (no download).

Every Python installation ships ``pydoc_data.topics.topics``, a dict of documentation
texts (about 460k characters), which makes a small English-and-code corpus for a
character-level language model.
"""

from __future__ import annotations

__all__ = ["default_corpus"]


def default_corpus() -> str:
    """The pydoc topics joined in sorted key order, separated by blank lines."""
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # pragma: no cover - stripped-down Python builds
        raise RuntimeError(
            "the default corpus needs the standard library's pydoc_data package, which "
            "this Python does not have; pass your own text with --train FILE"
        ) from err
    return "\n\n".join(str(topics[k]).strip("\n") for k in sorted(topics)) + "\n"
