"""The ``tinyseq`` command: each group of subcommands lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import registry

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    from . import cli_cells, cli_export, cli_train

    parser = argparse.ArgumentParser(
        prog="tinyseq", description="Train and inspect recurrent networks."
    )
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="FILE.py",
        help="load a single-file cell plugin (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cli_cells.add_commands(sub)
    cli_train.add_commands(sub)
    cli_export.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tinyseq`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        # one manager per command, built here so a bad --plugin file (or a broken installed
        # plugin) is reported like any other bad input; every command sees its cells
        pm = registry.build_plugin_manager(plugin_files=args.plugin)
        with registry.use_plugin_manager(pm):
            return int(args.func(args) or 0)
    except (registry.PluginError, registry.UnknownCellError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
