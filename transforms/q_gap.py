"""Rule: GlobalAveragePool (or a global ReduceMean/AveragePool) -> com.microsoft QLinearGlobalAveragePool."""

from __future__ import annotations

from onnx import helper

from onnx_hawq.arith.dyadic import dyadic
from onnx_hawq.arith.ort_math import gap_multiplier
from onnx_hawq.arith.signatures import domain_of, ordered
from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext, clip_node
from onnx_hawq.transforms.qrule import node_record, output_name, qrule, removed


def check(ctx: QuantContext, qn: QNode) -> str | None:
    n = ctx.spatial.get(qn.inputs[0])
    if not n:
        return "input spatial size is unknown"
    ratio = gap_multiplier(ctx.params[qn.inputs[0]].scale, ctx.params[qn.out].scale, n)
    if not (2.0**-32 <= ratio < 256):
        return "scale ratio outside onnxruntime's supported range"
    return None


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    x = qn.inputs[0]
    xs, xz, c1 = ctx.scalar_inputs(x)
    ys, yz, c2 = ctx.scalar_inputs(qn.out)
    slots = {"x": ctx.qname(x), "x_scale": xs, "x_zp": xz, "y_scale": ys, "y_zp": yz}
    op = "QLinearGlobalAveragePool"
    node = helper.make_node(op, ordered(op, slots), [output_name(ctx, qn)],
                            name=f"{qn.node.name or qn.out}_quant", domain=domain_of(op), channels_last=0)
    clip, cc, _ = clip_node(ctx, qn.out, node.output[0])
    m = gap_multiplier(ctx.params[x].scale, ctx.params[qn.out].scale, ctx.spatial[x])
    row = node_record(ctx, node, qn, dyadic=[list(dyadic(float(m)))], exact=ctx.exact.get(qn.out, False))
    return Replacement(remove=removed(qn), add=[node, *clip], constants={**c1, **c2, **cc}, records=[row])


rule = qrule("gap", (Kind.GAP,), check, replace)
