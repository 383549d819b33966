"""Integer rules over annotated nodes: the adapter to the one `Rule` protocol, and the shared
pieces of their replacements (layer nodes, clips, relu floors, node records)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.arith import schema
from onnx_hawq.arith.quantizer import layer_size_bytes
from onnx_hawq.arith.signatures import domain_of, ordered
from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.qcontext import QuantContext, clip_node, dyadics, weight_form_label

Check = Callable[[QuantContext, QNode], "str | None"]
Build = Callable[[QuantContext, QNode], Replacement]


def qrule(name: str, kinds: tuple[Kind, ...], check: Check, replace: Build) -> Callable[[QuantContext], Rule]:
    """A factory `rule(ctx)`: the Rule that matches the annotated anchors of `kinds` in `ctx`."""

    def make(ctx: QuantContext) -> Rule:
        def match(graph: Graph, node: onnx.NodeProto) -> QNode | None:
            qn = ctx.anchors.get(node.output[0]) if node.output else None
            if qn is None or qn.kind not in kinds or qn.node.op_type != node.op_type:
                return None
            return qn

        return Rule(name, match, lambda graph, qn: check(ctx, qn), lambda graph, qn: replace(ctx, qn))

    return make


def removed(qn: QNode) -> list:
    return [qn.node] + ([qn.fused] if qn.fused is not None else [])


def output_name(ctx: QuantContext, qn: QNode) -> str:
    """Where the main node writes: the quantized name, or a pre-clip name for < 8-bit outputs."""
    return ctx.qname(qn.out) if ctx.params[qn.out].bits >= 8 else f"{qn.out}_unclipped"


def node_record(ctx: QuantContext, node: onnx.NodeProto, qn: QNode, **fields) -> dict:
    """Write the hawq.* record of new `node` (standing for `qn`) onto it; return its report row."""
    row = {"op": node.op_type, "float_op": qn.node.op_type, "output": qn.out,
           "a_bits_out": ctx.params[qn.out].bits if qn.quantized_out() else None, **fields}
    if qn.layer is not None:
        row["layer"] = qn.layer.name
    schema.write_meta(node, row)
    return {"node": node.name, **row}


def layer_replacement(ctx: QuantContext, qn: QNode, op_type: str, attributes=(), **attrs) -> Replacement:
    """Emit the QLinear layer node `op_type` (inputs in the signature table's order) for `qn`."""
    lw = ctx.layer_weights(qn)
    name = ctx.weight_key(qn)
    xs, xz, c1 = ctx.scalar_inputs(qn.inputs[0])
    ys, yz, c2 = ctx.scalar_inputs(qn.out)
    slots = {"x": ctx.qname(qn.inputs[0]), "x_scale": xs, "x_zp": xz, "w": schema.qname(name),
             "w_scale": schema.scale_name(name), "w_zp": schema.zero_point_name(name),
             "bias": f"{name}_bias_quantized", "y_scale": ys, "y_zp": yz}
    if op_type == "QLinearMatMul":
        del slots["bias"]
    consts = {**c1, **c2, slots["w"]: lw.q, slots["w_scale"]: lw.scales,
              slots["w_zp"]: np.zeros(len(lw.scales), np.int8)}
    if "bias" in slots:
        consts[slots["bias"]] = lw.bias
    floor, floor_consts = relu_floor(ctx, qn, output_name(ctx, qn))
    written = floor[0].input[0] if floor else output_name(ctx, qn)
    node = helper.make_node(op_type, ordered(op_type, slots), [written], name=f"{qn.layer.name}_quant",
                            domain=domain_of(op_type) or None, **attrs)
    node.attribute.extend(attributes)
    clip, clip_consts, _ = clip_node(ctx, qn.out, output_name(ctx, qn))
    w_bits = ctx.bits[qn.layer.name].w_bits
    row = node_record(ctx, node, qn, w_bits=w_bits, a_bits_in=ctx.params[qn.inputs[0]].bits,
                      form=weight_form_label(ctx, qn), dyadic=dyadics(lw.multipliers),
                      exact=bool(lw.exact.all()), relu=qn.fused is not None, params=int(lw.q.size),
                      size_bytes=layer_size_bytes(lw.q.size, len(lw.scales), w_bits, "bias" in slots),
                      w_scale_range=[float(lw.scales.min()), float(lw.scales.max())])
    return Replacement(remove=removed(qn), add=[node, *floor, *clip],
                       constants={**consts, **clip_consts, **floor_consts}, records=[row])


def relu_floor(ctx: QuantContext, qn: QNode, out: str) -> tuple[list, dict]:
    """A fused Relu is free while the output's zero point is 0 (codes saturate at 0). When the output
    shares a quantizer with negative values (a Concat), apply it: Max(codes, zero_point) -> `out`."""
    zp = ctx.params[qn.out].zero_point
    if qn.fused is None or zp == 0:
        return [], {}
    floor = f"{qn.out}_relu_floor"
    node = helper.make_node("Max", [f"{qn.out}_prerelu", floor], [out], name=f"{qn.out}_relu")
    return [node], {floor: np.array(zp, np.uint8)}
