"""The shape of an integer rewrite: a check that may refuse (with a reason) and a replacement."""

from __future__ import annotations

import dataclasses
from typing import Callable

from onnx_hawq.annotate import QNode
from onnx_hawq.qcontext import QuantContext
from onnx_hawq.transforms.graph import Replacement


@dataclasses.dataclass(frozen=True)
class QRule:
    """Rewrite for one annotated node kind (the annotation is the match)."""

    kind: str
    check: Callable[[QuantContext, QNode], str | None]
    replace: Callable[[QuantContext, QNode], Replacement]


def removed(qn: QNode) -> list:
    return [qn.node] + ([qn.fused] if qn.fused is not None else [])


def output_name(ctx: QuantContext, qn: QNode) -> str:
    """Where the main node writes: the quantized name, or a pre-clip name for < 8-bit outputs."""
    return ctx.qname(qn.out) if ctx.params[qn.out].bits >= 8 else f"{qn.out}_unclipped"


def layer_replacement(ctx: QuantContext, qn: QNode, op_type: str, order: tuple[str, ...],
                      domain: str = "", attributes=(), **attrs) -> Replacement:
    """Emit a QLinear layer node whose inputs follow `order` over the slots
    x, x_scale, x_zp, w, w_scale, w_zp, bias, y_scale, y_zp."""
    import numpy as np
    from onnx import helper

    from onnx_hawq.qcontext import clip_node, dyadics, weight_form_label

    lw = ctx.layer_weights(qn)
    name = ctx.weight_key(qn)
    xs, xz, c1 = ctx.scalar_inputs(qn.inputs[0])
    ys, yz, c2 = ctx.scalar_inputs(qn.out)
    slots = {"x": ctx.qname(qn.inputs[0]), "x_scale": xs, "x_zp": xz, "w": f"{name}_quantized",
             "w_scale": f"{name}_scale", "w_zp": f"{name}_zero_point", "bias": f"{name}_bias_quantized",
             "y_scale": ys, "y_zp": yz}
    consts = {**c1, **c2, slots["w"]: lw.q, slots["w_scale"]: lw.scales,
              slots["w_zp"]: np.zeros(len(lw.scales), np.int8)}
    if "bias" in order:
        consts[slots["bias"]] = lw.bias
    floor, floor_consts = relu_floor(ctx, qn, output_name(ctx, qn))
    written = floor[0].input[0] if floor else output_name(ctx, qn)
    node = helper.make_node(op_type, [slots[k] for k in order], [written], name=f"{qn.layer.name}_quant",
                            domain=domain or None, **attrs)
    node.attribute.extend(attributes)
    clip, clip_consts, _ = clip_node(ctx, qn.out, output_name(ctx, qn))
    ctx.record(node, qn, w_bits=ctx.bits[qn.layer.name].w_bits, a_bits_in=ctx.params[qn.inputs[0]].bits,
               form=weight_form_label(ctx, qn), dyadic=dyadics(lw.multipliers),
               exact=bool(lw.exact.all()), relu=qn.fused is not None, params=int(lw.q.size),
               size_bytes=int(np.ceil(lw.q.size * ctx.bits[qn.layer.name].w_bits / 8)) + 4 * len(lw.scales)
               + (4 * len(lw.bias) if qn.layer.bias else 0),
               w_scale_range=[float(lw.scales.min()), float(lw.scales.max())])
    return Replacement(remove=removed(qn), add=[node, *floor, *clip], constants={**consts, **clip_consts,
                                                                                 **floor_consts})


def relu_floor(ctx: QuantContext, qn: QNode, out: str) -> tuple[list, dict]:
    """A fused Relu is free while the output's zero point is 0 (codes saturate at 0). When the output
    shares a quantizer with negative values (a Concat), apply it: Max(codes, zero_point) -> `out`."""
    import numpy as np
    from onnx import helper

    zp = ctx.params[qn.out].zero_point
    if qn.fused is None or zp == 0:
        return [], {}
    floor = f"{qn.out}_relu_floor"
    node = helper.make_node("Max", [f"{qn.out}_prerelu", floor], [out], name=f"{qn.out}_relu")
    return [node], {floor: np.array(zp, np.uint8)}
