"""Rule: inference-time no-ops (Identity, Dropout) disappear; consumers read their input."""

from __future__ import annotations

import onnx

from onnx_hawq.transforms.graph import Graph, Replacement, Rule


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type in ("Identity", "Dropout") else None


def check(graph: Graph, node) -> str | None:
    if node.output[0] in graph.graph_outputs:
        return "its output is a graph output"
    if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
        mode = graph.const(node.input[2])
        if mode is None or bool(mode):
            return "dropout may be in training mode"
    return None


def replace(graph: Graph, node) -> Replacement:
    return Replacement(remove=[node], add=[], rename={node.output[0]: node.input[0]})


RULE = Rule("remove-identity", match, check, replace)
