"""Rule: MatMul by a constant 2-D weight whose output no integer node reads ->
MatMulInteger (uint8 x int8 -> int32) -> Cast -> Mul by x_scale * w_scale per column.

The output stays float: requantizing it to 8 bits would only add error before the float ops
that read it (a transformer's bias Add, residual Add and LayerNorm)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from onnx_hawq.arith import schema
from onnx_hawq.arith.quantizer import layer_size_bytes
from onnx_hawq.arith.signatures import ordered
from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext, weight_form_label
from onnx_hawq.transforms.qrule import node_record, qrule, removed


def check(ctx: QuantContext, qn: QNode) -> str | None:
    return None if ctx.consts[qn.layer.weight].ndim == 2 else "MatMul weight is not 2-D"


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    lw = ctx.float_out_weights(qn)
    name, base = ctx.weight_key(qn), qn.layer.name
    _, xz, consts = ctx.scalar_inputs(qn.inputs[0])
    wq, wz, deq = schema.qname(name), schema.zero_point_name(name), f"{name}_dequant_scale"
    consts.update({wq: lw.q, wz: np.array(0, np.int8), deq: lw.multipliers})
    acc, accf = f"{base}_acc_int32", f"{base}_acc_float"
    slots = {"x": ctx.qname(qn.inputs[0]), "w": wq, "x_zp": xz, "w_zp": wz}
    node = helper.make_node("MatMulInteger", ordered("MatMulInteger", slots), [acc], name=f"{base}_quant")
    cast = helper.make_node("Cast", [acc], [accf], name=f"{base}_cast", to=TensorProto.FLOAT)
    mul = helper.make_node("Mul", [accf, deq], [qn.out], name=f"{base}_dequant")
    bits = ctx.bits[base].w_bits
    row = node_record(ctx, node, qn, w_bits=bits, a_bits_in=ctx.params[qn.inputs[0]].bits,
                      form=weight_form_label(ctx, qn), dyadic=None, exact=None, relu=False, float_output=True,
                      params=int(lw.q.size), size_bytes=layer_size_bytes(lw.q.size, len(lw.scales), bits, False),
                      w_scale_range=[float(lw.scales.min()), float(lw.scales.max())])
    for n in (cast, mul):
        schema.write_meta(n, {"role": "dequantize"})
    consts.pop(schema.scale_name(qn.inputs[0]))
    return Replacement(remove=removed(qn), add=[node, cast, mul], constants=consts, records=[row])


rule = qrule("matmul_float", (Kind.MATMUL_FLOAT,), check, replace)
