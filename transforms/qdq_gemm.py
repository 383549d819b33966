"""Rule: com.microsoft QGemm -> DequantizeLinear(x, w per output column, int32 bias) -> Gemm -> QuantizeLinear."""

from __future__ import annotations

import onnx
from onnx import helper

from onnx_hawq.arith.signatures import MS
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.qdq_common import layer_reason, layer_replacement


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QGemm" and node.domain == MS else None


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _axis(node) -> int:
    """Output channels of B: its rows when transposed (transB=1), else its columns."""
    return 0 if _attrs(node).get("transB", 0) else 1


def check(graph: Graph, node) -> str | None:
    if _attrs(node).get("transA", 0):
        return "transA=1 is not written by onnx-hawq"
    return layer_reason(graph, node, _axis(node))


def replace(graph: Graph, node) -> Replacement:
    a = _attrs(node)
    return layer_replacement(graph, node, "Gemm", _axis(node), transB=a.get("transB", 0), alpha=a.get("alpha", 1.0))


RULE = Rule("qgemm-to-qdq", match, check, replace)
