"""Rule: DequantizeLinear(Cast(INT4 initializer -> INT8)) -> DequantizeLinear(INT4 initializer), opset 21.

The weight-compression form of other toolchains (ONNX's int4 DequantizeLinear, as ORT's and ModelOpt's
int4 exports write it). onnxruntime does not fuse it into integer kernels: it dequantizes once and
runs the float op, so `to_qdq_form` applies this rule only when asked (`int4="direct"`)."""

from __future__ import annotations

import numpy as np
import onnx

from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.qdq_common import dequantize, weight_source


def match(graph: Graph, node: onnx.NodeProto):
    if node.op_type != "DequantizeLinear":
        return None
    src = weight_source(graph, node.input[0])
    return node if src is not None and src[1] else None


def check(graph: Graph, node) -> str | None:
    if graph.only_consumer(node.input[0]) is not node:
        return "the widened weight is read by more than one node"
    zp = graph.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zp is not None and np.any(zp != 0):
        return "weight zero points are not 0"
    return None


def replace(graph: Graph, node) -> Replacement:
    """Zero point omitted (0 by default in the INT4 type), so only the packed codes stay at 4 bits."""
    cast = graph.producer[node.input[0]]
    src, _ = weight_source(graph, node.input[0])
    axis = graph.attrs(node).get("axis")
    return Replacement(remove=[cast, node], add=[dequantize([src, node.input[1]], node.output[0], node.name, axis)])


RULE = Rule("int4-dequantize-direct", match, check, replace)
