"""Rule: com.microsoft QLinearAdd -> DequantizeLinear(a), DequantizeLinear(b) -> Add -> QuantizeLinear.

A fused Relu needs no node: the output zero point is 0 (q_add refuses otherwise), so QuantizeLinear
saturates negatives to 0 as QLinearAdd does."""

from __future__ import annotations

import onnx
from onnx import helper

from onnx_hawq.arith.signatures import MS
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.qdq_common import activation_dequantize, around, base_name


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QLinearAdd" and node.domain == MS else None


def check(graph: Graph, node) -> str | None:
    return None if len(node.input) == 8 and node.input[7] else "the output zero point is missing"


def replace(graph: Graph, node) -> Replacement:
    base = base_name(node)
    a, b = activation_dequantize(node, "a", base), activation_dequantize(node, "b", base)
    add = helper.make_node("Add", [a.output[0], b.output[0]], [f"{base}_y_float"], name=base)
    return around(graph, node, add, [a, b])


RULE = Rule("qlinearadd-to-qdq", match, check, replace)
