"""Rule: Gemm (+ fused Relu) -> com.microsoft QGemm with per-column int8 weights and int32 bias."""

from __future__ import annotations

from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import layer_replacement, qrule


def check(ctx: QuantContext, qn: QNode) -> str | None:
    return None if ctx.consts[qn.layer.weight].ndim == 2 else "Gemm weight is not 2-D"


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    trans_b = 1 if qn.layer.out_axis == 0 else 0
    return layer_replacement(ctx, qn, "QGemm", transB=trans_b, alpha=1.0)


rule = qrule("gemm", (Kind.GEMM,), check, replace)
