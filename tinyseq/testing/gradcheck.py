"""Central-difference gradient checking in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap

__all__ = ["gradcheck", "numerical_grad", "GradcheckError"]


class GradcheckError(AssertionError):
    """Autograd and finite differences disagree; the message says where and by how much."""


def _scalar_output(fn: Callable[..., Any], inputs: Sequence[Tensor], weights: list[Any]) -> Any:
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total = None
    for o, w in zip(outs, weights):
        if o is None or w is None:
            continue
        term = (o * _wrap(w, o.device)).sum()
        total = term if total is None else total + term
    return total


def numerical_grad(
    fn: Callable[[], float], array: Any, eps: float = 1e-6
) -> np.ndarray:  # type: ignore[type-arg,unused-ignore]
    """d fn() / d array by central differences, perturbing ``array`` in place."""
    grad = np.zeros(array.shape, dtype=np.float64)
    # index the array itself: reshape(-1) of a non-contiguous array is a copy
    for i in np.ndindex(*array.shape):
        orig = array[i].item()
        array[i] = orig + eps
        plus = fn()
        array[i] = orig - eps
        minus = fn()
        array[i] = orig
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    names: Sequence[str] | None = None,
    seed: int = 0,
) -> bool:
    """Check autograd's gradients of ``fn(*inputs)`` against central differences.

    inputs: float64 tensors; those with requires_grad are checked. fn may return a
    tensor or a tuple of tensors; a fixed random weighting reduces them to a scalar so
    every output element is tested. Raises :class:`GradcheckError` naming the input,
    the worst element, and both values; returns True when all agree.
    """
    for i, t in enumerate(inputs):
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs; input {i} is {t.dtype}")
    labels = list(names) if names is not None else [f"input {i}" for i in range(len(inputs))]
    rng = np.random.default_rng(seed)
    probe = fn(*inputs)
    probes = probe if isinstance(probe, (tuple, list)) else (probe,)
    weights: list[Any] = []
    for o in probes:
        if o is None or o.dtype.kind != "f":  # e.g. an integer or boolean side output
            weights.append(None)
            continue
        w = rng.standard_normal(o.shape)
        weights.append(w if o.device.name == "cpu" else o.device.xp.asarray(w))
    for t in inputs:
        t.grad = None
    total = _scalar_output(fn, inputs, weights)
    if total is None or not total.requires_grad:
        raise GradcheckError("the output does not depend on any input that requires grad")
    total.backward()

    def value() -> float:
        from ..tensor import no_grad

        with no_grad():
            out = _scalar_output(fn, inputs, weights)
        return float(out.item())

    for t, label in zip(inputs, labels):
        if not t.requires_grad:
            continue
        analytic = backend.to_numpy(t.grad.data) if t.grad is not None else np.zeros(t.shape)
        host_view = t.data
        numeric = numerical_grad(value, host_view, eps)
        diff = np.abs(analytic - numeric)
        bound = atol + rtol * np.abs(numeric)
        if np.any(diff > bound):
            worst = np.unravel_index(int(np.argmax(diff - bound)), diff.shape)
            raise GradcheckError(
                f"gradient of {label} (shape {t.shape}) is wrong at index "
                f"{tuple(int(i) for i in worst)}: autograd {analytic[worst]:.10g}, "
                f"central difference {numeric[worst]:.10g} "
                f"(max abs error {diff.max():.3g}, atol {atol}, rtol {rtol})"
            )
    return True
