"""Rule: Conv (+ fused Relu) -> QLinearConv with per-channel int8 weights and dyadic requant."""

from __future__ import annotations

from onnx_hawq.annotate import QNode
from onnx_hawq.qcontext import QuantContext
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qrule import QRule, layer_replacement

ORDER = ("x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "bias")


def check(ctx: QuantContext, qn: QNode) -> str | None:
    if ctx.consts[qn.layer.weight].ndim != 4:
        return "only 2-D convolutions have a QLinearConv kernel"
    return None


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    return layer_replacement(ctx, qn, "QLinearConv", ORDER, attributes=qn.node.attribute)


RULE = QRule("conv", check, replace)
