"""Argument checks with one wording: ``"<name>: expected <what>, got <value> (<type>)"``.

    check_int(hidden_size, "hidden_size")                      # an integer >= 1
    check_number(lr, "lr", lambda v: 0 < v < math.inf, "a finite number > 0")

Layers, the trainer, the command line and the settings file all check numbers here, so a
bad value gets the same clear message wherever it comes in. Booleans are never numbers
(``True`` is an ``int`` in Python, but ``hidden_size=True`` is a mistake), floats are
never integers (4.5, but also 4.0) and NaN passes no test.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from typing import Any

__all__ = ["given", "check_int", "check_number"]


def given(value: Any) -> str:
    """How a message shows a value that was given: its repr and its type."""
    return f"{value!r} ({type(value).__name__})"


def check_int(
    value: Any, name: str, minimum: int = 1, *, error: type[Exception] = ValueError
) -> int:
    """``value`` as an int >= ``minimum`` (NumPy integers too), else ``error`` naming ``name``."""
    if not isinstance(value, bool):
        try:
            number = operator.index(value)  # int and NumPy integers, never 4.5 or "4"
        except TypeError:
            pass
        else:
            if number >= minimum:
                return number
    raise error(f"{name}: expected an integer >= {minimum}, got {given(value)}")


def check_number(
    value: Any,
    name: str,
    test: Callable[[float], bool],
    what: str,
    *,
    error: type[Exception] = ValueError,
) -> float:
    """``value`` as a float that passes ``test`` (NaN never does), else ``error`` saying
    that ``what`` was expected (e.g. "a finite number > 0")."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # NumPy numbers too
        number = float(value)
        if not math.isnan(number) and test(number):
            return number
    raise error(f"{name}: expected {what}, got {given(value)}")
