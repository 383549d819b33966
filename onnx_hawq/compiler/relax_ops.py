"""Relax building blocks for exact integer arithmetic (imports tvm; used by the converters).

Rounding never relies on a target's `round` (llvm.round rounds half away from zero, CUDA's
roundf too): integer paths use arithmetic shifts, float paths use nearbyint (half to even in the
default rounding mode, like onnxruntime's cvtps2dq).
"""

from __future__ import annotations

import numpy as np
from tvm import relax, te, tirx

from onnx_hawq.arith.requant import Requant, channel_shape


def const(value, dtype: str) -> relax.Constant:
    return relax.const(np.asarray(value).astype(dtype), dtype)


def per_channel(values, dtype: str, ndim: int, axis: int) -> relax.Constant:
    """A per-channel constant broadcasting on `axis` of an ndim tensor (a scalar if uniform)."""
    values = np.asarray(values).reshape(-1)
    if np.all(values == values[0]):
        return const(values[0], dtype)
    return const(values.reshape(channel_shape(ndim, axis, values.size)), dtype)


def nearbyint(bb: relax.BlockBuilder, x: relax.Expr) -> relax.Expr:
    """Round half to even, elementwise."""
    return bb.emit_te(lambda t: te.compute(t.shape, lambda *i: tirx.nearbyint(t(*i)), name="nearbyint"), x,
                      primfunc_name_hint="nearbyint")


def rne_shift(bb: relax.BlockBuilder, v: relax.Expr, c: relax.Expr, half_m1: relax.Expr) -> relax.Expr:
    """int64 round-half-even of v / 2^c: (v + 2^(c-1) - 1 + ((v >> c) & 1)) >> c."""
    odd = relax.op.bitwise_and(relax.op.right_shift(v, c), const(1, "int64"))
    return bb.emit(relax.op.right_shift(relax.op.add(relax.op.add(v, half_m1), odd), c))


def to_uint8(bb: relax.BlockBuilder, q: relax.Expr, zp: int, lo: int, hi: int) -> relax.Expr:
    """uint8 clamp(q + zp, lo, hi) of an int64 tensor."""
    q = relax.op.add(q, const(zp, "int64")) if zp else q
    q = relax.op.minimum(relax.op.maximum(q, const(lo, "int64")), const(hi, "int64"))
    return bb.emit(relax.op.astype(q, "uint8"))


def requant_int(bb: relax.BlockBuilder, acc: relax.Expr, req: Requant, ndim: int, axis: int) -> relax.Expr:
    """Exact integer requantization of an int32 accumulator (channels on `axis`)."""
    v = relax.op.multiply(relax.op.astype(acc, "int64"), per_channel(req.b, "int64", ndim, axis))
    c = per_channel(req.c, "int64", ndim, axis)
    half_m1 = per_channel((np.int64(1) << (req.c - 1)) - 1, "int64", ndim, axis)
    return to_uint8(bb, rne_shift(bb, bb.emit(v), c, half_m1), req.zp, req.lo, req.hi)


def requant_float(bb: relax.BlockBuilder, acc: relax.Expr, mult: np.ndarray, zp: int, ndim: int,
                  axis: int) -> relax.Expr:
    """onnxruntime's float32 requantization: clamp(rne(f32(acc) * mult), -zp, 255 - zp) + zp."""
    f = relax.op.multiply(relax.op.astype(acc, "float32"), per_channel(mult, "float32", ndim, axis))
    f = relax.op.minimum(relax.op.maximum(f, const(-zp, "float32")), const(255 - zp, "float32"))
    r = relax.op.astype(nearbyint(bb, bb.emit(f)), "int32")
    return bb.emit(relax.op.astype(relax.op.add(r, const(zp, "int32")), "uint8"))


def take_table(bb: relax.BlockBuilder, table: np.ndarray, index: relax.Expr) -> relax.Expr:
    """table[index] for an int32 index tensor (a lookup into a flat uint8 table)."""
    return bb.emit(relax.op.take(const(table.reshape(-1), "uint8"), index, axis=0))
