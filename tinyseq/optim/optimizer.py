"""Optimizer base class: parameter groups, per-parameter state, state_dict.

Updates happen in place on ``p.data`` with the parameter's own array module, so the
same code runs on every device. Semantics follow ``torch.optim``: ``params`` is an
iterable of tensors or of dicts (parameter groups, each with its own settings).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Array, Tensor, enable_grad, no_grad

__all__ = ["Optimizer"]


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


class Optimizer:
    """Base class. Subclasses set defaults and implement ``_update`` for one parameter.

    Attributes: ``param_groups`` (list of dicts with ``"params"`` and settings),
    ``state`` (parameter -> dict of arrays and numbers), ``defaults``.
    """

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params must be an iterable of Tensors or of dicts, got a single Tensor; "
                "pass [tensor] or model.parameters()"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a group: ``{"params": [...], "lr": ...}``; missing settings get defaults."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"a parameter group must be a dict with 'params', got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed from others)")
        existing = {id(q) for g in self.param_groups for q in g["params"]}
        if len({id(p) for p in params}) != len(params) or existing & {id(p) for p in params}:
            raise ValueError("some parameters appear more than once in the parameter groups")
        new = {k: v for k, v in group.items() if k != "params"}
        for key, value in self.defaults.items():
            new.setdefault(key, value)
        new["params"] = params
        self.param_groups.append(new)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``.grad`` (set to None, or fill with zeros)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state.get(p)
                    if state is None:
                        state = self.state[p] = self._init_state(p, group)
                    else:
                        _follow(p, state)
                    self._update(p, p.grad.data, state, group)
        return loss

    # ---- what a subclass provides -------------------------------------------------------
    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """The state of a parameter before its first update."""
        return {}

    def _state_keys(self, group: Mapping[str, Any]) -> set[str]:
        """The keys a parameter's state has after its first update, given its group."""
        return set()

    def _update(self, p: Tensor, grad: Array, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {name: array | number}}, "param_groups": [...]}``.

        As in PyTorch, parameters are numbered in group order; arrays are host NumPy
        copies and everything else is a JSON-able number, bool, string or list.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            saved = {k: _jsonable(v) for k, v in group.items() if k != "params"}
            saved["params"] = ids
            groups.append(saved)
        state: dict[int, dict[str, Any]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {
                        k: np.array(backend.to_numpy(v), copy=True) if _is_array(v) else v
                        for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def _check_state_dict(self, state_dict: Mapping[str, Any]) -> list[str]:
        """Every reason ``state_dict`` cannot be loaded (empty when it can)."""
        problems: list[str] = []
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            return ["expected a dict with 'state' and 'param_groups'"]
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            return [
                f"expected {len(self.param_groups)} parameter group(s), got {len(saved_groups)}"
            ]
        params: list[tuple[Tensor, Mapping[str, Any]]] = []
        for i, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved.get("params", ())) != len(mine["params"]):
                problems.append(
                    f"parameter group {i}: expected {len(mine['params'])} parameters, got "
                    f"{len(saved.get('params', ()))}"
                )
            for p in mine["params"]:
                params.append((p, {**mine, **{k: v for k, v in saved.items() if k != "params"}}))
        if problems:
            return problems
        for key, entry in state_dict["state"].items():
            try:
                i = int(key)
                p, group = params[i]
            except (ValueError, IndexError):
                problems.append(f"state entry {key!r} names no parameter (0..{len(params) - 1})")
                continue
            want = self._state_keys(group)
            if set(entry) != want:
                problems.append(
                    f"state of parameter {i}: expected keys {sorted(want)}, got {sorted(entry)}"
                )
            for name, value in entry.items():
                if _is_array(value) and tuple(value.shape) != p.shape:
                    problems.append(
                        f"state of parameter {i}: {name} expected shape {p.shape}, got "
                        f"{tuple(value.shape)}"
                    )
        return problems

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore settings and state saved by :meth:`state_dict`; checks everything first.

        Arrays are copied onto each parameter's device and dtype. Nothing changes if
        the saved state does not fit this optimizer's parameters.
        """
        problems = self._check_state_dict(state_dict)
        if problems:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict failed: " + "; ".join(problems)
            )
        flat = [p for group in self.param_groups for p in group["params"]]
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, entry in state_dict["state"].items():
            p = flat[int(key)]
            new_state[p] = {k: _to_param(v, p) if _is_array(v) else v for k, v in entry.items()}
        for mine, saved in zip(self.param_groups, state_dict["param_groups"]):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = copy.deepcopy(v)
        self.state = new_state


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _to_param(value: Any, p: Tensor) -> Array:
    """A copy of ``value`` on ``p``'s device with ``p``'s dtype."""
    host = np.array(backend.to_numpy(value), dtype=p.dtype, copy=True)
    return host if p.device.name == "cpu" else p.device.xp.asarray(host)


def _follow(p: Tensor, state: dict[str, Any]) -> None:
    # a model moved with .to() after the optimizer was made: move its state along
    for key, value in state.items():
        if _is_array(value) and (
            backend.device_of(value) is not p.device or value.dtype != p.dtype
        ):
            state[key] = _to_param(value, p)


def lerp_(start: Array, end: Array, weight: float) -> Array:
    """start += weight * (end - start) in place, with PyTorch's rounding; returns start."""
    if weight < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)
    return start


def params_of(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    """A list from one tensor or an iterable of them."""
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)
