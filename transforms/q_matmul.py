"""Rule: MatMul by a constant 2-D weight (+ fused Relu) -> QLinearMatMul, per-column weights."""

from __future__ import annotations

from onnx_hawq.annotate import QNode
from onnx_hawq.qcontext import QuantContext
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qrule import QRule, layer_replacement

ORDER = ("x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp")


def check(ctx: QuantContext, qn: QNode) -> str | None:
    return None if ctx.consts[qn.layer.weight].ndim == 2 else "MatMul weight is not 2-D"


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    return layer_replacement(ctx, qn, "QLinearMatMul", ORDER)


RULE = QRule("matmul", check, replace)
