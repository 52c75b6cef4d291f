"""`tinyseq cells`, `tinyseq plugins` and `tinyseq check-cell NAME`."""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any

from . import registry

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the parser's subparsers."""
    p = sub.add_parser("cells", help="list the registered cells and wrappers")
    p.set_defaults(func=cmd_cells)

    p = sub.add_parser("plugins", help="list the loaded plugins, where they came from, their hooks")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser(
        "check-cell",
        help="run the conformance kit on a cell (exit status 1 when a check fails)",
    )
    p.add_argument("name", help="a registered cell name (see `tinyseq cells`)")
    p.add_argument("--input-size", type=int, default=3, help="input features (default 3)")
    p.add_argument("--hidden-size", type=int, default=4, help="hidden features (default 4)")
    p.add_argument(
        "--option", "-o", action="append", default=[], metavar="KEY=VALUE",
        help="a cell option, e.g. -o variant=lecture (values are Python literals or text)",
    )
    p.add_argument("--device", default="cpu", help="device to run on (default cpu)")
    p.add_argument(
        "--check", action="append", default=None, metavar="NAME",
        help="run only this check (repeatable)",
    )
    p.add_argument(
        "--show-kernel", action="store_true",
        help="print the op graph and the NumPy code generated from the cell's step",
    )
    p.set_defaults(func=cmd_check_cell)


def _manager(args: argparse.Namespace) -> registry.PluginManager:
    """The plugin manager for this command: :func:`tinyseq.cli.main` loaded ``--plugin`` files."""
    return registry.get_plugin_manager()


def _fail(message: str, status: int = 2) -> int:
    print(f"tinyseq: error: {message}", file=sys.stderr)
    return status


def _format_options(options: Any) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items()) or "-"


def cmd_cells(args: argparse.Namespace) -> int:
    """Each cell and wrapper: its plugin and origin, options and a one-line description."""
    specs = list(_manager(args).cells().values())  # a plugin error is main()'s to report
    for kind in ("cell", "wrapper"):
        chosen = [s for s in specs if s.kind == kind]
        if not chosen:
            continue
        print("cells:" if kind == "cell" else "wrappers:")
        for spec in chosen:
            print(f"  {spec.name}  {spec.description}")
            print(f"      plugin:  {spec.plugin} ({spec.source})")
            print(f"      options: {_format_options(spec.options)}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """Each plugin: its name, where it came from, its hooks and the cells it registers."""
    pm = _manager(args)
    cells = pm.cells()  # a plugin error is main()'s to report
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        provided = [c.name for c in cells.values() if c.plugin == name]
        print(f"{name}  ({pm.source_of(name)})")
        print(f"    hooks: {', '.join(hooks) or '-'}")
        print(f"    cells: {', '.join(provided) or '-'}")
    blocked = [name for name, plugin in pm.list_name_plugin() if plugin is None]
    if blocked:
        print(f"disabled: {', '.join(sorted(blocked))}")
    return 0


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValueError(f"--option expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def cmd_check_cell(args: argparse.Namespace) -> int:
    """Run :func:`tinyseq.testing.check_cell` and print one line per check."""
    from .testing.cellcheck import check_cell

    try:
        options = dict(_parse_option(o) for o in args.option)
    except ValueError as err:
        return _fail(str(err))
    pm = _manager(args)
    pm.cells()  # a broken plugin is main()'s to report (status 1), not a bad cell name
    try:
        registry.get_cell_spec(args.name, pm)
        report = check_cell(
            args.name,
            args.input_size,
            args.hidden_size,
            options=options,
            device=args.device,
            checks=args.check,
            pm=pm,
            raise_on_failure=False,
        )
    except (registry.UnknownCellError, TypeError, ValueError) as err:
        return _fail(str(err))
    print(report)
    spec = registry.get_cell_spec(args.name, pm)
    if spec.kind == "cell":
        cell = spec.create(args.input_size, args.hidden_size, **options).to(args.device)
        print(_fusion_line(cell))
        if args.show_kernel:
            _show_kernel(cell)
    return 0 if report.ok else 1


def _fusion_line(cell: Any) -> str:
    """Whether the recurrent layer runs ``cell`` fused, and how (one line)."""
    from .cell import Cell
    from .kernels.generated import compile_cell, explain

    own = type(cell).fused_sequence is not Cell.fused_sequence
    reason = explain(cell)
    if reason is not None:
        return f"kernels: {'its own fused_sequence; generated: ' if own else ''}{reason}"
    itemsize = next(cell.parameters()).data.dtype.itemsize if any(True for _ in cell.parameters()) else 4
    saved = compile_cell(cell).plan.saved_bytes_per_tbh(itemsize)
    how = "its own fused_sequence (generated kernels also available)" if own else "generated"
    return (f"kernels: fused, {how}; saves {saved:g} bytes per T*B*H for backward; "
            f"element-wise part: {_elementwise_how(cell)}")


def _elementwise_how(cell: Any) -> str:
    """How the generated kernels do a step's element-wise part on this machine."""
    from .kernels import jit
    from .kernels.generated import Unsupported, compile_cell, scalar

    try:
        scalar.check(compile_cell(cell).graph)
    except Unsupported as err:
        return f"NumPy calls ({err})"
    dtype = next(cell.parameters()).data.dtype if any(True for _ in cell.parameters()) else None
    if cell.device.name == "cuda":
        return "one generated CUDA kernel each way"
    if dtype is not None and jit.compiled(cell.device.xp, dtype) is not None:
        return "one compiled pass each way (numba)"
    return "NumPy calls (install the jit extra, numba, for one compiled pass each way)"


def _show_kernel(cell: Any) -> None:
    from .kernels.generated import Unsupported, compile_cell

    try:
        comp = compile_cell(cell)
    except Unsupported:
        return
    print("\n# traced step (n<id> = op(args)  [width]  where)")
    print(comp.graph.describe())
    print("\n# generated NumPy forward")
    print(comp.forward_src)
    print("# generated NumPy backward")
    print(comp.backward_src)
    from .kernels.generated.codegen_numba import numba_sources

    try:
        fsrc, bsrc, _, _ = numba_sources(compile_cell(cell, rows=True).plan)
    except Unsupported as err:
        print(f"# no compiled element-wise passes: {err}")
        return
    print("# the same step's element-wise part as compiled passes (numba, the jit extra;")
    print("# run between the products of each step instead of the NumPy calls above)")
    print(fsrc)
    print(bsrc)
