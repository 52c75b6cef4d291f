"""The plugin manager and the cell registry it fills.

Every cell — built-in or third-party — reaches tinyseq through the ``register_cells``
hook (:mod:`tinyseq.hookspecs`). Plugins come from four places, loaded in this order:

1. the built-in plugins in ``tinyseq.plugins`` (rnn, simple_gru, gru, lstm and the
   wrappers bidirectional and stacked);
2. installed distributions declaring an entry point in the group ``tinyseq``::

       [project.entry-points.tinyseq]
       mycell = "mypkg.mycell"

3. single ``.py`` files named by ``TINYSEQ_PLUGINS`` (paths separated by ``os.pathsep``)
   or by ``tinyseq --plugin FILE.py``;
4. objects registered from code: ``tinyseq.registry.register_plugin(module)``.

``TINYSEQ_DISABLE_PLUGINS`` (comma-separated names) or ``disable=[...]`` blocks plugins by
name; a built-in may be named by its short name (``lstm`` for ``tinyseq.plugins.lstm``).

    pm = build_plugin_manager(entrypoints=False, env=False)   # a fresh, isolated manager
    cell = create_cell("lstm", 32, 64, pm=pm, variant="lecture")
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pluggy

from . import hookspecs
from .hookspecs import PROJECT_NAME

__all__ = [
    "BUILTIN_PLUGINS",
    "ENV_PLUGINS",
    "ENV_DISABLE",
    "CellSpec",
    "PluginSource",
    "PluginManager",
    "PluginError",
    "PluginLoadError",
    "DuplicateCellError",
    "UnknownCellError",
    "build_plugin_manager",
    "get_plugin_manager",
    "set_plugin_manager",
    "use_plugin_manager",
    "isolated_plugins",
    "register_plugin",
    "unregister_plugin",
    "load_plugin_file",
    "cell_registry",
    "available_cells",
    "get_cell_spec",
    "create_cell",
    "create_wrapper",
]

BUILTIN_PLUGINS: tuple[str, ...] = (
    "tinyseq.plugins.rnn",
    "tinyseq.plugins.simple_gru",
    "tinyseq.plugins.gru",
    "tinyseq.plugins.lstm",
    "tinyseq.plugins.bidirectional",
    "tinyseq.plugins.stacked",
)
ENV_PLUGINS = "TINYSEQ_PLUGINS"
ENV_DISABLE = "TINYSEQ_DISABLE_PLUGINS"
_BUILTIN_PREFIX = "tinyseq.plugins."


class PluginError(RuntimeError):
    """A plugin could not be loaded or registered; the message names it and its origin."""


class PluginLoadError(PluginError, ImportError):
    """A plugin failed to import (or implements a hook tinyseq does not know)."""


class DuplicateCellError(PluginError, ValueError):
    """Two plugins registered the same cell name; the message names both."""


class UnknownCellError(KeyError):
    """No cell of that name is registered; the message lists the available ones."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin came from: ``kind`` is builtin, entrypoint, file or code."""

    kind: str
    distribution: str | None = None
    version: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        if self.kind == "builtin":
            return "built-in"
        if self.kind == "entrypoint":
            return f"distribution {self.distribution} {self.version}"
        if self.kind == "file":
            return f"file {self.path}"
        return "registered from code"


@dataclass(frozen=True)
class CellSpec:
    """One registered cell (``kind="cell"``) or wrapper (``kind="wrapper"``).

    factory: cells are built as ``factory(input_size, hidden_size, **options)``;
    wrappers as ``factory(*layers, **options)``. options: name -> default value.
    """

    name: str
    factory: Callable[..., Any]
    plugin: str
    source: PluginSource
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "cell"

    @property
    def accepts_any_option(self) -> bool:
        """The factory takes ``**options``: names beyond :attr:`options` reach it too."""
        return _takes_var_keyword(self.factory)

    def create(self, *args: Any, **options: Any) -> Any:
        """Call the factory; an option it does not take is an error naming the options."""
        unknown = sorted(set(options) - set(self.options))
        if unknown and not self.accepts_any_option:
            known = ", ".join(self.options) or "none"
            raise TypeError(
                f"{self.kind} {self.name!r} got unknown option(s) {', '.join(unknown)}; "
                f"its options are: {known}"
            )
        return self.factory(*args, **options)


