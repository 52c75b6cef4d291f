"""Fused whole-sequence kernels for the built-in cells, as one autograd node per call.

``run(kind, cell, x, state, mask, reverse, **options)`` is what a built-in cell's
``fused_sequence`` calls. It runs the kernel for ``kind`` ("rnn", "simple_gru", "gru",
"lstm") over all T steps and records one graph node whose outputs are (y, *final_state)
and whose parents are x, the initial state and the cell's weights. It returns None —
so the recurrent layer falls back to the step path — where no kernel applies: a device
without kernels, mixed dtypes or devices, or an empty sequence or batch (T = 0 or B = 0:
the step path gives the empty output and the unchanged state).

With a mask, the padded steps of x are set to zero once per call before the kernel
reads them (a select, not a product), so padding that holds NaN or inf reaches no
output, state or gradient; without a mask the kernel reads x as it is.
"""

from __future__ import annotations

from typing import Any

from .kernels import MaskInfo
from .kernels.cuda_graph import use_cuda_graphs
from .kernels.dispatch import kernels_for
from .tensor import Tensor, _wrap, custom_multi, graph_is_retained, is_grad_enabled

__all__ = ["run", "SUPPORTED_DEVICES", "use_cuda_graphs"]

# cuda runs the GPU-layout kernels (kernels.stepwise, kernels.dispatch)
SUPPORTED_DEVICES = ("cpu", "testcpu", "cuda")


def run(
    kind: str,
    cell: Any,
    x: Tensor,
    state: tuple[Tensor, ...],
    mask: Any,
    reverse: bool,
    **options: Any,
) -> tuple[Tensor, tuple[Tensor, ...]] | None:
    """Run cell ``kind``'s fused kernel over x (T, B, I) from ``state`` (each (B, H)).

    mask: (T, B) bool (True = valid step) or None. Returns (y (T, B, H), final state)
    — y is 0 at padded steps, which leave the state unchanged — or None when there
    is no kernel for this case.
    """
    dev = x.device
    kernel = kernels_for(dev.name).get(kind)
    if kernel is None:
        return None
    if dev.name not in SUPPORTED_DEVICES or x.ndim != 3 or 0 in x.shape[:2]:
        return None
    w_ih, w_hh = cell.weight_ih, cell.weight_hh
    b_ih, b_hh = getattr(cell, "bias_ih", None), getattr(cell, "bias_hh", None)
    weights = [w for w in (w_ih, w_hh, b_ih, b_hh) if w is not None]
    dtype = x.dtype
    for t in (*state, *weights):
        if t.device is not dev or t.dtype != dtype:
            return None
    xp = dev.xp
    T, B, features = x.shape
    H = w_hh.shape[1]
    if features != w_ih.shape[1]:
        raise ValueError(
            f"{kind}: x has {features} features per step, the cell expects {w_ih.shape[1]}"
        )
    n_state = 2 if kind == "lstm" else 1
    if len(state) != n_state:
        raise ValueError(f"{kind}: expected a state of {n_state} tensor(s), got {len(state)}")
    for s in state:
        if s.shape != (B, H):
            raise ValueError(f"{kind}: each state tensor must be (B, H) = {(B, H)}, got {s.shape}")
    info = MaskInfo.make(xp, mask, T, B)
    if info is None:
        x_data = xp.ascontiguousarray(x.data)
    else:
        # the kernel, and dW_ih = dG.T @ x, then see zeros at padded steps; dx is zero
        # there already (the kernels zero those steps' gate gradients), so backward
        # needs no second select
        x_data = xp.where(info.valid, x.data, dtype.type(0))
    parents = (x, *state, *weights)
    training = is_grad_enabled() and any(p.requires_grad for p in parents)
    y, final, cache = kernel.forward(
        xp,
        x_data,
        tuple(s.data for s in state),
        w_ih.data,
        w_hh.data,
        None if b_ih is None else b_ih.data,
        None if b_hh is None else b_hh.data,
        info,
        reverse,
        training,
        **options,
    )
    if not training:
        return _wrap(y, dev), tuple(_wrap(f, dev) for f in final)
    need_dx = x.requires_grad
    has = (b_ih is not None, b_hh is not None)

    def backward(grads: list[Any]) -> list[Any]:
        dy, d_final = grads[0], tuple(grads[1:])
        dx, *rest = kernel.backward(cache, dy, d_final, need_dx)
        release = getattr(kernel, "release", None)
        if release is not None and not graph_is_retained():
            release(cache)  # the saved buffers go back to the scratch pool
        d_state, (dw_ih, dw_hh, db_ih, db_hh) = rest[:n_state], rest[n_state:]
        out = [dx, *d_state, dw_ih, dw_hh]
        if has[0]:
            out.append(db_ih)
        if has[1]:
            out.append(db_hh)
        return out

    # every kernel's gradients are new arrays: the weights take theirs without a copy
    outs = custom_multi([y, *final], parents, backward, device=dev, fresh_grads=True)
    return outs[0], tuple(outs[1:])
