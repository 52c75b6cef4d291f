"""Reverse-only recurrent layers (direction="reverse"): semantics, both paths, gradients,
PyTorch parity, and what interop does with them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from cell_variants import IDS, VARIANTS

import tinyseq as ts
from tinyseq import interop, registry
from tinyseq.testing import gradcheck


@pytest.fixture(autouse=True)
def _builtin_cells_only() -> Iterator[None]:
    """Only the built-in cells: nothing installed or set in the environment leaks in."""
    with registry.isolated_plugins():
        yield


CELLS = VARIANTS
T, B, I, H = 5, 3, 3, 4  # noqa: E741
LENGTHS = [5, 2, 4]


def flip_each(x: np.ndarray, lengths: list[int]) -> np.ndarray:
    """Time-major (T, B, ...) with each sequence's valid steps in reverse order."""
    out = x.copy()
    for b, n in enumerate(lengths):
        out[:n, b] = x[:n, b][::-1]
    return out


def as_tuple(state: Any) -> tuple[ts.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def np_of(t: ts.Tensor) -> np.ndarray:
    return t.detach().numpy()


@pytest.mark.parametrize("name,opts", CELLS, ids=IDS)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_reverse_equals_forward_on_flipped_sequences(name: str, opts: dict[str, Any],
                                                    fused: bool) -> None:
    """output[t] is the state after reading T_b-1 .. t; the final state is after step 0."""
    ts.manual_seed(0)
    rev = ts.nn.Recurrent(name, I, H, num_layers=2, direction="reverse", fused=fused,
                          dtype=ts.float64, **opts)
    fwd = ts.nn.Recurrent(name, I, H, num_layers=2, fused=fused, dtype=ts.float64, **opts)
    fwd.load_state_dict(rev.state_dict())  # same structure, same names
    x = np.random.default_rng(1).standard_normal((T, B, I))
    with ts.no_grad():
        y_r, s_r = rev(ts.tensor(x), lengths=LENGTHS)
        y_f, s_f = fwd(ts.tensor(flip_each(x, LENGTHS)), lengths=LENGTHS)
    np.testing.assert_allclose(np_of(y_r), flip_each(np_of(y_f), LENGTHS), rtol=1e-12, atol=1e-12)
    for a, b in zip(as_tuple(s_r), as_tuple(s_f)):
        np.testing.assert_allclose(np_of(a), np_of(b), rtol=1e-12, atol=1e-12)
    assert np.all(np_of(y_r)[2:, 1] == 0)  # padded steps stay zero


@pytest.mark.parametrize("name,opts", CELLS, ids=IDS)
def test_reverse_equals_the_backward_half_of_a_bidirectional_layer(name: str,
                                                                  opts: dict[str, Any]) -> None:
    ts.manual_seed(1)
    bi = ts.nn.Recurrent(name, I, H, bidirectional=True, dtype=ts.float64, **opts)
    rev = ts.nn.Recurrent(name, I, H, direction="reverse", dtype=ts.float64, **opts)
    backward_cell = bi.cell_at(0, 1)
    rev.load_state_dict({f"layers.0.{k}": v for k, v in backward_cell.state_dict().items()})
    x = ts.tensor(np.random.default_rng(2).standard_normal((T, B, I)))
    with ts.no_grad():
        y_bi, s_bi = bi(x, lengths=LENGTHS)
        y_r, s_r = rev(x, lengths=LENGTHS)
    out = backward_cell.output_size
    np.testing.assert_allclose(np_of(y_r), np_of(y_bi)[:, :, out:], rtol=1e-12, atol=1e-12)
    for a, b in zip(as_tuple(s_r), as_tuple(s_bi)):
        np.testing.assert_allclose(np_of(a)[0], np_of(b)[1], rtol=1e-12, atol=1e-12)


def _run(rec: ts.nn.Recurrent, x: ts.Tensor, state: tuple[ts.Tensor, ...],
         lengths: list[int] | None) -> tuple[ts.Tensor, ...]:
    y, final = rec(x, state if len(state) > 1 else state[0], lengths=lengths)
    return (y, *as_tuple(final))


@pytest.mark.parametrize("name,opts", CELLS, ids=IDS)
def test_fused_and_step_paths_agree_in_value_and_every_gradient(
    name: str, opts: dict[str, Any], device: str
) -> None:
    ts.manual_seed(2)
    rev = ts.nn.Recurrent(name, I, H, num_layers=2, direction="reverse", batch_first=True,
                          dtype=ts.float64, device=device, **opts)
    rng = np.random.default_rng(3)
    x_np = rng.standard_normal((B, T, I))
    n_state = len(rev.state_names)
    s_np = [rng.standard_normal((2, B, H)) for _ in range(n_state)]
    results = []
    for fused in (True, False):
        rev.fused = fused
        rev.zero_grad()
        x = ts.tensor(x_np, requires_grad=True, device=device)
        s0 = tuple(ts.tensor(s, requires_grad=True, device=device) for s in s_np)
        outs = _run(rev, x, s0, LENGTHS)
        w = np.random.default_rng(4)
        loss = sum((o * ts.tensor(w.standard_normal(o.shape), device=device)).sum()
                   for o in outs)
        loss.backward()  # type: ignore[union-attr]
        grads = [x.grad, *(s.grad for s in s0), *(p.grad for p in rev.parameters())]
        results.append([np_of(o) for o in outs] + [np_of(g) for g in grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,opts", CELLS, ids=IDS)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step"])
def test_gradcheck_reverse_stack_with_lengths(name: str, opts: dict[str, Any], fused: bool) -> None:
    ts.manual_seed(3)
    Hs = 2
    rev = ts.nn.Recurrent(name, 2, Hs, num_layers=2, direction=["reverse", "reverse"],
                          fused=fused, dtype=ts.float64, **opts)
    rng = np.random.default_rng(5)
    x = ts.tensor(rng.standard_normal((4, 2, 2)), requires_grad=True)
    s0 = tuple(ts.tensor(rng.standard_normal((2, 2, Hs)), requires_grad=True)
               for _ in rev.state_names)
    params = list(rev.parameters())

    def fn(x: ts.Tensor, *rest: ts.Tensor) -> tuple[ts.Tensor, ...]:
        return _run(rev, x, tuple(rest[: len(s0)]), [4, 2])

    assert gradcheck(fn, [x, *s0, *params])


def test_mixed_per_layer_directions_compose_as_written() -> None:
    """["bidirectional", "reverse", "forward"]: each layer reads its input as it says."""
    ts.manual_seed(4)
    rec = ts.nn.Recurrent("gru", I, H, num_layers=3,
                          direction=["bidirectional", "reverse", "forward"], dtype=ts.float64)
    assert rec.directions == [True, False, False] and not rec.bidirectional
    assert rec.layer_directions == ["bidirectional", "reverse", "forward"]
    assert rec.num_layers == 3 and rec.layers.num_slots == 4
    x = ts.tensor(np.random.default_rng(6).standard_normal((T, B, I)))
    mask = np.arange(T)[:, None] < np.array(LENGTHS)[None, :]
    from tinyseq.nn.recurrent import run_cell, run_layer

    with ts.no_grad():
        y, h = rec(x, lengths=LENGTHS)
        y0, _ = run_layer(rec.layers[0], x, None, mask)
        y1, _ = run_cell(rec.cell_at(1), y0, None, mask, reverse=True)
        y1_fwd, _ = run_cell(rec.cell_at(1), y0, None, mask, reverse=False)
        y2, _ = run_cell(rec.cell_at(2), y1, None, mask)
    np.testing.assert_allclose(np_of(y), np_of(y2), rtol=1e-12, atol=1e-12)
    assert not np.allclose(np_of(y1), np_of(y1_fwd))  # reversing does change layer 1
    assert h.shape == (4, B, H)


def test_stateful_reverse_carries_the_state_after_step_0() -> None:
    ts.manual_seed(5)
    rec = ts.nn.Recurrent("lstm", I, H, direction="reverse", stateful=True, dtype=ts.float64)
    rng = np.random.default_rng(7)
    a, b = (ts.tensor(rng.standard_normal((T, B, I))) for _ in range(2))
    with ts.no_grad():
        _, first = rec(a)
        y_carried, _ = rec(b)
        rec.reset_state()
        y_given, _ = rec(b, first)
        y_fresh, _ = rec(b)
    np.testing.assert_array_equal(np_of(y_carried), np_of(y_given))
    assert not np.allclose(np_of(y_carried), np_of(y_fresh))


def test_direction_is_checked_and_shown() -> None:
    with pytest.raises(ValueError, match=r"direction must be one of .*'backward'"):
        ts.nn.Recurrent("rnn", I, H, direction="backward")
    with pytest.raises(TypeError, match=r"direction must be one of .* got True"):
        ts.nn.Recurrent("rnn", I, H, direction=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="direction has 1 entries, expected one per layer \\(2\\)"):
        ts.nn.Recurrent("rnn", I, H, num_layers=2, direction=["reverse"])
    with pytest.raises(ValueError, match="bidirectional=True and direction='reverse' disagree"):
        ts.nn.Recurrent("rnn", I, H, bidirectional=True, direction="reverse")
    both = ts.nn.Recurrent("rnn", I, H, bidirectional=True, direction="bidirectional")
    assert both.bidirectional and both.direction == "bidirectional"
    assert ts.nn.Recurrent("rnn", I, H).direction == "forward"
    rec = ts.nn.Recurrent("lstm", I, H, num_layers=2, direction="reverse", batch_first=True)
    assert "direction='reverse'" in repr(rec) and "bidirectional" not in repr(rec)
    assert rec.cell_at(0) is rec.layers[0]
    mixed = ts.nn.Recurrent("gru", I, H, num_layers=2, direction=["bidirectional", "reverse"],
                            merge="sum")
    assert "direction=['bidirectional', 'reverse']" in repr(mixed) and "merge='sum'" in repr(mixed)
    stacked = registry.create_wrapper("stacked", ts.nn.Recurrent("rnn", I, H).cell_at(0))
    with pytest.raises(ValueError, match="reverse has 2 entries, expected one per layer \\(1\\)"):
        type(stacked)(stacked[0], reverse=[True, False])


def test_a_bidirectional_layer_cannot_be_reversed_in_a_stack() -> None:
    bi = ts.nn.Recurrent("rnn", I, H, bidirectional=True).layers[0]
    with pytest.raises(ValueError, match="layer 0 \\(Bidirectional\\) cannot run reversed"):
        registry.create_wrapper("stacked", bi, reverse=[True])


# ---- PyTorch -----------------------------------------------------------------------------
MODES = [("RNN", "rnn", {"nonlinearity": "tanh"}), ("RNN", "rnn", {"nonlinearity": "relu"}),
         ("GRU", "gru", {}), ("LSTM", "lstm", {})]
MODE_IDS = ["rnn_tanh", "rnn_relu", "gru", "lstm"]


def _torch_loss_grads(torch: Any, module: Any, x_np: np.ndarray, lengths: list[int],
                      w: np.ndarray, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    xt = torch.tensor(flip_each(x_np, lengths) if flip else x_np, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths),
                                                     enforce_sorted=False)
    out, _ = module(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x_np.shape[0])
    y = out.detach().numpy()
    y = flip_each(y, lengths) if flip else y
    loss = (out * torch.tensor(flip_each(w, lengths) if flip else w)).sum()
    loss.backward()
    g = xt.grad.numpy()
    return y, flip_each(g, lengths) if flip else g


@pytest.mark.parametrize("kind,name,opts", MODES, ids=MODE_IDS)
def test_reverse_matches_torch_backward_half_and_flipped_stack(kind: str, name: str,
                                                               opts: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(8)
    x_np = rng.standard_normal((T, B, I))
    # one layer: the backward half of torch's bidirectional layer (packed, ragged)
    bi = getattr(torch.nn, kind)(I, H, bidirectional=True, dtype=torch.float64, **opts)
    rev = ts.nn.Recurrent(name, I, H, direction="reverse", dtype=ts.float64, **opts)
    interop.load_torch_state_dict(rev, {k.replace("_reverse", ""): v
                                        for k, v in bi.state_dict().items() if "_reverse" in k})
    w = rng.standard_normal((T, B, 2 * H))
    w[:, :, :H] = 0  # the loss reads only the backward half
    y_t, gx_t = _torch_loss_grads(torch, bi, x_np, LENGTHS, w, flip=False)
    for fused in (True, False):
        rev.fused = fused
        x = ts.tensor(x_np, requires_grad=True)
        y, _ = rev(x, lengths=LENGTHS)
        (y * ts.tensor(w[:, :, H:])).sum().backward()
        np.testing.assert_allclose(np_of(y), y_t[:, :, H:], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x.grad.numpy(), gx_t, rtol=1e-10, atol=1e-12)
    # a stack: torch's forward stack run on each sequence flipped, outputs flipped back
    stack = getattr(torch.nn, kind)(I, H, num_layers=2, dtype=torch.float64, **opts)
    rev2 = ts.nn.Recurrent(name, I, H, num_layers=2, direction="reverse", dtype=ts.float64,
                           **opts)
    interop.load_torch_state_dict(rev2, stack.state_dict())
    w2 = rng.standard_normal((T, B, H))
    y_t, gx_t = _torch_loss_grads(torch, stack, x_np, LENGTHS, w2, flip=True)
    grads_t = {k: p.grad.numpy() for k, p in stack.named_parameters()}
    names = interop.torch_parameter_names(rev2)
    for fused in (True, False):
        rev2.fused = fused
        rev2.zero_grad()
        x = ts.tensor(x_np, requires_grad=True)
        y, _ = rev2(x, lengths=LENGTHS)
        (y * ts.tensor(w2)).sum().backward()
        np.testing.assert_allclose(np_of(y), y_t, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x.grad.numpy(), gx_t, rtol=1e-10, atol=1e-12)
        for ours, p in rev2.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), grads_t[names[ours]], rtol=1e-10,
                                       atol=1e-12, err_msg=ours)


