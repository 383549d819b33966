"""Rule: Add of two quantized tensors (+ fused Relu) -> com.microsoft QLinearAdd.

A fused Relu needs no op: its output params have zero-point 0, so the uint8 saturation clamps
negatives to 0. Each branch is rescaled by its own ratio S_in/S_out (recorded as a dyadic).
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnx_hawq.arith.dyadic import dyadic
from onnx_hawq.arith.signatures import domain_of, ordered
from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext, clip_node
from onnx_hawq.transforms.qrule import node_record, output_name, qrule, removed


def check(ctx: QuantContext, qn: QNode) -> str | None:
    if qn.fused is not None and ctx.params[qn.out].zero_point != 0:
        return "fused Relu needs a zero-point-0 output"
    return None


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    a, b = qn.inputs
    as_, az, c1 = ctx.scalar_inputs(a)
    bs, bz, c2 = ctx.scalar_inputs(b)
    cs, cz, c3 = ctx.scalar_inputs(qn.out)
    slots = {"a": ctx.qname(a), "a_scale": as_, "a_zp": az, "b": ctx.qname(b), "b_scale": bs, "b_zp": bz,
             "y_scale": cs, "y_zp": cz}
    node = helper.make_node("QLinearAdd", ordered("QLinearAdd", slots), [output_name(ctx, qn)],
                            name=f"{qn.node.name or qn.out}_quant", domain=domain_of("QLinearAdd"))
    clip, cc, _ = clip_node(ctx, qn.out, node.output[0])
    sc = np.float32(ctx.params[qn.out].scale)
    ratios = [np.float32(ctx.params[t].scale) / sc for t in (a, b)]
    row = node_record(ctx, node, qn, dyadic=[list(dyadic(float(r))) for r in ratios], relu=qn.fused is not None,
                      exact=ctx.exact.get(qn.out, False))
    return Replacement(remove=removed(qn), add=[node, *clip], constants={**c1, **c2, **c3, **cc}, records=[row])


rule = qrule("add", (Kind.ADD,), check, replace)