def _takes_var_keyword(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _options_of(factory: Callable[..., Any], skip: int) -> dict[str, Any]:
    """Keyword options and defaults from the factory's signature (after ``skip`` args)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {}
    positional = 0
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and positional < skip:
            positional += 1
            continue
        out[p.name] = None if p.default is inspect.Parameter.empty else p.default
    return out


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class PluginManager(pluggy.PluginManager):
    """pluggy's manager for the ``tinyseq`` project, remembering where each plugin came from.

    ``cells()`` asks every plugin's ``register_cells`` hook (once, cached until a plugin
    is registered or unregistered) and returns the registry: name -> :class:`CellSpec`.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self._cells: dict[str, CellSpec] | None = None

    def register(
        self, plugin: Any, name: str | None = None, source: PluginSource | None = None
    ) -> str | None:
        """Register a plugin object (e.g. a module); returns its name, None if blocked."""
        label = name or self.get_canonical_name(plugin)
        origin = source or PluginSource("code")
        if self.is_blocked(label):
            return None
        if self.has_plugin(label):
            raise PluginError(
                f"cannot register plugin {label!r} ({origin}): a plugin of that name is "
                f"already registered ({self.source_of(label)}); {_rename_hint(label, origin)}"
            )
        taken = self.get_name(plugin) if self.is_registered(plugin) else None
        if taken is not None:
            raise PluginError(
                f"cannot register plugin {label!r} ({origin}): the same object is already "
                f"registered as plugin {taken!r} ({self.source_of(taken)}); remove it first with "
                f"tinyseq.registry.unregister_plugin(name={taken!r})"
            )
        _check_marked(self, plugin, label, origin)
        try:
            registered = super().register(plugin, name)
        except pluggy.PluginValidationError as err:
            raise PluginLoadError(f"plugin {label!r} ({origin}) is invalid: {err}") from err
        if registered is not None:
            self.sources[registered] = origin
            self._cells = None
        return registered

    def unregister(self, plugin: Any | None = None, name: str | None = None) -> Any | None:
        """Remove a plugin (by object or name)."""
        if name is None and plugin is not None:
            name = self.get_name(plugin)
        removed = super().unregister(plugin, name)
        if name is not None:
            self.sources.pop(name, None)
        self._cells = None
        return removed

    def source_of(self, name: str) -> PluginSource:
        """Where the plugin called ``name`` came from."""
        return self.sources.get(name, PluginSource("code"))

    def check_pending(self) -> None:
        """Raise :class:`PluginLoadError` for a hook implementation tinyseq does not know."""
        try:
            super().check_pending()
        except pluggy.PluginValidationError as err:
            name = self.get_name(err.plugin) or repr(err.plugin)
            hooks = ", ".join(_hook_names())
            raise PluginLoadError(
                f"plugin {name!r} ({self.source_of(name)}): {err}; tinyseq's hooks are: {hooks}"
            ) from err

    def cells(self) -> Mapping[str, CellSpec]:
        """The registry, name -> :class:`CellSpec`, in registration order."""
        if self._cells is None:
            self._cells = self._collect()
        return MappingProxyType(self._cells)

    def _collect(self) -> dict[str, CellSpec]:
        cells: dict[str, CellSpec] = {}
        for impl in self.hook.register_cells.get_hookimpls():
            plugin_name = impl.plugin_name
            source = self.source_of(plugin_name)

            def register(
                name: str,
                factory: Callable[..., Any],
                *,
                description: str | None = None,
                options: Mapping[str, Any] | None = None,
                wrapper: bool = False,
                _plugin: str = plugin_name,
                _source: PluginSource = source,
            ) -> None:
                if not isinstance(name, str) or not name.strip():
                    raise PluginError(
                        f"plugin {_plugin!r} ({_source}) registered a cell with an invalid "
                        f"name {name!r}: expected a non-empty string"
                    )
                if not callable(factory):
                    raise PluginError(
                        f"plugin {_plugin!r} ({_source}) registered cell {name!r} with a "
                        f"factory that is not callable: {factory!r}"
                    )
                if name in cells:
                    first = cells[name]
                    raise DuplicateCellError(
                        f"cell {name!r} is registered twice: by plugin {first.plugin!r} "
                        f"({first.source}) and by plugin {_plugin!r} ({_source}); disable "
                        f"one of them (e.g. {ENV_DISABLE}={_plugin})"
                    )
                cells[name] = CellSpec(
                    name=name,
                    factory=factory,
                    plugin=_plugin,
                    source=_source,
                    description=description or _first_doc_line(factory),
                    options=dict(options) if options is not None
                    else _options_of(factory, 1 if wrapper else 2),
                    kind="wrapper" if wrapper else "cell",
                )

            kwargs = {arg: register for arg in impl.argnames}
            try:
                impl.function(**kwargs)
            except PluginError:
                raise
            except Exception as err:
                raise PluginError(
                    f"plugin {plugin_name!r} ({source}) failed in register_cells: "
                    f"{type(err).__name__}: {err}"
                ) from err
        return cells


