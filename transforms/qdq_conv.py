"""Rule: QLinearConv -> DequantizeLinear(x, w per output channel, int32 bias) -> Conv -> QuantizeLinear.

onnxruntime's QDQ fusion turns the pattern back into QLinearConv when the weights are int8; a fused
Relu needs no node (the output zero point is 0, so QuantizeLinear saturates negatives to 0)."""

from __future__ import annotations

import onnx

from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.int_conv import CONV_ATTRS
from onnx_hawq.transforms.qdq_common import layer_reason, layer_replacement


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QLinearConv" and node.domain in ("", "ai.onnx") else None


def check(graph: Graph, node) -> str | None:
    return layer_reason(graph, node, 0)


def replace(graph: Graph, node) -> Replacement:
    rep = layer_replacement(graph, node, "Conv", 0)
    conv = next(n for n in rep.add if n.op_type == "Conv")
    conv.attribute.extend(a for a in node.attribute if a.name in CONV_ATTRS)
    return rep


RULE = Rule("qlinearconv-to-qdq", match, check, replace)
