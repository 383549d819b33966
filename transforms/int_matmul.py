"""Rule: QLinearMatMul by a constant weight -> MatMulInteger + integer requantization chain."""

from __future__ import annotations

import numpy as np
import onnx

from onnx_hawq.arith.signatures import ordered, slots_of
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.int_requant import Chain, IntContext, exact_reason, layer_q, requantize



def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QLinearMatMul" and node.domain in ("", "ai.onnx") else None


def _check(graph: Graph, node, ctx: IntContext) -> str | None:
    w = graph.const(node.input[3])
    if w is None or w.ndim != 2:
        return "weight is not a constant 2-D matrix"
    lq = layer_q(graph, node, 1)
    return lq if isinstance(lq, str) else exact_reason(lq, ctx.x_range(node))


def replace(graph: Graph, node) -> Replacement:
    lq = layer_q(graph, node, 1)
    ch = Chain(graph, node.name or node.output[0])
    w_zp = ch.const("w_zero_point", np.array(0, np.int8))
    io = slots_of(node)
    acc = ch.op("MatMulInteger", ordered("MatMulInteger", {"x": io["x"], "w": io["w"], "x_zp": io["x_zp"],
                                                            "w_zp": w_zp}))
    requantize(ch, acc, lq.requant(), 0, node.output[0])
    ch.nodes[0].metadata_props.extend(node.metadata_props)  # the layer keeps its hawq.* record
    return Replacement(remove=[node], add=ch.nodes, constants=ch.consts)


def rule(ctx: IntContext) -> Rule:
    return Rule("qlinearmatmul-to-matmulinteger", match, lambda graph, node: _check(graph, node, ctx), replace)