def _rename_hint(name: str, origin: PluginSource) -> str:
    """How to register a plugin whose name is taken, by where the new one comes from."""
    # no TINYSEQ_DISABLE_PLUGINS hint: blocking a name blocks both plugins of that name
    if origin.kind == "file":
        return "rename one of the files (a plugin file is registered under its file name)"
    if origin.kind in ("entrypoint", "builtin"):
        return "rename the entry point or uninstall one of the distributions"
    return (
        "pass another name (tinyseq.registry.register_plugin(plugin, name=...)) or remove "
        f"the registered one first (tinyseq.registry.unregister_plugin(name={name!r}))"
    )


def _hook_names() -> list[str]:
    """The hooks tinyseq declares in :mod:`tinyseq.hookspecs`."""
    marker = PROJECT_NAME + "_spec"
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), marker))


def _check_marked(pm: pluggy.PluginManager, plugin: Any, label: str, origin: PluginSource) -> None:
    """Refuse a plugin whose hook functions lack ``@tinyseq.hookimpl``.

    pluggy skips unmarked functions without a word, so such a plugin would load with no
    cells. A misspelled, unmarked hook name counts too when the plugin implements no hook.
    """
    hooks = _hook_names()
    marked: list[str] = []
    unmarked: list[str] = []  # hook names defined without the marker
    misspelled: list[tuple[str, str]] = []  # (attribute, the hook it resembles)
    for attr in dir(plugin):
        if attr.startswith("_"):
            continue
        try:
            value = getattr(plugin, attr)
        except Exception:  # a property that raises is no hook
            continue
        if not callable(value):
            continue
        if pm.parse_hookimpl_opts(plugin, attr) is not None:
            marked.append(attr)
        elif attr in hooks:
            unmarked.append(attr)
        else:
            close = difflib.get_close_matches(attr.lower(), hooks, n=1, cutoff=0.85)
            if close:
                misspelled.append((attr, close[0]))
    if unmarked:
        hook = unmarked[0]
        raise PluginLoadError(
            f"plugin {label!r} ({origin}) defines {hook} without the @tinyseq.hookimpl "
            f"marker, so tinyseq would never call it: put @tinyseq.hookimpl on the line "
            f"above `def {hook}`"
        )
    if misspelled and not marked:  # a marked misspelling is check_pending's to report
        attr, hook = misspelled[0]
        raise PluginLoadError(
            f"plugin {label!r} ({origin}) implements no tinyseq hook: it defines {attr}, "
            f"not {hook}; name the function {hook} and mark it with @tinyseq.hookimpl"
        )

# ---- building a manager ----------------------------------------------------------------
def _split_names(text: str) -> list[str]:
    return [n for n in text.replace(";", ",").replace(os.pathsep, ",").split(",") if n.strip()]


