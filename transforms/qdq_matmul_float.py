"""Rule: a float-output MatMul layer, MatMulInteger -> Cast -> Mul(x_scale * w_scale) (q_matmul_float),
-> DequantizeLinear(x), DequantizeLinear(w per output column) -> MatMul with the same float output.

The weight scales are recovered from the product the Mul holds and the input's quantizer scale,
each chosen so that float32(x_scale * w_scale) is that product again."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_hawq.arith import schema
from onnx_hawq.arith.signatures import slots_of
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.qdq_common import activation_scale, base_name, carry_record, dequantize, weight_source


@dataclasses.dataclass(frozen=True)
class Match:
    node: onnx.NodeProto  # MatMulInteger
    cast: onnx.NodeProto
    mul: onnx.NodeProto


def match(graph: Graph, node: onnx.NodeProto):
    if node.op_type != "MatMulInteger" or "w_bits" not in schema.read_meta(node):
        return None
    cast = graph.only_consumer(node.output[0])
    if cast is None or cast.op_type != "Cast" or graph.attrs(cast).get("to") != TensorProto.FLOAT:
        return None
    mul = graph.only_consumer(cast.output[0])
    return Match(node, cast, mul) if mul is not None and mul.op_type == "Mul" else None


def check(graph: Graph, m: Match) -> str | None:
    s = slots_of(m.node)
    src = weight_source(graph, s["w"])
    if src is None or graph.const(src[0]).ndim != 2:
        return "weight is not a constant 2-D tensor"
    deq = graph.const(m.mul.input[1])
    if deq is None or deq.ndim != 1 or deq.size != graph.const(src[0]).shape[1]:
        return "the dequantization factors are not a constant per-column vector"
    if activation_scale(graph, s["x"]) is None:
        return "the input's quantizer scale is not found"
    if graph.const(s.get("w_zp", "")) is None or np.any(graph.const(s["w_zp"]) != 0):
        return "weight zero point is not a constant 0"
    return None


def weight_scales(x_scale: np.float32, product: np.ndarray) -> np.ndarray:
    """float32 w with float32(x_scale * w) == product wherever one of the nearest candidates gives it."""
    w = (product.astype(np.float64) / np.float64(x_scale)).astype(np.float32)
    for cand in (np.nextafter(w, np.float32(np.inf)), np.nextafter(w, np.float32(-np.inf))):
        wrong = (x_scale * w).astype(np.float32) != product
        w = np.where(wrong & ((x_scale * cand).astype(np.float32) == product), cand, w)
    return w.astype(np.float32)


def replace(graph: Graph, m: Match) -> Replacement:
    s, base = slots_of(m.node), base_name(m.node)
    xs = activation_scale(graph, s["x"])
    ws = f"{base}_w_scale"
    x = dequantize([s["x"], xs, s["x_zp"]], f"{base}_x_float", f"{base}_x_float_dequantize")
    w = dequantize([s["w"], ws, s["w_zp"]], f"{base}_w_float", f"{base}_w_float_dequantize", 1)
    matmul = helper.make_node("MatMul", [x.output[0], w.output[0]], [m.mul.output[0]], name=base)
    carry_record(m.node, matmul)
    scales = weight_scales(np.float32(graph.const(xs)), graph.const(m.mul.input[1]).astype(np.float32))
    return Replacement(remove=[m.node, m.cast, m.mul], add=[x, w, matmul], constants={ws: scales})


RULE = Rule("matmulinteger-float-to-qdq", match, check, replace)
