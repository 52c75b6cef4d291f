"""Parity with torch.nn.RNN/GRU/LSTM: outputs, final states and every gradient."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import interop, registry
from tinyseq.nn.recurrent import use_fused


@pytest.fixture(autouse=True)
def _builtin_cells_only() -> Iterator[None]:
    """Only the built-in cells: nothing installed or set in the environment leaks in."""
    with registry.isolated_plugins():
        yield


torch = pytest.importorskip("torch")

MODES = ["RNN_TANH", "RNN_RELU", "GRU", "LSTM"]
I, H, B, T = 3, 4, 3, 5  # noqa: E741 (input size, as in the docs)


def make_torch(mode: str, dtype: object, **kwargs: object) -> object:
    torch.manual_seed(0)
    if mode.startswith("RNN"):
        return torch.nn.RNN(I, H, nonlinearity=mode[4:].lower(), dtype=dtype, **kwargs)
    return getattr(torch.nn, mode)(I, H, dtype=dtype, **kwargs)


def initial_states(mode: str, module: object, rng: np.random.Generator, dtype: object) -> list:
    D = 2 if module.bidirectional else 1
    n = 2 if mode == "LSTM" else 1
    return [rng.standard_normal((module.num_layers * D, B, H)).astype(dtype) for _ in range(n)]


def run_both(mode, module, x_np, states_np, lengths=None, fused=None):
    """Forward + backward of sum(w * out) + sum(v * state) on both sides; returns both."""
    batch_first = module.batch_first
    rec = interop.from_torch(module, fused=fused)
    rng = np.random.default_rng(1)
    module.zero_grad()
    # torch side
    xt = torch.tensor(x_np, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in states_np]
    hx = tuple(st) if mode == "LSTM" else st[0]
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
        out_p, hn = module(packed, hx)
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out_p, batch_first=batch_first, total_length=x_np.shape[1 if batch_first else 0]
        )
    else:
        out_t, hn = module(xt, hx)
    finals_t = list(hn) if mode == "LSTM" else [hn]
    w_out = rng.standard_normal(tuple(out_t.shape)).astype(x_np.dtype)
    w_st = [rng.standard_normal(tuple(f.shape)).astype(x_np.dtype) for f in finals_t]
    loss_t = (out_t * torch.tensor(w_out)).sum() + sum(
        (f * torch.tensor(w)).sum() for f, w in zip(finals_t, w_st)
    )
    loss_t.backward()
    # tinyseq side
    xs = ts.tensor(x_np, requires_grad=True)
    ss = [ts.tensor(s, requires_grad=True) for s in states_np]
    out_s, state_s = rec(xs, tuple(ss) if mode == "LSTM" else ss[0], lengths=lengths)
    finals_s = list(state_s) if mode == "LSTM" else [state_s]
    loss_s = (out_s * ts.tensor(w_out)).sum()
    for f, w in zip(finals_s, w_st):
        loss_s = loss_s + (f * ts.tensor(w)).sum()
    loss_s.backward()
    torch_side = {
        "out": out_t.detach().numpy(),
        **{f"final{i}": f.detach().numpy() for i, f in enumerate(finals_t)},
        "grad_x": xt.grad.numpy(),
        **{f"grad_state{i}": s.grad.numpy() for i, s in enumerate(st)},
        **{f"grad_{k}": p.grad.numpy() for k, p in module.named_parameters()},
    }
    names = interop.torch_parameter_names(rec)
    params = dict(rec.named_parameters())
    ours = {
        "out": out_s.detach().numpy(),
        **{f"final{i}": f.detach().numpy() for i, f in enumerate(finals_s)},
        "grad_x": xs.grad.numpy(),
        **{f"grad_state{i}": s.grad.numpy() for i, s in enumerate(ss)},
        **{f"grad_{names[k]}": params[k].grad.numpy() for k in names},
    }
    return torch_side, ours


def assert_same(theirs, ours, rtol, atol):
    assert set(theirs) == set(ours)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol, atol=atol, err_msg=key)


CASES = [
    # (num_layers, bidirectional, bias, batch_first)
    (1, False, True, False),
    (1, True, False, True),
    (2, True, True, False),
    (3, True, True, True),
    (2, False, False, False),
]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[0]}{'bi' if c[1] else ''}{'' if c[2] else 'nobias'}{'bf' if c[3] else ''}")
def test_parity_float64_all_gradients(mode, case, fused):
    layers, bidi, bias, batch_first = case
    module = make_torch(mode, torch.float64, num_layers=layers, bidirectional=bidi,
                        bias=bias, batch_first=batch_first)
    rng = np.random.default_rng(0)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape)
    theirs, ours = run_both(mode, module, x, initial_states(mode, module, rng, np.float64),
                            fused=fused)
    assert_same(theirs, ours, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers,bidi,batch_first", [(1, True, False), (2, True, True), (3, True, False), (2, False, True)])
def test_parity_variable_lengths_against_packed(mode, layers, bidi, batch_first, fused):
    module = make_torch(mode, torch.float64, num_layers=layers, bidirectional=bidi,
                        batch_first=batch_first)
    rng = np.random.default_rng(2)
    lengths = [3, 5, 1]  # unsorted: pack_padded_sequence(enforce_sorted=False)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape)
    theirs, ours = run_both(mode, module, x, initial_states(mode, module, rng, np.float64),
                            lengths=lengths, fused=fused)
    assert_same(theirs, ours, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_parity_float32(mode):
    module = make_torch(mode, torch.float32, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    for fused in (True, False):
        theirs, ours = run_both(mode, module, x, initial_states(mode, module, rng, np.float32),
                                lengths=[5, 2, 4], fused=fused)
        assert_same(theirs, ours, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_to_torch_round_trip(mode):
    kwargs = {"nonlinearity": mode[4:].lower()} if mode.startswith("RNN") else {}
    cell = "rnn" if mode.startswith("RNN") else mode.lower()
    rec = ts.nn.Recurrent(cell, I, H, num_layers=2, bidirectional=True, batch_first=True,
                          dtype=ts.float64, **kwargs)
    module = interop.to_torch(rec)
    assert isinstance(module, torch.nn.RNNBase) and module.batch_first and module.bidirectional
    x = np.random.default_rng(4).standard_normal((B, T, I))
    with ts.no_grad(), torch.no_grad():
        ours, _ = rec(ts.tensor(x))
        theirs, _ = module(torch.tensor(x))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12)
    back = interop.from_torch(module)
    for (k1, v1), (k2, v2) in zip(rec.state_dict().items(), back.state_dict().items()):
        assert k1 == k2
        np.testing.assert_array_equal(v1, v2)


def test_torch_state_dict_names():
    rec = ts.nn.Recurrent("lstm", I, H, num_layers=2, bidirectional=True)
    sd = interop.torch_state_dict(rec)
    want = {f"{w}_l{k}{s}" for w, k, s in itertools.product(
        ["weight_ih", "weight_hh", "bias_ih", "bias_hh"], [0, 1], ["", "_reverse"])}
    assert set(sd) == want
    assert sd["weight_ih_l1"].shape == (4 * H, 2 * H)


def test_interop_refuses_forms_pytorch_lacks():
    for cell, opts in [("gru", {"reset_after": False}), ("lstm", {"variant": "lecture"}),
                       ("simple_gru", {})]:
        rec = ts.nn.Recurrent(cell, I, H, **opts)
        with pytest.raises(ValueError, match="cannot map"):
            interop.to_torch(rec)
    rec = ts.nn.Recurrent("gru", I, H, bidirectional=True, merge="sum")
    with pytest.raises(ValueError, match="concat"):
        interop.to_torch(rec)
    with pytest.raises(TypeError, match="RNN, GRU or LSTM"):
        interop.from_torch(torch.nn.Linear(2, 2))


def test_load_torch_state_dict_mismatch_names_keys():
    rec = ts.nn.Recurrent("lstm", I, H, num_layers=1)
    module = torch.nn.LSTM(I, H, num_layers=2)
    with pytest.raises(ValueError, match="unexpected .*weight_ih_l1"):
        interop.load_torch_state_dict(rec, module.state_dict())


def test_step_and_fused_paths_agree_via_use_fused():
    module = make_torch("LSTM", torch.float64, num_layers=2, bidirectional=True)
    rec = interop.from_torch(module)
    x = ts.tensor(np.random.default_rng(5).standard_normal((T, B, I)))
    out_f, _ = rec(x, lengths=[5, 2, 3])
    with use_fused(False):
        out_s, _ = rec(x, lengths=[5, 2, 3])
    np.testing.assert_allclose(out_f.detach().numpy(), out_s.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_mode_is_carried_both_ways_with_dropout_between_layers(mode):
    module = make_torch(mode, torch.float64, num_layers=3, bidirectional=True, dropout=0.5)
    module.eval()
    rec = interop.from_torch(module)
    assert not rec.training and not any(m.training for m in rec.modules())
    x = np.random.default_rng(6).standard_normal((T, B, I))
    with torch.no_grad():
        theirs, _ = module(torch.tensor(x))
    outs = [rec(ts.tensor(x))[0].detach().numpy() for _ in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])  # no dropout: deterministic
    np.testing.assert_allclose(outs[0], theirs.numpy(), rtol=1e-12, atol=1e-12)
    back = interop.to_torch(rec)
    assert not back.training
    with torch.no_grad():
        np.testing.assert_array_equal(back(torch.tensor(x))[0].numpy(), theirs.numpy())
    # and training mode travels too
    module.train()
    assert interop.from_torch(module).training
    rec.train()
    assert interop.to_torch(rec).training
