"""Dyadic multipliers b/2^c and the weight scales that make onnxruntime's requantization exact.

Requantization follows onnxruntime's float32 arithmetic exactly (the reference emulates it), and
every multiplier M = S_x*S_w/S_y is made a dyadic number b/2^c whose significand b is short enough
that float32(acc)*M is exact for every accumulator the layer can produce. Then the float path
(ORT QLinearConv), the integer path (round(acc*b / 2^c)) and TVM agree bit for bit. The rounding
of M is absorbed into the weight scale (rounded up, so no weight clips).
"""

from __future__ import annotations

import math

import numpy as np

from onnx_hawq.arith.ort_math import layer_multiplier

F32_BITS = 24  # float32 significand bits
MAX_MULT_BITS = 16


def dyadic(m: float) -> tuple[int, int]:
    """Exact (b, c) with m == b / 2^c for a float32 value m (b odd or zero)."""
    m = float(np.float32(m))
    if m == 0:
        return 0, 0
    mant, exp = math.frexp(m)  # m = mant * 2^exp, mant in [0.5, 1)
    b, c = int(mant * (1 << F32_BITS)), F32_BITS - exp
    while b % 2 == 0:
        b, c = b // 2, c - 1
    return b, c


def round_up_significand(m, bits):
    """Smallest value >= m with at most `bits` significant bits (elementwise)."""
    mant, exp = np.frexp(np.asarray(m, np.float64))
    return np.ldexp(np.ceil(mant * np.exp2(bits)), exp - np.asarray(bits))


def accumulator_bits(bound: np.ndarray) -> np.ndarray:
    """Bits needed to hold |acc| <= bound (per channel)."""
    return np.ceil(np.log2(bound.astype(np.float64) + 1)).astype(np.int64)


def exact_weight_scales(ideal: np.ndarray, sx: float, sy: float, acc_bits: np.ndarray):
    """Weight scales ~`ideal` whose ORT multipliers are dyadics with a significand short enough
    that float32(acc) * M is exact; returns (scales float32, multipliers float32, exact flags)."""
    k = np.clip(F32_BITS - acc_bits, 1, MAX_MULT_BITS)
    target = round_up_significand(float(sx) * ideal.astype(np.float64) / float(sy), k)
    scales = np.full(len(ideal), np.nan, np.float32)
    for _ in range(8):
        todo = np.isnan(scales)
        if not todo.any():
            break
        scales[todo] = _scales_for_multipliers(target[todo], sx, sy)
        target = np.where(np.isnan(scales), round_up_significand(np.nextafter(target, np.inf), k), target)
    found = ~np.isnan(scales)
    scales = np.where(found, scales, ideal.astype(np.float32))
    return scales, layer_multiplier(sx, scales, sy), found & (acc_bits <= F32_BITS - 1)


def _scales_for_multipliers(target: np.ndarray, sx: float, sy: float, ulps: int = 32) -> np.ndarray:
    """Per target, a float32 w_scale near target*sy/sx whose ORT multiplier equals it (NaN if none)."""
    center = (target * float(sy) / float(sx)).astype(np.float32)
    cands, up, down = [center], center, center
    for _ in range(ulps):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        cands += [up, down]
    cands = np.stack(cands, axis=1)  # (n, 2*ulps+1), nearest first
    hits = layer_multiplier(sx, cands, sy).astype(np.float64) == target[:, None]
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), cands[np.arange(len(target)), first], np.float32(np.nan))


def bias_int32(bias: np.ndarray | None, sx: float, sw: np.ndarray, n: int) -> np.ndarray:
    """int32 bias at scale sx*sw (round half to even)."""
    if bias is None:
        return np.zeros(n, np.int32)
    q = np.rint(bias.astype(np.float64) / (float(sx) * sw.astype(np.float64)))
    return np.clip(q, -(2**31), 2**31 - 1).astype(np.int32)


def exact_flags(mult: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Per channel: float32(acc) * mult is exact for every |acc| <= bound (b·bound < 2^24 for
    mult = b / 2^c)."""
    b = np.array([dyadic(float(m))[0] for m in np.atleast_1d(mult)], dtype=object)
    return np.array([int(bi) * int(bd) < (1 << F32_BITS) for bi, bd in zip(b, np.atleast_1d(bound))], dtype=bool)
