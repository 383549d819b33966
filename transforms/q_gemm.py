"""Rule: Gemm (+ fused Relu) -> com.microsoft QGemm with per-column int8 weights and int32 bias."""

from __future__ import annotations

from onnx_hawq.annotate import QNode
from onnx_hawq.qcontext import MS, QuantContext
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qrule import QRule, layer_replacement

ORDER = ("x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "bias", "y_scale", "y_zp")


def check(ctx: QuantContext, qn: QNode) -> str | None:
    return None if ctx.consts[qn.layer.weight].ndim == 2 else "Gemm weight is not 2-D"


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    trans_b = 1 if qn.layer.out_axis == 0 else 0
    return layer_replacement(ctx, qn, "QGemm", ORDER, domain=MS, transB=trans_b, alpha=1.0)


RULE = QRule("gemm", check, replace)
