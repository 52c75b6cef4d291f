"""`tinyseq` subcommands: cells (placeholder until implemented)."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the parser's subparsers."""
    del sub
    _ = argparse