def test_to_torch_refuses_reverse_only_layers_naming_the_direction() -> None:
    pytest.importorskip("torch")
    for direction in ("reverse", ["forward", "reverse"]):
        rec = ts.nn.Recurrent("lstm", I, H, num_layers=2, direction=direction)
        with pytest.raises(ValueError, match="PyTorch has no reverse-only RNN .*direction="):
            interop.to_torch(rec)
        with pytest.raises(ValueError, match="no reverse-only"):
            interop.torch_state_dict(rec)
        assert not interop.torch_equivalent(rec)


def test_load_torch_state_dict_accepts_the_reset_before_gru() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    module = torch.nn.GRU(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    rec = ts.nn.Recurrent("gru", I, H, num_layers=2, bidirectional=True, reset_after=False,
                          dtype=ts.float64)
    interop.load_torch_state_dict(rec, module.state_dict())
    params = dict(rec.named_parameters())
    for ours, theirs in interop.torch_parameter_names(rec).items():
        np.testing.assert_array_equal(np_of(params[ours]),
                                      module.state_dict()[theirs].numpy())
    # the weights are PyTorch's, the formula is not: to_torch still refuses
    with pytest.raises(ValueError, match="reset_after=False"):
        interop.to_torch(rec)
    assert not interop.torch_equivalent(rec)
    # what cannot even be laid out as PyTorch's weights is still refused when loading
    lecture = ts.nn.Recurrent("lstm", I, H, variant="lecture")
    with pytest.raises(ValueError, match="cannot load PyTorch weights .*variant='lecture'"):
        interop.load_torch_state_dict(lecture, torch.nn.LSTM(I, H).state_dict())
