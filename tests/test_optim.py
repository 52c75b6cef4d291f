"""Optimizers, clipping and schedules against torch.optim / torch.nn.utils."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend, optim

TOL = {np.float64: 1e-10, np.float32: 1e-5}

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1,
                 "initial_accumulator_value": 0.3, "eps": 1e-6}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1, "centered": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3, "amsgrad": True}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CONFIGS]


@pytest.fixture
def torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


def host(t: ts.Tensor) -> np.ndarray:
    return backend.to_numpy(t.data)


def make_params(dtype: Any, device: str = "cpu") -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]


def grads_for(step: int, dtype: Any) -> list[np.ndarray]:
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]


def run_ours(name: str, kw: dict[str, Any], dtype: Any, device: str, steps: int) -> list[list[np.ndarray]]:
    params = [ts.tensor(a, device=device, requires_grad=True) for a in make_params(dtype)]
    opt = getattr(optim, name)(params, **kw)
    history = []
    for s in range(steps):
        for p, g in zip(params, grads_for(s, dtype)):
            p.grad = ts.tensor(g, device=device)
        opt.step()
        history.append([host(p).copy() for p in params])
    return history


def run_torch(torch, name: str, kw: dict[str, Any], dtype: Any, steps: int) -> list[list[np.ndarray]]:  # type: ignore[no-untyped-def]
    params = [torch.tensor(a, requires_grad=True) for a in make_params(dtype)]
    opt = getattr(torch.optim, name)(params, **kw)
    history = []
    for s in range(steps):
        for p, g in zip(params, grads_for(s, dtype)):
            p.grad = torch.tensor(g)
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_steps_match_torch(torch, device: str, name: str, kw: dict[str, Any], dtype: Any) -> None:  # type: ignore[no-untyped-def]
    ours = run_ours(name, kw, dtype, device, steps=4)
    ref = run_torch(torch, name, kw, dtype, steps=4)
    for step, (a, b) in enumerate(zip(ours, ref)):
        for pa, pb in zip(a, b):
            assert pa.dtype == dtype
            np.testing.assert_allclose(pa, pb, rtol=TOL[dtype], atol=TOL[dtype], err_msg=f"step {step + 1}")


def test_defaults_match_torch(torch) -> None:  # type: ignore[no-untyped-def]
    p = [ts.zeros(2, requires_grad=True)]
    tp = [torch.zeros(2, requires_grad=True)]
    for name in ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW"):
        ours = getattr(optim, name)(p).defaults
        ref = getattr(torch.optim, name)(tp).defaults
        for key, value in ours.items():
            assert ref[key] == value, (name, key)


def test_param_groups_match_torch(torch) -> None:  # type: ignore[no-untyped-def]
    a, b = make_params(np.float64)
    ours = [ts.tensor(a, requires_grad=True), ts.tensor(b, requires_grad=True)]
    ref = [torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)]
    opt = optim.SGD([{"params": [ours[0]]}, {"params": ours[1], "lr": 0.5}], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([{"params": [ref[0]]}, {"params": ref[1], "lr": 0.5}], lr=0.1, momentum=0.9)
    for s in range(3):
        for p, tp, g in zip(ours, ref, grads_for(s, np.float64)):
            p.grad, tp.grad = ts.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(ours, ref):
        np.testing.assert_allclose(host(p), tp.detach().numpy(), rtol=1e-12)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


def test_parameters_without_grad_are_skipped_and_zero_grad() -> None:
    a, b = ts.ones(2, requires_grad=True), ts.ones(2, requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = ts.ones(2)
    opt.step()
    assert np.all(host(b) == 1) and np.all(host(a) < 1)
    assert b not in opt.state
    opt.zero_grad(set_to_none=False)
    assert a.grad is not None and not np.any(host(a.grad))
    opt.zero_grad()
    assert a.grad is None


def test_closure_and_validation_errors() -> None:
    w = ts.ones(1, requires_grad=True)
    opt = optim.SGD([w], lr=0.5)

    def closure() -> ts.Tensor:
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    assert float(host(opt.step(closure))) == 1.0
    assert host(w)[0] == 0.0
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="momentum > 0 and dampening = 0"):
        optim.SGD([w], nesterov=True)
    with pytest.raises(ValueError, match="invalid learning rate: -1"):
        optim.Adam([w], lr=-1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([{"params": [w]}, {"params": [w]}])
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(w)


# ---- state_dict -------------------------------------------------------------------------------
def _jsonable_except_arrays(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable_except_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable_except_arrays(v) for v in obj]
    if isinstance(obj, np.ndarray):
        assert type(obj) is np.ndarray  # host numpy, whatever the device
        return None
    return obj


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_state_dict_round_trip_continues_identically(device: str, name: str, kw: dict[str, Any]) -> None:
    def fresh() -> tuple[list[ts.Tensor], optim.Optimizer]:
        ps = [ts.tensor(a, device=device, requires_grad=True) for a in make_params(np.float64)]
        return ps, getattr(optim, name)(ps, **kw)

    def step(ps: list[ts.Tensor], opt: optim.Optimizer, s: int) -> None:
        for p, g in zip(ps, grads_for(s, np.float64)):
            p.grad = ts.tensor(g, device=device)
        opt.step()

    ps, opt = fresh()
    for s in range(2):
        step(ps, opt, s)
    saved = opt.state_dict()
    json.dumps(_jsonable_except_arrays(saved))  # everything but the arrays is JSON
    values = [host(p).copy() for p in ps]
    for s in range(2, 4):
        step(ps, opt, s)
    ps2, opt2 = fresh()
    for p, v in zip(ps2, values):
        p.data[...] = v if device == "cpu" else p.device.xp.asarray(v)
    # a JSON round trip turns int keys into strings and tuples into lists: still loads
    opt2.load_state_dict(json.loads(json.dumps(saved, default=lambda a: a.tolist())) | {"state": saved["state"]})
    for s in range(2, 4):
        step(ps2, opt2, s)
    for a, b in zip(ps, ps2):
        np.testing.assert_array_equal(host(a), host(b))


def test_load_state_dict_rejects_mismatch_and_changes_nothing() -> None:
    ps = [ts.ones(3, requires_grad=True)]
    adam = optim.Adam(ps, lr=0.1)
    ps[0].grad = ts.ones(3)
    adam.step()
    before = adam.state_dict()
    bad = adam.state_dict()
    bad["state"][0]["exp_avg"] = np.zeros(4)
    bad["param_groups"][0]["lr"] = 5.0
    with pytest.raises(ValueError, match=r"exp_avg expected shape \(3,\), got \(4,\)"):
        adam.load_state_dict(bad)
    assert adam.param_groups[0]["lr"] == 0.1
    np.testing.assert_array_equal(adam.state_dict()["state"][0]["exp_avg"], before["state"][0]["exp_avg"])
    sgd = optim.SGD(ps, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"expected keys \['momentum_buffer'\], got \['exp_avg'"):
        sgd.load_state_dict(before)
    with pytest.raises(ValueError, match="expected 1 parameters, got 2"):
        adam.load_state_dict({"state": {}, "param_groups": [{**before["param_groups"][0], "params": [0, 1]}]})


def test_optimizer_follows_model_moved_after_creation() -> None:
    model = ts.nn.Linear(3, 2)
    opt = optim.Adam(model.parameters(), lr=0.1)
    model(ts.randn(4, 3)).sum().backward()
    opt.step()
    model.to("testcpu")
    model.zero_grad()
    model(ts.randn(4, 3, device="testcpu")).sum().backward()
    opt.step()  # state arrays follow the parameters to the new device
    assert backend.device_of(opt.state[model.weight]["exp_avg"]).name == "testcpu"


# ---- clipping ---------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_norm_matches_torch(torch, device: str, norm_type: float, max_norm: float, dtype: Any) -> None:  # type: ignore[no-untyped-def]
    grads = grads_for(0, dtype)
    ours = [ts.zeros(*g.shape, dtype=dtype, device=device, requires_grad=True) for g in grads]
    ref = [torch.zeros(*g.shape, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True) for g in grads]
    for p, tp, g in zip(ours, ref, grads):
        p.grad, tp.grad = ts.tensor(g, device=device), torch.tensor(g)
    no_grad = ts.zeros(2, requires_grad=True)  # parameters without .grad are ignored
    total = optim.clip_grad_norm_([*ours, no_grad], max_norm, norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(float(total_t), rel=TOL[dtype])
    for p, tp in zip(ours, ref):
        np.testing.assert_allclose(host(p.grad), tp.grad.numpy(), rtol=TOL[dtype], atol=TOL[dtype])


def test_clip_grad_value_matches_torch(torch, device: str) -> None:  # type: ignore[no-untyped-def]
    g = grads_for(1, np.float64)[0]
    p = ts.zeros(*g.shape, dtype=np.float64, device=device, requires_grad=True)
    tp = torch.zeros(*g.shape, dtype=torch.float64, requires_grad=True)
    p.grad, tp.grad = ts.tensor(g, device=device), torch.tensor(g)
    optim.clip_grad_value_(p, 0.3)
    torch.nn.utils.clip_grad_value_(tp, 0.3)
    np.testing.assert_array_equal(host(p.grad), tp.grad.numpy())


def test_clip_grad_norm_nonfinite() -> None:
    p = ts.zeros(2, requires_grad=True)
    p.grad = ts.tensor([np.inf, 1.0])
    assert optim.clip_grad_norm_([p], 1.0) == np.inf
    p.grad = ts.tensor([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="total norm of order 2.0 of the gradients is inf"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert optim.clip_grad_norm_([ts.zeros(1, requires_grad=True)], 1.0) == 0.0


# ---- schedules --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,kw",
    [
        ("StepLR", {"step_size": 3, "gamma": 0.5}),
        ("ExponentialLR", {"gamma": 0.9}),
        ("CosineAnnealingLR", {"T_max": 4}),
        ("CosineAnnealingLR", {"T_max": 3, "eta_min": 0.01}),
    ],
)
def test_schedules_match_torch(torch, name: str, kw: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    p, tp = ts.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    q, tq = ts.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.3}], lr=0.1)
    topt = torch.optim.SGD([{"params": [tp]}, {"params": [tq], "lr": 0.3}], lr=0.1)
    sched = getattr(optim.lr_scheduler, name)(opt, **kw)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    ours, ref = [sched.get_last_lr()], [tsched.get_last_lr()]
    for _ in range(10):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        ours.append(sched.get_last_lr())
        ref.append(tsched.get_last_lr())
    assert ours == ref  # the same floating-point sequence, not just close
    assert [g["lr"] for g in opt.param_groups] == ref[-1]


def test_schedule_state_dict_resumes() -> None:
    opt = optim.SGD([ts.zeros(1, requires_grad=True)], lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))
    expected = []
    for _ in range(4):
        sched.step()
        expected.append(sched.get_last_lr())
    opt2 = optim.SGD([ts.zeros(1, requires_grad=True)], lr=1.0)
    sched2 = optim.lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = state["_last_lr"][0]
    got = []
    for _ in range(4):
        sched2.step()
        got.append(sched2.get_last_lr())
    assert got == expected
    with pytest.raises(ValueError, match="step_size must be a positive integer, got 0"):
        optim.lr_scheduler.StepLR(opt, step_size=0)
