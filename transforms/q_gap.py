"""Rule: GlobalAveragePool (or a global ReduceMean/AveragePool) -> com.microsoft QLinearGlobalAveragePool."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnx_hawq.annotate import QNode
from onnx_hawq.qcontext import MS, QuantContext, clip_node
from onnx_hawq.qparams import dyadic
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qrule import QRule, output_name, removed


def gap_multiplier(sx: float, sy: float, n: int) -> np.float32:
    """onnxruntime's float32 multiplier: x_scale / (y_scale * N)."""
    return np.float32(sx) / (np.float32(sy) * np.float32(n))


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
    node = helper.make_node("QLinearGlobalAveragePool", [ctx.qname(x), xs, xz, ys, yz], [output_name(ctx, qn)],
                            name=f"{qn.node.name or qn.out}_quant", domain=MS, channels_last=0)
    clip, cc, _ = clip_node(ctx, qn.out, node.output[0])
    m = gap_multiplier(ctx.params[x].scale, ctx.params[qn.out].scale, ctx.spatial[x])
    ctx.record(node, qn, dyadic=[list(dyadic(float(m)))], exact=ctx.exact.get(qn.out, False))
    return Replacement(remove=removed(qn), add=[node, *clip], constants={**c1, **c2, **cc})


RULE = QRule("gap", check, replace)
