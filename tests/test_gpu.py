"""tinyseq on a CUDA GPU (CuPy): every test here is marked ``gpu`` and skips cleanly
without CuPy or a CUDA device. Run them with ``python -m pytest -m gpu -q``.

- Recurrent layers on ``cuda`` equal the same layers on ``cpu`` (NumPy): every built-in
  cell and variant, masks, bidirectional, stacked, batch_first, fused and step paths,
  float32 (rtol 1e-4) and float64 (1e-10), outputs, final states and every gradient.
- PyTorch parity on ``cuda`` (float64, against torch on the host).
- The fused CUDA pointwise kernels equal the portable reference on the GPU.
- The ctypes cuBLAS GEMM equals ``cupy.matmul`` for every operand layout the loops use.
- CUDA-graph mode equals eager mode over repeated calls with new data.
- A plugin cell without a fused path runs on ``cuda`` through autograd.
- The trainer runs a few steps on ``cuda`` and matches the same steps on ``cpu``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cell_variants import IDS, VARIANTS

import tinyseq as ts
from tinyseq import backend, fused
from tinyseq.cell import Cell, State, linear
from tinyseq.kernels import cuda_graph, pointwise, stepwise
from tinyseq.nn.module import Parameter

pytestmark = pytest.mark.gpu

WRAPPERS = [
    # (num_layers, bidirectional, batch_first, lengths)
    (1, False, False, None),
    (1, True, True, [5, 2, 4]),
    (2, True, False, [3, 5, 1]),
    (3, False, True, [5, 5, 2]),
]
WIDS = ["L1", "L1bi-bf-lengths", "L2bi-lengths", "L3-bf-lengths"]
TOL = {"float32": 1e-4, "float64": 1e-10}


def _layer_results(
    kind: str,
    opts: dict[str, Any],
    device: str,
    dtype: Any,
    wrapper: tuple[int, bool, bool, list[int] | None],
    fused_path: bool,
    seed: int = 0,
) -> list[np.ndarray]:
    """Outputs, final state and every gradient of one layer run, as host arrays."""
    layers, bidi, batch_first, lengths = wrapper
    T, B, n_in, H = 5, 3, 4, 6
    ts.manual_seed(seed)  # the same initial weights on every device
    rnn = ts.nn.Recurrent(kind, n_in, H, num_layers=layers, bidirectional=bidi,
                          batch_first=batch_first, device=device, dtype=dtype, **opts)
    rnn.fused = fused_path
    rng = np.random.default_rng(seed)
    shape = (B, T, n_in) if batch_first else (T, B, n_in)
    x = ts.tensor(rng.standard_normal(shape).astype(dtype), device=device, requires_grad=True)
    with ts.no_grad():  # the inference path (no activations kept)
        inference, _ = rnn(x, lengths=lengths)
    out, state = rnn(x, lengths=lengths)
    finals = list(state) if isinstance(state, tuple) else [state]
    w_out = ts.tensor(rng.standard_normal(out.shape).astype(dtype), device=device)
    loss = (out * w_out).sum()
    for f in finals:
        loss = loss + (f * ts.tensor(rng.standard_normal(f.shape).astype(dtype), device=device)).sum()
    loss.backward()
    assert out.device.name == device
    results = [inference.numpy(), out.detach().numpy(), *(f.detach().numpy() for f in finals)]
    results.append(x.grad.numpy())  # type: ignore[union-attr]
    results += [p.grad.numpy() for p in rnn.parameters()]  # type: ignore[union-attr]
    return results


def _assert_close(ref: list[np.ndarray], got: list[np.ndarray], tol: float, what: str) -> None:
    assert len(ref) == len(got)
    for k, (r, g) in enumerate(zip(ref, got)):
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol, err_msg=f"{what}: result {k}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fused_path", [True, False], ids=["fused", "step"])
@pytest.mark.parametrize("wrapper", WRAPPERS, ids=WIDS)
@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_cuda_equals_numpy(
    kind: str, opts: dict[str, Any], wrapper: Any, fused_path: bool, dtype: str
) -> None:
    ref = _layer_results(kind, opts, "cpu", np.dtype(dtype), wrapper, fused_path)
    got = _layer_results(kind, opts, "cuda", np.dtype(dtype), wrapper, fused_path)
    _assert_close(ref, got, TOL[dtype], f"{kind} {opts} {wrapper} fused={fused_path}")


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_fused_path_is_taken_on_cuda(kind: str, opts: dict[str, Any]) -> None:
    from tinyseq import registry

    cell = registry.create_cell(kind, 4, 6, **opts)
    cell.to("cuda")
    x = ts.randn(5, 3, 4, device="cuda")
    result = cell.fused_sequence(x, cell.initial_state(3), None, False)
    assert result is not None, "cuda has fused kernels for every built-in cell"
    assert result[0].device.name == "cuda"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_graph_mode_equals_eager(kind: str, opts: dict[str, Any], dtype: str) -> None:
    cuda_graph.clear_cache()
    cuda_graph.capture_failures.clear()
    wrapper = (2, True, False, [5, 2, 4])
    for seed in (0, 1, 2):  # replays with new weights and inputs, same shapes
        eager = _layer_results(kind, opts, "cuda", np.dtype(dtype), wrapper, True, seed)
        with fused.use_cuda_graphs(True):
            graph = _layer_results(kind, opts, "cuda", np.dtype(dtype), wrapper, True, seed)
        _assert_close(eager, graph, 1e-5 if dtype == "float32" else 1e-12, f"graph, seed {seed}")
    assert not cuda_graph.capture_failures, cuda_graph.capture_failures
    assert len(cuda_graph._graphs) > 0, "graph mode captured the loops"
    cuda_graph.clear_cache()


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_cuda_pointwise_kernels_match_reference_on_gpu(
    kind: str, opts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sequence kernels on cupy arrays with the reference pointwise functions vs the
    fused ElementwiseKernels (float64, masks, both directions)."""
    xp = backend.get_device("cuda").xp
    from tinyseq.kernels import MaskInfo

    T, B, n_in, H = 6, 4, 5, 7
    g = {"rnn": 1, "simple_gru": 2, "gru": 3, "lstm": 4}[kind] * H
    rng = np.random.default_rng(0)

    def a(*shape: int) -> Any:
        return xp.asarray(rng.uniform(-0.8, 0.8, shape))

    m = np.ones((T, B), dtype=bool)
    m[4:, 1] = False
    m[:2, 3] = False
    n_state = 2 if kind == "lstm" else 1
    args = (a(T, B, n_in), tuple(a(B, H) for _ in range(n_state)), a(g, n_in), a(g, H), a(g), a(g))
    dy, ds = a(T, B, H), tuple(a(B, H) for _ in range(n_state))
    kernel = stepwise.STEPWISE_KERNELS[kind]

    def run() -> list[Any]:
        outs = []
        for reverse in (False, True):
            mask = MaskInfo.make(xp, m, T, B)
            y, final, cache = kernel.forward(xp, *args, mask, reverse, True, **opts)
            grads = kernel.backward(cache, dy, ds, True)
            outs += [y, *final, *grads]
        return [backend.to_numpy(o) for o in outs if o is not None]

    fused_kernels = run()
    monkeypatch.setattr(stepwise, "pointwise_for", lambda xp: pointwise)
    reference = run()
    _assert_close(reference, fused_kernels, 1e-11, f"{kind} {opts}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cublas_gemm_matches_matmul(dtype: str) -> None:
    xp = backend.get_device("cuda").xp
    gemm = cuda_graph.CublasGemm(xp)
    rng = np.random.default_rng(0)

    def a(*shape: int) -> Any:
        return xp.asarray(rng.standard_normal(shape).astype(dtype))

    M, K, N = 7, 9, 5
    cases = [
        (a(M, K), a(K, N)),  # h @ W.T stored contiguously
        (a(K, M).T, a(K, N)),  # transposed views
        (a(M, K), a(N, K).T),
        (a(M, K + 4)[:, 2 : K + 2], a(K, N)),  # a column slice, like d[:, 2H:]
        (a(1, K), a(K, N)),  # batch 1
    ]
    for left, right in cases:
        out = xp.empty((left.shape[0], N), dtype=dtype)
        gemm(left, right, out)
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(backend.to_numpy(out), backend.to_numpy(left @ right), rtol=tol, atol=tol)


def test_pytorch_parity_on_cuda() -> None:
    torch = pytest.importorskip("torch")
    from tinyseq import interop

    torch.manual_seed(0)
    for cls, kw in [
        (torch.nn.RNN, {"nonlinearity": "tanh"}),
        (torch.nn.RNN, {"nonlinearity": "relu"}),
        (torch.nn.GRU, {}),
        (torch.nn.LSTM, {}),
    ]:
        module = cls(4, 6, num_layers=2, bidirectional=True, dtype=torch.float64, **kw)
        rec = interop.from_torch(module, device="cuda")
        x = np.random.default_rng(1).standard_normal((5, 3, 4))
        xt = torch.tensor(x, requires_grad=True)
        out_t, _ = module(xt)
        out_t.sum().backward()
        xs = ts.tensor(x, device="cuda", requires_grad=True)
        out_s, _ = rec(xs)
        out_s.sum().backward()
        np.testing.assert_allclose(out_s.detach().numpy(), out_t.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-10)  # type: ignore[union-attr]


class _PlainTanhCell(Cell):
    """A plugin-style cell with no fused path: only ``step`` in tinyseq ops."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        dev, dt = backend.get_default_device(), backend.get_default_dtype()
        for name, cols in (("weight_ih", input_size), ("weight_hh", hidden_size)):
            data = backend.random_uniform(dev, (hidden_size, cols), -0.5, 0.5, dt)
            setattr(self, name, Parameter(ts.Tensor(data, device=dev)))

    weight_ih: Parameter
    weight_hh: Parameter

    def step(self, x_t: ts.Tensor, state: State) -> tuple[ts.Tensor, State]:
        h = ts.tanh(linear(x_t, self.weight_ih) + linear(state[0], self.weight_hh)) * 0.9
        return h, (h,)


def test_plugin_cell_without_fused_path_runs_on_cuda() -> None:
    results = {}
    for device in ("cpu", "cuda"):
        ts.manual_seed(0)
        rnn = ts.nn.Recurrent(_PlainTanhCell, 3, 5, num_layers=2, bidirectional=True, device=device)
        x = ts.tensor(np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32),
                      device=device, requires_grad=True)
        out, _ = rnn(x, lengths=[4, 2])
        out.sum().backward()
        assert out.device.name == device
        results[device] = [out.detach().numpy(), x.grad.numpy()] + [  # type: ignore[union-attr]
            p.grad.numpy() for p in rnn.parameters()  # type: ignore[union-attr]
        ]
    _assert_close(results["cpu"], results["cuda"], 1e-4, "plugin cell")


def test_trainer_runs_on_cuda(tmp_path: Any) -> None:
    from tinyseq.data import StreamDataset, Vocab
    from tinyseq.models import LanguageModel
    from tinyseq.trainer import Trainer

    text = "a quick brown fox jumps over the lazy dog; " * 12
    vocab = Vocab.build([list(text)])
    ids = vocab.encode_text(text)
    histories = {}
    for device in ("cpu", "cuda"):
        ts.manual_seed(0)
        model = LanguageModel(len(vocab), embedding_dim=8, hidden_size=16, num_layers=2, dropout=0.0)
        model.to(device)
        trainer = Trainer(model, StreamDataset(ids, 4, 40), StreamDataset(ids[:300], 2, 40),
                          lr=5e-3, max_steps=5, epochs=100, out_dir=tmp_path / device,
                          progress=False, seed=123)
        summary = trainer.fit()
        assert summary.steps == 5
        assert all(np.isfinite(trainer.history))
        assert next(model.parameters()).device.name == device
        histories[device] = trainer.history
    np.testing.assert_allclose(histories["cuda"], histories["cpu"], rtol=1e-3)
