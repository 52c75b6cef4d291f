"""Fused sequence kernels in the GPU layout: per step one recurrent GEMM, one pointwise call.

The kernels the ``cuda`` device runs (cuDNN's scheme, Appleyard et al. 2016):

- the input product of all T steps is one GEMM, ``(T*B, I) @ W_ih.T`` plus the biases
  that are plain additions, before the time loop;
- per step, one recurrent GEMM ``h_prev @ W_hh.T`` (two for the lecture's GRU, whose
  reset gate acts before the product) and ONE call of the cell's pointwise function —
  a single fused kernel on ``cuda`` (:mod:`.cuda_pointwise`), the portable reference
  (:mod:`.pointwise`) elsewhere;
- backward, per step one pointwise call and ``dG_t @ W_hh``; the weight gradients are one
  GEMM each over all steps at the end (``dW_hh = dG.T @ H_prev``, ``dW_ih = dG.T @ X``).

Layout: pre-activations, activated gates and gate gradients are row-major (T, B, G*H)
in PyTorch's gate order, so every per-step slice is contiguous (what a raw CUDA kernel
and a strided cuBLAS call want); states are (T + 1, B, H) as in :mod:`.sequence`.

The time loops read and write only the arrays of one dict of buffers, so they can be
replayed: with :func:`.cuda_graph.use_cuda_graphs` on, the loop is captured once per
shape into a CUDA graph over static buffers and each call copies its inputs in and its
results out (:mod:`.cuda_graph`). The interface is :mod:`tinyseq.kernels`' (``forward``,
``backward`` on raw arrays), so :func:`tinyseq.fused.run` can use these kernels on any
device; the tests run them on ``cpu``/``testcpu`` against the NumPy kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import cuda_graph, pointwise
from .cuda_pointwise import CudaPointwise
from .gates import column_sums
from .sequence import MaskInfo, Steps
from .workspace import add_biases

__all__ = ["Ops", "StepwiseKernel", "STEPWISE_KERNELS", "is_cupy", "eager_ops", "pointwise_for"]

Array = Any
Buffers = dict[str, Array]


def is_cupy(xp: Any) -> bool:
    """True when ``xp`` is CuPy (decided by name: this module never imports cupy)."""
    return getattr(xp, "__name__", "") == "cupy"


class Ops:
    """What a time loop calls: ``gemm(a, b, out)`` (out = a @ b, 2-D) and ``pw``, the
    pointwise functions (the :mod:`.pointwise` module or a :class:`CudaPointwise`)."""

    __slots__ = ("xp", "pw", "gemm")

    def __init__(self, xp: Any, pw: Any, gemm: Callable[[Array, Array, Array], Any]) -> None:
        self.xp, self.pw, self.gemm = xp, pw, gemm


_cuda_pointwise: dict[int, CudaPointwise] = {}


def pointwise_for(xp: Any) -> Any:
    """The pointwise set for ``xp``: fused CUDA kernels for CuPy, else the reference."""
    if not is_cupy(xp):
        return pointwise
    pw = _cuda_pointwise.get(id(xp))
    if pw is None:
        pw = _cuda_pointwise[id(xp)] = CudaPointwise(xp)
    return pw


def eager_ops(xp: Any) -> Ops:
    """Ops for an ordinary (not captured) run: ``xp.matmul(out=)`` and ``pointwise_for``."""

    def gemm(a: Array, b: Array, out: Array) -> None:
        xp.matmul(a, b, out=out)

    return Ops(xp, pointwise_for(xp), gemm)


def _contiguous(xp: Any, a: Array) -> Array:
    return xp.ascontiguousarray(a)


class StepwiseKernel:
    """One cell kind's forward/backward over a whole sequence (see the module docstring).

    Subclasses give the gate count, the options, how biases and recurrent weights are
    prepared, the buffers, and the two time loops.
    """

    kind = ""
    gates = 1
    n_state = 1

    # ---- per-kind hooks ------------------------------------------------------------
    def options(self, **options: Any) -> tuple[Any, ...]:
        """Validated options as a hashable tuple (part of the graph-cache key)."""
        if options:
            raise TypeError(f"{self.kind} kernel takes no options, got {sorted(options)}")
        return ()

    def input_bias(
        self, xp: Any, b_ih: Array | None, b_hh: Array | None, opts: tuple[Any, ...]
    ) -> Array | None:
        """The (G*H,) bias added to the input product once (None: no bias)."""
        return add_biases(xp, b_ih, b_hh)

    def forward_weights(
        self, xp: Any, w_hh: Array, b_hh: Array | None, opts: tuple[Any, ...]
    ) -> Buffers:
        """Arrays the forward loop reads besides the inputs: by default W_hh.T (H, G*H)."""
        return {"w_t": _contiguous(xp, w_hh.T)}

    def backward_weights(self, xp: Any, w_hh: Array, opts: tuple[Any, ...]) -> Buffers:
        """Arrays the backward loop reads: by default W_hh (G*H, H)."""
        return {"w": _contiguous(xp, w_hh)}

    def forward_buffers(
        self, xp: Any, T: int, B: int, H: int, dt: Any, training: bool, opts: tuple[Any, ...]
    ) -> Buffers:
        G = self.gates * H
        bufs = {
            "hs": xp.empty((T + 1, B, H), dtype=dt),
            "gates": xp.empty((T if training else 1, B, G), dtype=dt),
            "rec": xp.empty((B, G), dtype=dt),
        }
        if self.n_state == 2:
            bufs["cs"] = xp.empty((T + 1, B, H), dtype=dt)
        return bufs

    def forward_loop(
        self, ops: Ops, b: Buffers, steps: Steps, training: bool, opts: tuple[Any, ...]
    ) -> None:
        raise NotImplementedError

    def backward_buffers(
        self, xp: Any, T: int, B: int, H: int, dt: Any, opts: tuple[Any, ...]
    ) -> Buffers:
        bufs = {
            "d": xp.empty((T, B, self.gates * H), dtype=dt),
            "dhr": xp.empty((2, B, H), dtype=dt),  # recurrent part, ping-pong
            "dh_dir": xp.empty((B, H), dtype=dt),
        }
        if self.n_state == 2:
            bufs["dc"] = xp.empty((B, H), dtype=dt)
        return bufs

    def backward_loop(self, ops: Ops, b: Buffers, steps: Steps, opts: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def saved(self, training: bool) -> tuple[str, ...]:
        """Names of the forward buffers backward needs (copied out in graph mode)."""
        names = ["hs", "gates"] if training else ["hs"]
        if self.n_state == 2:
            names.append("cs")
        return tuple(names)

    def gate_grads_for_input(self, b: Buffers) -> Array:
        """The (T, B, G*H) gradients W_ih sees (the same as W_hh's unless a cell differs)."""
        return b["d"]

    def weight_hh_grad(self, xp: Any, b: Buffers, h_in: Array, saved: Buffers) -> Array:
        """dW_hh (G*H, H) from all steps' gate gradients: one GEMM."""
        G = b["d"].shape[2]
        return xp.matmul(h_in.T, b["d"].reshape(-1, G)).T

    def bias_grads(self, xp: Any, b: Buffers) -> tuple[Array, Array]:
        """(db_ih, db_hh): by default both the column sums of the gate gradients."""
        G = b["d"].shape[2]
        db = column_sums(xp, b["d"].reshape(-1, G))
        return db, db

    # ---- the shared driver ---------------------------------------------------------
    def forward(
        self,
        xp: Any,
        x: Array,
        state: tuple[Array, ...],
        w_ih: Array,
        w_hh: Array,
        b_ih: Array | None,
        b_hh: Array | None,
        mask: MaskInfo | None,
        reverse: bool,
        training: bool,
        **options: Any,
    ) -> tuple[Array, tuple[Array, ...], Any]:
        """x (T, B, I), state (each (B, H)) -> (y (T, B, H), final state, cache|None)."""
        opts = self.options(**options)
        T, B, n_in = x.shape
        H = w_hh.shape[1]
        dt = x.dtype
        steps = Steps(T, reverse)
        G = self.gates * H
        # the input product of all steps: one GEMM (T*B, I) @ (I, G*H), plus the biases
        xw = xp.matmul(x.reshape(T * B, n_in), w_ih.T).reshape(T, B, G)
        bias = self.input_bias(xp, b_ih, b_hh, opts)
        if bias is not None:
            xp.add(xw, bias, out=xw)
        pad = _pad(xp, mask, T, B)
        inputs: Buffers = {"xw": xw, "pad": pad, "h0": state[0]}
        if self.n_state == 2:
            inputs["c0"] = state[1]
        inputs.update(self.forward_weights(xp, w_hh, b_hh, opts))
        key = ("forward", self.kind, opts, T, B, H, dt.str, reverse, training)

        def loop(ops: Ops, b: Buffers) -> None:
            self.forward_loop(ops, b, steps, training, opts)

        bufs, static = cuda_graph.execute(
            xp,
            key,
            lambda: self.forward_buffers(xp, T, B, H, dt, training, opts),
            loop,
            inputs,
        )
        saved = {n: (bufs[n].copy() if static else bufs[n]) for n in self.saved(training)}
        hs = saved["hs"]
        y = steps.outputs(hs)
        if mask is not None:
            y = mask.zero_padded(xp, y)
        final = [hs[steps.final_slot()].copy()]
        if self.n_state == 2:
            final.append(saved["cs"][steps.final_slot()].copy())
        if not training:
            return y, tuple(final), None
        has_bias = (b_ih is not None, b_hh is not None)
        cache = (xp, x, w_ih, w_hh, has_bias, saved, pad, mask, steps, opts)
        return y, tuple(final), cache

    def backward(
        self,
        cache: Any,
        dy: Array | None,
        d_state: tuple[Array | None, ...],
        need_dx: bool = True,
    ) -> tuple[Array | None, ...]:
        """Gradients (dx, *d_state0, dW_ih, dW_hh, db_ih, db_hh) from dy and d_state."""
        xp, x, w_ih, w_hh, has_bias, saved, pad, mask, steps, opts = cache
        T, B, n_in = x.shape
        H = w_hh.shape[1]
        dt = x.dtype
        if dy is None:
            dy = xp.zeros((T, B, H), dtype=dt)
        elif mask is not None:
            dy = mask.zero_padded(xp, dy)
        inputs: Buffers = {**saved, "pad": pad, "dy": _contiguous(xp, dy.astype(dt, copy=False))}
        for k in range(self.n_state):
            g = d_state[k]
            inputs[f"d{k}"] = xp.zeros((B, H), dtype=dt) if g is None else g.astype(dt)
        inputs.update(self.backward_weights(xp, w_hh, opts))
        key = ("backward", self.kind, opts, T, B, H, dt.str, steps.reverse)

        def loop(ops: Ops, b: Buffers) -> None:
            self.backward_loop(ops, b, steps, opts)

        b, static = cuda_graph.execute(
            xp, key, lambda: self.backward_buffers(xp, T, B, H, dt, opts), loop, inputs
        )
        # d_state0: the last step's recurrent part plus its direct part
        d_states: list[Array] = [b["dhr"][T % 2] + b["dh_dir"]]
        if self.n_state == 2:
            d_states.append(b["dc"].copy())
        hs = b["hs"]
        h_in = steps.inputs(hs).reshape(T * B, H)
        d_in = self.gate_grads_for_input(b)
        G = d_in.shape[2]
        flat_in = d_in.reshape(T * B, G)
        x2 = x.reshape(T * B, n_in)
        dx = xp.matmul(flat_in, w_ih).reshape(T, B, n_in) if need_dx else None
        dw_ih = xp.matmul(x2.T, flat_in).T
        dw_hh = self.weight_hh_grad(xp, b, h_in, saved)
        db_ih, db_hh = self.bias_grads(xp, b) if any(has_bias) else (None, None)
        return (dx, *d_states, dw_ih, dw_hh, db_ih, db_hh)


def _pad(xp: Any, mask: MaskInfo | None, T: int, B: int) -> Array:
    """(T, B, 1) bool, True at padded steps: all False without a mask (kernels read it
    unconditionally, so one captured graph serves masked and unmasked calls alike)."""
    if mask is None:
        return xp.zeros((T, B, 1), dtype=bool)
    return _contiguous(xp, mask.pad)


def _start_backward(xp: Any, b: Buffers, n_state: int) -> None:
    """Seed the loop's gradient buffers from the final-state gradients (inside the loop,
    so a captured graph does it too)."""
    xp.copyto(b["dhr"][0], b["d0"])
    b["dh_dir"].fill(0)
    if n_state == 2:
        xp.copyto(b["dc"], b["d1"])


class RNNKernel(StepwiseKernel):
    kind = "rnn"
    gates = 1

    def options(self, nonlinearity: str = "tanh", **rest: Any) -> tuple[Any, ...]:
        super().options(**rest)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"rnn nonlinearity must be one of ('tanh', 'relu'), got {nonlinearity!r}"
            )
        return (nonlinearity == "relu",)

    def forward_loop(
        self, ops: Ops, b: Buffers, steps: Steps, training: bool, opts: tuple[Any, ...]
    ) -> None:
        xp, pw, (relu,) = ops.xp, ops.pw, opts
        hs, rec, w_t = b["hs"], b["rec"], b["w_t"]
        xp.copyto(hs[steps.initial_slot()], b["h0"])
        for t in steps.order:
            hp = hs[t + steps.prev]
            ops.gemm(hp, w_t, rec)
            pw.rnn_forward(xp, b["xw"][t], rec, hp, b["pad"][t], hs[t + steps.new], relu)

    def saved(self, training: bool) -> tuple[str, ...]:
        return ("hs",)  # g'(a) comes back from h

    def backward_loop(self, ops: Ops, b: Buffers, steps: Steps, opts: tuple[Any, ...]) -> None:
        xp, pw, (relu,) = ops.xp, ops.pw, opts
        _start_backward(xp, b, 1)
        hs, dhr, d = b["hs"], b["dhr"], b["d"]
        for k, t in enumerate(steps.backward_order):
            pw.rnn_backward(
                xp, dhr[k % 2], b["dh_dir"], b["dy"][t], hs[t + steps.new], b["pad"][t], d[t], relu
            )
            ops.gemm(d[t], b["w"], dhr[(k + 1) % 2])


