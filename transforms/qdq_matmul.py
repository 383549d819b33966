"""Rule: QLinearMatMul by a constant weight -> DequantizeLinear(x, w per output column) -> MatMul -> QuantizeLinear."""

from __future__ import annotations

import onnx

from onnx_hawq.arith.signatures import slots_of
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.qdq_common import layer_reason, layer_replacement, weight_source


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QLinearMatMul" and node.domain in ("", "ai.onnx") else None


def check(graph: Graph, node) -> str | None:
    src = weight_source(graph, slots_of(node)["w"])
    if src is not None and graph.const(src[0]).ndim != 2:
        return "weight is not 2-D"
    return layer_reason(graph, node, 1)


def replace(graph: Graph, node) -> Replacement:
    return layer_replacement(graph, node, "MatMul", 1)


RULE = Rule("qlinearmatmul-to-qdq", match, check, replace)
