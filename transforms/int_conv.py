"""Rule: QLinearConv -> ConvInteger + int32 bias Add + integer requantization chain."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.arith.signatures import ordered, slots_of
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.int_requant import Chain, IntContext, exact_reason, layer_q, requantize

CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QLinearConv" and node.domain in ("", "ai.onnx") else None


def replace(graph: Graph, node) -> Replacement:
    lq = layer_q(graph, node, 0)
    ch = Chain(graph, node.name or node.output[0])
    w_zp = ch.const("w_zero_point", np.array(0, np.int8))
    io = slots_of(node)
    slots = {"x": io["x"], "w": io["w"], "x_zp": io["x_zp"], "w_zp": w_zp}
    conv = helper.make_node("ConvInteger", ordered("ConvInteger", slots),
                            [graph.fresh(f"{ch.base}_acc")], name=graph.fresh(ch.base))
    conv.attribute.extend(a for a in node.attribute if a.name in CONV_ATTRS)
    ch.nodes.append(conv)
    acc = conv.output[0]
    if lq.bias is not None:
        acc = ch.op("Add", [acc, ch.const("bias", lq.bias.astype(np.int32).reshape(-1, 1, 1))])
    requantize(ch, acc, lq.requant(), 2, node.output[0])
    ch.nodes[0].metadata_props.extend(node.metadata_props)  # the layer keeps its hawq.* record
    return Replacement(remove=[node], add=ch.nodes, constants=ch.consts)


def rule(ctx: IntContext) -> Rule:
    def check(graph: Graph, node) -> str | None:
        lq = layer_q(graph, node, 0)
        return lq if isinstance(lq, str) else exact_reason(lq, ctx.x_range(node))

    return Rule("qlinearconv-to-convinteger", match, check, replace)
