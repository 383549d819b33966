"""Rule: com.microsoft QLinearGlobalAveragePool -> int32 ReduceSum + integer requantization, or a
lookup table over the sum where the integer form would differ from onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from onnx_hawq.arith.requant import MAX_TABLE, gap_program
from onnx_hawq.transforms.qcontext import MS
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.int_requant import Chain, IntContext, requantize, scalar


def rule(ctx: IntContext) -> Rule:
    """The rule, given the spatial size (number of averaged values) of each pooled tensor."""
    spatial = ctx.spatial

    def match(graph: Graph, node: onnx.NodeProto):
        return node if node.op_type == "QLinearGlobalAveragePool" and node.domain == MS else None

    def check(graph: Graph, node) -> str | None:
        if any(scalar(graph, node.input[i]) is None for i in range(1, 5)):
            return "scales and zero-points must be constant scalars"
        if not spatial.get(node.input[0]):
            return "input spatial size is unknown"
        if 255 * spatial[node.input[0]] + 1 > MAX_TABLE:
            return "too many pooled values to check the integer form exhaustively"
        return None

    def replace(graph: Graph, node) -> Replacement:
        xs, xz, ys, yz = (scalar(graph, node.input[i]) for i in range(1, 5))
        prog = gap_program(xs, xz, ys, yz, spatial[node.input[0]])
        ch = Chain(graph, node.name or node.output[0])
        last = graph.attrs(node).get("channels_last", 0)
        s = reduce_sum(ch, ch.op("Cast", [node.input[0]], to=TensorProto.INT32), [1, 2] if last else [2, 3])
        if prog.table is not None:
            ch.op("Gather", [ch.const("table", prog.table), s], node.output[0], axis=0)
        else:
            acc = ch.op("Add", [s, ch.const("offset", np.array(prog.offset, np.int32))]) if prog.offset else s
            requantize(ch, acc, prog.req, 0, node.output[0])
        return Replacement(remove=[node], add=ch.nodes, constants=ch.consts)

    return Rule("qlinearglobalaveragepool-to-integer", match, check, replace)


def reduce_sum(ch: Chain, x: str, axes: list[int]) -> str:
    """ReduceSum with keepdims=1 (axes as an input from opset 13, an attribute before)."""
    opset = next((o.version for o in ch.graph.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:
        return ch.op("ReduceSum", [x, ch.const("axes", np.array(axes, np.int64))], keepdims=1)
    return ch.op("ReduceSum", [x], keepdims=1, axes=axes)
