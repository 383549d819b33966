"""Shared pieces of the QDQ rules (`qdq_*.py`): the DequantizeLinear / QuantizeLinear nodes around a
float op, the weight's constant behind an unpacking Cast, and the layer's hawq.* record carried over.

A QLinear node `Q(op(DQ(x), DQ(w), DQ(bias)))` keeps its scales, zero points and integer codes: the
activation DQ/Q read the node's own (scale, zero point) inputs, the weight DQ reads its int8 codes
per output channel, the int32 bias is dequantized at x_scale * w_scale.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_hawq.arith import schema
from onnx_hawq.arith.signatures import SIGNATURES, slots_of
from onnx_hawq.transforms.graph import Graph, Replacement

INT4_TYPES = (TensorProto.INT4, TensorProto.UINT4)
# ops that move or clamp uint8 codes without changing their quantizer (see q_passthrough, q_concat)
CODE_OPS = {"Clip", "Max", "MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat"}


def dequantize(inputs: list[str], out: str, name: str, axis: int | None = None) -> onnx.NodeProto:
    attrs = {} if axis is None else {"axis": axis}
    return helper.make_node("DequantizeLinear", inputs, [out], name=name, **attrs)


def quantize(x: str, scale: str, zero_point: str, out: str, name: str) -> onnx.NodeProto:
    return helper.make_node("QuantizeLinear", [x, scale, zero_point], [out], name=name)


def weight_source(graph: Graph, tensor: str) -> tuple[str, bool] | None:
    """(initializer holding `tensor`'s codes, whether it is packed INT4): the tensor itself, or the
    INT4 initializer behind a `pack_weights` Cast; None when the weight is not a constant."""
    cast = graph.producer.get(tensor)
    if cast is None:
        return (tensor, False) if graph.const(tensor) is not None else None
    src = cast.input[0] if cast.op_type == "Cast" and cast.input else ""
    init = next((i for i in graph.g.initializer if i.name == src), None)
    return (src, True) if init is not None and init.data_type in INT4_TYPES else None


def weight_reason(graph: Graph, node: onnx.NodeProto, axis: int) -> str | None:
    """Why `node`'s weight cannot get a per-channel DequantizeLinear on `axis` (None: it can)."""
    s = slots_of(node)
    if weight_source(graph, s["w"]) is None:
        return "weight is not a constant (nor a packed INT4 initializer)"
    shape = graph.const(weight_source(graph, s["w"])[0]).shape
    scales, zps = graph.const(s["w_scale"]), graph.const(s.get("w_zp", ""))
    if scales is None or scales.ndim > 1 or len(shape) <= axis:
        return "weight scales are not a constant per-channel vector"
    if scales.ndim == 1 and scales.size != shape[axis]:
        return f"{scales.size} weight scales for {shape[axis]} output channels"
    if zps is not None and np.any(zps != 0):
        return "weight zero points are not 0"
    return None


def weight_dequantize(graph: Graph, node: onnx.NodeProto, out: str, axis: int) -> onnx.NodeProto:
    """The weight's DequantizeLinear on its int8 codes per output channel: the initializer, or the
    `Cast(INT4 -> INT8)` of a packed one, which onnxruntime folds before its QDQ fusion (so the layer
    still fuses into its integer kernel); `qdq_int4` can make it read the INT4 initializer directly."""
    s = slots_of(node)
    zp = [s["w_zp"]] if "w_zp" in s else []
    scalar = graph.const(s["w_scale"]).ndim == 0
    return dequantize([s["w"], s["w_scale"], *zp], out, f"{out}_dequantize", None if scalar else axis)


def bias_dequantize(graph: Graph, node: onnx.NodeProto, out: str) -> tuple[onnx.NodeProto, dict]:
    """int32 bias -> DequantizeLinear at x_scale * w_scale per channel (zero point 0)."""
    s = slots_of(node)
    scale = (np.float32(graph.const(s["x_scale"])) * graph.const(s["w_scale"]).astype(np.float32)).astype(np.float32)
    name = f"{s['bias']}_scale"
    axis = None if scale.ndim == 0 else 0
    return dequantize([s["bias"], name], out, f"{out}_dequantize", axis), {name: scale}


def activation_dequantize(node: onnx.NodeProto, slot: str, base: str) -> onnx.NodeProto:
    """DequantizeLinear of `node`'s uint8 input in `slot` with the node's own (scale, zero point)."""
    s = slots_of(node)
    out = f"{base}_{slot}_float"
    return dequantize([s[slot], s[f"{slot}_scale"], s[f"{slot}_zp"]], out, f"{out}_dequantize")


def carry_record(src: onnx.NodeProto, dst: onnx.NodeProto) -> None:
    """Copy `src`'s hawq.* record onto `dst`, its op entry naming `dst`'s op type."""
    record = schema.read_meta(src)
    if "op" in record:
        record["op"] = dst.op_type
    schema.write_meta(dst, record)


def around(graph: Graph, node: onnx.NodeProto, float_node: onnx.NodeProto, before: list[onnx.NodeProto],
           constants: dict | None = None) -> Replacement:
    """Replace `node` by `before` + `float_node` + a QuantizeLinear to `node`'s output with its y params."""
    s = slots_of(node)
    carry_record(node, float_node)
    q = quantize(float_node.output[0], s["y_scale"], s["y_zp"], node.output[0], f"{node.output[0]}_quantize")
    return Replacement(remove=[node], add=[*before, float_node, q], constants=constants or {})


def base_name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def layer_replacement(graph: Graph, node: onnx.NodeProto, float_op: str, axis: int, **attrs) -> Replacement:
    """QLinearConv / QLinearMatMul / QGemm -> DQ(x), DQ(w), [DQ(bias)] -> `float_op` -> Q."""
    base = base_name(node)
    x = activation_dequantize(node, "x", base)
    w = weight_dequantize(graph, node, f"{base}_w_float", axis)
    before, consts = [x, w], {}
    if "bias" in slots_of(node):
        b, consts = bias_dequantize(graph, node, f"{base}_bias_float")
        before.append(b)
    op = helper.make_node(float_op, [n.output[0] for n in before], [f"{base}_y_float"], name=base, **attrs)
    return around(graph, node, op, before, consts)


def layer_reason(graph: Graph, node: onnx.NodeProto, axis: int) -> str | None:
    """Why a QLinear layer node cannot become its QDQ form (None: it can)."""
    s = slots_of(node)
    if "y_scale" not in s:
        return "the node has a float output (no y_scale)"
    if "bias" in s and (graph.const(s["bias"]) is None or graph.const(s["x_scale"]) is None):
        return "bias or input scale is not a constant"
    return weight_reason(graph, node, axis)


def activation_scale(graph: Graph, tensor: str) -> str | None:
    """The scale initializer of uint8 `tensor`'s quantizer: through ops on codes back to the
    QuantizeLinear (or QLinear node) that wrote it; None when it cannot be found."""
    node = graph.producer.get(tensor)
    while node is not None and node.op_type in CODE_OPS:
        node = graph.producer.get(node.input[0])
    if node is None:
        return None
    if node.op_type == "QuantizeLinear":
        scale = node.input[1]
    else:
        scale = slots_of(node).get("y_scale", "") if node.op_type in SIGNATURES else ""
    return scale if graph.const(scale) is not None and graph.const(scale).ndim == 0 else None
