"""The plugin manager and registry: sources, errors, disabling, the CLI listings."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import tinyseq as ts
from tinyseq import registry
from tinyseq.cell import Cell, State, linear
from tinyseq.cli import main
from tinyseq.nn import Parameter
from tinyseq.registry import (
    DuplicateCellError,
    PluginLoadError,
    UnknownCellError,
    build_plugin_manager,
    use_plugin_manager,
)

BUILTIN_CELLS = ["gru", "lstm", "rnn", "simple_gru"]


def fresh(**kwargs: Any) -> registry.PluginManager:
    """A manager that sees only the built-ins and what the test gives it."""
    kwargs.setdefault("entrypoints", False)
    kwargs.setdefault("env", False)
    return build_plugin_manager(**kwargs)


class ToyCell(Cell):
    """toy cell: h = tanh(W x + U h)."""

    def __init__(self, input_size: int, hidden_size: int, scale: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        self.scale = scale
        self.weight_ih = Parameter(ts.randn(hidden_size, input_size) * 0.3)
        self.weight_hh = Parameter(ts.randn(hidden_size, hidden_size) * 0.3)

    def step(self, x_t: ts.Tensor, state: State) -> tuple[ts.Tensor, State]:
        h = ts.tanh(linear(x_t, self.weight_ih) + linear(state[0], self.weight_hh) * self.scale)
        return h, (h,)


def toy_plugin(name: str = "toy") -> types.ModuleType:
    module = types.ModuleType(f"toy_plugin_{name}")

    @ts.hookimpl
    def register_cells(register: Any) -> None:
        register(name, ToyCell)

    module.register_cells = register_cells  # type: ignore[attr-defined]
    return module


PLUGIN_FILE = '''
import tinyseq as ts
from tinyseq.cell import Cell, linear
from tinyseq.nn import Parameter

class FileCell(Cell):
    """a cell from a file"""
    def __init__(self, input_size, hidden_size, gain=2.0):
        super().__init__(input_size, hidden_size)
        self.gain = gain
        self.weight = Parameter(ts.randn(hidden_size, input_size + hidden_size) * 0.3)
    def step(self, x_t, state):
        h = ts.tanh(linear(ts.cat([x_t, state[0]], axis=1), self.weight)) * self.gain
        return h, (h,)

@ts.hookimpl
def register_cells(register):
    register("filecell", FileCell)
'''


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "myplugin.py"
    path.write_text(PLUGIN_FILE)
    return path


# ---- the built-ins -----------------------------------------------------------------------
def test_builtins_are_plugins_registered_through_the_hook() -> None:
    pm = fresh()
    assert registry.available_cells(pm) == BUILTIN_CELLS
    assert registry.available_cells(pm, kind="wrapper") == ["bidirectional", "stacked"]
    spec = registry.get_cell_spec("lstm", pm)
    assert spec.plugin == "tinyseq.plugins.lstm"
    assert str(spec.source) == "built-in"
    assert spec.options == {"variant": "standard", "forget_bias": 0.0, "bias": True}
    assert "LSTM" in spec.description
    for name in registry.BUILTIN_PLUGINS:
        assert pm.has_plugin(name)
        assert [h.name for h in pm.get_hookcallers(pm.get_plugin(name))] == ["register_cells"]


def test_create_cell_passes_options_and_rejects_unknown_ones() -> None:
    pm = fresh()
    cell = registry.create_cell("lstm", 3, 5, pm=pm, variant="lecture")
    assert cell.variant == "lecture" and cell.weight_ih.shape == (20, 3)
    with pytest.raises(TypeError, match=r"unknown option\(s\) varient; its options are: variant"):
        registry.create_cell("lstm", 3, 5, pm=pm, varient="lecture")
    with pytest.raises(TypeError, match="wrapper"):
        registry.create_cell("stacked", 3, 5, pm=pm)


def test_unknown_cell_lists_the_available_ones() -> None:
    pm = fresh()
    with pytest.raises(UnknownCellError) as info:
        registry.get_cell_spec("lstn", pm)
    message = str(info.value)
    assert "'lstn'" in message
    for name in BUILTIN_CELLS + ["bidirectional", "stacked"]:
        assert name in message
    with use_plugin_manager(pm), pytest.raises(UnknownCellError, match="available cells: gru"):
        ts.nn.Recurrent("lstn", 3, 4)


# ---- registering from code -------------------------------------------------------------------
def test_register_from_code_and_use_in_one_call() -> None:
    pm = fresh(plugins=[toy_plugin()])
    spec = registry.get_cell_spec("toy", pm)
    assert str(spec.source) == "registered from code"
    assert spec.options == {"scale": 1.0}
    assert spec.description == "toy cell: h = tanh(W x + U h)."
    with use_plugin_manager(pm):
        rnn = ts.nn.Recurrent("toy", 3, 4, num_layers=2, bidirectional=True, scale=0.5)
        out, h = rnn(ts.randn(5, 2, 3), lengths=[5, 3])
    assert out.shape == (5, 2, 8) and h.shape == (4, 2, 4)
    assert float(out[3:, 1].abs().sum()) == 0.0


def test_register_plugin_on_the_default_manager_then_unregister() -> None:
    with use_plugin_manager(fresh()):
        plugin = toy_plugin("toy2")
        assert registry.register_plugin(plugin, name="toy2-plugin") == "toy2-plugin"
        assert "toy2" in registry.available_cells()
        registry.unregister_plugin(name="toy2-plugin")
        assert "toy2" not in registry.available_cells()


def test_duplicate_cell_name_names_both_registrants() -> None:
    pm = fresh(plugins=[toy_plugin("lstm")])
    with pytest.raises(DuplicateCellError) as info:
        pm.cells()
    message = str(info.value)
    assert "'lstm' is registered twice" in message
    assert "tinyseq.plugins.lstm" in message and "built-in" in message
    assert "toy_plugin_lstm" in message and "registered from code" in message


def test_misspelled_hook_is_caught_by_check_pending() -> None:
    module = types.ModuleType("typo_plugin")

    @ts.hookimpl
    def register_cell(register: Any) -> None:  # missing the "s"
        register("typo", ToyCell)

    module.register_cell = register_cell  # type: ignore[attr-defined]
    with pytest.raises(PluginLoadError, match="unknown hook 'register_cell'.*register_cells"):
        fresh(plugins=[module])
    with use_plugin_manager(fresh()), pytest.raises(PluginLoadError, match="register_cell"):
        registry.register_plugin(module)


def test_hook_with_wrong_argument_is_rejected() -> None:
    module = types.ModuleType("badargs_plugin")

    @ts.hookimpl
    def register_cells(reg: Any) -> None:
        reg("x", ToyCell)

    module.register_cells = register_cells  # type: ignore[attr-defined]
    with pytest.raises(PluginLoadError, match="badargs_plugin.*invalid"):
        fresh(plugins=[module])


def test_error_inside_register_cells_names_the_plugin() -> None:
    module = types.ModuleType("crashing_plugin")

    @ts.hookimpl
    def register_cells(register: Any) -> None:
        raise RuntimeError("kaput")

    module.register_cells = register_cells  # type: ignore[attr-defined]
    pm = fresh(plugins=[module])
    with pytest.raises(registry.PluginError, match="crashing_plugin.*kaput"):
        pm.cells()


# ---- single files ------------------------------------------------------------------------------
def test_file_plugin_by_environment_variable(plugin_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.ENV_PLUGINS, str(plugin_file))
    pm = build_plugin_manager(entrypoints=False)
    spec = registry.get_cell_spec("filecell", pm)
    assert spec.plugin == "myplugin"
    assert str(spec.source) == f"file {plugin_file}"
    assert spec.options == {"gain": 2.0}
    with use_plugin_manager(pm):
        out, _ = ts.nn.Recurrent("filecell", 2, 3, bidirectional=True, gain=0.5)(ts.randn(4, 2, 2))
    assert out.shape == (4, 2, 6) and float(out.abs().max()) <= 0.5


def test_file_plugin_by_argument_and_several_in_the_variable(plugin_file: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pm = fresh(plugin_files=[plugin_file])
    assert "filecell" in registry.available_cells(pm)
    other = tmp_path / "other.py"
    other.write_text(PLUGIN_FILE.replace('"filecell"', '"othercell"'))
    import os

    monkeypatch.setenv(registry.ENV_PLUGINS, os.pathsep.join([str(plugin_file), str(other)]))
    pm = build_plugin_manager(entrypoints=False)
    assert {"filecell", "othercell"} <= set(registry.available_cells(pm))


def test_file_plugin_that_fails_to_import_names_file_and_cause(tmp_path: Path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("import tinyseq\nraise ValueError('no such layer')\n")
    with pytest.raises(PluginLoadError) as info:
        fresh(plugin_files=[bad])
    message = str(info.value)
    assert "'broken'" in message and str(bad) in message
    assert "ValueError: no such layer" in message
    assert "tinyseq_plugin_broken" not in sys.modules
    with pytest.raises(PluginLoadError, match="does not exist"):
        fresh(plugin_files=[tmp_path / "missing.py"])


# ---- entry points ---------------------------------------------------------------------------------
def _fake_distribution(root: Path, module: str, module_source: str) -> None:
    """An installed-looking distribution 'fakecells 1.2.3' with one tinyseq entry point."""
    (root / f"{module}.py").write_text(module_source)
    info = root / "fakecells-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakecells\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[tinyseq]\nfake = {module}\n")


def test_entry_point_plugin_is_loaded_with_its_distribution(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(tmp_path, "fakecells_good", PLUGIN_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = build_plugin_manager(env=False)
    spec = registry.get_cell_spec("filecell", pm)
    assert spec.plugin == "fake"
    assert str(spec.source) == "distribution fakecells 1.2.3"
    pm = build_plugin_manager(env=False, disable=["fake"])
    assert "filecell" not in registry.available_cells(pm)


def test_entry_point_that_fails_to_import_names_plugin_distribution_and_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(tmp_path, "fakecells_bad", "import numpy_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginLoadError) as info:
        build_plugin_manager(env=False)
    message = str(info.value)
    assert "'fake'" in message and "fakecells 1.2.3" in message
    assert "numpy_that_does_not_exist" in message and "ModuleNotFoundError" in message
    assert "TINYSEQ_DISABLE_PLUGINS=fake" in message
    monkeypatch.setenv(registry.ENV_DISABLE, "fake")
    assert "lstm" in registry.available_cells(build_plugin_manager())


# ---- disabling ---------------------------------------------------------------------------------------
def test_disable_by_environment_and_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.ENV_DISABLE, "lstm, tinyseq.plugins.gru")
    pm = build_plugin_manager(entrypoints=False)
    assert registry.available_cells(pm) == ["rnn", "simple_gru"]
    pm = fresh(disable=["rnn"])
    assert "rnn" not in registry.available_cells(pm)
    assert pm.is_blocked("tinyseq.plugins.rnn")


def test_disabled_file_plugin_is_not_imported(plugin_file: Path) -> None:
    pm = fresh(plugin_files=[plugin_file], disable=["myplugin"])
    assert "filecell" not in registry.available_cells(pm)


# ---- the CLI ---------------------------------------------------------------------------------------
def test_cli_cells_lists_origin_options_description(plugin_file: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry.ENV_PLUGINS, raising=False)
    try:
        assert main(["--plugin", str(plugin_file), "cells"]) == 0
    finally:
        registry.set_plugin_manager(None)
    out = capsys.readouterr().out
    assert "lstm  LSTM" in out
    assert "plugin:  tinyseq.plugins.lstm (built-in)" in out
    assert "options: variant='standard', forget_bias=0.0, bias=True" in out
    assert "filecell  a cell from a file" in out
    assert f"plugin:  myplugin (file {plugin_file})" in out
    assert "wrappers:" in out and "bidirectional" in out


def test_cli_plugins_lists_hooks_and_cells(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.ENV_DISABLE, "simple_gru")
    try:
        assert main(["plugins"]) == 0
    finally:
        registry.set_plugin_manager(None)
    out = capsys.readouterr().out
    assert "tinyseq.plugins.gru  (built-in)" in out
    assert "hooks: register_cells" in out and "cells: gru" in out
    assert "disabled:" in out and "tinyseq.plugins.simple_gru" in out


def test_cli_check_cell(plugin_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        assert main(["check-cell", "gru", "-o", "reset_after=False", "--check", "padding"]) == 0
        assert "PASSED  padding" in capsys.readouterr().out
        assert main(["--plugin", str(plugin_file), "check-cell", "filecell", "--hidden-size", "3"]) == 0
        assert "all checks passed" in capsys.readouterr().out
        assert main(["check-cell", "nosuchcell"]) == 2
        assert "available cells" in capsys.readouterr().err
        assert main(["check-cell", "gru", "-o", "oops"]) == 2
    finally:
        registry.set_plugin_manager(None)


def test_cli_check_cell_exits_nonzero_on_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "leaky.py"
    bad.write_text(textwrap.dedent('''
        import tinyseq as ts
        from tinyseq.cell import Cell, linear
        from tinyseq.nn import Parameter

        class Leaky(Cell):
            def __init__(self, input_size, hidden_size):
                super().__init__(input_size, hidden_size)
                self.weight = Parameter(ts.randn(hidden_size, input_size))
            def step(self, x_t, state):
                h = ts.tanh(linear(x_t, self.weight) + state[0].mean(axis=0, keepdims=True))
                return h, (h,)

        @ts.hookimpl
        def register_cells(register):
            register("leaky", Leaky)
    '''))
    try:
        assert main(["--plugin", str(bad), "check-cell", "leaky"]) == 1
    finally:
        registry.set_plugin_manager(None)
    out = capsys.readouterr().out
    assert "FAILED  padding" in out and "check(s) failed" in out
