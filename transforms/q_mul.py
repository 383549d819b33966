"""Rule: Mul of two quantized tensors (squeeze-excite and attention gates, with broadcasting) ->
Gather(table, Cast(a) * n_b + Cast(b)).

The table holds quantize(dequantize(a) * dequantize(b)) for every pair of codes (256 x 256 bytes at
8 bits, 16 x 16 at 4): exact in every backend, no requantization to round."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.q_lut import code_values, output_codes
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import node_record, qrule

INT32 = onnx.TensorProto.INT32


def check(ctx: QuantContext, qn: QNode) -> str | None:
    return None


def table(ctx: QuantContext, qn: QNode) -> np.ndarray:
    """uint8 output code for code pair (a, b), flattened row-major (index a * n_b + b)."""
    a, b = (code_values(ctx, t) for t in qn.inputs)
    return output_codes(ctx, qn.out, np.multiply.outer(a, b)).reshape(-1)


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    (a, b), name = qn.inputs, qn.node.name or qn.out
    rows, tab, n_b = f"{qn.out}_rows", f"{qn.out}_table", ctx.params[b].qmax + 1
    nodes = [helper.make_node("Cast", [ctx.qname(a)], [f"{qn.out}_a"], name=f"{name}_a", to=INT32),
             helper.make_node("Cast", [ctx.qname(b)], [f"{qn.out}_b"], name=f"{name}_b", to=INT32),
             helper.make_node("Mul", [f"{qn.out}_a", rows], [f"{qn.out}_row"], name=f"{name}_row"),
             helper.make_node("Add", [f"{qn.out}_row", f"{qn.out}_b"], [f"{qn.out}_pair"], name=f"{name}_pair"),
             helper.make_node("Gather", [tab, f"{qn.out}_pair"], [ctx.qname(qn.out)], name=f"{name}_quant", axis=0)]
    values = table(ctx, qn)
    row = node_record(ctx, nodes[-1], qn, a_bits_in=ctx.params[a].bits, exact=True, params=int(values.size))
    return Replacement(remove=[qn.node], add=nodes, constants={tab: values, rows: np.array(n_b, np.int32)},
                       records=[row])


rule = qrule("mul", (Kind.MUL,), check, replace)
