"""Rule: MatMul by a constant 2-D weight whose output no integer node reads ->
MatMulInteger (uint8 x int8 -> int32) -> Cast -> Mul by x_scale * w_scale per column.

The output stays float: requantizing it to 8 bits would only add error before the float ops
that read it (a transformer's bias Add, residual Add and LayerNorm)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from onnx_hawq.annotate import QNode
from onnx_hawq.qcontext import QuantContext, weight_form_label
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qrule import QRule, removed


def check(ctx: QuantContext, qn: QNode) -> str | None:
    return None if ctx.consts[qn.layer.weight].ndim == 2 else "MatMul weight is not 2-D"


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    lw = ctx.float_out_weights(qn)
    name, base = ctx.weight_key(qn), qn.layer.name
    _, xz, consts = ctx.scalar_inputs(qn.inputs[0])
    wq, wz, deq = f"{name}_quantized", f"{name}_zero_point", f"{name}_dequant_scale"
    consts.update({wq: lw.q, wz: np.array(0, np.int8), deq: lw.multipliers})
    acc, accf = f"{base}_acc_int32", f"{base}_acc_float"
    node = helper.make_node("MatMulInteger", [ctx.qname(qn.inputs[0]), wq, xz, wz], [acc], name=f"{base}_quant")
    cast = helper.make_node("Cast", [acc], [accf], name=f"{base}_cast", to=TensorProto.FLOAT)
    mul = helper.make_node("Mul", [accf, deq], [qn.out], name=f"{base}_dequant")
    bits = ctx.bits[base].w_bits
    ctx.record(node, qn, w_bits=bits, a_bits_in=ctx.params[qn.inputs[0]].bits, form=weight_form_label(ctx, qn),
               dyadic=None, exact=None, relu=False, float_output=True, params=int(lw.q.size),
               size_bytes=int(np.ceil(lw.q.size * bits / 8)) + 4 * len(lw.scales),
               w_scale_range=[float(lw.scales.min()), float(lw.scales.max())])
    for n in (cast, mul):
        entry = n.metadata_props.add()
        entry.key, entry.value = "hawq.role", "dequantize"
    consts.pop(f"{qn.inputs[0]}_scale")
    return Replacement(remove=removed(qn), add=[node, cast, mul], constants=consts)


RULE = QRule("matmul_float", check, replace)
