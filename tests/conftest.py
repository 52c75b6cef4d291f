"""Shared fixtures for tinyseq's tests.

``device``
    A device name, parametrised over ``"cpu"``, ``"testcpu"`` and ``"cuda"``. The cuda
    case carries the ``gpu`` marker and is skipped cleanly when CuPy or a CUDA device is
    missing. Use it by naming it::

        def test_something(device):
            x = ts.ones(3, device=device)

    ``testcpu`` runs NumPy underneath with its own array type, so a test that passes
    there shows the code reaches arrays only through ``device.xp`` (as cuda needs).

Every test starts from the same state (the autouse fixture ``_fresh_state``): the
default device the session started with (``cpu``, or ``TINYSEQ_DEVICE`` when set, so
``TINYSEQ_DEVICE=testcpu pytest`` runs the suite on the test device), float32 as the
default dtype, graph recording on, and ``ts.manual_seed(0)``.

Any test marked ``@pytest.mark.gpu`` is skipped when CUDA is not available.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tinyseq as ts
from tinyseq import backend

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("testcpu", id="testcpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]

_SESSION_DEVICE = backend.get_default_device()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked ``gpu`` when CuPy or a CUDA device is missing."""
    if not any("gpu" in item.keywords for item in items) or backend.cuda_is_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """A device name: "cpu", "testcpu", or "cuda" (gpu marker; skipped without CUDA)."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Default device and dtype, grad mode and the random seed, reset around each test."""
    backend.set_default_device(_SESSION_DEVICE)
    backend.set_default_dtype(backend.float32)
    ts.set_grad_enabled(True)
    ts.manual_seed(0)
    yield
    backend.set_default_device(_SESSION_DEVICE)
    backend.set_default_dtype(backend.float32)
    ts.set_grad_enabled(True)


@pytest.fixture
def cpu_default() -> None:
    """Make "cpu" the default device for one test, whatever TINYSEQ_DEVICE says (for
    tests that build cpu tensors with plain constructors and compare against others)."""
    backend.set_default_device("cpu")
