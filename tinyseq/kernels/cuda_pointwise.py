"""The per-step pointwise gate math as fused CUDA kernels (CuPy ElementwiseKernel).

Each function here has the signature of its namesake in :mod:`.pointwise` (the portable
reference) and does the same work in ONE kernel launch over the B*H elements of a step,
where the reference takes a dozen array passes. The CUDA sources follow the reference
line by line: every line carries the tag (F1, B3, ...) of the reference line it
implements. The sources are plain data (:data:`SPECS`), so the tests can also compile
them for the host with a C++ compiler and check them against the reference on machines
without a GPU.

CuPy is never imported here: the kernels are built, on first use, from the array module
the ``cuda`` device hands over (``xp.ElementwiseKernel``), and compiled by CuPy once per
dtype. Every array argument is ``raw`` (indexed by hand from the element index ``i``),
so the launch size is B*H, given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["KernelSpec", "SPECS", "PREAMBLE", "CudaPointwise"]

Array = Any

# Shared device helpers. 0.5 * tanh(a / 2) + 0.5 is the reference's sigmoid (no overflow).
PREAMBLE = r"""
template <typename U> __device__ __forceinline__ U ts_sigmoid(U a) {
    return U(0.5) * tanh(U(0.5) * a) + U(0.5);
}
"""

# Index bookkeeping at the top of every kernel: element i of a (B, H) state is row b,
# column j; gate k of that element sits at r0 + k*H in a (B, G*H) gate row.
_PROLOGUE = r"""
const ptrdiff_t b = i / H;
const ptrdiff_t j = i - b * H;
const ptrdiff_t r0 = b * {G} * H + j;
const bool p = pad[b];
(void)r0;
(void)p;
"""


@dataclass(frozen=True)
class KernelSpec:
    """One ElementwiseKernel: CuPy parameter strings, the per-element body, the gates G."""

    name: str
    in_params: str
    out_params: str
    body: str
    gates: int

    def source(self) -> str:
        """The body with the shared prologue (what CuPy compiles inside its loop)."""
        return _PROLOGUE.replace("{G}", str(self.gates)) + self.body


SPECS: dict[str, KernelSpec] = {
    s.name: s
    for s in [
        KernelSpec(
            "rnn_forward",
            "raw T xw, raw T rec, raw T h_prev, raw bool pad, int64 H, int32 relu",
            "raw T h",
            r"""
const T a = xw[i] + rec[i];                                   // F1
const T hn = relu ? (a > T(0) ? a : T(0)) : tanh(a);          // F2
h[i] = p ? h_prev[i] : hn;                                    // F3
""",
            1,
        ),
        KernelSpec(
            "rnn_backward",
            "raw T dh_rec, raw T dy, raw T h, raw bool pad, int64 H, int32 relu",
            "raw T dh_dir, raw T d",
            r"""
const T dh = dh_rec[i] + dh_dir[i] + dy[i];                   // B1
const T hv = h[i];
const T dg = relu ? (hv > T(0) ? T(1) : T(0)) : T(1) - hv * hv;  // B2
d[i] = p ? T(0) : dh * dg;                                    // B3
dh_dir[i] = p ? dh : T(0);                                    // B4
""",
            1,
        ),
        KernelSpec(
            "lstm_forward",
            "raw T xw, raw T rec, raw T h_prev, raw T c_prev, raw bool pad, int64 H, "
            "int32 standard",
            "raw T gates, raw T h, raw T c",
            r"""
const T ig = ts_sigmoid(xw[r0] + rec[r0]);                    // F1, F2
const T fg = ts_sigmoid(xw[r0 + H] + rec[r0 + H]);            // F3
const T gg = tanh(xw[r0 + 2 * H] + rec[r0 + 2 * H]);          // F4
const T og = ts_sigmoid(xw[r0 + 3 * H] + rec[r0 + 3 * H]);    // F5
const T cp = c_prev[i];
const T cn = fg * cp + ig * gg;                               // F6
const T hn = standard ? og * tanh(cn) : og * cn;              // F7
gates[r0] = ig;                                               // F8
gates[r0 + H] = fg;
gates[r0 + 2 * H] = gg;
gates[r0 + 3 * H] = og;
c[i] = p ? cp : cn;                                           // F9
h[i] = p ? h_prev[i] : hn;                                    // F10
""",
            4,
        ),
        KernelSpec(
            "lstm_backward",
            "raw T dh_rec, raw T dy, raw T gates, raw T c, raw T c_prev, raw bool pad, "
            "int64 H, int32 standard",
            "raw T dh_dir, raw T dc, raw T d",
            r"""
