"""Rule: Conv (+ fused Relu) -> QLinearConv with per-channel int8 weights and dyadic requant."""

from __future__ import annotations

from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import layer_replacement, qrule


def check(ctx: QuantContext, qn: QNode) -> str | None:
    if ctx.consts[qn.layer.weight].ndim != 4:
        return "only 2-D convolutions have a QLinearConv kernel"
    return None


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    return layer_replacement(ctx, qn, "QLinearConv", attributes=qn.node.attribute)


rule = qrule("conv", (Kind.CONV,), check, replace)
