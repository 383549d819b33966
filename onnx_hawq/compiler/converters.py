"""TVM Relax converters for the integer ONNX ops onnx-hawq emits (imports tvm).

Layers accumulate exactly in int32 (uint8 x int8 conv2d / matmul) and requantize with the dyadic
integer form wherever it provably equals onnxruntime's float32 arithmetic, else with a float32
emulation of it. QLinearAdd and QLinearGlobalAveragePool use the checked integer programs (or
lookup tables) of arith.requant. QuantizeLinear is replaced for per-tensor uint8/int8 outputs
because TVM's own lowering rounds with the target's `round`.
"""

from __future__ import annotations

import contextvars

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from onnx_hawq.arith.signatures import by_slot
from onnx_hawq.compiler import relax_ops as ops
from onnx_hawq.arith.requant import LayerQ, add_program, gap_program, layer_params
from onnx_hawq.errors import InputError

# {node name: (lo, hi) of its first input}, set by frontend.import_onnx for the converters
INPUT_RANGES: contextvars.ContextVar[dict] = contextvars.ContextVar("hawq_input_ranges", default={})


class UnsupportedNode(InputError):
    """A node of a supported op type whose parameters these converters cannot lower."""


def const_value(expr) -> np.ndarray | None:
    """The numpy value of a constant Relax expression, else None."""
    return expr.value.numpy() if isinstance(expr, tvm.ir.GenericConst) else None


def constant(expr, what: str, op: str) -> np.ndarray:
    value = const_value(expr)
    if value is not None:
        return value
    raise UnsupportedNode(f"{op}: {what} must be a constant initializer for TVM")


def _layer(inputs, out_axis: int, op: str) -> LayerQ:
    vals = {k: constant(v, k, op) for k, v in by_slot(op, inputs).items() if k != "x" and v is not None}
    lq = layer_params(vals, out_axis)
    if isinstance(lq, str):
        raise UnsupportedNode(f"{op}: {lq}")
    return lq


def _x_range(attr) -> tuple[int, int]:
    return INPUT_RANGES.get().get(attr.get("tvm_custom", {}).get("name", ""), (0, 255))


def _requant(bb, acc, lq: LayerQ, attr, ndim: int, axis: int):
    if lq.exact(_x_range(attr)):
        return ops.requant_int(bb, acc, lq.requant(), ndim, axis)
    return ops.requant_float(bb, acc, lq.multipliers, lq.y_zp, ndim, axis)


