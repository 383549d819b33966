"""Rule: com.microsoft QLinearAdd -> an integer program: (a*ba + b*bb + f) rounded by 2^c, or a
256x256 lookup table where that program would differ from onnxruntime (see arith.requant)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from onnx_hawq.arith.requant import add_program
from onnx_hawq.transforms.qcontext import MS
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.int_requant import Chain, IntContext, rne_div, scalar, to_uint8


def match(graph: Graph, node: onnx.NodeProto):
    return node if node.op_type == "QLinearAdd" and node.domain == MS else None


def _params(graph: Graph, node) -> list | None:
    vals = [scalar(graph, node.input[i]) if i < len(node.input) else None for i in (1, 2, 4, 5, 6, 7)]
    return None if any(v is None for v in vals) else vals


def check(graph: Graph, node) -> str | None:
    vals = _params(graph, node)
    if vals is None:
        return "scales and zero-points must be constant scalars"
    if any(v.dtype != np.uint8 for v in vals[1::2]):
        return "needs uint8 tensors"
    return None


def replace(graph: Graph, node) -> Replacement:
    prog = add_program(*_params(graph, node))
    ch = Chain(graph, node.name or node.output[0])
    a, b, out = node.input[0], node.input[3], node.output[0]
    if prog.table is not None:
        ai = ch.op("Mul", [ch.op("Cast", [a], to=TensorProto.INT32), ch.const("rows", np.array(256, np.int32))])
        idx = ch.op("Add", [ai, ch.op("Cast", [b], to=TensorProto.INT32)])
        ch.op("Gather", [ch.const("table", prog.table.reshape(-1)), idx], out, axis=0)
    else:
        ta = ch.op("Mul", [ch.op("Cast", [a], to=TensorProto.INT64), ch.const("ba", np.array(prog.ba, np.int64))])
        tb = ch.op("Mul", [ch.op("Cast", [b], to=TensorProto.INT64), ch.const("bb", np.array(prog.bb, np.int64))])
        v = ch.op("Add", [ch.op("Add", [ta, tb]), ch.const("f", np.array(prog.f, np.int64))])
        to_uint8(ch, rne_div(ch, v, np.array(prog.c), 0), 0, 0, 255, out)
    return Replacement(remove=[node], add=ch.nodes, constants=ch.consts)


def rule(ctx: IntContext) -> Rule:
    return Rule("qlinearadd-to-integer", match, check, replace)
