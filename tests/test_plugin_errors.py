"""Bad plugins and bad plugin files: one clear message naming the file, never a traceback."""

from __future__ import annotations

import re
import subprocess
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
from tinyseq.registry import PluginError, PluginLoadError, build_plugin_manager, use_plugin_manager

ROOT = Path(__file__).resolve().parents[1]

GOOD_PLUGIN = '''
import tinyseq as ts
from tinyseq.cell import Cell, linear
from tinyseq.nn import Parameter

class EchoCell(Cell):
    """a cell from a file"""
    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.weight = Parameter(ts.randn(hidden_size, input_size + hidden_size) * 0.3)
    def step(self, x_t, state):
        h = ts.tanh(linear(ts.cat([x_t, state[0]], axis=1), self.weight))
        return h, (h,)

@ts.hookimpl
def register_cells(register):
    register("echo", EchoCell)
'''

UNMARKED_PLUGIN = GOOD_PLUGIN.replace("@ts.hookimpl\n", "")


def fresh(**kwargs: Any) -> registry.PluginManager:
    kwargs.setdefault("entrypoints", False)
    kwargs.setdefault("env", False)
    return build_plugin_manager(**kwargs)


class ToyCell(Cell):
    """toy cell: h = tanh(W x)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight = Parameter(ts.randn(hidden_size, input_size))

    def step(self, x_t: ts.Tensor, state: State) -> tuple[ts.Tensor, State]:
        h = ts.tanh(linear(x_t, self.weight))
        return h, (h,)


def module_plugin(name: str, *, marked: bool = True, hook: str = "register_cells") -> types.ModuleType:
    module = types.ModuleType(name)

    def register_cells(register: Any) -> None:
        register(f"{name}_cell", ToyCell)

    setattr(module, hook, ts.hookimpl(register_cells) if marked else register_cells)
    return module


def one_error_line(err: str) -> str:
    """The CLI's stderr must be a single ``error: ...`` line, no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(autouse=True)