def conv_acc(bb, x, w: np.ndarray, x_zp: int, bias: np.ndarray | None, attr, op: str):
    """int32 sum (x - x_zp) * w over each window (+ bias); padding stands for x_zp."""
    if len(w.shape) != 4 or attr.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise UnsupportedNode(f"{op}: only 2-D convolutions with explicit pads are supported")
    pads = list(attr.get("pads", (0, 0, 0, 0)))
    wi = w.astype(np.int64)
    bias = np.zeros(w.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    if x_zp:
        x = bb.emit(relax.op.nn.pad(x, [0, 0, 0, 0, pads[0], pads[2], pads[1], pads[3]], pad_value=float(x_zp)))
        pads, bias = [0, 0, 0, 0], bias - x_zp * wi.sum(axis=(1, 2, 3))
    acc = bb.emit(relax.op.nn.conv2d(x, ops.const(w, str(w.dtype)), strides=attr.get("strides", (1, 1)),
                                     padding=pads, dilation=attr.get("dilations", (1, 1)),
                                     groups=attr.get("group", 1), out_dtype="int32"))
    return bb.emit(relax.op.add(acc, ops.per_channel(bias, "int32", 4, 1))) if bias.any() else acc


def matmul_acc(bb, a, w_kn: np.ndarray, a_zp: int, bias: np.ndarray | None):
    """int32 (a - a_zp) @ w_kn (+ bias) for a constant [K, N] weight."""
    acc = bb.emit(relax.op.matmul(a, ops.const(w_kn, str(w_kn.dtype)), out_dtype="int32"))
    total = np.zeros(w_kn.shape[1], np.int64) if bias is None else bias.astype(np.int64)
    total = total - a_zp * w_kn.astype(np.int64).sum(0)
    return bb.emit(relax.op.add(acc, ops.per_channel(total, "int32", 1, 0))) if total.any() else acc


class QLinearConv(OnnxOpConverter):
    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        lq = _layer(inputs, 0, "QLinearConv")
        acc = conv_acc(bb, inputs[0], lq.w, lq.x_zp, lq.bias, attr, "QLinearConv")
        return _requant(bb, acc, lq, attr, 4, 1)


class QLinearMatMul(OnnxOpConverter):
    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        if len(constant(inputs[3], "b", "QLinearMatMul").shape) != 2:
            raise UnsupportedNode("QLinearMatMul: only a 2-D constant right-hand side is supported")
        lq = _layer(inputs, 1, "QLinearMatMul")
        acc = matmul_acc(bb, inputs[0], np.ascontiguousarray(lq.w.T), lq.x_zp, None)
        return _requant(bb, acc, lq, attr, 1, 0)


class QGemm(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        if attr.get("transA", 0) or attr.get("alpha", 1.0) != 1.0 or len(inputs) < 9 or inputs[7] is None:
            raise UnsupportedNode("QGemm: needs transA=0, alpha=1 and a quantized output (y_scale)")
        lq = _layer(inputs, 0 if attr.get("transB", 0) else 1, "QGemm")
        acc = matmul_acc(bb, inputs[0], np.ascontiguousarray(lq.w.T), lq.x_zp, lq.bias)
        return _requant(bb, acc, lq, attr, 1, 0)


class ConvInteger(OnnxOpConverter):
    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        w, zps = constant(inputs[1], "w", "ConvInteger"), _zero_points(inputs)
        if zps is None or not zps[1]:
            raise UnsupportedNode("ConvInteger: needs a constant per-tensor x zero point and zero w zero points")
        return conv_acc(bb, inputs[0], w, zps[0], None, attr, "ConvInteger")


def _zero_points(inputs) -> tuple[int, bool] | None:
    """(x zero point, w zero points all zero) of a ConvInteger/MatMulInteger node; None if not constant."""
    zps = [const_value(z) if z is not None else np.zeros(1, np.int64) for z in (list(inputs) + [None] * 4)[2:4]]
    if any(z is None for z in zps) or zps[0].size != 1:
        return None
    return int(zps[0].reshape(())), not np.any(zps[1] != 0)


class MatMulInteger(OnnxOpConverter):
    """u8 x constant s8 [K, N] -> int32 as an int8 matmul minus x_zp * column sums; TVM's own converter
    (int32 casts of both operands) for anything else."""

    @classmethod
    def get_converter(cls, opset):
        from tvm.relax.frontend.onnx.onnx_frontend import MatMulInteger as Stock

        fallback = Stock.get_converter(opset)

        def convert(bb, inputs, attr, params):
            w, zps = const_value(inputs[1]), _zero_points(inputs)
            if w is None or w.ndim != 2 or w.dtype != np.int8 or zps is None or not zps[1] \
                    or inputs[0].ty.dtype.dtype != "uint8":
                return fallback(bb, inputs, attr, params)
            return matmul_acc(bb, inputs[0], w, zps[0], None)

        return convert


def _scalars(inputs, idx, op: str) -> list[np.ndarray]:
    vals = [constant(inputs[i], f"input {i}", op) if i < len(inputs) and inputs[i] is not None else None
            for i in idx]
    if any(v is None or v.size != 1 for v in vals):
        raise UnsupportedNode(f"{op}: scales and zero points must be constant scalars")
    return [v.reshape(()) for v in vals]


class QLinearAdd(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        prog = add_program(*_scalars(inputs, (1, 2, 4, 5, 6, 7), "QLinearAdd"))
        a, b = inputs[0], inputs[3]
        if prog.table is not None:
            rows = relax.op.multiply(relax.op.astype(a, "int32"), ops.const(256, "int32"))
            return ops.take_table(bb, prog.table, bb.emit(relax.op.add(rows, relax.op.astype(b, "int32"))))
        v = relax.op.add(relax.op.multiply(relax.op.astype(a, "int64"), ops.const(prog.ba, "int64")),
                         relax.op.multiply(relax.op.astype(b, "int64"), ops.const(prog.bb, "int64")))
        v = bb.emit(relax.op.add(v, ops.const(prog.f, "int64")))
        q = ops.rne_shift(bb, v, ops.const(prog.c, "int64"), ops.const((1 << (prog.c - 1)) - 1, "int64"))
        return ops.to_uint8(bb, q, 0, 0, 255)


class QLinearGlobalAveragePool(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x = inputs[0]
        shape = [int(d.value) if isinstance(d, tirx.IntImm) else None for d in x.ty.shape]
        axes = [1, 2] if attr.get("channels_last", 0) else [2, 3]
        if len(shape) != 4 or None in [shape[a] for a in axes]:
            raise UnsupportedNode("QLinearGlobalAveragePool: needs a 4-D input with static spatial size")
        xs, xz, ys, yz = _scalars(inputs, (1, 2, 3, 4), "QLinearGlobalAveragePool")
        try:
            prog = gap_program(xs, xz, ys, yz, shape[axes[0]] * shape[axes[1]])
        except ValueError as e:
            raise UnsupportedNode(f"QLinearGlobalAveragePool: {e}") from None
        s = bb.emit(relax.op.sum(relax.op.astype(x, "int32"), axis=axes, keepdims=True))
        if prog.table is not None:
            return ops.take_table(bb, prog.table, s)
        acc = bb.emit(relax.op.add(s, ops.const(prog.offset, "int32"))) if prog.offset else s
        return ops.requant_int(bb, acc, prog.req, 4, 1)


def quantize_linear(base: type) -> type:
    """TVM's QuantizeLinear, with per-tensor 8-bit outputs rounded half to even on every target."""

    class QuantizeLinear(base):
        @classmethod
        def get_converter(cls, opset):
            fallback = base.get_converter(opset)

            def convert(bb, inputs, attr, params):
                scale, zp = const_value(inputs[1]), const_value(inputs[2]) if inputs[2] is not None else None
                if scale is None or zp is None or scale.size != 1 or zp.size != 1 or zp.dtype.kind not in "ui" \
                        or zp.dtype.itemsize != 1 or attr.get("block_size", 0):
                    return fallback(bb, inputs, attr, params)
                return _quantize(bb, inputs[0], scale.reshape(()), zp.reshape(()))

            return convert

    return QuantizeLinear


def _quantize(bb, x, scale: np.ndarray, zp: np.ndarray):
    """clamp(rne(x / scale), qmin - zp, qmax - zp) + zp, as onnxruntime computes it."""
    info, z = np.iinfo(zp.dtype), int(zp)
    v = relax.op.divide(x, ops.const(scale, "float32"))
    v = relax.op.minimum(relax.op.maximum(v, ops.const(info.min - z, "float32")), ops.const(info.max - z, "float32"))
    q = relax.op.add(relax.op.astype(ops.nearbyint(bb, bb.emit(v)), "int32"), ops.const(z, "int32"))
    return bb.emit(relax.op.astype(q, str(zp.dtype)))


CONVERTERS = {c.__name__: c for c in (QLinearConv, QLinearMatMul, QGemm, ConvInteger, MatMulInteger,
                                      QLinearAdd, QLinearGlobalAveragePool)}
