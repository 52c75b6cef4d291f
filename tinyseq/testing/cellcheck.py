"""The conformance kit for cell authors: does a cell work everywhere tinyseq lifts it?

    from tinyseq.testing import check_cell
    check_cell("mycell")                       # a registered name ...
    check_cell(MyCell, input_size=3, hidden_size=4, options={"foo": 2})  # ... or a factory

Checks (each one named in the report and in any failure):

``state_shapes``   initial_state and step give one (B, H) tensor per state name, of the
                   parameters' dtype and device; the output is (B, output_size).
``batch1_T1``      batch size 1 and sequences of one step work; T = 1 equals one call.
``gradcheck``      float64 central differences through several steps (with and without
                   padding) for the inputs, the initial state and every parameter.
``padding``        with lengths, each sequence's outputs and final state equal running
                   it alone (both directions); padded outputs are zero; what is in the
                   padding changes nothing and gets no gradient.
``bidirectional``  it works wrapped bidirectional (with lengths, every merge), each
                   direction with its own parameters, all of them trained.
``stacked``        it works stacked (3 layers, a bidirectional one among them); layer
                   l reads layer l-1's outputs; every parameter gets a gradient.
``state_dict``     a fresh cell given the state_dict computes the same outputs.
``fused``          where ``fused_sequence`` returns something: it agrees with the step
                   path (outputs, final state, every gradient), with and without a mask,
                   in both directions. Skipped for cells without a fused path.

Everything runs in float64 on the given device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import backend, registry
from ..cell import Cell, State
from ..nn.recurrent import Recurrent, run_cell
from ..tensor import Tensor, _wrap
from .gradcheck import gradcheck

__all__ = ["CHECKS", "CheckResult", "CellCheckReport", "CellCheckError", "check_cell"]

CHECKS: tuple[str, ...] = (
    "state_shapes",
    "batch1_T1",
    "gradcheck",
    "padding",
    "bidirectional",
    "stacked",
    "state_dict",
    "fused",
)


class CheckFailed(AssertionError):
    """Raised inside one check; the kit records its message under the check's name."""


class CheckSkipped(Exception):
    """Raised inside one check that does not apply to this cell."""


@dataclass
class CheckResult:
    """One check's outcome: status is "passed", "failed" or "skipped"."""

    name: str
    status: str
    message: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "failed"


@dataclass
class CellCheckReport:
    """All checks run on one cell; ``ok`` when none failed."""

    cell: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no check named {name!r}; the checks are {', '.join(CHECKS)}")

    def __str__(self) -> str:
        lines = [f"check-cell {self.cell}:"]
        for r in self.results:
            note = f"  {r.message}" if r.message else ""
            lines.append(f"  {r.status.upper():7s} {r.name:14s}{note}")
        failed = len(self.failures)
        lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
        return "\n".join(lines)


class CellCheckError(AssertionError):
    """The cell failed one or more checks; ``report`` holds every result."""

    def __init__(self, report: CellCheckReport) -> None:
        self.report = report
        details = "; ".join(f"check {r.name!r} failed: {r.message}" for r in report.failures)
        super().__init__(f"cell {report.cell} failed the conformance kit: {details}")


# ---- helpers ------------------------------------------------------------------------------
Factory = Callable[[int, int], Cell]
RTOL, ATOL = 1e-9, 1e-10


class _Context:
    """What every check needs: a float64 factory on the device, sizes, random data."""

    def __init__(self, factory: Factory, input_size: int, hidden_size: int, device: str) -> None:
        self.factory = factory
        self.I = input_size
        self.H = hidden_size
        self.dev = backend.get_device(device)
        self.rng = np.random.default_rng(0)

    def make(self, dtype: Any = backend.float64) -> Cell:
        with backend.default_dtype(dtype), self.dev:
            cell = self.factory(self.I, self.H)
        if not isinstance(cell, Cell):
            raise CheckFailed(f"the factory returned {type(cell).__name__}, not a tinyseq Cell")
        cell.to(self.dev)
        return cell

    def randn(self, *shape: int, scale: float = 1.0, requires_grad: bool = False) -> Tensor:
        host = self.rng.standard_normal(shape) * scale
        return Tensor(host, dtype=backend.float64, device=self.dev, requires_grad=requires_grad)

    def mask(self, lengths: Sequence[int], T: int) -> Any:
        host = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
        return host if self.dev.name == "cpu" else self.dev.xp.asarray(host)


def _np(t: Tensor) -> np.ndarray:
    return backend.to_numpy(t.data)


