"""The gradient checker itself: it passes right gradients and catches wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.tensor import custom, custom_multi
from tinyseq.testing import GradcheckError, gradcheck, numerical_grad


def _x(*shape: int, device: str = "cpu", seed: int = 0) -> ts.Tensor:
    data = np.random.default_rng(seed).normal(size=shape)
    return ts.tensor(data, dtype=ts.float64, device=device, requires_grad=True)


def test_passes_a_right_gradient(device: str) -> None:
    x, w = _x(3, 4, device=device), _x(4, 2, device=device, seed=1)
    assert gradcheck(lambda a, b: (a @ b).tanh(), [x, w], names=["x", "w"])


def test_catches_a_wrong_gradient_and_names_the_input(device: str) -> None:
    x, w = _x(3, device=device), _x(3, device=device, seed=1)

    def wrong(a: ts.Tensor, b: ts.Tensor) -> ts.Tensor:
        # d(a*b)/db should be a; this backward gives 1.1 * a
        return custom(a.data * b.data, [a, b], lambda g: (g * b.data, 1.1 * g * a.data))

    with pytest.raises(GradcheckError, match=r"gradient of w \(shape \(3,\)\) is wrong at index"):
        gradcheck(wrong, [x, w], names=["x", "w"])


def test_catches_a_missing_gradient() -> None:
    x, w = _x(2), _x(2, seed=1)
    only_x = lambda a, b: custom(a.data * b.data, [a, b], lambda g: (g * b.data, None))  # noqa: E731
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(only_x, [x, w])


def test_needs_float64_inputs() -> None:
    with pytest.raises(TypeError, match="float64.*input 0 is float32"):
        gradcheck(lambda a: a * 2, [ts.ones(2, requires_grad=True)])


def test_output_must_depend_on_an_input() -> None:
    x = _x(2)
    with pytest.raises(GradcheckError, match="does not depend"):
        gradcheck(lambda a: ts.ones(2, dtype=ts.float64), [x])


def test_tuple_outputs_none_and_integer_side_outputs() -> None:
    x = _x(2, 3)

    def fn(a: ts.Tensor) -> tuple[ts.Tensor | None, ...]:
        return a.exp(), None, a > 0, a.sum(axis=1)

    assert gradcheck(fn, [x])


def test_multi_output_custom_op_with_unused_output() -> None:
    x = _x(3)

    def fn(a: ts.Tensor) -> ts.Tensor:
        y1, y2 = custom_multi([a.data * 2, a.data**2], [a],
                              lambda gs: ((0 if gs[0] is None else gs[0] * 2)
                                          + (0 if gs[1] is None else gs[1] * 2 * a.data),))
        return y2

    assert gradcheck(fn, [x])


def test_non_contiguous_inputs_are_perturbed_in_place() -> None:
    base = np.random.default_rng(0).normal(size=(4, 3))
    x = ts.Tensor(base.T, requires_grad=True)  # a transposed view: not C-contiguous
    assert not x.data.flags["C_CONTIGUOUS"]
    assert gradcheck(lambda a: (a * a).sum(axis=0), [x])


def test_inputs_without_grad_are_left_alone() -> None:
    x = _x(3)
    c = ts.tensor(np.array([1.0, 2.0, 3.0]), dtype=ts.float64)
    assert gradcheck(lambda a, b: a * b, [x, c])
    assert c.grad is None


def test_numerical_grad_of_a_known_function() -> None:
    arr = np.array([1.0, -2.0, 0.5])
    grad = numerical_grad(lambda: float((arr**3).sum()), arr)
    np.testing.assert_allclose(grad, 3 * arr**2, rtol=1e-6)
    np.testing.assert_array_equal(arr, [1.0, -2.0, 0.5])  # restored
