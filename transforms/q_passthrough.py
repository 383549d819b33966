"""Rule: data-movement ops (MaxPool, Flatten, Reshape, Slice, Resize nearest, ...) run on uint8 as they are; a standalone
Relu becomes Max(q, zero_point). Outputs share the input's scale and zero-point."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import node_record, qrule


def check(ctx: QuantContext, qn: QNode) -> str | None:
    return None


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    x = qn.inputs[0]
    if qn.kind == Kind.RELU:
        zp = f"{qn.out}_relu_floor"
        node = helper.make_node("Max", [ctx.qname(x), zp], [ctx.qname(qn.out)], name=f"{qn.node.name or qn.out}_quant")
        consts = {zp: np.array(ctx.params[x].zero_point, np.uint8)}
    else:
        rest = list(qn.node.input[1:])
        node = helper.make_node(qn.node.op_type, [ctx.qname(x), *rest], [ctx.qname(qn.out)],
                                name=f"{qn.node.name or qn.out}_quant")
        node.attribute.extend(qn.node.attribute)
        consts = {}
    row = node_record(ctx, node, qn)
    return Replacement(remove=[qn.node], add=[node], constants=consts, records=[row])


rule = qrule("pass", (Kind.PASS, Kind.RELU), check, replace)
