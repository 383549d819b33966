"""The QDQ form of a quantized graph, for runtimes that take QuantizeLinear/DequantizeLinear around
float ops (onnxruntime's QDQ fusion and execution providers, OpenVINO, TensorRT-style toolchains).

Every QLinear node of `quantize_model`'s output (QLinearConv, QLinearMatMul, QGemm, QLinearAdd,
QLinearGlobalAveragePool, the float-output MatMulInteger chain) becomes DequantizeLinear -> float op ->
QuantizeLinear with the same scales, zero points and integer codes; int8 weights are dequantized per
output channel (a packed INT4 weight through its unpacking Cast, which onnxruntime folds, so its layers
still fuse into integer kernels; `int4="direct"` dequantizes the INT4 initializer itself), biases as int32 at x_scale * w_scale. Ops that already run on uint8 codes (MaxPool, Reshape, Concat,
Clip, the Max of a lone Relu) stay. The float op keeps the layer's hawq.* record (dyadic (b, c) too).
"""

from __future__ import annotations

import logging

import onnx

from onnx_hawq.arith import schema
from onnx_hawq.arith.signatures import MS
from onnx_hawq.transforms import qdq_add, qdq_conv, qdq_gap, qdq_gemm, qdq_int4, qdq_matmul, qdq_matmul_float
from onnx_hawq.transforms.graph import apply_rules

log = logging.getLogger("onnx_hawq")

INT4_FORMS = ("cast", "direct")
RULES = (qdq_conv.RULE, qdq_gemm.RULE, qdq_matmul.RULE, qdq_matmul_float.RULE, qdq_add.RULE, qdq_gap.RULE)


def to_qdq_form(model: onnx.ModelProto, int4: str = "cast") -> onnx.ModelProto:
    """A rewritten copy of `model` (a QLinear graph from `quantize_model`, packed or not); `model` is
    untouched. `int4`: how packed INT4 weights reach their DequantizeLinear ("cast": widened to int8
    first; "direct": DequantizeLinear of the INT4 initializer). A node a rule refuses is kept as it
    was and named in a warning."""
    if int4 not in INT4_FORMS:
        raise ValueError(f"int4={int4!r}: use one of {INT4_FORMS}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    rules = list(RULES) + ([qdq_int4.RULE] if int4 == "direct" else [])
    for r in apply_rules(out, rules).refused:
        log.warning("qdq form: kept %s as it was (%s): %s", r.node, r.rule, r.reason)
    if not any(n.domain == MS for n in out.graph.node):  # a plain-ONNX model for other runtimes
        kept = [o for o in out.opset_import if o.domain != MS]
        del out.opset_import[:]
        out.opset_import.extend(kept)
    del out.graph.value_info[:]
    schema.set_model_meta(out, "format", "qdq")
    return out