def _block(pm: PluginManager, names: Iterable[str]) -> None:
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        pm.set_blocked(name)
        if "." not in name:  # a built-in by its short name
            pm.set_blocked(_BUILTIN_PREFIX + name)


def _load_builtins(pm: PluginManager) -> None:
    for modname in BUILTIN_PLUGINS:
        if pm.is_blocked(modname):
            continue
        try:
            module = importlib.import_module(modname)
        except Exception as err:
            raise PluginLoadError(
                f"built-in plugin {modname!r} failed to import: {type(err).__name__}: {err}"
            ) from err
        pm.register(module, name=modname, source=PluginSource("builtin"))


def _load_entrypoints(pm: PluginManager) -> None:
    for ep in metadata.entry_points(group=PROJECT_NAME):
        if pm.is_blocked(ep.name):
            continue
        dist = ep.dist
        source = PluginSource(
            "entrypoint",
            distribution=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
        )
        if pm.has_plugin(ep.name) and pm.source_of(ep.name) == source:
            continue
        try:
            plugin = ep.load()
        except Exception as err:
            raise PluginLoadError(
                f"plugin {ep.name!r} from {source} (entry point {ep.value!r}) failed to "
                f"import: {type(err).__name__}: {err}. Disable it with "
                f"{ENV_DISABLE}={ep.name}"
            ) from err
        pm.register(plugin, name=ep.name, source=source)


def load_plugin_file(pm: PluginManager, path: str | os.PathLike[str]) -> str | None:
    """Import a single-file plugin and register it under its file's stem; returns the name.

    Returns None when that name is blocked. Errors name the file and the cause.
    """
    file = Path(path).expanduser()
    name = file.stem
    if pm.is_blocked(name):
        return None
    source = PluginSource("file", path=str(file))
    if file.is_dir():
        raise PluginLoadError(
            f"plugin {name!r}: {file} is a directory; expected a single-file plugin "
            "(FILE.py). A package is installed with an entry point instead"
        )
    if not file.is_file():
        raise PluginLoadError(f"plugin {name!r}: file {file} does not exist")
    try:
        with open(file, "rb"):  # an unreadable file: say so before importing
            pass
    except OSError as err:
        raise PluginLoadError(
            f"plugin {name!r}: cannot read {file}: {err.strerror or err}"
        ) from err
    modname = f"tinyseq_plugin_{name}"
    spec = importlib.util.spec_from_file_location(modname, file)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"plugin {name!r}: expected a Python file (FILE.py), got {file}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(modname)
    sys.modules[modname] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        if previous is None:
            sys.modules.pop(modname, None)
        else:
            sys.modules[modname] = previous
        raise PluginLoadError(
            f"plugin {name!r} from file {file} failed to import: {type(err).__name__}: {err}"
        ) from err
    return pm.register(module, name=name, source=source)


def build_plugin_manager(
    *,
    builtins: bool = True,
    entrypoints: bool = True,
    env: bool = True,
    plugin_files: Iterable[str | os.PathLike[str]] = (),
    plugins: Iterable[Any] = (),
    disable: Iterable[str] = (),
) -> PluginManager:
    """A fresh plugin manager with its plugins loaded and checked.

    builtins: the cells in ``tinyseq.plugins``. entrypoints: installed distributions'
    ``tinyseq`` entry points. env: also read ``TINYSEQ_PLUGINS`` (files) and
    ``TINYSEQ_DISABLE_PLUGINS`` (names). plugin_files: more single-file plugins.
    plugins: objects (modules) registered from code. disable: plugin names to block.
    Tests pass ``entrypoints=False, env=False`` to see only what they register.
    """
    pm = PluginManager()
    blocked = list(disable)
    files: list[str | os.PathLike[str]] = []
    if env:
        blocked += _split_names(os.environ.get(ENV_DISABLE, ""))
        files += [p for p in os.environ.get(ENV_PLUGINS, "").split(os.pathsep) if p.strip()]
    files += list(plugin_files)
    _block(pm, blocked)
    if builtins:
        _load_builtins(pm)
    if entrypoints:
        _load_entrypoints(pm)
    for path in files:
        load_plugin_file(pm, path)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