def _close(actual: Any, expected: Any, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    a = backend.to_numpy(actual.data if isinstance(actual, Tensor) else actual)
    b = backend.to_numpy(expected.data if isinstance(expected, Tensor) else expected)
    if a.shape != b.shape:
        raise CheckFailed(f"{what}: shape {a.shape}, expected {b.shape}")
    if not np.allclose(a, b, rtol=rtol, atol=atol):
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        raise CheckFailed(f"{what}: values differ (max abs difference {diff:.3g})")


def _state_of(cell: Cell, B: int, ctx: _Context, random: bool, requires_grad: bool = False) -> State:
    if not random:
        return cell.initial_state(B)
    return tuple(
        ctx.randn(B, ctx.H, scale=0.5, requires_grad=requires_grad) for _ in cell.state_names
    )


def _check_state(state: Any, cell: Cell, B: int, dtype: Any, ctx: _Context, where: str) -> None:
    names = cell.state_names
    if not isinstance(state, tuple):
        raise CheckFailed(f"{where} returned {type(state).__name__}, expected a tuple of tensors")
    if len(state) != len(names):
        raise CheckFailed(
            f"{where} returned {len(state)} state tensor(s), but state_names has "
            f"{len(names)}: {names}"
        )
    for name, s in zip(names, state):
        if not isinstance(s, Tensor):
            raise CheckFailed(f"{where}: state {name!r} is {type(s).__name__}, not a Tensor")
        if s.shape != (B, ctx.H):
            raise CheckFailed(f"{where}: state {name!r} has shape {s.shape}, expected {(B, ctx.H)}")
        if s.dtype != dtype:
            raise CheckFailed(f"{where}: state {name!r} is {s.dtype}, the parameters are {dtype}")
        if s.device is not ctx.dev:
            raise CheckFailed(f"{where}: state {name!r} is on {s.device.name}, not {ctx.dev.name}")


def _loss(y: Tensor, state: State, seed: int = 1) -> Tensor:
    """A fixed random weighting of every output and final-state element."""
    rng = np.random.default_rng(seed)
    total = None
    for t in (y, *state):
        w = rng.standard_normal(t.shape)
        term = (t * _wrap(t.device.xp.asarray(w) if t.device.name != "cpu" else w, t.device)).sum()
        total = term if total is None else total + term
    assert total is not None
    return total


def _grads(tensors: Iterable[Tensor]) -> list[np.ndarray | None]:
    return [None if t.grad is None else _np(t.grad) for t in tensors]


def _missing_grads(module: Any) -> list[str]:
    return [name for name, p in module.named_parameters() if p.grad is None]


# ---- the checks ---------------------------------------------------------------------------
def _state_shapes(ctx: _Context) -> str:
    for dtype in (backend.float32, backend.float64):
        cell = ctx.make(dtype)
        names = cell.state_names
        if not isinstance(names, tuple) or not names or not all(isinstance(n, str) for n in names):
            raise CheckFailed(f"state_names must be a non-empty tuple of str, got {names!r}")
        params = list(cell.parameters())
        want = params[0].dtype if params else dtype
        B = 2
        s0 = cell.initial_state(B)
        _check_state(s0, cell, B, want, ctx, "initial_state(2)")
        x = ctx.randn(B, ctx.I).to(dtype=want)
        out = cell(x, s0)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("a step must return (output, state)")
        y, s1 = out
        if not isinstance(y, Tensor) or y.shape != (B, cell.output_size):
            got = y.shape if isinstance(y, Tensor) else type(y).__name__
            raise CheckFailed(f"step output has shape {got}, expected (B, output_size) = {(B, cell.output_size)}")
        _check_state(s1, cell, B, want, ctx, "step")
    return f"state {cell.state_names}, each (B, {ctx.H}); output (B, {cell.output_size})"


def _batch1_T1(ctx: _Context) -> str:
    cell = ctx.make()
    for B, T in ((1, 1), (1, 4), (3, 1)):
        x = ctx.randn(T, B, ctx.I)
        s0 = _state_of(cell, B, ctx, random=True)
        for fused in (False, None):
            y, final = run_cell(cell, x, s0, None, False, fused)
            if y.shape != (T, B, cell.output_size):
                raise CheckFailed(
                    f"B={B}, T={T}: output shape {y.shape}, expected {(T, B, cell.output_size)}"
                )
            _check_state(final, cell, B, backend.float64, ctx, f"B={B}, T={T}: final state")
        if T == 1:
            y1, s1 = cell(x[0], s0)
            _close(y[0], y1, f"B={B}, T=1: the sequence's output vs one call of the cell")
            for name, a, b in zip(cell.state_names, final, s1):
                _close(a, b, f"B={B}, T=1: final state {name!r} vs one call of the cell")
    return "B=1 and T=1 work; T=1 equals one step"


def _gradcheck(ctx: _Context) -> str:
    cell = ctx.make()
    names = [n for n, _ in cell.named_parameters()]
    params = list(cell.parameters())
    T, B = 3, 2
    for lengths in (None, [3, 1]):
        x = ctx.randn(T, B, ctx.I, requires_grad=True)
        s0 = _state_of(cell, B, ctx, random=True, requires_grad=True)
        mask = None if lengths is None else ctx.mask(lengths, T)

        n_state = len(s0)

        def fn(x: Tensor, *rest: Tensor, mask: Any = mask, n: int = n_state) -> tuple[Tensor, ...]:
            state = tuple(rest[:n])
            y, final = run_cell(cell, x, state, mask, False, fused=False)
            return (y, *final)

        labels = ["x", *(f"initial state {n!r}" for n in cell.state_names), *names]
        try:
            gradcheck(fn, [x, *s0, *params], names=labels, atol=1e-6, rtol=1e-5)
        except AssertionError as err:
            where = "" if lengths is None else f" with lengths {lengths}"
            raise CheckFailed(f"{err}{where}") from None
    return f"x, initial state and {len(params)} parameter(s) over {T} steps"


def _padding(ctx: _Context) -> str:
    cell = ctx.make()
    T, lengths = 5, [5, 2, 1, 3]
    B = len(lengths)
    mask = ctx.mask(lengths, T)
    s0 = _state_of(cell, B, ctx, random=True)
    x = ctx.randn(T, B, ctx.I)
    x_host = _np(x)
    garbage = x_host.copy()
    for b, n in enumerate(lengths):
        garbage[n:, b] = ctx.rng.standard_normal(garbage[n:, b].shape) * 3.0
    x2 = Tensor(garbage, device=ctx.dev)
    for reverse, fused in ((False, False), (True, False), (False, None), (True, None)):
        direction = ("backward" if reverse else "forward") + (
            ", step path" if fused is False else ""
        )
        xg = Tensor(x_host, device=ctx.dev, requires_grad=True)
        y, final = run_cell(cell, xg, s0, mask, reverse, fused)
        _loss(y, final).backward()
        y_np = _np(y)
        grad = _np(xg.grad) if xg.grad is not None else np.zeros(x_host.shape)
        for b, n in enumerate(lengths):
            xb = Tensor(x_host[:n, b : b + 1], device=ctx.dev)
            yb, fb = run_cell(cell, xb, tuple(s[b : b + 1] for s in s0), None, reverse, fused)
            what = f"{direction}, sequence {b} (length {n})"
            _close(y_np[:n, b], _np(yb)[:, 0], f"{what}: outputs vs running it alone")
            for name, a, c in zip(cell.state_names, final, fb):
                _close(_np(a)[b], _np(c)[0], f"{what}: final state {name!r} vs running it alone")
            if np.any(y_np[n:, b] != 0):
                raise CheckFailed(f"{what}: outputs at padded steps are not zero")
            if np.any(grad[n:, b] != 0):
                raise CheckFailed(f"{what}: padded inputs received a gradient")
        y2, final2 = run_cell(cell, x2, s0, mask, reverse, fused)
        _close(y2, y, f"{direction}: outputs after changing the padding's values")
        for name, a, c in zip(cell.state_names, final2, final):
            _close(a, c, f"{direction}: final state {name!r} after changing the padding's values")
    return f"lengths {lengths}, both directions, step and default paths"


def _bidirectional(ctx: _Context) -> str:
    T, lengths = 4, [4, 2, 3]
    B = len(lengths)
    x = ctx.randn(T, B, ctx.I)
    for merge in ("concat", "sum", "mean", "product"):
        with ctx.dev:
            rec = Recurrent(ctx.factory, ctx.I, ctx.H, bidirectional=True, merge=merge,
                            dtype=backend.float64)
        rec.to(ctx.dev)
        fwd, bwd = rec.cell_at(0, 0), rec.cell_at(0, 1)
        shared = {id(p) for p in fwd.parameters()} & {id(p) for p in bwd.parameters()}
        if shared:
            raise CheckFailed(
                "the forward and backward cells share parameters: the factory must make "
                "independent cells"
            )
        out, state = rec(x, lengths=lengths)
        out_size = fwd.output_size
        want = (T, B, 2 * out_size if merge == "concat" else out_size)
        if out.shape != want:
            raise CheckFailed(f"merge={merge}: output shape {out.shape}, expected {want}")
        parts = state if isinstance(state, tuple) else (state,)
        for name, s in zip(fwd.state_names, parts):
            if s.shape != (2, B, ctx.H):
                raise CheckFailed(f"final state {name!r} has shape {s.shape}, expected {(2, B, ctx.H)}")
        mask = ctx.mask(lengths, T)
        y_f, _ = run_cell(fwd, x, None, mask, False)
        y_b, _ = run_cell(bwd, x, None, mask, True)
        if merge == "concat":
            _close(out[:, :, :out_size], y_f, "concat: first half vs the forward cell alone")
            _close(out[:, :, out_size:], y_b, "concat: second half vs the backward cell run in reverse")
        _loss(out, parts).backward()
        missing = _missing_grads(rec)
        if missing:
            raise CheckFailed(f"merge={merge}: no gradient reached {', '.join(missing)}")
    return "concat, sum, mean, product with lengths"


def _stacked(ctx: _Context) -> str:
    T, lengths = 4, [4, 1, 3]
    B = len(lengths)
    x = ctx.randn(T, B, ctx.I)
    with ctx.dev:
        rec = Recurrent(ctx.factory, ctx.I, ctx.H, num_layers=3,
                        bidirectional=[False, True, False], dtype=backend.float64)
    rec.to(ctx.dev)
    out, state = rec(x, lengths=lengths)
    out_size = rec.cell_at(0).output_size
    if out.shape != (T, B, out_size):
        raise CheckFailed(f"output shape {out.shape}, expected {(T, B, out_size)}")
    parts = state if isinstance(state, tuple) else (state,)
    for name, s in zip(rec.state_names, parts):
        if s.shape != (4, B, ctx.H):
            raise CheckFailed(f"final state {name!r} has shape {s.shape}, expected {(4, B, ctx.H)}")
    mask = ctx.mask(lengths, T)
    y0, _ = run_cell(rec.cell_at(0), x, None, mask)
    y1f, _ = run_cell(rec.cell_at(1, 0), y0, None, mask)
    y1b, _ = run_cell(rec.cell_at(1, 1), y0, None, mask, True)
    from ..tensor import concatenate

    y2, _ = run_cell(rec.cell_at(2), concatenate([y1f, y1b], -1), None, mask)
    _close(out, y2, "the stack's output vs running its layers one after another")
    _loss(out, parts).backward()
    missing = _missing_grads(rec)
    if missing:
        raise CheckFailed(f"no gradient reached {', '.join(missing)}")
    return "3 layers (the middle one bidirectional) with lengths"


def _state_dict(ctx: _Context) -> str:
    backend.manual_seed(1)
    a = ctx.make()
    backend.manual_seed(2)
    b = ctx.make()
    sd = a.state_dict()
    for name, value in sd.items():
        if not isinstance(value, np.ndarray):
            raise CheckFailed(f"state_dict()[{name!r}] is {type(value).__name__}, not a NumPy array")
    if set(sd) != set(b.state_dict()):
        raise CheckFailed(f"two cells have different state_dict keys: {sorted(sd)} vs {sorted(b.state_dict())}")
    b.load_state_dict(sd)
    T, B = 3, 2
    x = ctx.randn(T, B, ctx.I)
    s0 = _state_of(a, B, ctx, random=True)
    for fused in (False, None):
        ya, fa = run_cell(a, x, s0, None, False, fused)
        yb, fb = run_cell(b, x, s0, None, False, fused)
        _close(yb, ya, "outputs of a fresh cell loaded with the state_dict (is every weight a Parameter or buffer?)")
        for name, p, q in zip(a.state_names, fb, fa):
            _close(p, q, f"final state {name!r} after loading the state_dict")
    return f"{len(sd)} entries"


def _fused(ctx: _Context) -> str:
    cell = ctx.make()
    params = list(cell.parameters())
    T, lengths = 4, [4, 2, 3]
    B = len(lengths)
    tried = 0
    for use_mask in (False, True):
        for reverse in (False, True):
            mask = ctx.mask(lengths, T) if use_mask else None
            case = f"{'mask' if use_mask else 'no mask'}, {'reverse' if reverse else 'forward'}"
            runs: list[tuple[Any, ...]] = []
            for fused in (True, False):
                x = ctx.randn(T, B, ctx.I, requires_grad=True) if not runs else Tensor(
                    _np(runs[0][0]), device=ctx.dev, requires_grad=True)
                s0 = tuple(
                    Tensor(_np(s), device=ctx.dev, requires_grad=True)
                    for s in (_state_of(cell, B, ctx, random=True) if not runs else runs[0][1])
                )
                cell.zero_grad()
                if fused:
                    result = cell.fused_sequence(x, s0, mask, reverse)
                    if result is None:
                        break
                    y, final = result
                else:
                    y, final = run_cell(cell, x, s0, mask, reverse, fused=False)
                if not isinstance(final, tuple) or len(final) != len(cell.state_names):
                    raise CheckFailed(f"{case}: fused_sequence must return (y, state tuple)")
                _loss(y, final).backward()
                runs.append((x, s0, y, final, _grads([x, *s0]), _grads(params)))
            if len(runs) < 2:
                continue
            tried += 1
            (_, _, yf, ff, gf, pf), (_, _, ys, fs, gs, ps) = runs
            _close(yf, ys, f"{case}: fused outputs vs the step path")
            for name, a, b in zip(cell.state_names, ff, fs):
                _close(a, b, f"{case}: fused final state {name!r} vs the step path")
            labels = ["x", *(f"initial state {n!r}" for n in cell.state_names)]
            labels += [n for n, _ in cell.named_parameters()]
            for label, a2, b2 in zip(labels, gf + pf, gs + ps):
                if (a2 is None) != (b2 is None):
                    raise CheckFailed(f"{case}: gradient of {label} is missing on one path")
                if a2 is not None:
                    _close(a2, b2, f"{case}: fused gradient of {label} vs the step path")
    if not tried:
        raise CheckSkipped("no fused path (fused_sequence returns None)")
    return f"{tried} cases (mask/no mask, both directions), values and gradients"


_RUNNERS: dict[str, Callable[[_Context], str]] = {
    "state_shapes": _state_shapes,
    "batch1_T1": _batch1_T1,
    "gradcheck": _gradcheck,
    "padding": _padding,
    "bidirectional": _bidirectional,
    "stacked": _stacked,
    "state_dict": _state_dict,
    "fused": _fused,
}


def _factory(
    cell: str | Callable[..., Cell], options: Mapping[str, Any], pm: registry.PluginManager | None
) -> tuple[str, Factory]:
    opts = dict(options)
    if isinstance(cell, str):
        spec = registry.get_cell_spec(cell, pm)
        if spec.kind != "cell":
            raise TypeError(f"{cell!r} is a wrapper; check_cell checks cells")

        def make(input_size: int, hidden_size: int) -> Cell:
            return spec.create(input_size, hidden_size, **opts)  # type: ignore[no-any-return]

        return cell, make
    if not callable(cell):
        raise TypeError(f"check_cell needs a cell name or a Cell class/factory, got {cell!r}")

    def make_from(input_size: int, hidden_size: int) -> Cell:
        return cell(input_size, hidden_size, **opts)

    return getattr(cell, "__name__", repr(cell)), make_from


def check_cell(
    cell: str | Callable[..., Cell],
    input_size: int = 3,
    hidden_size: int = 4,
    *,
    options: Mapping[str, Any] | None = None,
    device: str = "cpu",
    checks: Iterable[str] | None = None,
    pm: registry.PluginManager | None = None,
    raise_on_failure: bool = True,
) -> CellCheckReport:
    """Run the conformance checks on a cell; raise :class:`CellCheckError` if any fails.

    cell: a registered name, or a Cell class/factory ``f(input_size, hidden_size,
    **options)``. input_size, hidden_size: small sizes keep the float64 gradient check
    quick. device: where to run. checks: a subset of :data:`CHECKS`. pm: the plugin
    manager to look names up in (default: the process-wide one). raise_on_failure:
    return the report instead of raising.
    """
    label, factory = _factory(cell, options or {}, pm)
    if options:
        label += "(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"
    selected = list(CHECKS if checks is None else checks)
    unknown = [c for c in selected if c not in _RUNNERS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; the checks are {', '.join(CHECKS)}")
    report = CellCheckReport(label)
    rng_state = backend.get_rng_state()
    backend.manual_seed(0)
    try:
        for name in selected:
            ctx = _Context(factory, input_size, hidden_size, device)
            start = time.perf_counter()
            try:
                message = _RUNNERS[name](ctx)
                status = "passed"
            except CheckSkipped as skip:
                status, message = "skipped", str(skip)
            except CheckFailed as err:
                status, message = "failed", str(err)
            except Exception as err:  # a crash inside the cell is a failure of this check
                status, message = "failed", f"{type(err).__name__}: {err}"
            report.results.append(
                CheckResult(name, status, message, time.perf_counter() - start)
            )
    finally:
        backend.set_rng_state(rng_state)
    if raise_on_failure and not report.ok:
        raise CellCheckError(report)
    return report
