"""The built-in cell kinds and variants that the kernel tests run over (one list)."""

from __future__ import annotations

from typing import Any

GATES = {"rnn": 1, "simple_gru": 2, "gru": 3, "lstm": 4}
# every built-in kind and variant: (kind, options)
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("simple_gru", {}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("lstm", {"variant": "standard"}),
    ("lstm", {"variant": "lecture"}),
]
IDS = [f"{k}-{'-'.join(str(v) for v in o.values()) or 'default'}" for k, o in VARIANTS]
