"""Fused whole-sequence kernels: agreement with PyTorch, with a step-by-step autograd
reference, with finite differences, across variants, masks, directions and devices."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cell_variants import GATES, IDS, VARIANTS

import tinyseq as ts
from tinyseq import fused
from tinyseq.kernels import KERNELS as fused_kernels
from tinyseq.kernels import Workspace
from tinyseq.kernels.columns import InputSteps
from tinyseq.testing.gradcheck import gradcheck


class FakeCell:
    """Just the parameters a built-in cell exposes to ``fused.run``."""

    def __init__(
        self,
        kind: str,
        n_in: int,
        H: int,
        dtype: Any,
        device: str = "cpu",
        bias: bool = True,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        g = GATES[kind] * H

        def p(*shape: int) -> ts.Tensor:
            return ts.tensor(
                rng.uniform(-0.6, 0.6, shape).astype(dtype), device=device, requires_grad=True
            )

        self.weight_ih = p(g, n_in)
        self.weight_hh = p(g, H)
        self.bias_ih = p(g) if bias else None
        self.bias_hh = p(g) if bias else None

    def params(self) -> list[ts.Tensor]:
        return [
            w for w in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh) if w is not None
        ]


def _lin(x: ts.Tensor, w: ts.Tensor, b: ts.Tensor | None) -> ts.Tensor:
    out = x @ w.T
    return out if b is None else out + b


def reference_step(
    kind: str, opts: dict[str, Any], cell: FakeCell, x_t: ts.Tensor, state: tuple[ts.Tensor, ...]
) -> tuple[ts.Tensor, ...]:
    """The cell equations, one step, in plain tinyseq ops (the readable reference)."""
    h = state[0]
    H = h.shape[1]
    gi = _lin(x_t, cell.weight_ih, cell.bias_ih)
    if kind == "rnn":
        pre = gi + _lin(h, cell.weight_hh, cell.bias_hh)
        return (ts.relu(pre) if opts.get("nonlinearity") == "relu" else ts.tanh(pre),)
    if kind == "simple_gru":
        g = gi + _lin(h, cell.weight_hh, cell.bias_hh)
        u, cand = ts.sigmoid(g[:, :H]), ts.tanh(g[:, H:])
        return (u * cand + (1 - u) * h,)
    if kind == "gru":
        w, b = cell.weight_hh, cell.bias_hh
        gh = _lin(h, w[: 2 * H], None if b is None else b[: 2 * H])
        r = ts.sigmoid(gi[:, :H] + gh[:, :H])
        z = ts.sigmoid(gi[:, H : 2 * H] + gh[:, H:])
        bn = None if b is None else b[2 * H :]
        if opts.get("reset_after", True):
            n = ts.tanh(gi[:, 2 * H :] + r * _lin(h, w[2 * H :], bn))
        else:
            n = ts.tanh(gi[:, 2 * H :] + _lin(r * h, w[2 * H :], bn))
        return ((1 - z) * n + z * h,)
    c = state[1]
    g = gi + _lin(h, cell.weight_hh, cell.bias_hh)
    i, f = ts.sigmoid(g[:, :H]), ts.sigmoid(g[:, H : 2 * H])
    gg, o = ts.tanh(g[:, 2 * H : 3 * H]), ts.sigmoid(g[:, 3 * H :])
    c = f * c + i * gg
    a = o * ts.tanh(c) if opts.get("variant", "standard") == "standard" else o * c
    return (a, c)


def reference_run(
    kind: str,
    opts: dict[str, Any],
    cell: FakeCell,
    x: ts.Tensor,
    state: tuple[ts.Tensor, ...],
    mask: np.ndarray | None,
    reverse: bool,
) -> tuple[ts.Tensor, tuple[ts.Tensor, ...]]:
    """Step-by-step sequence with the layer's mask rules: padded steps keep the state, output 0."""
    T = x.shape[0]
    outs: list[ts.Tensor | None] = [None] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        new = reference_step(kind, opts, cell, x[t], state)
        if mask is not None:
            m = ts.tensor(mask[t][:, None].astype(x.dtype), device=x.device)
            new = tuple(m * n + (1 - m) * s for n, s in zip(new, state))
            outs[t] = new[0] * m
        else:
            outs[t] = new[0]
        state = new
    return ts.stack(outs), state  # type: ignore[arg-type]


