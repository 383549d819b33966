"""Rule: com.microsoft QLinearGlobalAveragePool (NCHW) -> DequantizeLinear -> GlobalAveragePool -> QuantizeLinear."""

from __future__ import annotations

import onnx
from onnx import helper

from onnx_hawq.arith.signatures import MS
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.qdq_common import activation_dequantize, around, base_name


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QLinearGlobalAveragePool" and node.domain == MS else None


def check(graph: Graph, node) -> str | None:
    if graph.attrs(node).get("channels_last", 0):
        return "channels_last=1 has no GlobalAveragePool equivalent"
    return None


def replace(graph: Graph, node) -> Replacement:
    base = base_name(node)
    x = activation_dequantize(node, "x", base)
    pool = helper.make_node("GlobalAveragePool", [x.output[0]], [f"{base}_y_float"], name=base)
    return around(graph, node, pool, [x])


RULE = Rule("qlinearglobalaveragepool-to-qdq", match, check, replace)
