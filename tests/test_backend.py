"""The backend seam: the test device's array type through every op, moves between
devices, default device and dtype selection, the cuda error without CuPy, seeded RNG."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend
from tinyseq.backend import TestArray
from tinyseq.tensor import custom_multi

F = ts.Tensor
SAMPLE_OPS: list[tuple[str, Callable[[F, F, F], F]]] = [
    ("add_sub_mul_div", lambda a, b, w: (a + b - a * b) / (b * b + 1.0)),
    ("scalars", lambda a, b, w: 2.0 - a * 3 + 1 / (b * b + 1) + a**2 + 2.0**b),
    ("pow_tensor", lambda a, b, w: (b * b + 1.0) ** a),
    ("neg_abs_relu", lambda a, b, w: -a.abs() + b.relu()),
    ("exp_log_tanh_sigmoid", lambda a, b, w: (a.exp() + 1).log() * b.tanh() + a.sigmoid()),
    ("matmul", lambda a, b, w: a @ w),
    ("matmul_vector", lambda a, b, w: a[0] @ w @ b[1]),
    ("sum_mean_max_min", lambda a, b, w: a.sum(axis=0) + b.mean(axis=0) + a.max(axis=0)
     + b.min(axis=(0,), keepdims=True)[0] + a.sum() + b.max()),
    ("reshape_transpose", lambda a, b, w: a.reshape(4, 3).T.swapaxes(0, 1).transpose()
     .unsqueeze(0).squeeze(0)),
    ("getitem", lambda a, b, w: a[:, ::2] + b[np.array([0, 0, 2])][:, np.array([1, 3])]),
    ("getitem_scalar", lambda a, b, w: a[1, 2] * b),
    ("getitem_mask", lambda a, b, w: a[a > 0]),
    ("concat_stack_split", lambda a, b, w: ts.concatenate(
        [ts.stack([a, b]).sum(axis=0), *ts.split(b, [1], axis=0)], axis=0)),
    ("where", lambda a, b, w: ts.where(a > b, a, 0.0) + ts.where(np.ones((3, 4), bool), b, a)),
    ("softmax_family", lambda a, b, w: ts.softmax(a) + ts.log_softmax(b, axis=0)
     + ts.logsumexp(a, axis=1, keepdims=True)),
    ("embedding", lambda a, b, w: ts.embedding(ts.tensor([0, 2, 2], device=a.device), a) * 2.0),
    ("dropout", lambda a, b, w: ts.dropout(a, 0.5)),
    ("clone_astype", lambda a, b, w: a.clone() + b.astype(ts.float64).astype(ts.float32)),
    ("custom_multi", lambda a, b, w: custom_multi(
        [a.data * 2, b.data * 3], [a, b], lambda gs: (gs[0] * 2, None))[0]),
]


@pytest.mark.parametrize("fn", [f for _, f in SAMPLE_OPS], ids=[n for n, _ in SAMPLE_OPS])
def test_testcpu_arrays_stay_testarrays(fn: Callable[[F, F, F], F]) -> None:
    rng = np.random.default_rng(0)
    a, b = (ts.tensor(rng.normal(size=(3, 4)).astype(np.float32), device="testcpu",
                      requires_grad=True) for _ in range(2))
    w = ts.tensor(rng.normal(size=(4, 4)).astype(np.float32), device="testcpu",
                  requires_grad=True)
    out = fn(a, b, w)
    assert type(out.data) is TestArray
    assert out.device.name == "testcpu" and out.dtype == np.float32
    g = ts.tensor(rng.normal(size=out.shape).astype(np.float32), device="testcpu")
    out.backward(g)
    grads = [t.grad for t in (a, b, w) if t.grad is not None]
    assert grads
    for grad in grads:
        assert type(grad.data) is TestArray
        assert grad.device.name == "testcpu" and grad.dtype == np.float32


def test_creation_on_testcpu() -> None:
    for t in (ts.zeros(2, 3, device="testcpu"), ts.ones(2, device="testcpu"),
              ts.full((2,), 3.0, device="testcpu"), ts.arange(4, device="testcpu"),
              ts.rand(2, device="testcpu"), ts.randn(2, device="testcpu"),
              ts.zeros_like(ts.ones(2, device="testcpu")), ts.tensor([1.0], device="testcpu"),
              ts.tensor(np.float32(1.0), device="testcpu")):
        assert type(t.data) is TestArray and t.device is ts.device("testcpu")


@pytest.mark.usefixtures("cpu_default")
def test_to_moves_and_gradient_flows_back() -> None:
    x = ts.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.to("testcpu")
    assert type(y.data) is TestArray and y.requires_grad
    z = (y * y).to("cpu")
    assert type(z.data) is np.ndarray and z.device.name == "cpu"
    z.sum().backward()
    assert x.grad is not None and type(x.grad.data) is np.ndarray
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])
    assert x.to("cpu") is x  # nothing to do: the same tensor


@pytest.mark.usefixtures("cpu_default")
def test_moves_copy_the_data() -> None:
    a = ts.tensor([1.0, 2.0])
    b = a.to("testcpu")
    c = b.to("cpu")
    b.data[0] = 7.0
    c.data[1] = 9.0
    assert a.tolist() == [1.0, 2.0]
    assert b.tolist() == [7.0, 2.0]
    assert c.tolist() == [1.0, 9.0]


def test_to_dtype_and_device_together() -> None:
    x = ts.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("testcpu", ts.float64)
    assert y.dtype == np.float64 and type(y.data) is TestArray
    y.sum().backward()
    assert x.grad is not None and x.grad.dtype == np.float32
    assert x.to(ts.float64).dtype == np.float64
    assert x.double().float().dtype == np.float32


def test_to_numpy_gives_plain_ndarrays() -> None:
    t = ts.ones(2, device="testcpu")
    host = backend.to_numpy(t.data)
    assert type(host) is np.ndarray
    assert type(t.numpy()) is np.ndarray
    assert backend.device_of(t.data).name == "testcpu"
    assert backend.device_of(np.ones(1)).name == "cpu"
    with pytest.raises(TypeError, match="not an array tinyseq knows: list"):
        backend.device_of([1.0])


@pytest.mark.usefixtures("cpu_default")
def test_device_context_manager_sets_the_default() -> None:
    assert ts.get_default_device().name == "cpu"
    with ts.device("testcpu") as dev:
        assert dev.name == "testcpu" and ts.get_default_device() is dev
        assert type(ts.zeros(2).data) is TestArray
        assert type(ts.tensor([1.0]).data) is TestArray
        with ts.device("cpu"):
            assert type(ts.ones(1).data) is np.ndarray
        assert ts.get_default_device() is dev
    assert ts.get_default_device().name == "cpu"
    assert type(ts.zeros(2).data) is np.ndarray


def test_set_default_device_and_aliases() -> None:
    ts.set_default_device("test")
    assert ts.get_default_device() is ts.device("testcpu")
    assert ts.device("numpy") is ts.device("cpu")
    assert str(ts.device("testcpu")) == "testcpu"
    assert repr(ts.device("cpu")) == "device(type='cpu')"


def test_env_var_selects_the_default_device() -> None:
    code = ("import tinyseq as ts; t = ts.ones(2); "
            "print(ts.get_default_device().name, type(t.data).__name__)")
    env = dict(os.environ, TINYSEQ_DEVICE="testcpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.split() == ["testcpu", "TestArray"]
    env["TINYSEQ_DEVICE"] = "nonsense"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "unknown device 'nonsense'" in bad.stderr


def test_float64_default_dtype() -> None:
    ts.set_default_dtype(ts.float64)
    assert ts.get_default_dtype() == np.float64
    for t in (ts.tensor([1.0]), ts.zeros(2), ts.ones(2), ts.full((2,), 1.0), ts.rand(2),
              ts.randn(2), ts.arange(2.0)):
        assert t.dtype == np.float64
    ts.set_default_dtype("float32")
    assert ts.zeros(1).dtype == np.float32
    with ts.default_dtype(ts.float64):
        assert ts.ones(1).dtype == np.float64
    assert ts.ones(1).dtype == np.float32
    with pytest.raises(ValueError, match="float32 or float64, got float16"):
        ts.set_default_dtype(np.float16)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None,
                    reason="CuPy is installed: the missing-CuPy error cannot be seen")
def test_cuda_without_cupy_gives_a_clear_error() -> None:
    assert not ts.cuda_is_available()
    with pytest.raises(RuntimeError, match="'cuda' needs CuPy.*install tinyseq\\[cuda"):
        ts.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="needs CuPy"):
        ts.ones(2).to("gpu")


def test_seeded_rng_is_reproducible_and_state_round_trips() -> None:
    ts.manual_seed(123)
    a = ts.randn(5).numpy()
    b = ts.rand(3, device="testcpu").numpy()
    ts.manual_seed(123)
    np.testing.assert_array_equal(ts.randn(5).numpy(), a)
    np.testing.assert_array_equal(ts.rand(3, device="testcpu").numpy(), b)
    state = ts.get_rng_state()
    restored = json.loads(json.dumps(state))  # JSON-able
    first = ts.randn(4).numpy()
    ts.randn(10)
    ts.set_rng_state(restored)
    np.testing.assert_array_equal(ts.randn(4).numpy(), first)
    ts.manual_seed(124)
    assert not np.array_equal(ts.randn(5).numpy(), a)


def test_same_seed_gives_same_numbers_on_every_device(device: str) -> None:
    ts.manual_seed(5)
    a = ts.randn(3, 2, device=device).numpy()
    ts.manual_seed(5)
    b = ts.randn(3, 2).numpy()
    np.testing.assert_array_equal(a, b)


def test_scatter_add_accumulates_repeats(device: str) -> None:
    dev = ts.device(device)
    target = dev.xp.zeros(3)
    backend.scatter_add(dev, target, dev.xp.asarray(np.array([0, 2, 2])), dev.xp.ones(3))
    np.testing.assert_array_equal(backend.to_numpy(target), [1.0, 0.0, 2.0])


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (33, 70), (100, 31)])
@pytest.mark.parametrize("dev", ["cpu", "testcpu"])
def test_transposed_copy_is_a_contiguous_transpose(shape: tuple[int, int], dev: str) -> None:
    xp = backend.get_device(dev).xp
    a = xp.asarray(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    t = backend.transposed_copy(xp, a)
    assert type(t) is type(a) and t.flags.c_contiguous and t.dtype == a.dtype
    np.testing.assert_array_equal(t, np.asarray(a).T)
    out = xp.empty(shape[::-1], dtype=np.float32)
    assert backend.transposed_copy(xp, a, out=out) is out
    np.testing.assert_array_equal(out, np.asarray(a).T)


@pytest.mark.parametrize("shape", [(7,), (7, 5), (7, 3, 2)])
def test_scatter_add_accumulates_repeated_rows_like_add_at(shape) -> None:
    # the CPU path sorts the index and sums each distinct row once; add.at is the reference
    rng = np.random.default_rng(3)
    index = rng.integers(0, shape[0], size=40)
    values = rng.normal(size=(40, *shape[1:]))
    start = rng.normal(size=shape)
    expected = start.copy()
    np.add.at(expected, index, values)
    got = start.copy()
    backend.scatter_add(backend.get_device("cpu"), got, index, values)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)
    untouched = np.setdiff1d(np.arange(shape[0]), index)
    np.testing.assert_array_equal(got[untouched], start[untouched])
