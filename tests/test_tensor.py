"""Tensor construction, autograd semantics, error messages, and edge cases of the ops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.tensor import custom, custom_multi

ROOT = Path(__file__).resolve().parents[1]


# ---- construction --------------------------------------------------------------------
def test_python_floats_get_the_default_dtype_and_ints_stay_ints() -> None:
    assert ts.tensor([1.0, 2.0]).dtype == np.float32
    assert ts.tensor(2.5).dtype == np.float32
    assert ts.tensor([1, 2]).dtype == np.int64
    assert ts.tensor([1.0], dtype=ts.float64).dtype == np.float64
    ts.set_default_dtype(ts.float64)
    assert ts.tensor([1.0]).dtype == np.float64
    assert ts.arange(3.0).dtype == np.float64
    assert ts.arange(3).dtype == np.int64


@pytest.mark.parametrize("value", [np.float64(2.5), np.float32(2.5), np.int64(3), np.bool_(True)])
def test_numpy_scalars_become_0d_arrays(value: np.generic, device: str) -> None:
    t = ts.Tensor(value, device=device)
    assert t.shape == () and t.ndim == 0
    assert t.dtype == value.dtype
    assert type(t.data) is type(ts.zeros(1, device=device).data)
    assert t.item() == value.item()


def test_tensor_copies_but_Tensor_shares() -> None:
    data = np.ones(3, dtype=np.float32)
    copied = ts.tensor(data)
    shared = ts.Tensor(data)
    data[0] = 5
    assert copied.numpy()[0] == 1 and shared.numpy()[0] == 5


def test_bad_data_gives_a_clear_error() -> None:
    with pytest.raises(TypeError, match="list data.*ts.stack"):
        ts.tensor([ts.tensor(1.0), ts.tensor(2.0)])
    with pytest.raises(TypeError, match="str data of numpy dtype <U3"):
        ts.tensor("abc")
    with pytest.raises(TypeError, match="NoneType"):
        ts.tensor(None)


def test_requires_grad_only_for_floats() -> None:
    with pytest.raises(TypeError, match="floating.*int64"):
        ts.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="floating.*int64"):
        ts.tensor([1, 2]).requires_grad_()


@pytest.mark.usefixtures("cpu_default")
def test_repr_shows_device_dtype_and_grad() -> None:
    assert repr(ts.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    r = repr(ts.tensor([1.0], dtype=ts.float64, device="testcpu", requires_grad=True))
    assert r == "tensor([1.], device='testcpu', dtype=float64, requires_grad=True)"
    assert repr(ts.tensor(2.5)) == "tensor(2.5)"
    # continuation lines line up under the first row, as in PyTorch
    assert repr(ts.tensor([[1.0, 2.0], [3.0, 4.0]])) == "tensor([[1., 2.],\n        [3., 4.]])"


def test_item_len_and_conversions() -> None:
    t = ts.tensor([[1.0, 2.0, 3.0]])
    assert len(t) == 1 and t.size == 3 and t.shape == (1, 3)
    assert t.tolist() == [[1.0, 2.0, 3.0]]
    assert float(t[0, 1]) == 2.0 and int(t[0, 2]) == 3
    with pytest.raises(ValueError, match=r"one-element.*\(1, 3\)"):
        t.item()
    with pytest.raises(TypeError, match="0-d"):
        len(ts.tensor(1.0))
    with pytest.raises(RuntimeError, match="detach"):
        ts.ones(2, requires_grad=True).numpy()


def test_format_and_iteration() -> None:
    loss = ts.tensor(1.23456)
    assert f"{loss:.2f}" == "1.23"
    assert f"{ts.ones(2)}" == repr(ts.ones(2))
    x = ts.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    rows = list(x)
    assert [r.tolist() for r in rows] == [[1.0, 2.0], [3.0, 4.0]]
    (rows[0] * 2 + rows[1]).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 2.0], [1.0, 1.0]])  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="0-d"):
        list(loss)


def test_comparisons_give_bool_tensors_without_grad() -> None:
    a = ts.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for out, expected in [(a < 2, [1, 0, 0]), (a <= 2, [1, 1, 0]), (a > 2, [0, 0, 1]),
                          (a >= 2, [0, 1, 1]), (a == 2, [0, 1, 0]), (a != 2, [1, 0, 1]),
                          (a == ts.tensor([1.0, 0.0, 3.0]), [1, 0, 1])]:
        assert out.dtype == np.bool_ and not out.requires_grad
        np.testing.assert_array_equal(out.numpy(), np.array(expected, dtype=bool))


# ---- operands that are not tensors -------------------------------------------------------
def test_numpy_scalar_operand_keeps_float32() -> None:
    a = ts.tensor([1.0, 2.0], requires_grad=True)
    for out in (a * np.float64(2.0), a + np.float64(1.0), a - np.float64(1.0),
                a / np.float64(2.0), a ** np.float64(2.0), np.float64(2.0) * a):
        assert out.dtype == np.float32


@pytest.mark.usefixtures("cpu_default")
def test_numpy_array_operand_broadcasts_with_the_right_gradient() -> None:
    a = ts.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = a * np.full((2, 3), 2.0, dtype=np.float32) + np.ones((2, 3), dtype=np.float32)
    assert y.shape == (2, 3)
    y.sum().backward()
    assert a.grad is not None and a.grad.shape == (3,)
    np.testing.assert_allclose(a.grad.numpy(), [4.0, 4.0, 4.0])


def test_division_by_zero_scalar_gives_inf_like_numpy() -> None:
    with np.errstate(divide="ignore"):
        out = ts.tensor([1.0, -1.0]) / 0
    np.testing.assert_array_equal(out.numpy(), [np.inf, -np.inf])


# ---- edge cases found in the ops ---------------------------------------------------------
def test_sum_and_max_of_0d_tensor() -> None:
    t = ts.tensor(3.0, requires_grad=True)
    for out in (t.sum(), t.sum(axis=0), t.sum(axis=-1), t.max(), t.mean(axis=0), t.max(axis=0)):
        assert out.shape == () and out.item() == 3.0
    (t.sum(axis=0) + t.max(axis=-1)).backward()
    assert t.grad is not None and t.grad.item() == 2.0 and t.grad.dtype == np.float32
    with pytest.raises(ValueError, match="axis 1 is out of range.*0 dimensions"):
        t.sum(axis=1)


def test_max_shares_gradient_between_ties_like_torch_amax() -> None:
    torch = pytest.importorskip("torch")
    data = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], dtype=np.float32)
    for axis in (None, 1, 0):
        a = ts.tensor(data, requires_grad=True)
        ar = torch.tensor(data, requires_grad=True)
        out = a.max() if axis is None else a.max(axis=axis)
        ref = ar.amax() if axis is None else ar.amax(dim=axis)
        np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())
        out.sum().backward()
        ref.sum().backward()
        assert a.grad is not None and a.grad.dtype == np.float32
        np.testing.assert_allclose(a.grad.numpy(), ar.grad.numpy(), rtol=1e-6)


def test_pow_gradients_at_the_edges_match_torch() -> None:
    torch = pytest.importorskip("torch")
    base = np.array([-2.0, 0.0, 3.0])
    for p in (0, 0.0, 1, 2, 3, 0.5, -1):
        a = ts.tensor(base, requires_grad=True)
        ar = torch.tensor(base, requires_grad=True)
        with np.errstate(all="ignore"):
            (a**p).sum().backward()
        (ar**p).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), ar.grad.numpy(), equal_nan=True)  # type: ignore[union-attr]
    # tensor exponent: zero base with a non-negative exponent has a zero exponent gradient
    b = np.array([0.0, 0.0, 2.0])
    e = np.array([0.0, 2.0, 1.5])
    a, x = ts.tensor(b, requires_grad=True), ts.tensor(e, requires_grad=True)
    ar, xr = torch.tensor(b, requires_grad=True), torch.tensor(e, requires_grad=True)
    (a**x).sum().backward()
    (ar**xr).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), ar.grad.numpy())  # type: ignore[union-attr]
    np.testing.assert_allclose(x.grad.numpy(), xr.grad.numpy())  # type: ignore[union-attr]


def test_getitem_with_index_on_another_device() -> None:
    a = ts.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], device="testcpu", requires_grad=True)
    idx = ts.tensor([2, 0, 2])  # on cpu
    out = a[idx]
    assert type(out.data) is type(a.data)
    np.testing.assert_array_equal(out.detach().numpy(), [[5, 6], [1, 2], [5, 6]])
    out.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [[1, 1], [0, 0], [2, 2]])  # type: ignore[union-attr]
    b = ts.tensor([1.0, 2.0, 3.0])
    assert b[ts.tensor([True, False, True], device="testcpu")].tolist() == [1.0, 3.0]


def test_split_by_sections_and_indices() -> None:
    a = ts.arange(10.0)
    assert [p.tolist() for p in ts.split(a, [3, 7])] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    assert [p.shape for p in ts.split(a, np.int64(5))] == [(2,)] * 5
    assert [p.shape for p in ts.split(ts.ones(2, 6), 3, axis=-1)] == [(2, 2)] * 3
    with pytest.raises(ValueError, match="size 10 does not divide into 3"):
        ts.split(a, 3)
    with pytest.raises(ValueError, match="positive.*0"):
        ts.split(a, 0)


def test_where_with_python_bool_condition() -> None:
    a = ts.tensor([1.0, 2.0], requires_grad=True)
    b = ts.tensor([5.0, 6.0], requires_grad=True)
    out = ts.where(True, a, b) * 2 + ts.where(False, a, b)
    out.sum().backward()
    np.testing.assert_array_equal(out.detach().numpy(), [7.0, 10.0])
    np.testing.assert_array_equal(a.grad.numpy(), [2.0, 2.0])  # type: ignore[union-attr]
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="at least one of a, b"):
        ts.where(True, 1.0, 2.0)


def test_expand_dims_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"axis 3 is out of range.*1 dimensions.*-2 to 1"):
        ts.expand_dims(ts.ones(2), 3)


# ---- autograd semantics ---------------------------------------------------------------
def test_gradients_accumulate_over_backward_calls() -> None:
    x = ts.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3 + 2, 3 + 4])  # type: ignore[union-attr]


def test_no_grad_enable_grad_and_set_grad_enabled() -> None:
    x = ts.ones(2, requires_grad=True)
    with ts.no_grad():
        assert not ts.is_grad_enabled()
        y = x * 2
        with ts.enable_grad():
            z = x * 2
        assert not ts.is_grad_enabled()
    assert ts.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad

    @ts.no_grad()
    def infer(t: ts.Tensor) -> ts.Tensor:
        assert not ts.is_grad_enabled()
        return t * 2

    assert not infer(x).requires_grad
    assert ts.is_grad_enabled()
    assert (x * 2).requires_grad

    # as a plain call it switches at once (as in PyTorch); as a context it restores
    ts.set_grad_enabled(False)
    assert not (x * 2).requires_grad
    ts.set_grad_enabled(True)
    with ts.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert ts.is_grad_enabled()

    @ts.set_grad_enabled(False)
    def decorated() -> bool:
        return ts.is_grad_enabled()

    assert ts.is_grad_enabled()  # decorating does not switch anything
    assert decorated() is False and ts.is_grad_enabled()


def test_no_grad_restores_mode_after_an_exception() -> None:
    with pytest.raises(KeyError), ts.no_grad():
        raise KeyError("x")
    assert ts.is_grad_enabled()


def test_detach_cuts_the_graph_and_shares_data() -> None:
    x = ts.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    y = (x * d).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])  # type: ignore[union-attr]
    e = x.detach()
    e.data[0] = 9.0
    assert x.detach().numpy()[0] == 9.0


def test_requires_grad_and_retain_grad() -> None:
    x = ts.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    h = (x * 3).retain_grad()
    k = x * 4
    (h * h + k).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), [6.0, 12.0])  # type: ignore[union-attr]
    assert k.grad is None
    np.testing.assert_allclose(x.grad.numpy(), [18 + 4, 36 + 4])  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="leaf"):
        h.requires_grad_(False)


def test_backward_with_gradient_for_non_scalars() -> None:
    x = ts.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * x
    g = np.array([[1.0, 0.5], [0.0, 2.0]])  # float64 gradient for a float32 tensor
    y.backward(g)
    assert x.grad is not None and x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy() * g)
    x.grad = None
    (x * 2).backward(ts.ones(2, 2))
    (x * 2).backward([[1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 2), 4.0))


def test_backward_errors() -> None:
    x = ts.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"one-element.*\(2, 3\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"shape \(3, 2\).*\(2, 3\)"):
        (x * 2).backward(np.ones((3, 2), dtype=np.float32))
    with pytest.raises(RuntimeError, match="does not require grad"):
        ts.ones(2).sum().backward()


def test_second_backward_needs_retain_graph() -> None:
    x = ts.tensor([1.0, 2.0], requires_grad=True)
    y = (x.tanh() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()
    x.grad = None
    z = (x.tanh() * x).sum()
    z.backward(retain_graph=True)
    first = x.grad.numpy().copy()  # type: ignore[union-attr]
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)  # type: ignore[union-attr]
    # a new graph built on a freed one fails the same way
    with pytest.raises(RuntimeError, match="second time"):
        (z * 2).backward()


def test_diamond_graph_adds_both_paths() -> None:
    x = ts.tensor([0.5, -1.0], requires_grad=True)
    a = x.tanh()
    b = a * 2.0
    c = a.exp()
    y = (b * c + a).sum()  # a reaches y along three paths
    y.backward()
    t = np.tanh(x.detach().numpy().astype(np.float64))
    da = 2 * np.exp(t) + 2 * t * np.exp(t) + 1
    np.testing.assert_allclose(x.grad.numpy(), da * (1 - t**2), rtol=1e-5)  # type: ignore[union-attr]
    x.grad = None
    (x * x).sum().backward()  # the same tensor twice in one op
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -2.0])  # type: ignore[union-attr]


def test_deep_chain_has_no_recursion_limit() -> None:
    x = ts.tensor([1.0], dtype=ts.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.001
    y.backward(np.ones(1))
    np.testing.assert_allclose(x.grad.numpy(), [1.0001**10_000], rtol=1e-9)  # type: ignore[union-attr]
    z = x
    for _ in range(10_000):
        z = z * 1.0  # a graph that is never walked must also free without recursion
    del y, z


def test_gradient_of_unused_input_stays_none() -> None:
    x = ts.ones(2, requires_grad=True)
    w = ts.ones(2, requires_grad=True)
    (x * 2).sum().backward()
    assert w.grad is None


def test_custom_op_is_one_node() -> None:
    x = ts.tensor([1.0, 2.0], requires_grad=True)
    w = ts.tensor([3.0, 4.0], requires_grad=True)
    calls = []

    def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(g.copy())
        return g * w.data, g * x.data

    y = custom(x.data * w.data, [x, w], backward)
    assert y.requires_grad and not y.is_leaf
    (y * 2).sum().backward()
    assert len(calls) == 1
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 8.0])  # type: ignore[union-attr]
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 4.0])  # type: ignore[union-attr]
    with ts.no_grad():
        assert not custom(x.data, [x], backward).requires_grad


def test_custom_backward_must_return_one_gradient_per_input() -> None:
    x = ts.ones(2, requires_grad=True)
    y = custom(x.data * 2, [x, x], lambda g: (g,))
    with pytest.raises(RuntimeError, match="1 gradients for 2 inputs"):
        y.sum().backward()


def test_custom_multi_shares_one_backward_and_allows_partial_use() -> None:
    x = ts.tensor([1.0, 2.0], requires_grad=True)
    seen: list[list[object]] = []

    def backward(grads: list[np.ndarray | None]) -> tuple[np.ndarray]:
        seen.append([g is not None for g in grads])
        g1, g2 = grads
        total = np.zeros(2, dtype=np.float32)
        if g1 is not None:
            total = total + g1 * 2
        if g2 is not None:
            total = total + g2 * 3
        return (total,)

    y1, y2 = custom_multi([x.data * 2, x.data * 3], [x], backward)
    (y1.sum() + (y2 * 2).sum()).backward()
    assert seen == [[True, True]]  # one call for both outputs
    np.testing.assert_allclose(x.grad.numpy(), [2 + 2 * 3, 2 + 2 * 3])  # type: ignore[union-attr]
    x.grad = None
    y1, y2 = custom_multi([x.data * 2, x.data * 3], [x], backward)
    y2.sum().backward()  # only the second output used
    assert seen[-1] == [False, True]
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])  # type: ignore[union-attr]
    with ts.no_grad():
        outs = custom_multi([x.data, x.data], [x], backward)
    assert not any(o.requires_grad for o in outs)


# ---- error messages ---------------------------------------------------------------------
def test_matmul_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        ts.ones(2, 3) @ ts.ones(4, 5)
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        ts.ones(3) @ ts.ones(2)
    with pytest.raises(ValueError, match="at least one dimension"):
        ts.tensor(2.0) @ ts.ones(2)


@pytest.mark.usefixtures("cpu_default")
def test_mixing_devices_names_both() -> None:
    a, b = ts.ones(2), ts.ones(2, device="testcpu")
    for op in (lambda: a + b, lambda: a * b, lambda: a - b, lambda: a / b, lambda: a @ b,
               lambda: ts.concatenate([a, b]), lambda: ts.where(a > 0, a, b),
               lambda: a + b.data, lambda: a**b):
        with pytest.raises(RuntimeError, match="different devices: cpu and testcpu"):
            op()


@pytest.mark.usefixtures("cpu_default")
def test_mixing_dtypes_names_both() -> None:
    a, b = ts.ones(2), ts.ones(2, dtype=ts.float64)
    for op in (lambda: a + b, lambda: a * b, lambda: b - a, lambda: a @ b,
               lambda: ts.stack([a, b]), lambda: a + np.ones(2)):
        with pytest.raises(TypeError, match="different dtypes: float(32|64) and float(64|32)"):
            op()


def test_reshape_error_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3\) \(6 elements\) into shape \(4, 2\)"):
        ts.ones(2, 3).reshape(4, 2)


def test_other_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"concatenate along axis 0.*\(2, 3\), \(2, 4\)"):
        ts.concatenate([ts.ones(2, 3), ts.ones(2, 4)])
    with pytest.raises(ValueError, match=r"axis 0.*\(2, 3\), \(3,\).*number of dimensions"):
        ts.concatenate([ts.ones(2, 3), ts.ones(3)])
    with pytest.raises(ValueError, match=r"same shape.*\(2,\).*\(3,\)"):
        ts.stack([ts.ones(2), ts.ones(3)])
    with pytest.raises(ValueError, match="squeeze axis 0 of size 2"):
        ts.ones(2, 1).squeeze(0)
    with pytest.raises(ValueError, match="axis 2 is out of range.*2 dimensions"):
        ts.ones(2, 1).squeeze(2)
    assert ts.ones(2, 1).squeeze(-1).shape == (2,)
    assert ts.tensor(1.0).squeeze(0).shape == ()


def test_unknown_device_name() -> None:
    with pytest.raises(ValueError, match=r"unknown device 'tpu'.*'cpu'.*'testcpu'"):
        ts.ones(2, device="tpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        ts.ones(2).to("gpu0")


# ---- the overhead benchmark runs ---------------------------------------------------------
def test_overhead_benchmark_quick_smoke() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--quick", "--ops", "200"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert "tinyseq:" in run.stdout and " ms" in run.stdout


def test_overhead_benchmark_without_torch() -> None:
    # a None entry in sys.modules makes "import torch" fail, as if it were not installed
    code = ("import sys, runpy; sys.modules['torch'] = None; "
            "sys.argv = ['overhead.py', '--quick', '--ops', '50']; "
            f"runpy.run_path({str(ROOT / 'benchmarks' / 'overhead.py')!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "tinyseq:" in run.stdout and "PyTorch not installed" in run.stdout
    assert "ratio" not in run.stdout


UNARY_REFERENCE = {
    "tanh": np.tanh,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "exp": np.exp,
    "log": np.log,
    "relu": lambda v: max(v, 0.0),
    "abs": np.abs,
    "sqrt": np.sqrt,
}


@pytest.mark.parametrize("name", list(UNARY_REFERENCE))
@pytest.mark.parametrize("dev", ["cpu", "testcpu"])
def test_unary_ops_on_0d_tensors(name: str, dev: str) -> None:
    # NumPy ufuncs return scalars for 0-d input: in-place tricks must not break on them
    x = ts.tensor(0.7, dtype=ts.float64, requires_grad=True, device=dev)
    y = getattr(x, name)()
    assert y.shape == ()
    y.backward()
    f, eps = UNARY_REFERENCE[name], 1e-6
    assert x.grad is not None
    np.testing.assert_allclose(float(y.data), f(0.7), rtol=1e-12)
    np.testing.assert_allclose(float(x.grad.data), (f(0.7 + eps) - f(0.7 - eps)) / (2 * eps),
                               rtol=1e-6)


def test_graph_is_retained_tells_a_backward_function_about_its_pass() -> None:
    from tinyseq.tensor import graph_is_retained

    seen: list[bool] = []

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        seen.append(graph_is_retained())
        return (g * 2.0,)

    x = ts.tensor([1.0, 2.0], requires_grad=True)
    y = custom(x.data * 2.0, [x], backward).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert seen == [True, False]
    assert not graph_is_retained()  # outside any backward pass