const T ig = gates[r0];
const T fg = gates[r0 + H];
const T gg = gates[r0 + 2 * H];
const T og = gates[r0 + 3 * H];
const T dh = dh_rec[i] + dh_dir[i] + dy[i];                   // B1
const T cv = c[i];
const T tc = standard ? tanh(cv) : cv;                        // B2
const T dc_in = dc[i];
const T dct = dc_in + (standard ? dh * og * (T(1) - tc * tc) : dh * og);  // B3
const T di = dct * gg * ig * (T(1) - ig);                     // B4
const T df = dct * c_prev[i] * fg * (T(1) - fg);              // B5
const T dgg = dct * ig * (T(1) - gg * gg);                    // B6
const T d_o = dh * tc * og * (T(1) - og);                     // B7
d[r0] = p ? T(0) : di;                                        // B8
d[r0 + H] = p ? T(0) : df;                                    // B9
d[r0 + 2 * H] = p ? T(0) : dgg;                               // B10
d[r0 + 3 * H] = p ? T(0) : d_o;                               // B11
dc[i] = p ? dc_in : dct * fg;                                 // B12
dh_dir[i] = p ? dh : T(0);                                    // B13
""",
            4,
        ),
        KernelSpec(
            "gru_forward",
            "raw T xw, raw T rec, raw T b_hn, raw T h_prev, raw bool pad, int64 H",
            "raw T gates, raw T e, raw T h",
            r"""
const T rg = ts_sigmoid(xw[r0] + rec[r0]);                    // F1
const T zg = ts_sigmoid(xw[r0 + H] + rec[r0 + H]);            // F2
const T en = rec[r0 + 2 * H] + b_hn[j];                       // F3
const T ng = tanh(xw[r0 + 2 * H] + rg * en);                  // F4
const T hp = h_prev[i];
const T hn = ng + zg * (hp - ng);                             // F5
gates[r0] = rg;                                               // F6
gates[r0 + H] = zg;
gates[r0 + 2 * H] = ng;
e[i] = en;                                                    // F7
h[i] = p ? hp : hn;                                           // F8
""",
            3,
        ),
        KernelSpec(
            "gru_backward",
            "raw T dh_rec, raw T dy, raw T gates, raw T e, raw T h_prev, raw bool pad, int64 H",
            "raw T dh_dir, raw T d, raw T dx",
            r"""
const T rg = gates[r0];
const T zg = gates[r0 + H];
const T ng = gates[r0 + 2 * H];
const T dh = dh_rec[i] + dh_dir[i] + dy[i];                   // B1
const T dn = dh * (T(1) - zg) * (T(1) - ng * ng);             // B2
const T dz = dh * (h_prev[i] - ng) * zg * (T(1) - zg);        // B3
const T dr = dn * e[i] * rg * (T(1) - rg);                    // B4
d[r0] = p ? T(0) : dr;                                        // B5
d[r0 + H] = p ? T(0) : dz;                                    // B6
d[r0 + 2 * H] = p ? T(0) : dn * rg;                           // B7
dx[r0] = p ? T(0) : dr;                                       // B8
dx[r0 + H] = p ? T(0) : dz;                                   // B9
dx[r0 + 2 * H] = p ? T(0) : dn;                               // B10
dh_dir[i] = p ? dh : dh * zg;                                 // B11
""",
            3,
        ),
        KernelSpec(
            "gru_forward_rz",
            "raw T xw, raw T rec_rz, raw T h_prev, raw bool pad, int64 H",
            "raw T gates, raw T rh",
            r"""
const ptrdiff_t rb = b * 2 * H + j;                           // rec_rz is (B, 2H)
const T rg = ts_sigmoid(xw[r0] + rec_rz[rb]);                 // F1
const T zg = ts_sigmoid(xw[r0 + H] + rec_rz[rb + H]);         // F2
gates[r0] = rg;                                               // F3
gates[r0 + H] = zg;
rh[i] = rg * h_prev[i];                                       // F4
""",
            3,
        ),
        KernelSpec(
            "gru_forward_n",
            "raw T xw, raw T rec_n, raw T h_prev, raw bool pad, int64 H",
            "raw T gates, raw T h",
            r"""
