"""Rule: GlobalAveragePool (or a global ReduceMean/AveragePool) -> com.microsoft QLinearGlobalAveragePool.

With a symbolic spatial size onnxruntime (and the reference) divide by the size of the tensor at run
time; such a pool is not aligned for exactness (`exact` false) and its integer form is refused."""

from __future__ import annotations

from onnx import helper

from onnx_hawq.arith.dyadic import dyadic
from onnx_hawq.arith.ort_math import gap_multiplier
from onnx_hawq.arith.signatures import domain_of, ordered
from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext, clip_node
from onnx_hawq.transforms.qrule import node_record, output_name, qrule, removed


# pooled values assumed at most when the spatial size is symbolic (onnxruntime divides by the size it
# sees at run time; the multiplier must stay in its range for every size up to this)
MAX_POOLED = 1 << 20


def check(ctx: QuantContext, qn: QNode) -> str | None:
    n = ctx.spatial.get(qn.inputs[0])
    xs, ys = ctx.params[qn.inputs[0]].scale, ctx.params[qn.out].scale
    ratios = [gap_multiplier(xs, ys, k) for k in ((n,) if n else (1, MAX_POOLED))]
    if not all(2.0**-32 <= r < 256 for r in ratios):
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
    n = ctx.spatial.get(x)  # None: symbolic, the multiplier is formed at run time
    fixed = {"dyadic": [list(dyadic(float(gap_multiplier(ctx.params[x].scale, ctx.params[qn.out].scale, n))))]} \
        if n else {}
    row = node_record(ctx, node, qn, **fixed, exact=ctx.exact.get(qn.out, False))
    return Replacement(remove=removed(qn), add=[node, *clip], constants={**c1, **c2, **cc}, records=[row])


rule = qrule("gap", (Kind.GAP,), check, replace)
