"""Rule: Concat of quantized tensors -> the same Concat on uint8 codes.

Annotation gives every input and the output one shared scale and zero point (the union of their
ranges), so concatenating codes is exact: no requantization, nothing float in between."""

from __future__ import annotations

from onnx import helper

from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import node_record, qrule


def check(ctx: QuantContext, qn: QNode) -> str | None:
    out = ctx.params[qn.out]
    differ = [t for t in qn.inputs if ctx.params[t] != out]
    if differ:
        return f"input quantizers differ from the output's ({', '.join(differ)}: an aligned Add or pool)"
    return None


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    node = helper.make_node("Concat", [ctx.qname(t) for t in qn.inputs], [ctx.qname(qn.out)],
                            name=f"{qn.node.name or qn.out}_quant")
    node.attribute.extend(qn.node.attribute)
    row = node_record(ctx, node, qn, exact=True)
    return Replacement(remove=[qn.node], add=[node], constants={}, records=[row])


rule = qrule("concat", (Kind.CONCAT,), check, replace)