class LSTMKernel(StepwiseKernel):
    kind = "lstm"
    gates = 4
    n_state = 2

    def options(self, variant: str = "standard", **rest: Any) -> tuple[Any, ...]:
        super().options(**rest)
        if variant not in ("standard", "lecture"):
            raise ValueError(
                f"lstm variant must be one of ('standard', 'lecture'), got {variant!r}"
            )
        return (variant == "standard",)

    def forward_loop(
        self, ops: Ops, b: Buffers, steps: Steps, training: bool, opts: tuple[Any, ...]
    ) -> None:
        xp, pw, (standard,) = ops.xp, ops.pw, opts
        hs, cs, rec, w_t, gates = b["hs"], b["cs"], b["rec"], b["w_t"], b["gates"]
        xp.copyto(hs[steps.initial_slot()], b["h0"])
        xp.copyto(cs[steps.initial_slot()], b["c0"])
        for t in steps.order:
            hp, cp = hs[t + steps.prev], cs[t + steps.prev]
            ops.gemm(hp, w_t, rec)
            pw.lstm_forward(
                xp,
                b["xw"][t],
                rec,
                hp,
                cp,
                b["pad"][t],
                gates[t if training else 0],
                hs[t + steps.new],
                cs[t + steps.new],
                standard,
            )

    def backward_loop(self, ops: Ops, b: Buffers, steps: Steps, opts: tuple[Any, ...]) -> None:
        xp, pw, (standard,) = ops.xp, ops.pw, opts
        _start_backward(xp, b, 2)
        cs, dhr, d = b["cs"], b["dhr"], b["d"]
        for k, t in enumerate(steps.backward_order):
            pw.lstm_backward(
                xp,
                dhr[k % 2],
                b["dh_dir"],
                b["dy"][t],
                b["dc"],
                b["gates"][t],
                cs[t + steps.new],
                cs[t + steps.prev],
                b["pad"][t],
                d[t],
                standard,
            )
            ops.gemm(d[t], b["w"], dhr[(k + 1) % 2])


