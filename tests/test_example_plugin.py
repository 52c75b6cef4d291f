"""Third-party plugins for real: an installed package (entry point) and a single file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import registry
from tinyseq.testing import check_cell

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tutorials" / "tinyseq_mingru"
PEEPHOLE = ROOT / "tutorials" / "cell_plugins" / "peephole_lstm.py"
README = ROOT / "README.md"

USE_IT = """
import numpy as np
import tinyseq as ts
from tinyseq.testing import check_cell

rnn = ts.nn.Recurrent("mingru", 3, 4, num_layers=2, bidirectional=True, batch_first=True)
x = ts.randn(3, 6, 3)
out, h = rnn(x, lengths=[6, 2, 4])
assert out.shape == (3, 6, 8) and h.shape == (4, 3, 4), (out.shape, h.shape)
assert not out.detach().numpy()[1, 2:].any()
alone, _ = rnn(ts.tensor(x.numpy()[1:2, :2]))
np.testing.assert_allclose(out.detach().numpy()[1, :2], alone.detach().numpy()[0], rtol=1e-5)
out.sum().backward()
assert all(p.grad is not None for p in rnn.parameters())
print(check_cell("mingru", device="testcpu").ok)
print(type(rnn.cell_at(0)).__module__)
"""


def _copy_project(dest: Path) -> Path:
    """The tinyseq sources as a clean tree, so the build leaves nothing in the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    if not (dest / "README.md").exists():
        (dest / "README.md").write_text("tinyseq\n")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("tinyseq", "plugins"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def _venv_over_this_environment(venv: Path) -> Path:
    """A new venv that sees the packages of the environment running the tests; its python.

    ``--system-site-packages`` would show the base interpreter's packages instead, which
    on a fresh machine lack numpy, pluggy and the build tools the test extra installs.
    The running environment's site directories go in a ``.pth`` file, after the venv's
    own, so the copies installed into the venv win; ``.pth`` files inside those
    directories (such as an editable install of this checkout) are not processed.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    outer = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    (Path(purelib) / "tinyseq-test-outer.pth").write_text("\n".join(outer) + "\n")
    return python


def test_example_package_installs_and_plugs_in(tmp_path: Path) -> None:
    python = _venv_over_this_environment(tmp_path / "venv")
    venv = tmp_path / "venv"
    tinyseq_src = _copy_project(tmp_path / "tinyseq_src")
    example_src = tmp_path / "tinyseq_mingru"
    shutil.copytree(EXAMPLE, example_src, ignore=shutil.ignore_patterns("__pycache__", "build",
                                                                         "*.egg-info"))
    env = {k: v for k, v in os.environ.items()
           if k not in (registry.ENV_PLUGINS, registry.ENV_DISABLE, "PYTHONPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", str(tinyseq_src), str(example_src)],
        check=True, env=env, cwd=tmp_path,
    )
    tinyseq = [str(python), "-m", "tinyseq.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=tmp_path)

    where = run(str(python), "-c", "import tinyseq; print(tinyseq.__file__)")
    assert str(venv) in where.stdout, where.stdout + where.stderr  # the installed copy
    cells = run(*tinyseq, "cells")
    assert cells.returncode == 0, cells.stderr
    assert re.search(r"mingru\s+minGRU", cells.stdout)
    assert "plugin:  mingru (distribution tinyseq-mingru 0.1.0)" in cells.stdout
    plugins = run(*tinyseq, "plugins")
    assert "mingru  (distribution tinyseq-mingru 0.1.0)" in plugins.stdout
    check = run(*tinyseq, "check-cell", "mingru", "--hidden-size", "5")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "all checks passed" in check.stdout
    used = run(str(python), "-c", USE_IT)
    assert used.returncode == 0, used.stderr
    assert used.stdout.split() == ["True", "tinyseq_mingru"]
    disabled = run(str(python), "-c", "import tinyseq.registry as r; print(r.available_cells())")
    assert "mingru" in disabled.stdout
    env[registry.ENV_DISABLE] = "mingru"
    disabled = run(str(python), "-c", "import tinyseq.registry as r; print(r.available_cells())")
    assert "mingru" not in disabled.stdout and "lstm" in disabled.stdout


def test_single_file_plugin_by_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.ENV_PLUGINS, str(PEEPHOLE))
    pm = registry.build_plugin_manager(entrypoints=False)
    assert str(registry.get_cell_spec("peephole_lstm", pm).source) == f"file {PEEPHOLE}"
    with registry.use_plugin_manager(pm):
        rnn = ts.nn.Recurrent("peephole_lstm", 3, 4, num_layers=2, bidirectional=True,
                              forget_bias=0.5)
        out, (h, c) = rnn(ts.randn(5, 2, 3), lengths=[5, 3])
        assert out.shape == (5, 2, 8) and h.shape == c.shape == (4, 2, 4)
        assert not out.detach().numpy()[3:, 1].any()
        np.testing.assert_array_equal(rnn.cell_at(1, 1).bias.detach().numpy()[4:8], 0.5)
        assert check_cell("peephole_lstm", pm=pm).ok


def test_readme_quotes_the_tested_plugin_file() -> None:
    """The README's "Write your own cell" example is this file, verbatim."""
    if not README.exists():
        pytest.skip("no README.md")
    text = README.read_text()
    section = text.split("## Write your own cell", 1)
    assert len(section) == 2, "README.md has no 'Write your own cell' section"
    blocks = re.findall(r"```python\n(.*?)```", section[1], flags=re.S)
    assert blocks, "the section has no python code block"
    assert blocks[0].strip() == PEEPHOLE.read_text().strip()
    assert "tutorials/cell_plugins/peephole_lstm.py" in section[1]
