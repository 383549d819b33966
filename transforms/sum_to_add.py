"""Rule: Sum of two inputs becomes Add (old-opset residual graphs use Sum)."""

from __future__ import annotations

import onnx
from onnx import helper

from onnx_hawq.transforms.graph import Graph, Replacement, Rule


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "Sum" else None


def check(graph: Graph, node) -> str | None:
    return None if len(node.input) == 2 else f"Sum has {len(node.input)} inputs"


def replace(graph: Graph, node) -> Replacement:
    add = helper.make_node("Add", list(node.input), list(node.output), name=node.name or graph.fresh("sum"))
    return Replacement(remove=[node], add=[add])


RULE = Rule("sum-to-add", match, check, replace)
