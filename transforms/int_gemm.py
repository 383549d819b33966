"""Rule: com.microsoft QGemm -> MatMulInteger + int32 bias Add + integer requantization chain."""

from __future__ import annotations

import numpy as np
import onnx

from onnx_hawq.transforms.qcontext import MS
from onnx_hawq.arith.signatures import ordered, slots_of
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.int_requant import Chain, IntContext, exact_reason, layer_q, requantize



def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QGemm" and node.domain == MS else None


def _check(graph: Graph, node, ctx: IntContext) -> str | None:
    attrs = graph.attrs(node)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
        return "transA or alpha != 1"
    if len(node.input) < 8 or not node.input[7]:
        return "QGemm without y_scale has a float output"
    lq = layer_q(graph, node, 0 if attrs.get("transB", 0) else 1)
    return lq if isinstance(lq, str) else exact_reason(lq, ctx.x_range(node))


def replace(graph: Graph, node) -> Replacement:
    lq = layer_q(graph, node, 0 if graph.attrs(node).get("transB", 0) else 1)
    ch = Chain(graph, node.name or node.output[0])
    w = ch.const("weight_kn", np.ascontiguousarray(lq.w.T))
    w_zp = ch.const("w_zero_point", np.array(0, np.int8))
    io = slots_of(node)
    acc = ch.op("MatMulInteger", ordered("MatMulInteger", {"x": io["x"], "w": w, "x_zp": io["x_zp"], "w_zp": w_zp}))
    if lq.bias is not None:
        acc = ch.op("Add", [acc, ch.const("bias", lq.bias.astype(np.int32))])
    requantize(ch, acc, lq.requant(), 0, node.output[0])
    ch.nodes[0].metadata_props.extend(node.metadata_props)  # the layer keeps its hawq.* record
    return Replacement(remove=[node], add=ch.nodes, constants=ch.consts)


def rule(ctx: IntContext) -> Rule:
    return Rule("qgemm-to-matmulinteger", match, lambda graph, node: _check(graph, node, ctx), replace)