def make_inputs(
    kind: str, T: int, B: int, n_in: int, H: int, dtype: Any, device: str = "cpu", seed: int = 1
) -> tuple[ts.Tensor, tuple[ts.Tensor, ...]]:
    rng = np.random.default_rng(seed)
    x = ts.tensor(
        rng.standard_normal((T, B, n_in)).astype(dtype), device=device, requires_grad=True
    )
    n = 2 if kind == "lstm" else 1
    state = tuple(
        ts.tensor(
            0.5 * rng.standard_normal((B, H)).astype(dtype), device=device, requires_grad=True
        )
        for _ in range(n)
    )
    return x, state


def lengths_mask(lengths: list[int], T: int) -> np.ndarray:
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def grads_of(outputs: list[ts.Tensor], inputs: list[ts.Tensor], seed: int = 2) -> list[np.ndarray]:
    """Backward a fixed random weighting of all outputs; return the inputs' gradients."""
    rng = np.random.default_rng(seed)
    for t in inputs:
        t.grad = None
    loss = None
    for o in outputs:
        w = ts.tensor(rng.standard_normal(o.shape).astype(o.dtype), device=o.device)
        term = (o * w).sum()
        loss = term if loss is None else loss + term
    assert loss is not None
    loss.backward()
    out = []
    for t in inputs:
        assert t.grad is not None
        out.append(ts.backend.to_numpy(t.grad.data).copy())
    return out


