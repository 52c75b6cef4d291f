"""Every tutorial opens as a notebook: Jupytext converts it, a kernel runs it in quick mode.

Each tutorial (Jupytext percent format) becomes an ``.ipynb`` in a temporary folder laid
out like ``tutorials/`` (its support folders copied next to it, as a student who opens the
notebook in Jupyter has them), and nbclient runs every cell with a kernel for this very
interpreter. A notebook has no command line, so quick mode and the figure folder go in as
``TINYSEQ_TUTORIAL_QUICK=1`` and ``TINYSEQ_TUTORIAL_FIGURES=DIR``, which the tutorials read
as the defaults of ``--quick`` and ``--figures``. A failing cell fails the test with its
source and its error; the notebook must print one ``RESULT:`` line and the text the script
run must print (``test_tutorials.EXPECTED``), and leave the checkout as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_tutorials import EXPECTED, TUTORIALS

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK_TIMEOUT = 240.0  # seconds for all the cells of one notebook together
KERNEL = "tinyseq-test-python"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec folder whose one kernel runs this interpreter (not whatever `python3` is)."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": "tinyseq tests", "language": "python"}))
    return root


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under folder -> (size, mtime_ns): a write anywhere changes it."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            out[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return out


def _text(cell: Any) -> str:
    """The stream output (stdout and stderr) of one executed cell."""
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def _failure(name: str, index: int, cell: Any, error: BaseException) -> str:
    """An assertion message naming the failing cell, its source and the error it raised."""
    errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
    if errors:
        trace = ANSI.sub("", "\n".join(errors[-1].get("traceback", [])))
        what = f"{errors[-1].ename}: {errors[-1].evalue}\n{trace}"
    else:  # a timeout or a dead kernel: no error output, the exception says what happened
        what = f"{type(error).__name__}: {ANSI.sub('', str(error))[-3000:]}"
    return (f"{name}: cell {index} of the notebook failed\n--- cell source ---\n{cell.source}\n"
            f"--- output ---\n{_text(cell)[-2000:]}\n--- error ---\n{what[-4000:]}")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs_as_notebook(name: str, tmp_path: Path, kernels: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    if name.startswith("08_") and shutil.which("espeak-ng") is None:
        # as a script it then prints how to install it and exits; a notebook shows that exit
        # as an error (tests/test_tutorials.py checks the script's message)
        pytest.skip("the speech tutorial needs espeak-ng (a system package) to make its data")
    # the notebook sits in a folder laid out like tutorials/, as Jupyter runs a kernel
    # in its notebook's folder (the tutorials find their support files from there)
    work = tmp_path / "tutorials"
    work.mkdir()
    for sub in TUTORIALS.iterdir():
        if sub.is_dir() and sub.name not in ("figures", "__pycache__"):
            shutil.copytree(sub, work / sub.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    notebook = work / (Path(name).stem + ".ipynb")
    nbformat.write(jupytext.read(TUTORIALS / name), notebook)
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert len(code) > 1, f"{name} became a notebook of {len(code)} code cell(s): no '# %%' cells?"

    figures = tmp_path / "figures"
    env = dict(os.environ, TINYSEQ_TUTORIAL_QUICK="1", TINYSEQ_TUTORIAL_FIGURES=str(figures),
               OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1",
               IPYTHONDIR=str(tmp_path / "ipython"), MPLCONFIGDIR=str(tmp_path / "matplotlib"))
    env.pop("TINYSEQ_PLUGINS", None)
    km = AsyncKernelManager(kernel_name=KERNEL, connection_file=str(tmp_path / "kernel.json"),
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = nbclient.NotebookClient(nb, km=km, kernel_name=KERNEL, timeout=int(NOTEBOOK_TIMEOUT),
                                     resources={"metadata": {"path": str(work)}})
    before = _snapshot(TUTORIALS)
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT
    with client.setup_kernel(env=env, cwd=str(work)):
        for index, cell in code:
            # one budget for the whole notebook: each cell gets what the earlier ones left
            client.timeout = max(1, int(deadline - time.monotonic()))
            failure = None
            try:
                client.execute_cell(cell, index)
            except Exception as error:  # CellExecutionError, CellTimeoutError, DeadKernelError
                failure = _failure(name, index, cell, error)
            if failure:  # outside the except: the message alone, not nbclient's chained one
                pytest.fail(failure, pytrace=False)
        # the kernel is this interpreter, and the notebook got quick mode and the folder
        nb.cells.append(nbformat.v4.new_code_cell(
            "import sys\nprint(sys.executable)\nprint(QUICK)\nprint(globals().get('FIGURES'))"))
        probe = client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    lines = _text(probe).splitlines()
    assert len(lines) == 3, f"{name}: the probe cell printed {lines}"
    executable, quick, figures_seen = lines
    assert executable == sys.executable, \
        f"{name} ran under {executable!r}, not this interpreter {sys.executable!r}"
    assert quick == "True", f"{name} as a notebook did not run in quick mode (QUICK = {quick})"
    assert figures_seen in ("None", str(figures)), \
        f"{name} as a notebook puts its figures in {figures_seen}, not in {figures}"

    stdout = "".join(_text(cell) for _, cell in code)
    result = [line for line in stdout.splitlines() if line.startswith("RESULT:")]
    assert len(result) == 1, f"{name} as a notebook printed {len(result)} RESULT lines:\n{stdout[-2000:]}"
    assert EXPECTED[name] in stdout, f"{name} as a notebook did not print {EXPECTED[name]!r}:\n{stdout[-2000:]}"
    if figures_seen != "None" and "matplotlib is not installed" not in stdout:
        assert list(figures.glob("*.png")), f"{name} saved no figure in {figures}:\n{stdout[-2000:]}"
    after = _snapshot(TUTORIALS)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"{name} as a notebook wrote into the checkout: {changed}"