class SimpleGRUKernel(StepwiseKernel):
    kind = "simple_gru"
    gates = 2

    def forward_loop(
        self, ops: Ops, b: Buffers, steps: Steps, training: bool, opts: tuple[Any, ...]
    ) -> None:
        xp, pw = ops.xp, ops.pw
        hs, rec, w_t, gates = b["hs"], b["rec"], b["w_t"], b["gates"]
        xp.copyto(hs[steps.initial_slot()], b["h0"])
        for t in steps.order:
            hp = hs[t + steps.prev]
            ops.gemm(hp, w_t, rec)
            pw.simple_gru_forward(
                xp, b["xw"][t], rec, hp, b["pad"][t], gates[t if training else 0], hs[t + steps.new]
            )

    def backward_loop(self, ops: Ops, b: Buffers, steps: Steps, opts: tuple[Any, ...]) -> None:
        xp, pw = ops.xp, ops.pw
        _start_backward(xp, b, 1)
        hs, dhr, d = b["hs"], b["dhr"], b["d"]
        for k, t in enumerate(steps.backward_order):
            pw.simple_gru_backward(
                xp,
                dhr[k % 2],
                b["dh_dir"],
                b["dy"][t],
                b["gates"][t],
                hs[t + steps.prev],
                b["pad"][t],
                d[t],
            )
            ops.gemm(d[t], b["w"], dhr[(k + 1) % 2])