const T zg = gates[r0 + H];
const T ng = tanh(xw[r0 + 2 * H] + rec_n[i]);                 // F5
const T hp = h_prev[i];
const T hn = ng + zg * (hp - ng);                             // F6
gates[r0 + 2 * H] = ng;                                       // F7
h[i] = p ? hp : hn;                                           // F8
""",
            3,
        ),
        KernelSpec(
            "gru_backward_a",
            "raw T dh_rec, raw T dy, raw T gates, raw T h_prev, raw bool pad, int64 H",
            "raw T dh_dir, raw T d",
            r"""
const T zg = gates[r0 + H];
const T ng = gates[r0 + 2 * H];
const T dh = dh_rec[i] + dh_dir[i] + dy[i];                   // B1
const T dn = dh * (T(1) - zg) * (T(1) - ng * ng);             // B2
const T dz = dh * (h_prev[i] - ng) * zg * (T(1) - zg);        // B3
d[r0 + H] = p ? T(0) : dz;                                    // B4
d[r0 + 2 * H] = p ? T(0) : dn;                                // B5
dh_dir[i] = p ? dh : dh * zg;                                 // B6
""",
            3,
        ),
        KernelSpec(
            "gru_backward_b",
            "raw T drh, raw T gates, raw T h_prev, raw bool pad, int64 H",
            "raw T d, raw T dh_dir",
            r"""
const T rg = gates[r0];
const T drv = drh[i];
d[r0] = drv * h_prev[i] * rg * (T(1) - rg);                   // B7
dh_dir[i] += drv * rg;                                        // B8
""",
            3,
        ),
        KernelSpec(
            "simple_gru_forward",
            "raw T xw, raw T rec, raw T h_prev, raw bool pad, int64 H",
            "raw T gates, raw T h",
            r"""
const T ug = ts_sigmoid(xw[r0] + rec[r0]);                    // F1
const T cg = tanh(xw[r0 + H] + rec[r0 + H]);                  // F2
const T hp = h_prev[i];
const T hn = hp + ug * (cg - hp);                             // F3
gates[r0] = ug;                                               // F4
gates[r0 + H] = cg;
h[i] = p ? hp : hn;                                           // F5
""",
            2,
        ),
        KernelSpec(
            "simple_gru_backward",
            "raw T dh_rec, raw T dy, raw T gates, raw T h_prev, raw bool pad, int64 H",
            "raw T dh_dir, raw T d",
            r"""