def run_both(
    kind: str,
    opts: dict[str, Any],
    T: int,
    B: int,
    n_in: int,
    H: int,
    dtype: Any,
    mask: np.ndarray | None,
    reverse: bool,
    bias: bool = True,
    device: str = "cpu",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(fused values+grads, reference values+grads) as host arrays."""
    results = []
    for use_fused in (True, False):
        cell = FakeCell(kind, n_in, H, dtype, device=device, bias=bias)
        x, state = make_inputs(kind, T, B, n_in, H, dtype, device=device)
        if use_fused:
            res = fused.run(kind, cell, x, state, mask, reverse, **opts)
            assert res is not None
            y, final = res
        else:
            y, final = reference_run(kind, opts, cell, x, state, mask, reverse)
        outs = [y, *final]
        values = [ts.backend.to_numpy(o.data).copy() for o in outs]
        results.append(values + grads_of(outs, [x, *state, *cell.params()]))
    return results[0], results[1]


def assert_close(a: list[np.ndarray], b: list[np.ndarray], tol: float) -> None:
    assert len(a) == len(b)
    for k, (u, v) in enumerate(zip(a, b)):
        assert u.shape == v.shape, k
        scale = max(1.0, float(np.abs(v).max()))
        err = float(np.abs(u - v).max())
        assert err <= tol * scale, f"item {k}: max error {err:.3g} > {tol:g}"


# ---- agreement with the step-by-step reference -----------------------------------------------
@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
def test_fused_matches_step_reference_float64(
    kind: str, opts: dict[str, Any], reverse: bool, masked: bool
) -> None:
    T, B = 6, 4
    mask = lengths_mask([6, 3, 1, 5], T) if masked else None
    got, ref = run_both(kind, opts, T, B, 5, 3, np.float64, mask, reverse)
    assert_close(got, ref, 1e-10)


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_fused_matches_step_reference_float32(kind: str, opts: dict[str, Any]) -> None:
    mask = lengths_mask([7, 4, 2], 7)
    got, ref = run_both(kind, opts, 7, 3, 6, 5, np.float32, mask, reverse=True)
    assert got[0].dtype == np.float32
    assert_close(got, ref, 1e-5)


GRU_LSTM = [v for v in VARIANTS if v[0] in ("gru", "lstm")]
GRU_LSTM_IDS = [i for i, v in zip(IDS, VARIANTS) if v[0] in ("gru", "lstm")]


@pytest.mark.parametrize("kind,opts", GRU_LSTM, ids=GRU_LSTM_IDS)
@pytest.mark.parametrize("B", [1, 2], ids=["B1", "B2"])
def test_input_product_in_chunks_of_steps(
    kind: str, opts: dict[str, Any], B: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chunks of 3 steps over T = 7 (the last one partial), both directions, with padding
    monkeypatch.setattr(InputSteps, "MIN_COLUMNS", 3 * B)
    T = 7
    mask = lengths_mask([7, 5][:B], T)
    for reverse in (False, True):
        got, ref = run_both(kind, opts, T, B, 3, 4, np.float64, mask, reverse)
        assert_close(got, ref, 1e-10)


def test_input_steps_chunk_length_and_any_order(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((10, 16, 3)), rng.standard_normal((5, 3)), np.arange(5.0)
    assert InputSteps(np, x, w, b).chunk == 10  # ceil(256 / 16) = 16 steps, capped at T
    monkeypatch.setattr(InputSteps, "MIN_COLUMNS", 64)
    steps = InputSteps(np, x, w, b)
    assert steps.chunk == 4
    for t in (9, 0, 5, 4, 8):  # any order: each block is that step's product
        np.testing.assert_allclose(steps[t], w @ x[t].T + b[:, None])
    steps.release()


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_fused_any_mask_pattern_and_no_bias(kind: str, opts: dict[str, Any]) -> None:
    # padding anywhere (left padding, holes), a sequence with no valid step, bias=False
    mask = np.array(
        [[0, 1, 1, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=bool
    )
    for reverse in (False, True):
        got, ref = run_both(kind, opts, 5, 4, 3, 4, np.float64, mask, reverse, bias=False)
        assert_close(got, ref, 1e-10)
        # outputs are exactly zero at padded steps; an all-padded sequence keeps its state
        assert np.all(got[0][~mask] == 0.0)


# ---- PyTorch parity -----------------------------------------------------------------------------
TORCH_VARIANTS = [
    ("rnn", {"nonlinearity": "tanh"}, "RNN"),
    ("rnn", {"nonlinearity": "relu"}, "RNN"),
    ("gru", {"reset_after": True}, "GRU"),
    ("lstm", {"variant": "standard"}, "LSTM"),
]


@pytest.mark.parametrize(
    "kind,opts,torch_name", TORCH_VARIANTS, ids=["rnn-tanh", "rnn-relu", "gru", "lstm"]
)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_fused_matches_pytorch_with_lengths(
    kind: str, opts: dict[str, Any], torch_name: str, reverse: bool
) -> None:
    torch = pytest.importorskip("torch")
    T, B, n_in, H = 6, 3, 4, 5
    lengths = [6, 2, 4]
    mask = lengths_mask(lengths, T)
    cell = FakeCell(kind, n_in, H, np.float64)
    x, state = make_inputs(kind, T, B, n_in, H, np.float64)
    res = fused.run(kind, cell, x, state, mask, reverse, **opts)
    assert res is not None
    y, final = res
    outs = [y, *final]
    got = [o.data.copy() for o in outs] + grads_of(outs, [x, *state, *cell.params()])

    extra = {"nonlinearity": opts["nonlinearity"]} if kind == "rnn" else {}
    mod = getattr(torch.nn, torch_name)(n_in, H, dtype=torch.float64, **extra)
    with torch.no_grad():
        for name, p in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), cell.params()):
            getattr(mod, name + "_l0").copy_(torch.from_numpy(p.data))
    xt = torch.tensor(x.data, requires_grad=True)
    st = [torch.tensor(s.data[None], requires_grad=True) for s in state]
    # a reversed direction reads each sequence from its own last valid step: flip the
    # valid prefix of every sequence, run forward, flip back (what packing does)
    idx = torch.tensor(
        [[(L - 1 - t if reverse else t) if t < L else t for t in range(T)] for L in lengths]
    ).T
    xin = xt.gather(0, idx[:, :, None].expand(T, B, n_in))
    packed = torch.nn.utils.rnn.pack_padded_sequence(xin, lengths, enforce_sorted=False)
    yp, fin = mod(packed, tuple(st) if kind == "lstm" else st[0])
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, total_length=T)
    yt = yt.gather(0, idx[:, :, None].expand(T, B, H))
    fin_t = [f[0] for f in fin] if kind == "lstm" else [fin[0]]
    outs_t = [yt, *fin_t]
    rng = np.random.default_rng(2)
    loss = sum((o * torch.tensor(rng.standard_normal(tuple(o.shape)))).sum() for o in outs_t)
    loss.backward()
    ref = [o.detach().numpy() for o in outs_t] + [xt.grad.numpy()] + [s.grad[0].numpy() for s in st]
    ref += [
        getattr(mod, n + "_l0").grad.numpy()
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    assert_close(got, ref, 1e-10)


# ---- gradients by finite differences ------------------------------------------------------------
@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_fused_gradcheck(kind: str, opts: dict[str, Any]) -> None:
    T, B, n_in, H = 4, 2, 3, 2
    mask = lengths_mask([4, 2], T)
    cell = FakeCell(kind, n_in, H, np.float64, seed=3)
    x, state = make_inputs(kind, T, B, n_in, H, np.float64, seed=4)
    names = (
        ["x"]
        + [f"state{i}" for i in range(len(state))]
        + ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    )

    def f(x: ts.Tensor, *rest: ts.Tensor) -> tuple[ts.Tensor, ...]:
        n = len(state)
        cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh = rest[n:]
        res = fused.run(kind, cell, x, tuple(rest[:n]), mask, True, **opts)
        assert res is not None
        return (res[0], *res[1])

    assert gradcheck(f, [x, *state, *cell.params()], names=names)


# ---- layers: stacking, bidirectional reuse, truncated BPTT -------------------------------------
def test_three_layer_bidirectional_stack_matches_reference() -> None:
    T, B, n_in, H = 5, 3, 4, 3
    mask = lengths_mask([5, 2, 4], T)
    kinds = [("lstm", {"variant": "standard"}), ("gru", {"reset_after": False}), ("rnn", {})]

    def network(use_fused: bool) -> list[np.ndarray]:
        rng_x = np.random.default_rng(9)
        x = ts.tensor(rng_x.standard_normal((T, B, n_in)), requires_grad=True)
        params: list[ts.Tensor] = []
        inp = x
        for layer, (kind, opts) in enumerate(kinds):
            dirs = []
            for direction, reverse in enumerate((False, True)):
                cell = FakeCell(kind, inp.shape[2], H, np.float64, seed=10 * layer + direction)
                params += cell.params()
                _, state = make_inputs(kind, 1, B, 1, H, np.float64, seed=layer)
                if use_fused:
                    res = fused.run(kind, cell, inp, state, mask, reverse, **opts)
                    assert res is not None
                    y, _ = res
                else:
                    y, _ = reference_run(kind, opts, cell, inp, state, mask, reverse)
                dirs.append(y)
            inp = ts.concatenate(dirs, axis=2)
        return [inp.data.copy(), *grads_of([inp], [x, *params])]

    assert_close(network(True), network(False), 1e-10)


def test_truncated_bptt_state_carry() -> None:
    # two chunks with the state carried (detached) equal one run in the forward pass,
    # and the second chunk's gradient w.r.t. its carried state matches the reference
    kind, opts = "lstm", {"variant": "standard"}
    cell = FakeCell(kind, 3, 4, np.float64)
    x, state = make_inputs(kind, 8, 2, 3, 4, np.float64)
    full = fused.run(kind, cell, x, state, None, False, **opts)
    assert full is not None
    first = fused.run(kind, cell, x[:5], state, None, False, **opts)
    assert first is not None
    carried = tuple(s.detach() for s in first[1])
    for s in carried:
        s.requires_grad = True
    second = fused.run(kind, cell, x[5:], carried, None, False, **opts)
    assert second is not None
    np.testing.assert_allclose(second[0].data, full[0].data[5:], atol=1e-12)
    np.testing.assert_allclose(second[1][1].data, full[1][1].data, atol=1e-12)
    got = grads_of([second[0]], list(carried))
    ref_out, _ = reference_run(kind, opts, cell, x[5:], carried, None, False)
    ref = grads_of([ref_out], list(carried))
    assert_close(got, ref, 1e-10)


# ---- devices, inference, buffers ---------------------------------------------------------------
@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_testcpu_device_matches_cpu(kind: str, opts: dict[str, Any]) -> None:
    mask = lengths_mask([5, 3], 5)
    got, ref = run_both(kind, opts, 5, 2, 3, 4, np.float64, mask, True, device="testcpu")
    cpu, _ = run_both(kind, opts, 5, 2, 3, 4, np.float64, mask, True)
    assert_close(got, ref, 1e-10)
    assert_close(got, cpu, 1e-12)


def test_testcpu_outputs_stay_on_device() -> None:
    cell = FakeCell("gru", 3, 4, np.float32, device="testcpu")
    x, state = make_inputs("gru", 5, 2, 3, 4, np.float32, device="testcpu")
    res = fused.run("gru", cell, x, state, None, False)
    assert res is not None
    assert res[0].device.name == "testcpu" and type(res[0].data).__name__ == "TestArray"
    res[0].sum().backward()
    assert x.grad is not None and type(x.grad.data).__name__ == "TestArray"


@pytest.mark.parametrize("kind,opts", VARIANTS, ids=IDS)
def test_inference_path_matches_training_path(kind: str, opts: dict[str, Any]) -> None:
    cell = FakeCell(kind, 3, 4, np.float32)
    x, state = make_inputs(kind, 6, 3, 3, 4, np.float32)
    mask = lengths_mask([6, 1, 4], 6)
    train = fused.run(kind, cell, x, state, mask, False, **opts)
    with ts.no_grad():
        infer = fused.run(kind, cell, x, state, mask, False, **opts)
    assert train is not None and infer is not None
    assert train[0].requires_grad and not infer[0].requires_grad
    for a, b in zip([train[0], *train[1]], [infer[0], *infer[1]]):
        np.testing.assert_array_equal(a.data, b.data)


def test_results_do_not_alias_reused_buffers() -> None:
    cell = FakeCell("lstm", 3, 4, np.float32)
    x, state = make_inputs("lstm", 6, 2, 3, 4, np.float32)
    with ts.no_grad():
        first = fused.run("lstm", cell, x, state, None, False)
        assert first is not None
        kept = [first[0].data.copy(), *(s.data.copy() for s in first[1])]
        x2, state2 = make_inputs("lstm", 6, 2, 3, 4, np.float32, seed=7)
        fused.run("lstm", cell, x2, state2, None, False)
    for a, b in zip(kept, [first[0].data, *(s.data for s in first[1])]):
        np.testing.assert_array_equal(a, b)


def test_weights_changed_in_place_are_seen() -> None:
    # an optimizer updates .data in place: the next call must use the new values
    cell = FakeCell("lstm", 3, 4, np.float32)
    x, state = make_inputs("lstm", 4, 2, 3, 4, np.float32)
    with ts.no_grad():
        before = fused.run("lstm", cell, x, state, None, False)
        cell.weight_hh.data *= 0.5
        cell.weight_ih.data -= 0.1
        after = fused.run("lstm", cell, x, state, None, False)
        ref, _ = reference_run("lstm", {}, cell, x, state, None, False)
    assert before is not None and after is not None
    np.testing.assert_allclose(after[0].data, ref.data, atol=1e-6)
    assert not np.allclose(before[0].data, after[0].data)


def test_backward_twice_with_retain_graph() -> None:
    cell = FakeCell("gru", 3, 4, np.float64)
    x, state = make_inputs("gru", 5, 2, 3, 4, np.float64)
    res = fused.run("gru", cell, x, state, None, False)
    assert res is not None
    loss = res[0].sum() + res[1][0].sum()
    loss.backward(retain_graph=True)
    assert x.grad is not None
    once = x.grad.data.copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.data, 2 * once, rtol=1e-12)


@pytest.mark.parametrize("kind,opts", GRU_LSTM, ids=GRU_LSTM_IDS)
def test_saved_buffers_are_pooled_after_the_last_backward(
    kind: str, opts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = Workspace()
    monkeypatch.setattr(fused_kernels[kind], "workspace", pool)
    T, B, H = 5, 2, 4
    gates = (T, GATES[kind] * H, B)

    def train(retain: bool) -> tuple[Any, list[np.ndarray]]:
        cell = FakeCell(kind, 3, H, np.float64)
        x, state = make_inputs(kind, T, B, 3, H, np.float64)
        res = fused.run(kind, cell, x, state, None, False, **opts)
        assert res is not None
        loss = res[0].sum()
        loss.backward(retain_graph=retain)
        return loss, [x.grad.data.copy(), cell.weight_hh.grad.data.copy()]

    loss, kept = train(retain=True)
    assert not any(k[1] == gates for k in pool._free)  # still saved for a second backward
    loss.backward()
    assert any(k[1] == gates and v for k, v in pool._free.items())  # handed back
    _, again = train(retain=False)  # a run on recycled buffers gives the same gradients
    for a, b in zip(kept, again):
        np.testing.assert_array_equal(a, b)
    assert any(k[1] == gates and v for k, v in pool._free.items())


def test_only_final_state_used_and_no_input_grad() -> None:
    cell = FakeCell("lstm", 3, 4, np.float64)
    x, state = make_inputs("lstm", 5, 2, 3, 4, np.float64)
    x.requires_grad = False
    res = fused.run("lstm", cell, x, state, None, False)
    assert res is not None
    res[1][0].sum().backward()
    assert x.grad is None
    ref, ref_state = reference_run("lstm", {}, cell, x, state, None, False)
    want = grads_of([ref_state[0]], cell.params(), seed=0)
    for t in cell.params():
        t.grad = None
    res = fused.run("lstm", cell, x, state, None, False)
    assert res is not None
    res[1][0].backward(ts.tensor(np.random.default_rng(0).standard_normal((2, 4))))
    got = [t.grad.data for t in cell.params()]  # type: ignore[union-attr]
    assert_close(got, want, 1e-10)


# ---- unsupported cases and bad input ------------------------------------------------------------
def test_returns_none_where_no_kernel_applies() -> None:
    cell = FakeCell("rnn", 3, 4, np.float32)
    x, state = make_inputs("rnn", 4, 2, 3, 4, np.float32)
    assert fused.run("my_cell", cell, x, state, None, False) is None
    x64, _ = make_inputs("rnn", 4, 2, 3, 4, np.float64)
    assert fused.run("rnn", cell, x64, state, None, False) is None  # mixed dtypes


def test_bad_mask_shape_and_option_are_reported() -> None:
    cell = FakeCell("lstm", 3, 4, np.float32)
    x, state = make_inputs("lstm", 4, 2, 3, 4, np.float32)
    with pytest.raises(ValueError, match=r"mask must have shape \(T, B\) = \(4, 2\), got \(2, 4\)"):
        fused.run("lstm", cell, x, state, np.ones((2, 4), bool), False)
    with pytest.raises(ValueError, match="variant must be one of .* got 'peephole'"):
        fused.run("lstm", cell, x, state, None, False, variant="peephole")
    with pytest.raises(ValueError, match="x has 5 features per step, the cell expects 3"):
        fused.run("lstm", cell, ts.zeros((4, 2, 5)), state, None, False)
    with pytest.raises(ValueError, match="expected a state of 2 tensor"):
        fused.run("lstm", cell, x, state[:1], None, False)
    with pytest.raises(ValueError, match=r"must be \(B, H\) = \(2, 4\), got \(3, 4\)"):
        fused.run("lstm", cell, x, (ts.zeros((3, 4)), state[1]), None, False)
    rcell = FakeCell("rnn", 3, 4, np.float32)
    with pytest.raises(ValueError, match="nonlinearity must be one of .* got 'gelu'"):
        fused.run("rnn", rcell, x, state[:1], None, False, nonlinearity="gelu")


def test_workspace_reuses_and_caps() -> None:
    ws = Workspace(max_per_key=1)
    a = ws.take(np, (3, 4), np.float32)
    b = ws.take(np, (3, 4), np.float32)
    ws.give(np, a, b)
    assert ws.take(np, (3, 4), np.float32) is a
    assert ws.take(np, (3, 4), np.float32) is not b  # only one kept per key


# ---- through the recurrent layer: fused path against the step path ----------------------------
def _layer_run(
    cell: str, opts: dict[str, Any], fused_path: bool, dtype: Any, **layer_kw: Any
) -> list[np.ndarray]:
    recurrent = getattr(ts.nn, "Recurrent", None)
    if recurrent is None:
        pytest.skip("tinyseq.nn.Recurrent is not available")
    T, B, n_in, H = 6, 3, 4, 3
    ts.manual_seed(5)
    layer = recurrent(cell, n_in, H, fused=fused_path, dtype=dtype, **layer_kw, **opts)
    rng = np.random.default_rng(6)
    x = ts.tensor(rng.standard_normal((T, B, n_in)).astype(dtype), requires_grad=True)
    y, state = layer(x, lengths=[6, 2, 5])
    states = list(state) if isinstance(state, tuple) else [state]
    outs = [y, *states]
    values = [o.data.copy() for o in outs]
    return values + grads_of(outs, [x, *layer.parameters()])


@pytest.mark.parametrize("cell,opts", VARIANTS, ids=IDS)
def test_layer_fused_matches_step_path_3_layers_bidirectional(
    cell: str, opts: dict[str, Any]
) -> None:
    kw = {"num_layers": 3, "bidirectional": True}
    got = _layer_run(cell, opts, True, np.float64, **kw)
    ref = _layer_run(cell, opts, False, np.float64, **kw)
    assert_close(got, ref, 1e-10)
    got32 = _layer_run(cell, opts, True, np.float32, **kw)
    ref32 = _layer_run(cell, opts, False, np.float32, **kw)
    assert got32[0].dtype == np.float32
    assert_close(got32, ref32, 1e-5)


def test_layer_uses_the_fused_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []
    real = fused.run

    def counting(
        kind: str, cell: Any, x: Any, state: Any, mask: Any, reverse: bool, **o: Any
    ) -> Any:
        res = real(kind, cell, x, state, mask, reverse, **o)
        calls.append((kind, res is not None))
        return res

    monkeypatch.setattr(fused, "run", counting)
    _layer_run("lstm", {}, True, np.float32, num_layers=2, bidirectional=True)
    assert calls == [("lstm", True)] * 4  # one node per layer and direction
    calls.clear()
    _layer_run("lstm", {}, False, np.float32)
    assert calls == []


def test_workspace_byte_cap_evicts_oldest() -> None:
    ws = Workspace(max_per_key=2, max_bytes=3 * 400)
    arrays = [ws.take(np, (100 + i,), np.float32) for i in range(4)]  # ~400 bytes each
    ws.give(np, *arrays)
    assert ws.nbytes <= 3 * 400
    assert ws.take(np, (100,), np.float32) is not arrays[0]  # the oldest went first
    assert ws.take(np, (103,), np.float32) is arrays[3]
    big = np.empty(1000, np.float32)
    ws.give(np, big)  # larger than the whole cap: not kept
    assert ws.take(np, (1000,), np.float32) is not big


def test_flush_subnormals_zeroes_only_subnormal_values(device: str) -> None:
    from tinyseq.kernels.sequence import flush_subnormals

    xp = ts.device(device).xp
    tiny = np.finfo(np.float32).tiny
    a = xp.asarray(np.array([1.0, -tiny, tiny / 4, -tiny / 8, 1e-30, 0.0], dtype=np.float32))
    flush_subnormals(xp, a)
    np.testing.assert_array_equal(
        ts.backend.to_numpy(a), np.array([1.0, -tiny, 0.0, 0.0, 1e-30, 0.0], dtype=np.float32)
    )


def _steps_with_subnormal_dx(T: int) -> int:
    # h = tanh(W_ih x + 0.5 h): the gradient from the last step halves (at least) per
    # step, reaches float32's smallest normal after ~126 steps, then would spend ~23
    # steps among subnormals before it underflows to zero
    ts.manual_seed(0)
    layer = ts.nn.Recurrent("rnn", 3, 4)
    cell = layer.cell_at(0)
    cell.weight_hh.data[...] = 0.5 * np.eye(4, dtype=np.float32)
    cell.bias_ih.data[...] = 0
    cell.bias_hh.data[...] = 0
    x = ts.randn(T, 2, 3, requires_grad=True)
    y, _ = layer(x)
    y[-1].sum().backward()
    dx = np.abs(ts.backend.to_numpy(x.grad.data))  # type: ignore[union-attr]
    subnormal = (dx > 0) & (dx < np.finfo(np.float32).tiny)
    return int(subnormal.reshape(T, -1).any(axis=1).sum())


def test_vanishing_gradient_spends_few_steps_among_subnormals(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinyseq.kernels import rnn, sequence

    # entries cross into subnormals at different steps, so a few more than FLUSH_EVERY
    assert _steps_with_subnormal_dx(250) <= 2 * sequence.FLUSH_EVERY
    monkeypatch.setattr(rnn, "FLUSH_EVERY", 10**9)  # no flushing: many slow steps
    assert _steps_with_subnormal_dx(250) > 2 * sequence.FLUSH_EVERY


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "simple_gru"])
def test_weight_gradients_are_taken_without_copies_and_never_shared(cell: str) -> None:
    # a kernel's gradients are fresh arrays that the weights take as they are; the one bias
    # gradient a kernel returns for both biases must still end up as two separate arrays
    ts.manual_seed(0)
    layer = ts.nn.Recurrent(cell, 3, 4)
    x = ts.tensor(np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32), requires_grad=True)
    out, _ = layer(x)
    out.sum().backward(retain_graph=True)
    grads = {name: p.grad.data for name, p in layer.named_parameters()}
    arrays = list(grads.values()) + [x.grad.data]
    for i, a in enumerate(arrays):
        assert a.flags.c_contiguous and a.flags.writeable
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
    first = {name: g.copy() for name, g in grads.items()}
    out.sum().backward()  # a second pass adds the same gradients again
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad.data, 2 * first[name], rtol=1e-6)
