"""tinyseq: a small tensor/autograd engine and recurrent-network framework.

    import tinyseq as ts
    x = ts.tensor([[1.0, 2.0]], requires_grad=True)
    y = ts.tanh(ts.nn.Linear(2, 3)(x)).sum()
    y.backward()
"""

import importlib
import types
from typing import TYPE_CHECKING

from . import backend, data, decoding, metrics, models, nn, optim
from .backend import (
    Device,
    cuda_is_available,
    default_dtype,
    device,
    float32,
    float64,
    get_default_device,
    get_default_dtype,
    get_rng_state,
    manual_seed,
    set_default_device,
    set_default_dtype,
    set_rng_state,
)
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .creation import arange, full, ones, ones_like, rand, randn, zeros, zeros_like
from .ctc import ctc_loss
from .functional import dropout, embedding, log_softmax, logsumexp, softmax
from .hookspecs import hookimpl
from .losses import binary_cross_entropy_with_logits, cross_entropy, mse_loss
from .nn.recurrent import Recurrent, detach_state
from .tensor import (
    Tensor,
    abs,
    add,
    as_tensor,
    concatenate,
    div,
    enable_grad,
    exp,
    expand_dims,
    is_grad_enabled,
    log,
    matmul,
    max,
    mean,
    mul,
    neg,
    no_grad,
    pow,
    relu,
    reshape,
    set_grad_enabled,
    sigmoid,
    split,
    squeeze,
    stack,
    sub,
    sum,
    swapaxes,
    tanh,
    tensor,
    transpose,
    where,
)
from .trainer import Trainer
from .weights import load_weights, save_weights

if TYPE_CHECKING:  # for type checkers; at run time __getattr__ imports them on first use
    from . import cell as cell
    from . import cli as cli
    from . import config as config
    from . import diagnostics as diagnostics
    from . import fused as fused
    from . import interop as interop
    from . import kernels as kernels
    from . import onnx as onnx
    from . import registry as registry
    from . import tasks as tasks
    from . import testing as testing

cat = concatenate

# Submodules imported on first attribute access, so that ``ts.testing.gradcheck`` works
# after a bare ``import tinyseq`` without every ``import tinyseq`` paying for them (cell
# and registry are loaded by the layers already; listed so the names are promised).
_LAZY_SUBMODULES = (
    "cell", "cli", "config", "diagnostics", "fused", "interop", "kernels", "onnx", "registry",
    "tasks", "testing",
)


def __getattr__(name: str) -> types.ModuleType:
    """Import a lazy submodule on first use (PEP 562); other names are AttributeErrors."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the not yet imported submodules included."""
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))

__version__ = "0.1.0"

__all__ = [
    "backend",
    "cell",
    "nn",
    "optim",
    "registry",
    "Device",
    "device",
    "cuda_is_available",
    "default_dtype",
    "float32",
    "float64",
    "get_default_device",
    "set_default_device",
    "get_default_dtype",
    "set_default_dtype",
    "manual_seed",
    "get_rng_state",
    "set_rng_state",
    "Tensor",
    "tensor",
    "as_tensor",
    "zeros",
    "ones",
    "zeros_like",
    "ones_like",
    "full",
    "arange",
    "rand",
    "randn",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "matmul",
    "exp",
    "log",
    "tanh",
    "sigmoid",
    "relu",
    "abs",
    "sum",
    "mean",
    "max",
    "reshape",
    "transpose",
    "swapaxes",
    "expand_dims",
    "squeeze",
    "concatenate",
    "cat",
    "stack",
    "split",
    "where",
    "softmax",
    "log_softmax",
    "logsumexp",
    "embedding",
    "dropout",
    "cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "ctc_loss",
    "save_checkpoint",
    "load_checkpoint",
    "save_weights",
    "load_weights",
    "Checkpoint",
    "CheckpointError",
    "hookimpl",
    "Recurrent",
    "detach_state",
    "data",
    "decoding",
    "metrics",
    "models",
    "Trainer",
    "__version__",
]
