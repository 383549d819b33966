"""Exact integer requantization, shared by the integer ONNX form and the TVM converters.

A layer's requantization is y = clamp(rne(acc * b / 2^c) + zp, lo, hi) with per-channel integers
b and c >= 1 (rne = round half to even). onnxruntime computes clamp(rne(f32(acc) * M)) + zp in
float32; with M = b / 2^c the two agree whenever every reachable |acc| * b < 2^24, because then
f32(acc) * M is exact (`float_exact`). QLinearAdd and QLinearGlobalAveragePool round inside their
float arithmetic, so their integer programs are checked against the reference (which equals
onnxruntime) over every possible input; where they differ a lookup table, exact by construction,
takes their place.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from onnx_hawq.arith import ort_math
from onnx_hawq.arith.dyadic import dyadic

F32_EXACT = 1 << 24
INT64_SAFE = 1 << 62
MAX_TABLE = 1 << 24


@dataclasses.dataclass(frozen=True)
class Requant:
    """y = clamp(rne(acc * b / 2^c) + zp, lo, hi); b, c int64 per channel (or one value)."""

    b: np.ndarray
    c: np.ndarray
    zp: int
    lo: int = 0
    hi: int = 255


def requant_of(mult: np.ndarray, zp: int) -> Requant:
    """The dyadic form of float32 multipliers (each exactly b / 2^c), with c >= 1."""
    pairs = [dyadic(float(m)) for m in np.atleast_1d(np.asarray(mult, np.float32))]
    b = np.array([p[0] << max(0, 1 - p[1]) for p in pairs], np.int64)
    c = np.array([max(1, p[1]) for p in pairs], np.int64)
    return Requant(b, c, int(zp))


def rne_shift(v: np.ndarray, c) -> np.ndarray:
    """Round-half-even of v / 2^c for int64 v and c >= 1 (arithmetic shifts)."""
    v, c = np.asarray(v, np.int64), np.asarray(c, np.int64)
    half = (np.int64(1) << (c - 1)) - 1
    return (v + half + ((v >> c) & 1)) >> c


def apply_requant(acc: np.ndarray, req: Requant, axis: int = -1) -> np.ndarray:
    """uint8 output of `req` on an integer accumulator whose channels lie on `axis`."""
    shape = channel_shape(acc.ndim, axis, req.b.size)
    q = rne_shift(acc.astype(np.int64) * req.b.reshape(shape), req.c.reshape(shape))
    return np.clip(q + req.zp, req.lo, req.hi).astype(np.uint8)


def channel_shape(ndim: int, axis: int, n: int) -> tuple[int, ...]:
    """Broadcast shape for a per-channel vector of length n on `axis` of an ndim tensor."""
    if n == 1:
        return (1,) * ndim
    shape = [1] * ndim
    shape[axis] = n
    return tuple(shape)


def acc_bounds(w: np.ndarray, bias: np.ndarray | None, x_zp: int,
               x_range: tuple[int, int] = (0, 255)) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel [lo, hi] of sum_k (x_k - x_zp) * w[m, k] + bias[m] over x in x_range
    (zero padding adds x_zp, which lies in the range of (x - x_zp) whenever x_zp is a valid x)."""
    w = w.reshape(w.shape[0], -1).astype(np.int64)
    pos, neg = np.clip(w, 0, None).sum(1), -np.clip(w, None, 0).sum(1)
    b = np.zeros(len(w), np.int64) if bias is None else bias.astype(np.int64)
    up, down = max(0, x_range[1] - int(x_zp)), max(0, int(x_zp) - x_range[0])
    return b - pos * down - neg * up, b + pos * up + neg * down


def float_exact(lo: np.ndarray, hi: np.ndarray, b: np.ndarray) -> bool:
    """True when f32(acc) * (b / 2^c) is exact for every acc in [lo, hi] (per channel)."""
    top = np.maximum(np.abs(lo), np.abs(hi)).astype(object) * np.asarray(b).astype(object)
    return bool(np.all(top < F32_EXACT))


@dataclasses.dataclass(frozen=True)
class LayerQ:
    """A QLinear layer's constant parameters; `w` has output channels on axis 0."""

    w: np.ndarray
    x_zp: int
    multipliers: np.ndarray  # onnxruntime's float32 (x_scale * w_scale) / y_scale per channel
    y_zp: int
    bias: np.ndarray | None

    def requant(self) -> Requant:
        return requant_of(self.multipliers, self.y_zp)

    def exact(self, x_range: tuple[int, int] = (0, 255)) -> bool:
        """The integer requantization equals onnxruntime's float32 one for every x in x_range."""
        lo, hi = acc_bounds(self.w, self.bias, self.x_zp, x_range)
        return float_exact(lo, hi, self.requant().b)