class GRUKernel(StepwiseKernel):
    """Both reset forms; ``reset_after=False`` runs two products and two kernels per step."""

    kind = "gru"
    gates = 3

    def options(self, reset_after: bool = True, **rest: Any) -> tuple[Any, ...]:
        super().options(**rest)
        return (bool(reset_after),)

    def input_bias(
        self, xp: Any, b_ih: Array | None, b_hh: Array | None, opts: tuple[Any, ...]
    ) -> Array | None:
        if not opts[0] or b_hh is None:
            return add_biases(xp, b_ih, b_hh)  # reset before: b_hn is added after W_hn
        # reset after: b_hn sits inside r * (W_hn h + b_hn); fold only b_hr and b_hz
        H = b_hh.shape[0] // 3
        bias = xp.zeros_like(b_hh) if b_ih is None else b_ih.copy()
        bias[: 2 * H] += b_hh[: 2 * H]
        return bias

    def forward_weights(
        self, xp: Any, w_hh: Array, b_hh: Array | None, opts: tuple[Any, ...]
    ) -> Buffers:
        H = w_hh.shape[1]
        if opts[0]:
            b_hn = xp.zeros((H,), dtype=w_hh.dtype) if b_hh is None else b_hh[2 * H :]
            return {"w_t": _contiguous(xp, w_hh.T), "b_hn": _contiguous(xp, b_hn)}
        return {
            "w_rz_t": _contiguous(xp, w_hh[: 2 * H].T),
            "w_n_t": _contiguous(xp, w_hh[2 * H :].T),
        }

    def backward_weights(self, xp: Any, w_hh: Array, opts: tuple[Any, ...]) -> Buffers:
        if opts[0]:
            return {"w": _contiguous(xp, w_hh)}
        H = w_hh.shape[1]
        return {"w_rz": _contiguous(xp, w_hh[: 2 * H]), "w_n": _contiguous(xp, w_hh[2 * H :])}

    def forward_buffers(
        self, xp: Any, T: int, B: int, H: int, dt: Any, training: bool, opts: tuple[Any, ...]
    ) -> Buffers:
        bufs = super().forward_buffers(xp, T, B, H, dt, training, opts)
        # e: W_hn h + b_hn (reset after) or r * h_prev (reset before), saved for backward
        bufs["e"] = xp.empty((T if training else 1, B, H), dtype=dt)
        if not opts[0]:
            del bufs["rec"]
            bufs["rec_rz"] = xp.empty((B, 2 * H), dtype=dt)
            bufs["rec_n"] = xp.empty((B, H), dtype=dt)
        return bufs

    def saved(self, training: bool) -> tuple[str, ...]:
        return ("hs", "gates", "e") if training else ("hs",)

    def forward_loop(
        self, ops: Ops, b: Buffers, steps: Steps, training: bool, opts: tuple[Any, ...]
    ) -> None:
        xp, pw, (after,) = ops.xp, ops.pw, opts
        hs, gates, e = b["hs"], b["gates"], b["e"]
        xp.copyto(hs[steps.initial_slot()], b["h0"])
        for t in steps.order:
            hp, hn = hs[t + steps.prev], hs[t + steps.new]
            s = t if training else 0
            if after:
                ops.gemm(hp, b["w_t"], b["rec"])
                pw.gru_forward(
                    xp, b["xw"][t], b["rec"], b["b_hn"], hp, b["pad"][t], gates[s], e[s], hn
                )
            else:
                ops.gemm(hp, b["w_rz_t"], b["rec_rz"])
                pw.gru_forward_rz(xp, b["xw"][t], b["rec_rz"], hp, gates[s], e[s])
                ops.gemm(e[s], b["w_n_t"], b["rec_n"])
                pw.gru_forward_n(xp, b["xw"][t], b["rec_n"], hp, b["pad"][t], gates[s], hn)

    def backward_buffers(
        self, xp: Any, T: int, B: int, H: int, dt: Any, opts: tuple[Any, ...]
    ) -> Buffers:
        bufs = super().backward_buffers(xp, T, B, H, dt, opts)
        if opts[0]:
            bufs["dx"] = xp.empty((T, B, 3 * H), dtype=dt)  # the input side's gradients
        else:
            bufs["drh"] = xp.empty((B, H), dtype=dt)  # gradient of r * h_prev
        return bufs

    def backward_loop(self, ops: Ops, b: Buffers, steps: Steps, opts: tuple[Any, ...]) -> None:
        xp, pw, (after,) = ops.xp, ops.pw, opts
        _start_backward(xp, b, 1)
        hs, dhr, d, gates = b["hs"], b["dhr"], b["d"], b["gates"]
        H = hs.shape[2]
        for k, t in enumerate(steps.backward_order):
            hp = hs[t + steps.prev]
            if after:
                pw.gru_backward(
                    xp,
                    dhr[k % 2],
                    b["dh_dir"],
                    b["dy"][t],
                    gates[t],
                    b["e"][t],
                    hp,
                    b["pad"][t],
                    d[t],
                    b["dx"][t],
                )
                ops.gemm(d[t], b["w"], dhr[(k + 1) % 2])
            else:
                pw.gru_backward_a(
                    xp, dhr[k % 2], b["dh_dir"], b["dy"][t], gates[t], hp, b["pad"][t], d[t]
                )
                ops.gemm(d[t][:, 2 * H :], b["w_n"], b["drh"])
                pw.gru_backward_b(xp, b["drh"], gates[t], hp, d[t], b["dh_dir"])
                ops.gemm(d[t][:, : 2 * H], b["w_rz"], dhr[(k + 1) % 2])

    def gate_grads_for_input(self, b: Buffers) -> Array:
        return b["dx"] if "dx" in b else b["d"]

    def weight_hh_grad(self, xp: Any, b: Buffers, h_in: Array, saved: Buffers) -> Array:
        if "dx" in b:
            return super().weight_hh_grad(xp, b, h_in, saved)
        # reset before: W_hn multiplies r * h_prev, the other blocks h_prev
        d = b["d"]
        T, B, G = d.shape
        H = G // 3
        flat = d.reshape(T * B, G)
        out = xp.empty((H, G), dtype=d.dtype)
        # assigned, not out=: a product into a column slice is not portable to every xp
        out[:, : 2 * H] = xp.matmul(h_in.T, flat[:, : 2 * H])
        out[:, 2 * H :] = xp.matmul(saved["e"].reshape(T * B, H).T, flat[:, 2 * H :])
        return out.T

    def bias_grads(self, xp: Any, b: Buffers) -> tuple[Array, Array]:
        if "dx" not in b:
            return super().bias_grads(xp, b)
        G = b["d"].shape[2]
        return column_sums(xp, b["dx"].reshape(-1, G)), column_sums(xp, b["d"].reshape(-1, G))


STEPWISE_KERNELS: dict[str, StepwiseKernel] = {
    k.kind: k for k in (RNNKernel(), SimpleGRUKernel(), GRUKernel(), LSTMKernel())
}
