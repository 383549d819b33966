"""onnxruntime's float32 arithmetic for quantized ops, the one place it is written down.

MLAS requantizes an integer accumulator as clamp(rne(float32(acc) * M)) + zp with a float32
multiplier M; QLinearAdd rounds inside two fused multiply-adds. The reference interpreter, the
exactness analysis and the integer programs all use these functions.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def layer_multiplier(x_scale, w_scale, y_scale) -> np.ndarray:
    """QLinearConv/QLinearMatMul/QGemm requant multiplier: float32(x_scale * w_scale) / y_scale."""
    return (F32(np.asarray(x_scale).reshape(())) * np.asarray(w_scale, F32)) / F32(np.asarray(y_scale).reshape(()))


def gap_multiplier(x_scale, y_scale, n: int) -> np.float32:
    """QLinearGlobalAveragePool's multiplier over n values: x_scale / (y_scale * n) in float32."""
    return F32(x_scale) / (F32(y_scale) * F32(n))


def add_ratios(a_scale, a_zp, b_scale, b_zp, c_scale, c_zp) -> tuple[np.float32, np.float32, np.float32]:
    """QLinearAdd's float32 constants: a_scale/c_scale, b_scale/c_scale and the fixed offset."""
    ra, rb = F32(a_scale) / F32(c_scale), F32(b_scale) / F32(c_scale)
    fixed = F32(int(c_zp)) - (F32(ra * F32(int(a_zp))) + F32(rb * F32(int(b_zp))))
    return ra, rb, fixed


def requantize(acc: np.ndarray, mult: np.ndarray, zp: int, lo: int = 0, hi: int = 255) -> np.ndarray:
    """uint8 = clamp(rne(float32(acc) * mult)) + zp, as MLAS does it."""
    v = acc.astype(F32) * np.asarray(mult).astype(F32)
    v = np.clip(v, F32(lo - zp), F32(hi - zp))
    return (np.rint(v).astype(np.int32) + zp).astype(np.uint8)


def quantize_linear(x, scale, zp) -> np.ndarray:
    """QuantizeLinear to uint8: clamp(rne(x / scale) + zp)."""
    z = int(zp)
    v = np.clip(np.asarray(x).astype(F32) / F32(scale), F32(-z), F32(255 - z))
    return (np.rint(v).astype(np.int32) + z).astype(np.uint8)


def dequantize_linear(q, scale, zp) -> np.ndarray:
    """DequantizeLinear: (q - zp) * scale in float32."""
    return (np.asarray(q).astype(np.int32) - int(zp)).astype(F32) * F32(scale)


def fma32(x, y, z) -> np.ndarray:
    """float32 fused multiply-add (x*y+z rounded once), computed exactly in float64."""
    return (x.astype(np.float64) * np.float64(y) + z.astype(np.float64)).astype(F32)


def qlinear_add(a, as_, az, b, bs, bz, cs, cz) -> np.ndarray:
    """com.microsoft QLinearAdd on uint8 codes; the output zero point is added before rounding."""
    ra, rb, fixed = add_ratios(as_, az, bs, bz, cs, cz)
    a, b = np.broadcast_arrays(a, b)
    inner = fma32(b.astype(F32), rb, np.full(b.shape, fixed, F32))
    v = fma32(a.astype(F32), ra, inner)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)
