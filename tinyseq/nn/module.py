"""Module and Parameter: the containers every layer and cell is built from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .. import backend
from ..backend import Device
from ..tensor import Tensor, _move, _wrap

__all__ = ["Parameter", "Module", "ModuleList"]


class Parameter(Tensor):
    """A tensor that a :class:`Module` owns and an optimizer updates (requires grad)."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        if isinstance(data, Tensor):
            super().__init__(data.data, requires_grad=requires_grad)
        else:
            super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers: holds parameters, buffers and submodules in order.

    Subclasses set attributes in ``__init__`` and implement ``forward``; calling the
    module calls ``forward``.
    """

    training: bool
    _parameters: dict[str, Parameter | None]
    _buffers: dict[str, Tensor | None]
    _modules: dict[str, Module]

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ---- attribute bookkeeping ------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                f"setting attribute {name!r}"
            )
        if name in self._buffers and (
            value is None or (isinstance(value, Tensor) and not isinstance(value, Parameter))
        ):
            # assigning a tensor to a buffer's name replaces the buffer, as in PyTorch
            self._buffers[name] = value
            object.__setattr__(self, name, value)
            return
        if name in self._parameters and not (value is None or isinstance(value, Parameter)):
            raise TypeError(
                f"cannot assign {type(value).__name__} as parameter {name!r} of "
                f"{type(self).__name__}: expected a Parameter or None (to change the values, "
                f"assign to .{name}.data)"
            )
        was_parameter = name in self._parameters
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter) or (value is None and was_parameter):
            self._parameters[name] = value  # None keeps an optional parameter's slot
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: Tensor | None) -> None:
        """A tensor saved in ``state_dict`` and moved by ``to()`` but not trained."""
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"buffer {name!r} must be a Tensor or None, got {type(value).__name__}")
        for table in (self._parameters, self._modules):
            table.pop(name, None)
        object.__setattr__(self, name, value)
        self._buffers[name] = value

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        """Add a parameter (or None, for an absent optional one such as a bias)."""
        object.__setattr__(self, name, value)
        if value is not None:
            self._parameters[name] = value

    # ---- traversal ---------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) for this module and every submodule, each once."""
        seen: set[int] = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return int(builtin_sum(p.size for p in self.parameters()))

    # ---- modes, devices, gradients ----------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active); returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode (dropout off); returns self."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``.grad``."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data[...] = 0

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, target: str | Device | Any = None, dtype: Any = None) -> Module:
        """Move every parameter and buffer in place to a device and/or float dtype.

        ``model.to("cuda")``, ``model.to(ts.float64)``. Parameters stay the same objects,
        so an optimizer made before the move still holds them.
        """
        if target is not None and not isinstance(target, (str, Device)):
            dtype, target = target, None
        dev = backend.get_device(target) if target is not None else None
        for t in list(self.parameters()) + [b for _, b in self.named_buffers()]:
            if dev is not None and dev is not t.device:
                t.data = _move(t.data, t.device, dev)
                t.device = dev
                if t.grad is not None:
                    t.grad = _wrap(_move(t.grad.data, t.grad.device, dev), dev)
            if dtype is not None and t.dtype.kind == "f" and t.dtype != np.dtype(dtype):
                t.data = t.data.astype(dtype)
                if t.grad is not None:
                    t.grad.data = t.grad.data.astype(dtype)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    def double(self) -> Module:
        return self.to(backend.float64)

    def float(self) -> Module:
        return self.to(backend.float32)

    @property
    def device(self) -> Device:
        """The device of the first parameter (the default device if there is none)."""
        for p in self.parameters():
            return p.device
        return backend.get_default_device()

    def apply(self, fn: Callable[[Module], None]) -> Module:
        for m in self.modules():
            fn(m)
        return self

    # ---- state ---------------------------------------------------------------------
    def _state_tensors(self) -> dict[str, Tensor]:
        # PyTorch's order: each module's parameters, then its buffers, then its children;
        # a tensor shared by two modules appears under both names
        out: dict[str, Tensor] = {}
        for mod_name, mod in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    out[prefix + name] = p
            for name, b in mod._buffers.items():
                if b is not None:
                    out[prefix + name] = b
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer by dotted name, as host NumPy copies."""
        return {
            name: np.array(backend.to_numpy(t.data), copy=True)
            for name, t in self._state_tensors().items()
        }

    def _check_state_dict(
        self, state: Mapping[str, Any], strict: bool = True
    ) -> tuple[list[str], dict[str, np.ndarray]]:
        """(problems, host arrays by name) for loading ``state``; changes nothing."""
        targets = self._state_tensors()
        problems = []
        if strict:
            missing = [k for k in targets if k not in state]
            unexpected = [k for k in state if k not in targets]
            if missing:
                problems.append(f"missing keys: {missing}")
            if unexpected:
                problems.append(f"unexpected keys: {unexpected}")
        arrays = {}
        for name, value in state.items():
            if name not in targets:
                continue
            raw = value.data if isinstance(value, Tensor) else value
            try:
                arr = np.asarray(backend.to_numpy(raw) if hasattr(raw, "shape") else raw)
            except (TypeError, ValueError) as err:
                problems.append(f"{name}: not an array ({err})")
                continue
            want = targets[name].shape
            if tuple(arr.shape) != want:
                problems.append(f"{name}: expected shape {want}, got {tuple(arr.shape)}")
            elif arr.dtype.kind not in "biuf":
                problems.append(f"{name}: expected a numeric array, got dtype {arr.dtype}")
            arrays[name] = arr
        return problems, arrays

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy values into parameters and buffers; checks names and shapes first.

        state: name -> array (NumPy, any device's array, or Tensor), as from
        :meth:`state_dict`. Nothing changes unless every entry fits (missing and
        unexpected names are errors when ``strict``). Values keep each tensor's dtype
        and device.
        """
        problems, arrays = self._check_state_dict(state, strict)
        if problems:
            raise ValueError(
                f"load_state_dict into {type(self).__name__} failed: " + "; ".join(problems)
            )
        targets = self._state_tensors()
        converted = {}
        for name, arr in arrays.items():  # convert everything before assigning anything
            t = targets[name]
            host = arr.astype(t.dtype, copy=True)
            converted[name] = host if t.device.name == "cpu" else t.device.xp.asarray(host)
        for name, data in converted.items():
            targets[name].data = data

    # ---- calling and printing -------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """Settings shown between the parentheses of ``repr``."""
        return ""

    def __repr__(self) -> str:
        # PyTorch's layout: settings, then one indented line per child module
        lines = [line for line in self.extra_repr().split("\n") if line]
        extra_only = len(lines) <= 1
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
            extra_only = False
        head = f"{type(self).__name__}("
        if extra_only:
            return head + (lines[0] if lines else "") + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


builtin_sum = sum


class ModuleList(Module):
    """A list of modules whose parameters are registered (indexable, iterable)."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())
