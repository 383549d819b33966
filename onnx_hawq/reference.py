"""A numpy reference interpreter for the integer graphs onnx-hawq emits.

Integer ops are computed exactly (int64 accumulators); requantization reproduces onnxruntime's
float32 arithmetic step by step (float32(acc) * float32 multiplier, clamp, round-half-to-even),
which for our dyadic multipliers equals the integer form round(acc * b / 2^c). Ops that are not
ours (float islands) run through onnx.reference.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnx_hawq.arith.ort_math import (dequantize_linear, gap_multiplier, layer_multiplier, qlinear_add,
                                      quantize_linear, requantize)

F32 = np.float32


def conv_pads(attrs, size, kernel, strides, dilations) -> list[int]:
    """[top, left, bottom, right] pads of a 2-D convolution: explicit `pads`, or those auto_pad
    implies (VALID: none; SAME_UPPER/SAME_LOWER: output = ceil(input / stride), the odd pad at the
    end for SAME_UPPER and at the beginning for SAME_LOWER, as ONNX specifies)."""
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "NOTSET":
        return list(attrs.get("pads", [0, 0, 0, 0]))
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise NotImplementedError(f"Conv auto_pad {mode!r} is not an ONNX padding mode")
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
        small, large = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else large)
        end.append(large if mode == "SAME_UPPER" else small)
    return begin + end


def _conv_int(x, w, attrs):
    """Exact integer N-D... 2-D convolution (groups, strides, pads, dilations) in int64."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    group = attrs.get("group", 1)
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    pads = conv_pads(attrs, (h, wd), (kh, kw), (sh, sw), (dh, dw))
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((n, m, oh, ow), np.int64)
    mg = m // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg].astype(np.float64)
        win = np.lib.stride_tricks.sliding_window_view(xs, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
        win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :oh, :ow]
        wg = w[g * mg:(g + 1) * mg].astype(np.float64)
        out[:, g * mg:(g + 1) * mg] = np.einsum("ncxyij,mcij->nmxy", win, wg, optimize=True).astype(np.int64)
    return out


def qlinear_conv(x, xs, xz, w, ws, wz, ys, yz, b=None, **attrs):
    acc = _conv_int(x.astype(np.int64) - int(xz), w.astype(np.int64) - np.asarray(wz, np.int64).reshape(-1, 1, 1, 1), attrs)
    if b is not None:
        acc += b.astype(np.int64).reshape(1, -1, 1, 1)
    mult = np.broadcast_to(layer_multiplier(xs, ws, ys), (w.shape[0],)).reshape(1, -1, 1, 1)
    return requantize(acc, mult, int(yz))


def _matmul_int(a, az, b, bz):
    a64 = a.astype(np.float64) - float(az)
    b64 = b.astype(np.float64) - np.asarray(bz, np.float64).reshape(1, -1)
    return np.matmul(a64, b64).astype(np.int64)


def qgemm(a, as_, az, b, bs, bz, c=None, ys=None, yz=None, transA=0, transB=0, alpha=1.0, **_):
    bmat = b.T if transB else b
    acc = _matmul_int(a.T if transA else a, az, bmat, np.broadcast_to(np.asarray(bz), (bmat.shape[1],)))
    if c is not None:
        acc += c.astype(np.int64)
    return requantize(acc, np.broadcast_to(layer_multiplier(as_, bs, ys), (bmat.shape[1],)), int(yz))


def qlinear_matmul(a, as_, az, b, bs, bz, ys, yz):
    acc = _matmul_int(a, az, b, np.broadcast_to(np.asarray(bz), (b.shape[1],)))
    return requantize(acc, np.broadcast_to(layer_multiplier(as_, bs, ys), (b.shape[1],)), int(yz))


def qlinear_gap(x, xs, xz, ys, yz, channels_last=0):
    """QLinearGlobalAveragePool over the spatial axes (NCHW, or NHWC when channels_last)."""
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    n = int(np.prod(x.shape[2:]))
    acc = x.astype(np.int64).reshape(x.shape[0], x.shape[1], -1).sum(-1) - int(xz) * n
    y = requantize(acc, np.array(gap_multiplier(xs, ys, n)), int(yz))
    y = y.reshape(x.shape[:2] + (1,) * (x.ndim - 2))
    return np.moveaxis(y, 1, -1) if channels_last else y


KERNELS = {
    ("", "QuantizeLinear"): lambda x, s, z=0, **a: quantize_linear(x, s, z),
    ("", "DequantizeLinear"): lambda x, s, z=0, **a: dequantize_linear(x, s, z),
    ("", "QLinearConv"): qlinear_conv,
    ("", "QLinearMatMul"): lambda *i, **a: qlinear_matmul(*i),
    ("com.microsoft", "QGemm"): qgemm,
    ("com.microsoft", "QLinearAdd"): lambda *i, **a: qlinear_add(*i),
    ("com.microsoft", "QLinearGlobalAveragePool"): qlinear_gap,
    ("", "Clip"): lambda x, lo, hi, **a: np.clip(x, lo, hi),
    ("", "Max"): lambda *xs, **a: np.maximum.reduce(np.broadcast_arrays(*xs)),
    ("", "Flatten"): lambda x, axis=1: x.reshape(int(np.prod(x.shape[:axis])), -1),
    ("", "Gather"): lambda data, idx, axis=0: np.take(data, idx, axis=axis),  # lookup tables (q_lut)
}


class ReferenceRunner:
    """Runs a model node by node: our kernels for integer ops, onnx.reference for the rest."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.opsets = list(model.opset_import)

    def run(self, outputs: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        env = {**self.consts, **feeds}
        for node in self.model.graph.node:
            vals = [env[i] if i else None for i in node.input]
            for name, value in zip(node.output, self._node(node, vals)):
                env[name] = value
        names = outputs or [o.name for o in self.model.graph.output]
        return [env[n] for n in names]

    def _node(self, node, vals):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = KERNELS.get((node.domain or "", node.op_type))
        if kernel is not None:
            while vals and vals[-1] is None:
                vals.pop()
            return [kernel(*vals, **attrs)]
        return _onnx_reference(node, vals, self.opsets)


def _onnx_reference(node, vals, opsets):
    from onnx.reference import ReferenceEvaluator

    names = [f"in{k}" for k in range(len(vals))]
    clone = helper.make_node(node.op_type, [n if v is not None else "" for n, v in zip(names, vals)],
                             [f"out{k}" for k in range(len(node.output))], domain=node.domain or None)
    clone.attribute.extend(node.attribute)
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), None)
              for n, v in zip(names, vals) if v is not None]
    outs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in clone.output]
    m = helper.make_model(helper.make_graph([clone], "ref", inputs, outs), opset_imports=opsets)
    return ReferenceEvaluator(m).run(None, {n: v for n, v in zip(names, vals) if v is not None})
