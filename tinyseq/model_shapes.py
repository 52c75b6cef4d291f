"""The parameter shapes a model config implies, found without allocating them.

    parameter_shapes("language_model", config)    # {"embedding.weight": (V, E), ...}
    config_mismatch(kind, config, stored_shapes)  # None, or what in the config disagrees

A checkpoint stores a model's config next to its weights; a file that lies about its
sizes (``hidden_size=8000`` over 128-unit weights) must be refused before a model of the
claimed size is built. Every dimension is a whole-number affine function of the sizes
in the config, so a few tiny builds find that function for any model kind and any
plugin cell, and the claimed config is checked against the stored shapes from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import backend
from .models import build_model

__all__ = ["parameter_shapes", "config_mismatch"]

_PROBE = 8  # every size of a probe build is a multiple of this (cells may want even sizes)
Shapes = dict[str, tuple[int, ...]]


def _size_keys(config: dict[str, Any]) -> list[str]:
    """Config keys that give a dimension: ints named *_size, *_dim or num_* (not num_layers)."""
    return [k for k, v in config.items()
            if isinstance(v, int) and not isinstance(v, bool) and k != "num_layers"
            and (k.endswith(("_size", "_dim")) or k.startswith("num_"))]


@dataclass
class _ShapeFit:
    """State-dict shapes as affine functions of the sizes: base shapes (every size at
    ``_PROBE``) and slopes[size key][name][axis], the growth per unit of that size."""

    base: Shapes
    slopes: dict[str, dict[str, list[int]]]

    def at(self, sizes: dict[str, int]) -> Shapes:
        return {n: tuple(d0 + sum(s[n][i] * (sizes[k] - _PROBE) for k, s in self.slopes.items())
                         for i, d0 in enumerate(dims))
                for n, dims in self.base.items()}


def _fit_shapes(kind: str, config: dict[str, Any]) -> _ShapeFit | None:
    keys = _size_keys(config)
    base = {k: _PROBE for k in keys}

    def shapes_at(sizes: dict[str, int]) -> Shapes:
        model = build_model(kind, {**config, **sizes})
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    rng = backend.get_rng_state()
    try:
        with backend.get_device("cpu"):
            at_base = shapes_at(base)
            stepped = {k: shapes_at({**base, k: 2 * _PROBE}) for k in keys}
            check = {k: 3 * _PROBE for k in keys}
            at_check = shapes_at(check)
    except Exception:  # a config the probe sizes do not suit: no prediction
        return None
    finally:
        backend.set_rng_state(rng)
    slopes: dict[str, dict[str, list[int]]] = {}
    for k, shapes in stepped.items():
        if shapes.keys() != at_base.keys() or any(len(shapes[n]) != len(at_base[n]) for n in shapes):
            return None  # the names or ranks depend on a size
        slopes[k] = {}
        for n, dims in shapes.items():
            growth = [d - d0 for d, d0 in zip(dims, at_base[n])]
            if any(g % _PROBE for g in growth):
                return None
            slopes[k][n] = [g // _PROBE for g in growth]
    fit = _ShapeFit(at_base, slopes)
    return fit if fit.at(check) == at_check else None


def parameter_shapes(kind: str, config: dict[str, Any]) -> Shapes | None:
    """The state-dict shapes ``build_model(kind, config)`` would make, without making them.

    Every dimension is a whole-number affine function of the config's sizes (Linear and
    Embedding take a size as it is, gate blocks multiply it, concatenations add sizes),
    so tiny builds find it: one with every size at 8, one per size with that size at 16,
    and one with every size at 24 to check the fit. Returns None when a tiny build fails
    or the fit does not hold (e.g. a plugin cell whose shapes are not affine in its
    sizes). The random generator's state is restored afterwards.
    """
    fit = _fit_shapes(kind, config)
    return None if fit is None else fit.at({k: config[k] for k in fit.slopes})


def config_mismatch(kind: str, config: dict[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """What in ``config`` disagrees with the state-dict ``shapes`` (e.g. a checkpoint's).

    None when they agree or when the shapes cannot be predicted (see
    :func:`parameter_shapes`); nothing of the config's size is allocated either way.
    """
    layers = config.get("num_layers", 1)
    if isinstance(layers, int) and not isinstance(layers, bool) and layers > len(shapes):
        return f"num_layers={layers}, but only {len(shapes)} weight arrays are stored"
    fit = _fit_shapes(kind, config)
    if fit is None:
        return None
    expected = fit.at({k: config[k] for k in fit.slopes})
    problems, culprits, wrong = [], [], []
    for n, want in expected.items():
        have = tuple(shapes.get(n, ()))
        if n in shapes and have != want:
            wrong.append(n)
            problems.append(f"{n} is {have} in the file but the config makes it {want}")
            axes = range(len(want)) if len(have) != len(want) else [
                i for i in range(len(want)) if have[i] != want[i]]
            culprits += [k for k, s in fit.slopes.items() if any(s[n][i] for i in axes)]
    missing = [n for n in expected if n not in shapes]
    extra = [n for n in shapes if n not in expected]
    if missing:
        problems.append(f"the config makes {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}, "
                        "which the file lacks")
    if extra:
        problems.append(f"the file holds {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}, "
                        "which the config does not make")
    if not problems:
        return None
    if missing or extra:  # the names follow the layout, not the sizes
        culprits += [k for k in ("num_layers", "bidirectional", "condition", "attention", "cell") if k in config]
    named = ", ".join(f"{k}={config[k]!r}" for k in dict.fromkeys(culprits))
    recurrent = any(".layers." in f".{n}" for n in wrong)  # Recurrent's stacked layers
    if recurrent and "cell" in config and "cell" not in culprits:  # the cell sets the gate count
        named += f" (cell={config['cell']!r})"
    return f"{named}: " + "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
