"""Rule: MatMul by a constant 2-D weight (+ fused Relu) -> QLinearMatMul, per-column weights."""

from __future__ import annotations

from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import layer_replacement, qrule


def check(ctx: QuantContext, qn: QNode) -> str | None:
    return None if ctx.consts[qn.layer.weight].ndim == 2 else "MatMul weight is not 2-D"


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    return layer_replacement(ctx, qn, "QLinearMatMul")


rule = qrule("matmul", (Kind.MATMUL,), check, replace)