# ---- the process-wide manager -------------------------------------------------------------
_default_pm: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, built on first use (built-ins, entry points, env)."""
    global _default_pm
    if _default_pm is None:
        _default_pm = build_plugin_manager()
    return _default_pm


def set_plugin_manager(pm: PluginManager | None) -> None:
    """Replace the process-wide manager (None: rebuild it on next use)."""
    global _default_pm
    _default_pm = pm


@contextlib.contextmanager
def use_plugin_manager(pm: PluginManager) -> Iterator[PluginManager]:
    """Make ``pm`` the process-wide manager inside a ``with`` block."""
    global _default_pm
    previous = _default_pm
    _default_pm = pm
    try:
        yield pm
    finally:
        _default_pm = previous


@contextlib.contextmanager
def isolated_plugins(
    plugins: Iterable[Any] = (), plugin_files: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[PluginManager]:
    """A ``with`` block that sees only the built-ins plus the given plugins.

    Neither installed entry points nor the environment variables are read, so a test
    behaves the same on every machine::

        with isolated_plugins([my_plugin_module]):
            rnn = ts.nn.Recurrent("mycell", 3, 4)
    """
    pm = build_plugin_manager(
        entrypoints=False, env=False, plugins=plugins, plugin_files=plugin_files
    )
    with use_plugin_manager(pm):
        yield pm


def register_plugin(plugin: Any, name: str | None = None) -> str | None:
    """Register a plugin object (a module or anything with ``register_cells``) from code.

    It is checked at once: an unknown hook raises :class:`PluginLoadError`.
    """
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except PluginLoadError:
        pm.unregister(plugin)
        raise
    return registered


def unregister_plugin(plugin: Any = None, name: str | None = None) -> None:
    """Remove a plugin registered from code (by object or name)."""
    get_plugin_manager().unregister(plugin, name)


def _pm(pm: PluginManager | None) -> PluginManager:
    return pm if pm is not None else get_plugin_manager()


def cell_registry(pm: PluginManager | None = None) -> Mapping[str, CellSpec]:
    """Every registered cell and wrapper: name -> :class:`CellSpec` (read-only)."""
    return _pm(pm).cells()


def available_cells(pm: PluginManager | None = None, kind: str | None = "cell") -> list[str]:
    """Registered names, sorted; ``kind`` "cell", "wrapper" or None for both."""
    return sorted(n for n, s in cell_registry(pm).items() if kind is None or s.kind == kind)


def get_cell_spec(name: str, pm: PluginManager | None = None) -> CellSpec:
    """The :class:`CellSpec` of ``name``; an unknown name lists the available ones."""
    registry = cell_registry(pm)
    spec = registry.get(name)
    if spec is None:
        cells = ", ".join(available_cells(pm, "cell")) or "none"
        wrappers = ", ".join(available_cells(pm, "wrapper")) or "none"
        raise UnknownCellError(
            f"unknown cell {name!r}; available cells: {cells} (wrappers: {wrappers}). "
            "A plugin may be missing: see `tinyseq plugins`"
        )
    return spec


def create_cell(
    name: str,
    input_size: int,
    hidden_size: int,
    *,
    pm: PluginManager | None = None,
    **options: Any,
) -> Any:
    """Build the registered cell ``name``: ``factory(input_size, hidden_size, **options)``."""
    spec = get_cell_spec(name, pm)
    if spec.kind != "cell":
        raise TypeError(f"{name!r} is a wrapper, not a cell; use create_wrapper({name!r}, ...)")
    return spec.create(input_size, hidden_size, **options)


def create_wrapper(name: str, *layers: Any, pm: PluginManager | None = None, **options: Any) -> Any:
    """Build the registered wrapper ``name`` around ``layers`` (cells or sequence layers)."""
    spec = get_cell_spec(name, pm)
    if spec.kind != "wrapper":
        raise TypeError(f"{name!r} is a cell, not a wrapper; use create_cell({name!r}, ...)")
    return spec.create(*layers, **options)