const T ug = gates[r0];
const T cg = gates[r0 + H];
const T hp = h_prev[i];
const T dh = dh_rec[i] + dh_dir[i] + dy[i];                   // B1
const T du = dh * (cg - hp) * ug * (T(1) - ug);               // B2
const T dcg = dh * ug * (T(1) - cg * cg);                     // B3
d[r0] = p ? T(0) : du;                                        // B4
d[r0 + H] = p ? T(0) : dcg;                                   // B5
dh_dir[i] = p ? dh : dh * (T(1) - ug);                        // B6
""",
            2,
        ),
    ]
}


class CudaPointwise:
    """The :mod:`.pointwise` functions as fused kernels for one CuPy module ``xp``.

    Same signatures as the reference (``xp`` first, outputs passed in); each call is
    one launch. Kernels are created on first use and compiled by CuPy per dtype.
    Inputs must be C-contiguous (per-step slices of the kernels' buffers are).
    """

    def __init__(self, xp: Any) -> None:
        self._xp = xp
        self._kernels: dict[str, Any] = {}

    def _k(self, name: str) -> Any:
        k = self._kernels.get(name)
        if k is None:
            s = SPECS[name]
            k = self._kernels[name] = self._xp.ElementwiseKernel(
                s.in_params,
                s.out_params,
                s.source(),
                f"tinyseq_{name}",
                preamble=PREAMBLE,
                no_return=True,
            )
        return k

    # Each wrapper maps the reference's argument order onto the kernel's (inputs, then
    # outputs, then scalars as the spec lists them).
    def rnn_forward(
        self, xp: Any, xw: Array, rec: Array, h_prev: Array, pad: Array, h: Array, relu: bool
    ) -> None:
        self._k("rnn_forward")(xw, rec, h_prev, pad, h.shape[1], int(relu), h, size=h.size)

    def rnn_backward(
        self,
        xp: Any,
        dh_rec: Array,
        dh_dir: Array,
        dy: Array,
        h: Array,
        pad: Array,
        d: Array,
        relu: bool,
    ) -> None:
        self._k("rnn_backward")(dh_rec, dy, h, pad, h.shape[1], int(relu), dh_dir, d, size=h.size)

    def lstm_forward(
        self,
        xp: Any,
        xw: Array,
        rec: Array,
        h_prev: Array,
        c_prev: Array,
        pad: Array,
        gates: Array,
        h: Array,
        c: Array,
        standard: bool,
    ) -> None:
        self._k("lstm_forward")(
            xw, rec, h_prev, c_prev, pad, h.shape[1], int(standard), gates, h, c, size=h.size
        )

    def lstm_backward(
        self,
        xp: Any,
        dh_rec: Array,
        dh_dir: Array,
        dy: Array,
        dc: Array,
        gates: Array,
        c: Array,
        c_prev: Array,
        pad: Array,
        d: Array,
        standard: bool,
    ) -> None:
        self._k("lstm_backward")(
            dh_rec,
            dy,
            gates,
            c,
            c_prev,
            pad,
            c.shape[1],
            int(standard),
            dh_dir,
            dc,
            d,
            size=c.size,
        )

    def gru_forward(
        self,
        xp: Any,
        xw: Array,
        rec: Array,
        b_hn: Array,
        h_prev: Array,
        pad: Array,
        gates: Array,
        e: Array,
        h: Array,
    ) -> None:
        self._k("gru_forward")(xw, rec, b_hn, h_prev, pad, h.shape[1], gates, e, h, size=h.size)

    def gru_backward(
        self,
        xp: Any,
        dh_rec: Array,
        dh_dir: Array,
        dy: Array,
        gates: Array,
        e: Array,
        h_prev: Array,
        pad: Array,
        d: Array,
        dx: Array,
    ) -> None:
        self._k("gru_backward")(
            dh_rec, dy, gates, e, h_prev, pad, e.shape[1], dh_dir, d, dx, size=e.size
        )

    def gru_forward_rz(
        self, xp: Any, xw: Array, rec_rz: Array, h_prev: Array, gates: Array, rh: Array
    ) -> None:
        # the kernel's prologue reads pad[b]; rz never masks, so any (B,) bool array does
        self._k("gru_forward_rz")(
            xw,
            rec_rz,
            h_prev,
            self._no_pad(h_prev),
            h_prev.shape[1],
            gates,
            rh,
            size=h_prev.size,
        )

    def gru_forward_n(
        self,
        xp: Any,
        xw: Array,
        rec_n: Array,
        h_prev: Array,
        pad: Array,
        gates: Array,
        h: Array,
    ) -> None:
        self._k("gru_forward_n")(xw, rec_n, h_prev, pad, h.shape[1], gates, h, size=h.size)

    def gru_backward_a(
        self,
        xp: Any,
        dh_rec: Array,
        dh_dir: Array,
        dy: Array,
        gates: Array,
        h_prev: Array,
        pad: Array,
        d: Array,
    ) -> None:
        self._k("gru_backward_a")(
            dh_rec, dy, gates, h_prev, pad, h_prev.shape[1], dh_dir, d, size=h_prev.size
        )

    def gru_backward_b(
        self, xp: Any, drh: Array, gates: Array, h_prev: Array, d: Array, dh_dir: Array
    ) -> None:
        self._k("gru_backward_b")(
            drh,
            gates,
            h_prev,
            self._no_pad(h_prev),
            h_prev.shape[1],
            d,
            dh_dir,
            size=h_prev.size,
        )

    def simple_gru_forward(
        self,
        xp: Any,
        xw: Array,
        rec: Array,
        h_prev: Array,
        pad: Array,
        gates: Array,
        h: Array,
    ) -> None:
        self._k("simple_gru_forward")(xw, rec, h_prev, pad, h.shape[1], gates, h, size=h.size)

    def simple_gru_backward(
        self,
        xp: Any,
        dh_rec: Array,
        dh_dir: Array,
        dy: Array,
        gates: Array,
        h_prev: Array,
        pad: Array,
        d: Array,
    ) -> None:
        self._k("simple_gru_backward")(
            dh_rec, dy, gates, h_prev, pad, h_prev.shape[1], dh_dir, d, size=h_prev.size
        )

    def _no_pad(self, like: Array) -> Array:
        """A cached all-False (B,) mask for kernels whose prologue reads pad but ignores it."""
        key = f"nopad{like.shape[0]}"
        arr = self._kernels.get(key)
        if arr is None:
            arr = self._kernels[key] = self._xp.zeros((like.shape[0],), dtype=bool)
        return arr
