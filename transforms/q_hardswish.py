"""Rule: a table (q_lut) whose function is HardSwish, on an 8-bit input whose scale s puts the
breakpoints +-3 on codes (3 / s = K, an integer; `snap_inputs` moves the scale there) -> float32
arithmetic on integers:

    v = DequantizeLinear(q, 1, zp_x)          # q - zp_x
    h = Clip(v + K, 0, 2K)
    y = QuantizeLinear(v * h, 6 * s_y / s^2, zp_y)

hardswish(s v) = s v * clip(s v + 3, 0, 6) / 6 = s^2 * v * clip(v + K, 0, 2K) / 6. Every intermediate
is an integer below 2^24, so each float32 op is exact in every backend (fused multiply-adds included)
and only QuantizeLinear rounds, as it does everywhere. onnxruntime runs these five vectorized ops
about 3x faster than its per-element Gather."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.arith import schema
from onnx_hawq.arith.quantizer import TensorQ
from onnx_hawq.transforms.annotate import Annotation, Kind, QNode
from onnx_hawq.transforms.graph import Graph, Replacement, Rule
from onnx_hawq.transforms.q_lut import function
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import node_record, qrule

F32 = np.float32
MAX_K = 1 << 12  # |v * h| <= 255 * 2K stays far below 2^24
ALIGNED = (Kind.ADD, Kind.GAP, Kind.CONCAT)  # readers whose params were aligned to the input's scale
LAYERS = (Kind.CONV, Kind.GEMM, Kind.MATMUL)


def is_hardswish(consts, qn: QNode, x: TensorQ) -> bool:
    """Whether the table's function equals HardSwish on every code of its input."""
    if qn.kind != Kind.LUT:
        return False
    f = function(consts, qn)
    if isinstance(f, str):
        return False
    v = (np.arange(x.qmax + 1, dtype=np.float64) - x.zero_point) * float(F32(x.scale))
    with np.errstate(over="ignore", invalid="ignore"):
        got, want = f(v), v * np.clip(v / 6 + 0.5, 0, 1)
    return bool(np.all(np.abs(got - want) <= 1e-9 * max(1.0, float(np.abs(v).max()))))


def breakpoint_code(x: TensorQ) -> int | None:
    """K = 3 / scale when it is an integer (to float32 precision) in range, else None."""
    k = round(3.0 / float(F32(x.scale)))
    return k if 0 < k <= MAX_K and abs(k * float(F32(x.scale)) - 3.0) <= 3e-6 else None


def snap_inputs(ann: Annotation, params: dict[str, TensorQ], consts) -> None:
    """Raise the scale of each 8-bit HardSwish table's input to 3 / floor(3 / s) (at most 1/K larger, no
    clipping) so its breakpoints fall on codes. Only layer outputs that no Concat shares and no Add or
    pool was aligned to (their exactness was fitted to the old scale)."""
    producer = {q.out: q for q in ann.qnodes}
    aligned = {t for q in ann.qnodes if q.kind in ALIGNED for t in q.inputs}
    shared = {t for group in ann.shared for t in group}
    for qn in ann.qnodes:
        x = qn.inputs[0] if qn.kind == Kind.LUT else None
        if x is None or getattr(producer.get(x), "kind", None) not in LAYERS or x in aligned | shared:
            continue
        p = params[x]
        k = math.floor(3.0 / p.scale)
        if p.bits != 8 or params[qn.out].bits != 8 or not 0 < k <= MAX_K or not is_hardswish(consts, qn, p):
            continue
        params[x] = dataclasses.replace(p, scale=float(F32(3.0 / k)))


def applies(ctx: QuantContext, qn: QNode) -> bool:
    x, y = ctx.params[qn.inputs[0]], ctx.params[qn.out]
    return x.bits == 8 and y.bits == 8 and breakpoint_code(x) is not None and is_hardswish(ctx.consts, qn, x)


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    x, name = qn.inputs[0], qn.node.name or qn.out
    px, py = ctx.params[x], ctx.params[qn.out]
    k = breakpoint_code(px)
    c = {f"{qn.out}_hswish_{key}": np.array(v, dt) for key, v, dt in (
        ("one", 1, F32), ("x_zp", px.zero_point, np.uint8), ("k", k, F32), ("lo", 0, F32), ("hi", 2 * k, F32),
        ("div", 6.0 * float(F32(py.scale)) / float(F32(px.scale)) ** 2, F32), ("y_zp", py.zero_point, np.uint8))}
    n = lambda key: f"{qn.out}_hswish_{key}"  # noqa: E731
    nodes = [helper.make_node("DequantizeLinear", [ctx.qname(x), n("one"), n("x_zp")], [n("v")], name=f"{name}_v"),
             helper.make_node("Add", [n("v"), n("k")], [n("vk")], name=f"{name}_vk"),
             helper.make_node("Clip", [n("vk"), n("lo"), n("hi")], [n("h")], name=f"{name}_h"),
             helper.make_node("Mul", [n("v"), n("h")], [n("p")], name=f"{name}_p"),
             helper.make_node("QuantizeLinear", [n("p"), n("div"), n("y_zp")], [ctx.qname(qn.out)],
                              name=f"{name}_quant")]
    for node in nodes[:-1]:
        schema.write_meta(node, {"role": "arith", "output": qn.out})
    row = node_record(ctx, nodes[-1], qn, a_bits_in=px.bits, exact=True)
    return Replacement(remove=[qn.node, *qn.chain], add=nodes, constants=c, records=[row])


def rule(ctx: QuantContext) -> Rule:
    """The rule over `ctx`: matches only the HardSwish tables `applies` accepts (others go to q_lut)."""
    base = qrule("hardswish", (Kind.LUT,), lambda c, q: None, replace)(ctx)

    def match(graph: Graph, node: onnx.NodeProto) -> QNode | None:
        qn = base.match(graph, node)
        return qn if qn is not None and applies(ctx, qn) else None

    return Rule(base.name, match, base.check, base.replace)
