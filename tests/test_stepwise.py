"""The GPU-layout fused kernels, exercised without a GPU.

- The sequence kernels of :mod:`tinyseq.kernels.stepwise` with the portable pointwise
  functions agree with the NumPy kernels (forward and every gradient, float64), on
  ``cpu`` and ``testcpu``, for every cell, variant, mask, direction and bias setting.
- The CUDA sources of :mod:`tinyseq.kernels.cuda_pointwise`, compiled for the host with a
  C++ compiler and driven through the same wrappers the GPU uses, give the same results
  (skipped without ``g++``).
- Graph mode (emulated off ``cuda``: static buffers, copy in, replay, copy out) equals
  eager mode over repeated calls with new data and several shapes.
- The cuBLAS argument mapping for row-major operands, checked against a column-major
  GEMM written out in NumPy.
- Dispatch: ``cuda`` selects these kernels; ``use_stepwise_kernels`` selects them anywhere.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cell_variants import GATES, IDS, VARIANTS

import tinyseq as ts
from tinyseq import backend, fused
from tinyseq.kernels import KERNELS, MaskInfo, cuda_graph, stepwise
from tinyseq.kernels.cuda_pointwise import PREAMBLE, SPECS, CudaPointwise
from tinyseq.kernels.dispatch import kernels_for, use_stepwise_kernels

T, B, N_IN, H = 5, 3, 4, 6


def _case(xp: Any, kind: str, masked: bool, bias: bool, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    g = GATES[kind] * H

    def a(*shape: int) -> Any:
        return xp.asarray(rng.uniform(-0.8, 0.8, shape))

    n_state = 2 if kind == "lstm" else 1
    mask = None
    if masked:
        m = np.ones((T, B), dtype=bool)
        m[3:, 0] = False  # a short sequence
        m[:2, 2] = False  # leading padding (what the reverse direction sees)
        mask = MaskInfo.make(xp, m, T, B)
    return {
        "x": a(T, B, N_IN),
        "state": tuple(a(B, H) for _ in range(n_state)),
        "w_ih": a(g, N_IN),
        "w_hh": a(g, H),
        "b_ih": a(g) if bias else None,
        "b_hh": a(g) if bias else None,
        "mask": mask,
        "dy": a(T, B, H),
        "d_state": tuple(a(B, H) for _ in range(n_state)),
    }


def _run(kernel: Any, xp: Any, c: dict[str, Any], reverse: bool, opts: dict[str, Any]) -> list[Any]:
    y, final, cache = kernel.forward(
        xp, c["x"], c["state"], c["w_ih"], c["w_hh"], c["b_ih"], c["b_hh"], c["mask"],
        reverse, True, **opts,
    )
    grads = kernel.backward(cache, c["dy"], c["d_state"], True)
    y_inf, final_inf, none = kernel.forward(
        xp, c["x"], c["state"], c["w_ih"], c["w_hh"], c["b_ih"], c["b_hh"], c["mask"],
        reverse, False, **opts,
    )
    assert none is None
    return [y, *final, *grads, y_inf, *final_inf]


def _assert_same(ref: list[Any], got: list[Any], tol: float, what: str) -> None:
    assert len(ref) == len(got), what
    for k, (r, g) in enumerate(zip(ref, got)):
        if r is None or g is None:
            assert r is None and g is None, f"{what}: output {k}"
            continue
        np.testing.assert_allclose(
            backend.to_numpy(g), backend.to_numpy(r), rtol=tol, atol=tol, err_msg=f"{what}: output {k}"
        )


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
@pytest.mark.parametrize("device", ["cpu", "testcpu"])
def test_stepwise_matches_numpy_kernels(kind: str, opts: dict[str, Any], device: str) -> None:
    xp = backend.get_device(device).xp
    for masked in (False, True):
        for reverse in (False, True):
            for bias in (True, False):
                c = _case(xp, kind, masked, bias)
                what = f"{kind} {opts} masked={masked} reverse={reverse} bias={bias}"
                ref = _run(KERNELS[kind], xp, c, reverse, opts)
                got = _run(stepwise.STEPWISE_KERNELS[kind], xp, c, reverse, opts)
                _assert_same(ref, got, 1e-10, what)
                if device == "testcpu":
                    for arr in got:
                        assert arr is None or type(arr) is backend.TestArray, what


# per step: (GEMMs, pointwise calls) forward and backward — the launch budget on a GPU
LAUNCHES = {"rnn": (1, 1), "simple_gru": (1, 1), "gru-True": (1, 1), "gru-False": (2, 2),
            "lstm": (1, 1)}


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_one_gemm_and_one_pointwise_call_per_step(
    kind: str, opts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {"gemm": 0, "pw": 0}
    real = stepwise.eager_ops

    class CountingPointwise:
        def __getattr__(self, name: str) -> Any:
            fn = getattr(stepwise.pointwise, name)

            def call(*args: Any) -> Any:
                counts["pw"] += 1
                return fn(*args)

            return call

    def counting_ops(xp: Any) -> stepwise.Ops:
        ops = real(xp)

        def gemm(a: Any, b: Any, out: Any) -> None:
            counts["gemm"] += 1
            ops.gemm(a, b, out)

        return stepwise.Ops(xp, CountingPointwise(), gemm)

    monkeypatch.setattr(stepwise, "eager_ops", counting_ops)
    key = kind if kind != "gru" else f"gru-{opts['reset_after']}"
    gemms, pws = LAUNCHES[key]
    c = _case(np, kind, True, True)
    kernel = stepwise.STEPWISE_KERNELS[kind]
    y, final, cache = kernel.forward(np, c["x"], c["state"], c["w_ih"], c["w_hh"], c["b_ih"],
                                     c["b_hh"], c["mask"], False, True, **opts)
    assert counts == {"gemm": gemms * T, "pw": pws * T}
    counts.update(gemm=0, pw=0)
    kernel.backward(cache, c["dy"], c["d_state"], True)
    assert counts == {"gemm": gemms * T, "pw": pws * T}


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_graph_mode_equals_eager_over_repeated_calls(kind: str, opts: dict[str, Any]) -> None:
    xp = backend.get_device("testcpu").xp
    kernel = stepwise.STEPWISE_KERNELS[kind]
    cuda_graph.clear_cache()
    for seed, (masked, reverse) in enumerate([(False, False), (True, True), (True, False)]):
        c = _case(xp, kind, masked, True, seed=seed)  # new data each call, same shapes
        eager = _run(kernel, xp, c, reverse, opts)
        with cuda_graph.use_cuda_graphs(True):
            first = _run(kernel, xp, c, reverse, opts)
            again = _run(kernel, xp, c, reverse, opts)
        _assert_same(eager, first, 0.0, f"graph vs eager, call {seed}")
        _assert_same(eager, again, 0.0, f"graph replay, call {seed}")
    assert not cuda_graph.graphs_enabled()
    # forward (training and inference) and backward, per direction: one graph each
    assert 3 <= len(cuda_graph._graphs) <= 6
    cuda_graph.clear_cache()


def test_graph_results_do_not_alias_static_buffers() -> None:
    xp = np
    kernel = stepwise.STEPWISE_KERNELS["lstm"]
    with cuda_graph.use_cuda_graphs(True):
        c1, c2 = _case(xp, "lstm", False, True, 1), _case(xp, "lstm", False, True, 2)
        y1, f1, cache1 = kernel.forward(xp, c1["x"], c1["state"], c1["w_ih"], c1["w_hh"],
                                        c1["b_ih"], c1["b_hh"], None, False, True)
        keep = [y1.copy(), *(f.copy() for f in f1)]
        # a second forward with other data before the first one's backward
        kernel.forward(xp, c2["x"], c2["state"], c2["w_ih"], c2["w_hh"], c2["b_ih"],
                       c2["b_hh"], None, False, True)
        _assert_same(keep, [y1, *f1], 0.0, "outputs survive the next call")
        g_graph = kernel.backward(cache1, c1["dy"], c1["d_state"], True)
    _, _, cache_eager = kernel.forward(xp, c1["x"], c1["state"], c1["w_ih"], c1["w_hh"],
                                       c1["b_ih"], c1["b_hh"], None, False, True)
    g_eager = kernel.backward(cache_eager, c1["dy"], c1["d_state"], True)
    _assert_same(list(g_eager), list(g_graph), 0.0, "saved activations survive the next call")
    cuda_graph.clear_cache()


def test_graph_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_graph, "MAX_GRAPHS", 3)
    cuda_graph.clear_cache()
    kernel = stepwise.STEPWISE_KERNELS["rnn"]
    rng = np.random.default_rng(0)
    with cuda_graph.use_cuda_graphs(True):
        for steps in range(1, 6):  # each T is a new key
            x = rng.standard_normal((steps, 2, 3))
            w_ih, w_hh = rng.standard_normal((4, 3)), rng.standard_normal((4, 4))
            y, _, _ = kernel.forward(np, x, (np.zeros((2, 4)),), w_ih, w_hh, None, None,
                                     None, False, False)
            assert y.shape == (steps, 2, 4)
    assert len(cuda_graph._graphs) == 3
    cuda_graph.clear_cache()


def test_failed_capture_falls_back_to_eager_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise RuntimeError("capture refused")

    monkeypatch.setattr(cuda_graph, "_capture", refuse)
    cuda_graph.clear_cache()
    cuda_graph.capture_failures.clear()
    kernel = stepwise.STEPWISE_KERNELS["gru"]
    c = _case(np, "gru", True, True)
    eager = _run(kernel, np, c, False, {})
    with cuda_graph.use_cuda_graphs(True):
        with pytest.warns(RuntimeWarning, match="capture refused"):
            got = _run(kernel, np, c, False, {})
        again = _run(kernel, np, c, False, {})  # remembered: no second attempt
    _assert_same(eager, got, 0.0, "fallback")
    _assert_same(eager, again, 0.0, "fallback, second call")
    assert len(cuda_graph.capture_failures) == 3  # forward (train, inference), backward
    assert all("capture refused" in f for f in cuda_graph.capture_failures)
    cuda_graph.clear_cache()
    cuda_graph.capture_failures.clear()


def test_use_cuda_graphs_sets_and_restores() -> None:
    before = cuda_graph.graphs_enabled()
    with fused.use_cuda_graphs(True):
        assert cuda_graph.graphs_enabled()
        with fused.use_cuda_graphs(False):
            assert not cuda_graph.graphs_enabled()
        assert cuda_graph.graphs_enabled()
    assert cuda_graph.graphs_enabled() == before
    fused.use_cuda_graphs(True)  # plain call: stays on
    try:
        assert cuda_graph.graphs_enabled()
    finally:
        fused.use_cuda_graphs(before)


def test_dispatch_selects_kernels_by_device() -> None:
    assert kernels_for("cuda") is stepwise.STEPWISE_KERNELS
    assert kernels_for("cpu") is KERNELS and kernels_for("testcpu") is KERNELS
    assert kernels_for("elsewhere") == {}
    with use_stepwise_kernels(True):
        assert kernels_for("cpu") is stepwise.STEPWISE_KERNELS
    assert kernels_for("cpu") is KERNELS
    assert "cuda" in fused.SUPPORTED_DEVICES


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_layer_through_gpu_kernels_matches_step_path(kind: str, opts: dict[str, Any]) -> None:
    """The whole layer (stacked, bidirectional, lengths) through fused.run with the GPU
    kernels on testcpu, against the step path: what ``cuda`` runs, minus the device."""
    dev = "testcpu"
    rnn = ts.nn.Recurrent(kind, 3, 4, num_layers=2, bidirectional=True, device=dev,
                          dtype=ts.float64, **opts)
    host = np.random.default_rng(3).standard_normal((5, 3, 3))
    lengths = [5, 2, 4]

    def run(fused_path: bool, graphs: bool) -> list[np.ndarray]:
        rnn.zero_grad()
        x = ts.tensor(host, device=dev, requires_grad=True)
        with use_stepwise_kernels(True), cuda_graph.use_cuda_graphs(graphs):
            rnn.fused = fused_path
            out, state = rnn(x, lengths=lengths)
        first = state[0] if isinstance(state, tuple) else state
        (out.sum() * 0.5 + (first * first).sum()).backward()
        grads = [backend.to_numpy(p.grad.data) for p in rnn.parameters()]  # type: ignore[union-attr]
        return [backend.to_numpy(out.data), backend.to_numpy(x.grad.data), *grads]  # type: ignore[union-attr]

    step = run(False, False)
    for graphs in (False, True):
        got = run(True, graphs)
        for r, g in zip(step, got):
            np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-11)
    cuda_graph.clear_cache()


def test_modules_do_not_import_cupy() -> None:
    code = (
        "import sys, tinyseq, tinyseq.fused, tinyseq.kernels.stepwise, "
        "tinyseq.kernels.cuda_graph, tinyseq.kernels.cuda_pointwise; "
        "print('cupy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- cuBLAS argument mapping ---------------------------------------------------------------
def _colmajor(buf: np.ndarray, offset: int, rows: int, cols: int, ld: int) -> np.ndarray:
    """The column-major (rows, cols) matrix with leading dimension ld at buf[offset:]."""
    return np.lib.stride_tricks.as_strided(
        buf[offset:], shape=(rows, cols), strides=(buf.itemsize, ld * buf.itemsize)
    )


def _emulated_gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """Do what cuBLAS would do with gemm_arguments' output, on the arrays' memory."""
    ta, tb, m, n, k, ld_b, ld_a, ld_out = cuda_graph.gemm_arguments(
        a.shape, a.strides, b.shape, b.strides, out.shape, out.strides, a.itemsize
    )

    def operand(x: np.ndarray, op: int, rows: int, cols: int, ld: int) -> np.ndarray:
        base = x.base if x.base is not None else x
        flat = base.reshape(-1)
        offset = (x.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // x.itemsize
        stored = _colmajor(flat, offset, *((rows, cols) if op == 0 else (cols, rows)), ld)
        return stored if op == 0 else stored.T

    first = operand(b, ta, m, k, ld_b)  # op(A') is m x k
    second = operand(a, tb, k, n, ld_a)  # op(B') is k x n
    flat_out = out.base.reshape(-1) if out.base is not None else out.reshape(-1)
    off = (out.__array_interface__["data"][0] - flat_out.__array_interface__["data"][0]) // out.itemsize
    _colmajor(flat_out, off, m, n, ld_out)[...] = first @ second


@pytest.mark.parametrize("layout", ["plain", "a_T", "b_T", "both_T", "column_slices", "row_vec"])
def test_gemm_arguments_match_row_major_product(layout: str) -> None:
    rng = np.random.default_rng(0)
    M, K, N = 5, 7, 3
    big_b = rng.standard_normal((N + 1, K + 3))
    a: np.ndarray = rng.standard_normal((M, K))
    b: np.ndarray = rng.standard_normal((K, N))
    if layout in ("a_T", "both_T"):
        a = np.ascontiguousarray(rng.standard_normal((K, M))).T
    if layout in ("b_T", "both_T"):
        b = np.ascontiguousarray(rng.standard_normal((N, K))).T
    if layout == "column_slices":  # like d[:, 2H:] in the GRU's backward
        a = rng.standard_normal((M, K + 5))[:, 2 : K + 2]
        b = big_b[:N, 1 : K + 1].T
    if layout == "row_vec":
        a = rng.standard_normal((1, K))
    out_big = np.zeros((a.shape[0], N + 2))
    out = out_big[:, 1 : N + 1]
    _emulated_gemm(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
    assert (out_big[:, 0] == 0).all() and (out_big[:, -1] == 0).all()


def test_gemm_arguments_reject_what_cublas_cannot_take() -> None:
    a = np.zeros((4, 6))[:, ::2]  # no unit stride
    with pytest.raises(ValueError, match="unit stride"):
        cuda_graph.gemm_arguments(a.shape, a.strides, (3, 2), (16, 8), (4, 2), (16, 8), 8)
    with pytest.raises(ValueError, match="shapes"):
        cuda_graph.gemm_arguments((4, 3), (24, 8), (2, 2), (16, 8), (4, 2), (16, 8), 8)
    with pytest.raises(ValueError, match="row-major"):
        cuda_graph.gemm_arguments((4, 3), (24, 8), (3, 2), (16, 8), (4, 2), (8, 32), 8)


# ---- the CUDA sources, compiled for the host ------------------------------------------------
_CTYPES = {"int64": ("long long", ctypes.c_longlong), "int32": ("int", ctypes.c_int)}


def _params(spec_params: str) -> list[tuple[str, str, str]]:
    """[(raw|scalar, type, name)] from a CuPy parameter string."""
    out = []
    for p in spec_params.split(","):
        words = p.split()
        if not words:
            continue
        if words[0] == "raw":
            out.append(("raw", words[1], words[2]))
        else:
            out.append(("scalar", words[0], words[1]))
    return out


def _host_source() -> str:
    lines = [
        "#include <cmath>",
        "#include <cstddef>",
        "#define __device__",
        "#define __forceinline__ inline",
        "using std::tanh;",
        PREAMBLE,
    ]
    for name, spec in SPECS.items():
        args = []
        for kind, typ, pname in _params(spec.in_params) + _params(spec.out_params):
            if kind == "raw":
                args.append(f"{'bool' if typ == 'bool' else 'double'}* {pname}")
            else:
                args.append(f"{_CTYPES[typ][0]} {pname}")
        lines.append(
            f'extern "C" void ts_{name}(long long n, {", ".join(args)}) {{\n'
            "  typedef double T;\n"
            f"  for (ptrdiff_t i = 0; i < n; ++i) {{\n{spec.source()}\n  }}\n}}"
        )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("needs a C++ compiler to build the CUDA sources for the host")
    tmp = Path(tmp_path_factory.mktemp("cuda_src"))
    src, lib = tmp / "kernels.cpp", tmp / "kernels.so"
    src.write_text(_host_source())
    subprocess.run(
        [cxx, "-O1", "-std=c++14", "-Wall", "-Werror", "-Wno-unused-variable", "-shared", "-fPIC",
         "-o", str(lib), str(src)],
        check=True,
        capture_output=True,
    )
    return ctypes.CDLL(str(lib))


class _HostKernel:
    """Stands in for a CuPy ElementwiseKernel: calls the host build of the same source."""

    def __init__(self, lib: ctypes.CDLL, in_params: str, out_params: str, name: str) -> None:
        self.fn = getattr(lib, "ts_" + name.removeprefix("tinyseq_"))
        self.params = _params(in_params) + _params(out_params)

    def __call__(self, *args: Any, size: int) -> None:
        self.fn(*self.c_args(args, size))

    def c_args(self, args: tuple[Any, ...], size: int) -> list[Any]:
        assert len(args) == len(self.params)
        c_args: list[Any] = [ctypes.c_longlong(size)]
        for (kind, typ, pname), arg in zip(self.params, args):
            if kind == "raw":
                assert isinstance(arg, np.ndarray), pname
                assert arg.flags.c_contiguous, f"{pname} must be C-contiguous for a raw argument"
                assert arg.dtype == (np.bool_ if typ == "bool" else np.float64), pname
                c_args.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                c_args.append(_CTYPES[typ][1](int(arg)))
        return c_args


class _HostCupy:
    """The two things CudaPointwise takes from CuPy, backed by the host build."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    def ElementwiseKernel(self, in_params: str, out_params: str, body: str, name: str,
                          **kwargs: Any) -> _HostKernel:
        return _HostKernel(self.lib, in_params, out_params, name)

    def zeros(self, shape: Any, dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_cuda_sources_match_reference(
    kind: str, opts: dict[str, Any], host_kernels: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sequence kernels with every pointwise call going to the compiled CUDA source
    (through CudaPointwise's wrappers, as on the GPU) against the NumPy kernels."""
    host_pw = CudaPointwise(_HostCupy(host_kernels))
    monkeypatch.setattr(stepwise, "pointwise_for", lambda xp: host_pw)
    for masked in (False, True):
        for reverse in (False, True):
            c = _case(np, kind, masked, True, seed=4)
            ref = _run(KERNELS[kind], np, c, reverse, opts)
            got = _run(stepwise.STEPWISE_KERNELS[kind], np, c, reverse, opts)
            _assert_same(ref, got, 1e-10, f"{kind} {opts} masked={masked} reverse={reverse}")


def test_every_pointwise_function_has_a_kernel() -> None:
    from tinyseq.kernels import pointwise

    for name in pointwise.__all__:
        assert callable(getattr(CudaPointwise, name)), name
    used = {n for n in SPECS}
    assert used == set(pointwise.__all__)
    for spec in SPECS.values():
        tags = [line.split("//")[1].strip() for line in spec.body.splitlines() if "//" in line]
        assert tags, spec.name  # every kernel cites the reference lines it implements


def _device_source() -> str:
    """The kernels as CUDA templates over T, instantiated for float and double."""
    lines = [PREAMBLE]
    for name, spec in SPECS.items():
        args = []
        for kind, typ, pname in _params(spec.in_params) + _params(spec.out_params):
            if kind == "raw":
                args.append(f"{'bool' if typ == 'bool' else 'T'}* {pname}")
            else:
                args.append(f"{_CTYPES[typ][0]} {pname}")
        lines.append(
            f"template <typename T> __global__ void ts_{name}(long long n, {', '.join(args)}) {{\n"
            "  for (ptrdiff_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;"
            " i += gridDim.x * blockDim.x) {\n"
            f"{spec.source()}\n  }}\n}}\n"
            f"template __global__ void ts_{name}<float>(long long, {', '.join(_inst(spec, 'float'))});\n"
            f"template __global__ void ts_{name}<double>(long long, {', '.join(_inst(spec, 'double'))});"
        )
    return "\n".join(lines)


def _inst(spec: Any, real: str) -> list[str]:
    return [
        (f"{'bool' if typ == 'bool' else real}*" if kind == "raw" else _CTYPES[typ][0])
        for kind, typ, _ in _params(spec.in_params) + _params(spec.out_params)
    ]


def test_cuda_sources_compile_for_the_device(tmp_path: Path) -> None:
    """nvcc (when present; no GPU needed) accepts every kernel for float and double."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("needs nvcc")
    src = tmp_path / "kernels.cu"
    src.write_text(_device_source())
    result = subprocess.run(
        [nvcc, "--ptx", "-o", str(tmp_path / "kernels.ptx"), str(src)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    ptx = (tmp_path / "kernels.ptx").read_text()
    for name in SPECS:
        assert f"ts_{name}" in ptx


def test_cupy_generated_kernel_code_compiles(tmp_path: Path) -> None:
    """The exact source CuPy generates around each kernel body (its private code
    generator, CuPy 14), compiled by nvcc against CuPy's headers: no name clashes with
    CuPy's own variables, valid for float and double. Needs CuPy importable and nvcc,
    not a GPU; skipped when either is missing or CuPy's internals differ."""
    pytest.importorskip("cupy")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("needs nvcc")
    import cupy
    from cupy._core import _carray, _kernel

    include = Path(cupy.__file__).parent / "_core" / "include"
    parts = ["#include <cupy/carray.cuh>"]
    try:
        for dt in ("float32", "float64"):
            for name, spec in SPECS.items():
                params = (
                    _kernel._get_param_info(spec.in_params, True)
                    + _kernel._get_param_info(spec.out_params, False)
                    + _kernel._get_param_info("CIndexer _ind", False)
                )

                def info(p: Any, dt: str = dt) -> Any:
                    if p.name == "_ind":
                        return _kernel._ArgInfo(2, _carray.Indexer, None, 1, True, True)
                    if p.raw:
                        d = np.dtype(bool) if p.ctype == "bool" else np.dtype(dt)
                        return _kernel._ArgInfo(1, cupy.ndarray, d, 2, True, True)
                    return _kernel._ArgInfo(3, p.dtype.type, p.dtype, 0, True, True)

                code = _kernel._get_elementwise_kernel_code(
                    tuple(info(p) for p in params),
                    _kernel._TypeMap((("T", np.dtype(dt)),)),
                    params,
                    spec.source(),
                    f"tinyseq_{name}",
                    PREAMBLE,
                )
                # one namespace per kernel and dtype keeps the extern "C" names apart
                body = code.replace('extern "C" ', "")
                parts.append(f"namespace k_{name}_{dt} {{\n{body}\n}}")
    except (AttributeError, TypeError, AssertionError) as err:
        pytest.skip(f"CuPy's private code generator differs here: {err}")
    src = tmp_path / "cupy_kernels.cu"
    src.write_text("\n".join(parts))
    result = subprocess.run(
        [nvcc, "--ptx", "-std=c++17", f"-I{include}", "-o", str(tmp_path / "k.ptx"), str(src)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr


# ---- CublasGemm's ctypes wiring, against a stand-in libcublas ---------------------------
class _DevArray(np.ndarray):
    """An ndarray with CuPy's ``.data.ptr`` (the address of its first element)."""

    @property  # type: ignore[misc]
    def data(self) -> Any:
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])


class _FakeCublas:
    """The cuBLAS entry points CublasGemm calls, doing column-major GEMM on raw memory."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.run: Any = lambda fn: fn()  # a graph test records instead of running
        self.stream: Any = None
        self.workspace: Any = None

        def create(handle_ref: Any) -> int:
            handle_ref._obj.value = 1234
            return 0

        self.cublasCreate_v2 = create
        self.cublasSetMathMode = lambda handle, mode: 0 if mode == 0 else 1
        # plain functions, as ctypes' are: CublasGemm sets argtypes on them
        self.cublasSetStream_v2 = lambda handle, stream: self._set_stream(handle, stream)
        self.cublasSetWorkspace_v2 = lambda handle, ptr, size: self._set_workspace(handle, ptr, size)
        self.cublasSgemm_v2 = self._gemm(ctypes.c_float, np.float32, "cublasSgemm_v2")
        self.cublasDgemm_v2 = self._gemm(ctypes.c_double, np.float64, "cublasDgemm_v2")

    def _set_stream(self, handle: Any, stream: Any) -> int:
        self.stream = stream
        self.calls.append("stream")
        return 0

    def _set_workspace(self, handle: Any, ptr: Any, size: Any) -> int:
        self.workspace = (ptr, size)
        self.calls.append("workspace")
        return 0

    def _gemm(self, real: Any, dtype: Any, name: str) -> Any:
        def colmajor(ptr: int, rows: int, cols: int, ld: int) -> np.ndarray:
            n = ld * (cols - 1) + rows
            buf = np.ctypeslib.as_array((real * n).from_address(ptr))
            return np.lib.stride_tricks.as_strided(
                buf, shape=(rows, cols), strides=(buf.itemsize, ld * buf.itemsize)
            )

        def gemm(handle: Any, ta: int, tb: int, m: int, n: int, k: int, alpha: Any, A: int,
                 lda: int, B: int, ldb: int, beta: Any, C: int, ldc: int) -> int:
            a = colmajor(A, *((m, k) if ta == 0 else (k, m)), lda)
            b = colmajor(B, *((k, n) if tb == 0 else (n, k)), ldb)
            a = a if ta == 0 else a.T
            b = b if tb == 0 else b.T
            c = colmajor(C, m, n, ldc)
            al, be = alpha._obj.value, beta._obj.value

            def work() -> None:
                prod = al * (a @ b)
                # like cuBLAS, C is not read when beta == 0 (it may hold garbage)
                c[...] = prod if be == 0 else prod + be * c

            self.run(work)
            self.calls.append(name)
            return 0

        gemm.__name__ = name
        return gemm


class _FakeStreamXP(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("fakecupy")
        self.cuda = types.SimpleNamespace(
            get_current_stream=lambda: types.SimpleNamespace(ptr=0xABC)
        )
        self.uint8 = np.uint8

    def empty(self, shape: Any, dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype=dtype).view(_DevArray)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cublas_gemm_ctypes_wiring(dtype: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _FakeCublas()
    monkeypatch.setattr(cuda_graph, "_find_libcublas", lambda xp: lib)
    gemm = cuda_graph.CublasGemm(_FakeStreamXP())
    rng = np.random.default_rng(0)

    def dev(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.astype(dtype)).view(_DevArray)

    M, K, N = 4, 6, 5
    cases = [
        (dev(rng.standard_normal((M, K))), dev(rng.standard_normal((K, N)))),
        (dev(rng.standard_normal((K, M))).T, dev(rng.standard_normal((N, K))).T),
        (dev(rng.standard_normal((M, K + 3)))[:, 1 : K + 1], dev(rng.standard_normal((K, N)))),
    ]
    for a, b in cases:
        out = dev(np.full((M, N), np.nan))
        gemm(a, b, out)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(np.asarray(out), np.asarray(a) @ np.asarray(b), rtol=tol, atol=tol)
    # the stream (and the workspace after it) is set once, then reused
    assert lib.calls[:2] == ["stream", "workspace"] and lib.calls.count("stream") == 1
    assert lib.stream == 0xABC and lib.workspace[1] == cuda_graph.CublasGemm.WORKSPACE_BYTES
    with pytest.raises(TypeError, match="float32/float64"):
        gemm(cases[0][0], cases[0][1].astype(np.float16), out)


# ---- graph mode's CuPy branch, on a stand-in CuPy that records during capture -------------
class _Recorder:
    """Like a CUDA stream under capture: work issued while capturing is recorded, not run."""

    def __init__(self) -> None:
        self.capturing: list[Any] | None = None

    def run(self, fn: Any) -> None:
        if self.capturing is not None:
            self.capturing.append(fn)
        else:
            fn()


_REC = _Recorder()


class _GraphArray(_DevArray):
    def fill(self, value: Any) -> None:
        _REC.run(lambda: np.ndarray.fill(self, value))


def _as_graph_array(value: Any) -> Any:
    if isinstance(value, np.ndarray) and not isinstance(value, _GraphArray):
        return value.view(_GraphArray)
    return value


class _RecordingKernel(_HostKernel):
    def __call__(self, *args: Any, size: int) -> None:
        c_args = self.c_args(args, size)
        _REC.run(lambda: self.fn(*c_args))


class _Graph:
    def __init__(self, work: list[Any]) -> None:
        self.work = work
        self.launches = 0

    def launch(self, stream: Any = None) -> None:
        self.launches += 1
        for fn in self.work:
            fn()


class _Stream:
    ptr = 0x5EA

    def __init__(self, non_blocking: bool = False) -> None:
        self.graphs: list[_Graph] = []

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait_event(self, event: Any) -> None:
        pass

    def record(self) -> Any:
        return object()

    def begin_capture(self) -> None:
        assert _REC.capturing is None
        _REC.capturing = []

    def end_capture(self) -> _Graph:
        assert _REC.capturing is not None
        graph = _Graph(_REC.capturing)
        _REC.capturing = None
        _GRAPHS.append(graph)
        return graph


_GRAPHS: list[_Graph] = []


class _CapturingCupy(types.ModuleType):
    """NumPy with CuPy's name, recorded copies and fills, host-built kernels, streams."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        super().__init__("cupy")
        self.lib = lib
        self.cuda = types.SimpleNamespace(Stream=_Stream, get_current_stream=lambda: _Stream())

    def ElementwiseKernel(self, in_params: str, out_params: str, body: str, name: str,
                          **kwargs: Any) -> _RecordingKernel:
        return _RecordingKernel(self.lib, in_params, out_params, name)

    def copyto(self, dst: Any, src: Any) -> None:
        _REC.run(lambda: np.copyto(dst, src))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type) and name != "dtype":
            return lambda *a, **k: _as_graph_array(attr(*a, **k))
        return attr


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_graph_capture_branch_on_a_recording_stand_in(
    kind: str, opts: dict[str, Any], host_kernels: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_capture's CuPy path — warm-up, capture, replay — with every GEMM, kernel, copy and
    fill issued during capture recorded and run only on replay, as CUDA does. Replays
    with new data must equal the NumPy kernels, so nothing may rely on work done while
    capturing."""
    lib = _FakeCublas()
    lib.run = _REC.run
    xp = _CapturingCupy(host_kernels)
    monkeypatch.setattr(cuda_graph, "_find_libcublas", lambda xp: lib)
    monkeypatch.setattr(cuda_graph, "_cublas_cache", {})
    monkeypatch.setattr(stepwise, "_cuda_pointwise", {})
    _GRAPHS.clear()
    cuda_graph.clear_cache()
    kernel = stepwise.STEPWISE_KERNELS[kind]
    with cuda_graph.use_cuda_graphs(True):
        for seed in range(3):
            for reverse in (False, True):
                c = _case(np, kind, True, True, seed=seed)
                ref = _run(KERNELS[kind], np, c, reverse, opts)
                cg = {k: (tuple(_as_graph_array(a) for a in v) if isinstance(v, tuple)
                          else _as_graph_array(v)) for k, v in c.items() if k != "mask"}
                m = np.ones((T, B), dtype=bool)
                m[3:, 0] = False
                m[:2, 2] = False
                cg["mask"] = MaskInfo.make(xp, m, T, B)
                got = _run(kernel, xp, cg, reverse, opts)
                _assert_same(ref, got, 1e-10, f"{kind} {opts} seed={seed} reverse={reverse}")
    assert not cuda_graph.capture_failures
    # one graph per (training forward, backward, inference forward) and direction,
    # each captured once and replayed on every call
    assert len(_GRAPHS) == 6
    assert all(g.launches == 3 and g.work for g in _GRAPHS)
    assert "cublasDgemm_v2" in lib.calls
    cuda_graph.clear_cache()
