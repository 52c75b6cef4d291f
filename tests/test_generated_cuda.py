"""The generated CUDA kernels, compiled for the host with a C++ compiler, driven by the
same loops the GPU uses (:class:`CudaLoops`), against the generated NumPy code: every
output, final state and gradient to 1e-10 in float64 (skipped without ``g++``)."""

from __future__ import annotations

import ctypes
import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_generated_kernels import INDRNN, MINGRU, PEEPHOLE, ScaledCell  # noqa: E402

import tinyseq as ts
from tinyseq.kernels.generated import Unsupported, compile_cell, runner, use_generated
from tinyseq.kernels.generated.codegen_cuda import PREAMBLE, cuda_kernels
from tinyseq.kernels.generated.cuda_loops import CudaLoops

CELLS: list[tuple[Any, dict[str, Any]]] = [
    ("lstm", {}), ("lstm", {"variant": "lecture"}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"}),
    ("gru", {}), ("simple_gru", {}), (PEEPHOLE, {}), (MINGRU, {}), (INDRNN, {}), (ScaledCell, {}),
]
IDS = [c if isinstance(c, str) else c.__name__ for c, _ in CELLS]
IDS = [f"{i}-{j}" for j, i in enumerate(IDS)]


def _make(cell: Any, opts: dict[str, Any]) -> Any:
    with ts.backend.default_dtype(np.float64):
        if isinstance(cell, str):
            return ts.registry.get_cell_spec(cell).create(3, 4, **opts)
        return cell(3, 4, **opts)


def _params(spec: str) -> list[tuple[str, str]]:
    out = []
    for part in spec.split(","):
        words = part.split()
        out.append((words[1], words[2]) if words[0] == "raw" else (words[0], words[1]))
    return out


class _HostKernel:
    def __init__(self, fn: Any, params: list[tuple[str, str]]) -> None:
        self.fn, self.params = fn, params

    def __call__(self, *args: Any, size: int) -> None:
        assert len(args) == len(self.params)
        c_args: list[Any] = [ctypes.c_longlong(size)]
        for (typ, name), a in zip(self.params, args):
            if typ == "int64":
                c_args.append(ctypes.c_longlong(int(a)))
                continue
            assert isinstance(a, np.ndarray) and a.flags.c_contiguous, name
            assert a.dtype == (np.bool_ if typ == "bool" else np.float64), name
            c_args.append(ctypes.c_void_p(a.ctypes.data))
        self.fn(*c_args)


class _HostBuilder:
    """Builds each generated kernel as a host function (what ElementwiseKernel does on a GPU)."""

    def __init__(self, tmp: Path) -> None:
        cxx = shutil.which("g++") or shutil.which("c++")
        if cxx is None:
            pytest.skip("needs a C++ compiler to build the CUDA sources for the host")
        self.cxx, self.tmp, self.count = cxx, tmp, 0

    def __call__(self, in_params: str, out_params: str, body: str, name: str,
                 preamble: str = "") -> _HostKernel:
        params = _params(in_params) + _params(out_params)
        args = ", ".join(
            f"long long {n}" if t == "int64" else f"{'bool' if t == 'bool' else 'double'}* {n}"
            for t, n in params)
        src = "\n".join([
            "#include <cmath>", "#include <cstddef>", "#define __device__",
            "#define __forceinline__ inline", "using std::tanh; using std::exp; using std::log;",
            preamble,
            f'extern "C" void {name}(long long n, {args}) {{\n  typedef double T;\n'
            f"  for (ptrdiff_t i = 0; i < n; ++i) {{\n{body}\n  }}\n}}",
        ])
        self.count += 1
        cpp, lib = self.tmp / f"k{self.count}.cpp", self.tmp / f"k{self.count}.so"
        cpp.write_text(src)
        subprocess.run([self.cxx, "-O1", "-std=c++14", "-Wall", "-Werror", "-shared", "-fPIC",
                        "-o", str(lib), str(cpp)], check=True, capture_output=True)
        return _HostKernel(getattr(ctypes.CDLL(str(lib)), name), params)


def _run(cell: Any, reverse: bool, masked: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    for p in cell.parameters():
        p.data[...] = rng.uniform(-0.6, 0.6, p.shape)
    x = ts.tensor(rng.normal(size=(5, 3, 3)), requires_grad=True)
    state = tuple(ts.tensor(rng.normal(size=(3, 4)) * 0.5, requires_grad=True)
                  for _ in cell.state_names)
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=bool)
    with use_generated(True, prefer=True), runner.use_layout(False):  # the GPU's layout
        out = runner.run(cell, x, state, mask if masked else None, reverse)
    assert out is not None
    y, final = out
    loss = (y * ts.tensor(rng.normal(size=y.shape))).sum()
    for f in final:
        loss = loss + (f * f).sum()
    loss.backward()
    grads = [x.grad, *(s.grad for s in state), *(p.grad for p in cell.parameters())]
    return [y.data, *(f.data for f in final), *(g.data for g in grads if g is not None)]


@pytest.mark.parametrize("cell,opts", CELLS, ids=IDS)
def test_cuda_sources_match_the_numpy_code(cell: Any, opts: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    c = _make(cell, opts)
    comp = compile_cell(c)
    loops = CudaLoops(comp.plan, _HostBuilder(tmp_path))
    host = dataclasses.replace(comp, forward=loops.forward, backward=loops.backward)
    for reverse in (False, True):
        for masked in (False, True):
            ref = _run(c, reverse, masked)
            for p in c.parameters():
                p.grad = None
            monkeypatch.setattr(runner, "compile_cell", lambda cell, rows=False, comp=host: comp)
            got = _run(c, reverse, masked)
            monkeypatch.undo()
            for p in c.parameters():
                p.grad = None
            assert len(got) == len(ref)
            for i, (a, b) in enumerate(zip(got, ref)):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10,
                                           err_msg=f"{i} reverse={reverse} masked={masked}")


def test_one_kernel_each_way_and_what_it_refuses() -> None:
    lstm = compile_cell(_make("lstm", {}))
    fw, bw = cuda_kernels(lstm.plan, "lstm")
    assert "ts_sigmoid" in fw.body and "tanh(" in fw.body and fw.body.count("=") >= 4
    assert "pg3[" in bw.body and "gp0[" in bw.body  # the product's and the state's gradients
    assert "ts_sigmoid" in PREAMBLE
    lecture_gru = compile_cell(_make("gru", {"reset_after": False}))
    with pytest.raises(Unsupported, match="a product of an element-wise result"):
        cuda_kernels(lecture_gru.plan)


@pytest.mark.gpu
@pytest.mark.parametrize("cell", [PEEPHOLE, MINGRU, INDRNN])
def test_generated_kernels_on_cuda_match_the_cpu(cell: Any) -> None:
    """On a GPU: the plugin layer through the generated CUDA kernels equals the CPU run."""
    pytest.importorskip("cupy")

    def run(device: str) -> list[np.ndarray]:
        ts.manual_seed(0)
        with ts.backend.default_dtype(np.float64):
            layer = ts.nn.Recurrent(cell, 3, 4, bidirectional=True, device=device)
        x = ts.tensor(np.random.default_rng(1).normal(size=(6, 3, 3)), device=device,
                      requires_grad=True)
        y, _ = layer(x, lengths=[6, 2, 4])
        (y * y).sum().backward()
        assert x.grad is not None
        return [ts.backend.to_numpy(a) for a in (y.data, x.grad.data,
                                                 *(p.grad.data for p in layer.parameters()))]

    for a, b in zip(run("cuda"), run("cpu")):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)