LAYER_NEEDS = ("x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp")


def layer_params(vals: dict[str, np.ndarray | None], out_axis: int) -> LayerQ | str:
    """LayerQ from constant arrays named x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias
    (bias may be None), or the reason they do not describe a layer we can lower."""
    missing = [k for k in LAYER_NEEDS if vals.get(k) is None]
    if missing:
        return f"{', '.join(missing)} not constant"
    if vals["x_zp"].dtype != np.uint8 or vals["w"].dtype != np.int8 or vals["y_zp"].dtype != np.uint8:
        return "needs uint8 activations and int8 weights"
    if np.any(vals["w_zp"] != 0) or any(vals[k].size != 1 for k in ("x_zp", "y_zp", "x_scale", "y_scale")):
        return "needs per-tensor activation parameters and zero weight zero-points"
    w = np.moveaxis(vals["w"], out_axis, 0)
    per_channel = (1, w.shape[0])
    if vals["w_scale"].size not in per_channel or vals.get("bias") is not None and vals["bias"].size not in per_channel:
        return "weight scales and bias must be per output channel"
    ws = np.broadcast_to(vals["w_scale"].astype(np.float32).reshape(-1), (w.shape[0],))
    mult = ort_math.layer_multiplier(vals["x_scale"], ws, vals["y_scale"])
    bias = vals.get("bias")
    bias = None if bias is None else np.broadcast_to(bias.astype(np.int64).reshape(-1), (w.shape[0],))
    return LayerQ(w, int(vals["x_zp"].reshape(())), mult, int(vals["y_zp"].reshape(())), bias)


@dataclasses.dataclass(frozen=True)
class AddProgram:
    """QLinearAdd as y = clamp(rne((a*ba + b*bb + f) / 2^c), 0, 255), or table[a, b] when that
    integer form would differ from onnxruntime for some input pair."""

    ba: int
    bb: int
    f: int
    c: int
    table: np.ndarray | None = None


def add_program(a_scale, a_zp, b_scale, b_zp, c_scale, c_zp) -> AddProgram:
    """The exact integer program of a QLinearAdd with these (scalar) parameters."""
    ra, rb, fixed = ort_math.add_ratios(a_scale, a_zp, b_scale, b_zp, c_scale, c_zp)
    (ba, ca), (bb, cb), (bf, cf) = dyadic(float(ra)), dyadic(float(rb)), dyadic(float(fixed))
    c = max(ca, cb, cf, 1)
    prog = AddProgram(ba << (c - ca), bb << (c - cb), bf << (c - cf), c)
    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    want = ort_math.qlinear_add(a, a_scale, a_zp, b, b_scale, b_zp, c_scale, c_zp)
    if 255 * (abs(prog.ba) + abs(prog.bb)) + abs(prog.f) + (1 << c) < INT64_SAFE:
        if np.array_equal(run_add(prog, a, b), want):
            return prog
    return dataclasses.replace(prog, table=want)


def run_add(prog: AddProgram, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy evaluation of an AddProgram (the semantics the graph forms implement)."""
    if prog.table is not None:
        return prog.table[a.astype(np.int64), b.astype(np.int64)]
    v = a.astype(np.int64) * prog.ba + b.astype(np.int64) * prog.bb + prog.f
    return np.clip(rne_shift(v, prog.c), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class GapProgram:
    """QLinearGlobalAveragePool on the uint8 sum s of n values: requant of s - x_zp*n, or table[s]."""

    n: int
    offset: int
    req: Requant
    table: np.ndarray | None = None


def gap_program(x_scale, x_zp, y_scale, y_zp, n: int) -> GapProgram:
    """The exact integer program of a QLinearGlobalAveragePool over n spatial values."""
    if 255 * n + 1 > MAX_TABLE:
        raise ValueError(f"global average over {n} values is too large to check exhaustively")
    mult = ort_math.gap_multiplier(x_scale, y_scale, n)
    prog = GapProgram(n, -int(x_zp) * n, requant_of(mult, int(y_zp)))
    s = np.arange(255 * n + 1, dtype=np.int64)
    want = ort_math.requantize(s + prog.offset, np.array(mult), int(y_zp))
    if np.array_equal(run_gap(prog, s), want):
        return prog
    return dataclasses.replace(prog, table=want)


def run_gap(prog: GapProgram, s: np.ndarray) -> np.ndarray:
    """numpy evaluation of a GapProgram on sums s."""
    if prog.table is not None:
        return prog.table[s]
    return apply_requant(s + prog.offset, prog.req)