def _no_leaked_manager(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(registry.ENV_PLUGINS, raising=False)
    monkeypatch.delenv(registry.ENV_DISABLE, raising=False)
    yield
    registry.set_plugin_manager(None)


# ---- the CLI: a bad --plugin file for every command -----------------------------------------------
COMMANDS = [
    ["cells"],
    ["plugins"],
    ["check-cell", "lstm"],
    ["train", "--quick", "--no-progress", "--max-steps", "1"],
    ["generate", "--checkpoint", "model.npz"],
    ["evaluate", "--checkpoint", "model.npz"],
    ["predict", "--checkpoint", "model.npz", "--input", "abc"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_missing_plugin_file_is_one_error_line_for_every_command(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.py"
    out = tmp_path / "run"
    extra = ["--out", str(out)] if command[0] == "train" else []
    assert main(["--plugin", str(missing), *command, *extra]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(missing) in line and "does not exist" in line
    assert not out.exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: (d / "pkg.py").mkdir() or d / "pkg.py", "is a directory; expected a single-file plugin"),
        (lambda d: (d / "cells.txt").write_text("x = 1\n") and d / "cells.txt", "expected a Python file"),
        (lambda d: (d / "unmarked.py").write_text(UNMARKED_PLUGIN) and d / "unmarked.py",
         "without the @tinyseq.hookimpl marker"),
        (lambda d: (d / "broken.py").write_text("def oops(:\n") and d / "broken.py", "SyntaxError"),
    ],
    ids=["directory", "not-python", "unmarked", "syntax-error"],
)
def test_bad_plugin_file_names_the_file(make: Any, expected: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = make(tmp_path)
    assert main(["--plugin", str(path), "cells"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and expected in line


def test_unreadable_plugin_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "secret.py"
    path.write_text(GOOD_PLUGIN)

    def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(file))

    # chmod 000 does not stop root, so refuse the read where the registry opens the file
    monkeypatch.setattr(registry, "open", denied, raising=False)
    assert main(["--plugin", str(path), "plugins"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot read {path}: Permission denied" in line


def test_plugin_failing_in_register_cells_and_duplicate_cells_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crashing = tmp_path / "crashing.py"
    crashing.write_text(GOOD_PLUGIN.replace('register("echo", EchoCell)', "raise RuntimeError('kaput')"))
    for command in (["cells"], ["plugins"], ["check-cell", "echo"]):
        assert main(["--plugin", str(crashing), *command]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert "'crashing'" in line and str(crashing) in line and "kaput" in line
    first, second = tmp_path / "first.py", tmp_path / "second.py"
    first.write_text(GOOD_PLUGIN)
    second.write_text(GOOD_PLUGIN)
    assert main(["--plugin", str(first), "--plugin", str(second), "cells"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "'echo' is registered twice" in line and str(first) in line and str(second) in line


def test_check_cell_unknown_name_lists_cells_from_plugin_files(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "echo_plugin.py"
    good.write_text(GOOD_PLUGIN)
    assert main(["--plugin", str(good), "check-cell", "ecko"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "unknown cell 'ecko'" in err and "echo" in err and "lstm" in err


def test_cli_loads_a_plugin_file_once_and_restores_the_manager(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    counter = tmp_path / "count.txt"
    counting = tmp_path / "counting.py"
    counting.write_text(f"open({str(counter)!r}, 'a').write('x')\n" + GOOD_PLUGIN)
    before = fresh()
    with use_plugin_manager(before):
        assert main(["--plugin", str(counting), "check-cell", "echo", "--check", "padding"]) == 0
        assert registry.get_plugin_manager() is before
    assert "PASSED  padding" in capsys.readouterr().out
    assert counter.read_text() == "x"


def test_cli_script_prints_no_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    done = subprocess.run([sys.executable, "-m", "tinyseq.cli", "--plugin", str(missing), "cells"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert one_error_line(done.stderr) == f"error: plugin 'nope': file {missing} does not exist"


# ---- the @tinyseq.hookimpl marker ----------------------------------------------------------------
def test_file_plugin_without_the_marker_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "unmarked.py"
    path.write_text(UNMARKED_PLUGIN)
    with pytest.raises(PluginLoadError) as info:
        fresh(plugin_files=[path])
    message = str(info.value)
    assert "'unmarked'" in message and str(path) in message
    assert "register_cells without the @tinyseq.hookimpl marker" in message


def test_code_plugin_without_the_marker_is_an_error_and_not_registered() -> None:
    pm = fresh()
    with use_plugin_manager(pm):
        with pytest.raises(PluginLoadError, match=r"'nomark'.*registered from code.*@tinyseq.hookimpl"):
            registry.register_plugin(module_plugin("nomark", marked=False))
        assert not pm.has_plugin("nomark")
        assert registry.available_cells() == ["gru", "lstm", "rnn", "simple_gru"]


def test_entry_point_plugin_without_the_marker_names_its_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fakecells_unmarked.py").write_text(UNMARKED_PLUGIN)
    info = tmp_path / "fakecells-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakecells\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[tinyseq]\nfake = fakecells_unmarked\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginLoadError) as err:
        build_plugin_manager(env=False)
    message = str(err.value)
    assert "'fake'" in message and "distribution fakecells 1.2.3" in message
    assert "@tinyseq.hookimpl" in message


def test_unmarked_misspelled_hook_is_an_error() -> None:
    with pytest.raises(PluginLoadError, match="defines register_cell, not register_cells"):
        fresh(plugins=[module_plugin("typo", marked=False, hook="register_cell")])


def test_marked_plugins_load_with_helpers_of_similar_names() -> None:
    """No false alarm: a marked hook next to an unmarked helper, a class-based plugin."""
    module = module_plugin("helpers")
    module.register_cell = lambda: None  # type: ignore[attr-defined]

    class MethodPlugin:
        @ts.hookimpl
        def register_cells(self, register: Any) -> None:
            register("method_cell", ToyCell)

    pm = fresh(plugins=[module, MethodPlugin()])
    assert {"helpers_cell", "method_cell"} <= set(registry.available_cells(pm))


def test_built_in_and_example_plugins_still_load() -> None:
    files = sorted((ROOT / "tutorials" / "cell_plugins").glob("*.py"))
    assert files
    pm = fresh(plugin_files=files)
    assert {"gru", "lstm", "rnn", "simple_gru", "peephole_lstm"} <= set(registry.available_cells(pm))
    sys.path.insert(0, str(ROOT / "tutorials" / "tinyseq_mingru"))
    try:
        import tinyseq_mingru

        pm = fresh(plugins=[tinyseq_mingru])
        assert "mingru" in registry.available_cells(pm)
    finally:
        sys.path.remove(str(ROOT / "tutorials" / "tinyseq_mingru"))


# ---- a taken plugin name --------------------------------------------------------------------------
def test_register_plugin_with_a_taken_name_says_by_what_and_how_to_fix() -> None:
    pm = fresh()
    with use_plugin_manager(pm):
        with pytest.raises(PluginError) as info:
            registry.register_plugin(module_plugin("mine"), name="tinyseq.plugins.lstm")
        message = str(info.value)
        assert "'tinyseq.plugins.lstm'" in message and "already registered (built-in)" in message
        assert "name=..." in message and "unregister_plugin(name='tinyseq.plugins.lstm')" in message
        assert "<module" not in message and "\n" not in message  # no dump of every plugin

        first = module_plugin("same")
        registry.register_plugin(first)
        with pytest.raises(PluginError, match=r"'same'.*already registered \(registered from code\)"):
            registry.register_plugin(module_plugin("same"))
        with pytest.raises(PluginError, match=r"same object is already registered as plugin 'same'"):
            registry.register_plugin(first, name="other")
        registry.unregister_plugin(name="same")
        assert registry.register_plugin(module_plugin("same")) == "same"


def test_two_plugin_files_with_one_name_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "cells.py", tmp_path / "b" / "cells.py"
    first.write_text(GOOD_PLUGIN)
    second.write_text(GOOD_PLUGIN.replace('"echo"', '"echo2"'))
    with pytest.raises(PluginError) as info:
        fresh(plugin_files=[first, second])
    message = str(info.value)
    assert str(first) in message and str(second) in message and "rename one of the files" in message


# ---- documented names after a bare `import tinyseq` -----------------------------------------------
def _documented_paths() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"\b(?:ts|tinyseq)\.[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)*", text)
    return sorted({"ts" + p[p.index("."):] for p in found})


def test_every_documented_attribute_path_resolves_after_import_tinyseq() -> None:
    paths = _documented_paths()
    assert {"ts.testing.gradcheck", "ts.interop.from_torch", "ts.fused.use_cuda_graphs"} <= set(paths)
    script = textwrap.dedent("""
        import sys
        import tinyseq as ts
        missing = []
        for path in sys.argv[1:]:
            obj = ts
            for part in path.split(".")[1:]:
                try:
                    obj = getattr(obj, part)
                except AttributeError:
                    missing.append(path)
                    break
        heavy = sorted({"torch", "pytest", "hypothesis", "matplotlib"} & set(sys.modules))
        print("missing:", missing, "heavy:", heavy)
    """)
    done = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "missing: [] heavy: []"


def test_lazy_submodules_are_listed_and_unknown_names_still_fail() -> None:
    assert {"testing", "interop", "diagnostics", "fused"} <= set(dir(ts))
    assert ts.testing.gradcheck is __import__("tinyseq.testing").testing.gradcheck
    with pytest.raises(AttributeError, match="has no attribute 'tesing'"):
        ts.tesing  # noqa: B018
