"""Decide which nodes run in the integer domain, what they fuse, and each tensor's bits."""

from __future__ import annotations

import dataclasses
import enum

import onnx
from onnx import helper

from onnx_hawq.layers import Layer
from onnx_hawq.plans import LayerBits

PASS_THROUGH = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice"}
# elementwise functions of one tensor: on quantized input, a lookup table of its codes (q_lut)
LUT_OPS = {"Sigmoid", "HardSigmoid", "Tanh", "Erf", "Gelu", "Elu", "Selu", "Softplus", "Mish", "LeakyRelu",
           "Clip", "Exp", "HardSwish", "Softsign", "Celu"}
SCALAR_ARITH = {"Add", "Sub", "Mul", "Div", "Pow"}  # by a constant scalar: tables too, and fused into chains


class Kind(str, enum.Enum):
    """What an integer node does; each kind has one rule in `transforms/q_*.py`."""

    CONV = "conv"
    GEMM = "gemm"
    MATMUL = "matmul"
    MATMUL_FLOAT = "matmul_float"  # MatMul layer with a float output
    ADD = "add"
    CONCAT = "concat"
    GAP = "gap"
    PASS = "pass"  # data movement on codes
    RELU = "relu"  # a standalone Relu
    LUT = "lut"  # a unary function (or x * gate(x) with the Mul fused) as a table of the input's codes
    MUL = "mul"  # product of two quantized tensors (squeeze-excite gates) as a table of code pairs


LAYER_KINDS = {"Conv": Kind.CONV, "Gemm": Kind.GEMM, "MatMul": Kind.MATMUL}


@dataclasses.dataclass
class QNode:
    """A node (plus a fused Relu) that runs on quantized tensors."""

    node: onnx.NodeProto
    kind: Kind
    out: str  # float tensor this node's quantized output stands for
    inputs: list[str]  # float tensors it reads in quantized form
    fused: onnx.NodeProto | None = None
    layer: Layer | None = None
    chain: list[onnx.NodeProto] = dataclasses.field(default_factory=list)  # LUT: later nodes in its table

    def quantized_out(self) -> list[str]:
        """The output tensor if this node writes it quantized (not for float-output layers)."""
        return [] if self.kind == Kind.MATMUL_FLOAT else [self.out]


@dataclasses.dataclass
class Annotation:
    qnodes: list[QNode]
    bits: dict[str, int]  # quantized float tensor -> activation bits
    roots: list[str]  # tensors whose params come from calibration (others inherit)
    inherit: dict[str, str]  # pass-through output -> input
    float_ops: list[str]  # op types left in float
    shared: list[list[str]] = dataclasses.field(default_factory=list)  # tensors that share one quantizer


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _kind(node, layer_by_node, consts, shapes) -> Kind | None:
    if node.op_type in LAYER_KINDS and node.name in layer_by_node:
        if node.op_type == "Gemm":
            a = _attrs(node)
            if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
                return None
        if node.op_type == "Conv" and len(shapes.get(node.input[0], ())) != 4:
            return None
        return LAYER_KINDS[node.op_type]
    if node.op_type == "Add" and len(node.input) == 2 and not any(i in consts for i in node.input):
        return Kind.ADD  # kept only when an input comes quantized (see annotate)
    if node.op_type == "Mul" and len(node.input) == 2 and not any(i in consts for i in node.input):
        return Kind.MUL  # like add: kept only when an input comes quantized
    if node.op_type == "Concat" and len(node.input) >= 2 and not any(i in consts for i in node.input):
        return Kind.CONCAT  # like add: kept only when an input comes quantized
    if node.op_type == "GlobalAveragePool" or _is_global_mean(node, consts, shapes):
        return Kind.GAP
    return None


def _is_global_mean(node, consts, shapes) -> bool:
    if len(shapes.get(node.input[0], ())) != 4:
        return False
    a = _attrs(node)
    if node.op_type == "ReduceMean":
        axes = a.get("axes") or (consts[node.input[1]].tolist() if len(node.input) > 1 and node.input[1] in consts else None)
        return bool(axes) and sorted(x % 4 for x in axes) == [2, 3] and a.get("keepdims", 1) == 1
    if node.op_type == "AveragePool":
        spatial = shapes[node.input[0]][2:]
        return (list(a.get("kernel_shape", [])) == list(spatial) and not any(a.get("pads", [0]))
                and None not in spatial)
    return False


def moves_codes(node: onnx.NodeProto) -> bool:
    """Whether `node` only copies (or selects) values of its first input, so it runs on codes as they
    are: the pass-through ops, and Resize in nearest mode (every output is one input value)."""
    if node.op_type == "Resize":
        return _attrs(node).get("mode", b"nearest") in (b"nearest", "nearest")
    return node.op_type in PASS_THROUGH


def _fusable_relu(node, consumers, outputs) -> onnx.NodeProto | None:
    users = consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type == "Relu" and node.output[0] not in outputs:
        return users[0]
    return None


def scalar_operand(node: onnx.NodeProto, consts: dict) -> str | None:
    """The constant scalar input of a two-input Add/Sub/Mul/Div/Pow whose other input is data, else None."""
    if node.op_type not in SCALAR_ARITH or len(node.input) != 2:
        return None
    const = [i for i in node.input if i in consts and consts[i].size == 1]
    if len(const) != 1 or all(i in consts for i in node.input) or (node.op_type == "Pow" and const[0] != node.input[1]):
        return None
    return const[0]


def unary_input(node: onnx.NodeProto, consts: dict) -> str | None:
    """The one data input of an elementwise function of one tensor (its other inputs constant), else None.
    Only standard-domain ops (and com.microsoft's Gelu, the same function): a custom op's name says nothing."""
    if node.domain not in ("", "ai.onnx") and (node.domain, node.op_type) != ("com.microsoft", "Gelu"):
        return None
    scalar = scalar_operand(node, consts)
    if scalar is not None:
        return next(i for i in node.input if i != scalar)
    if node.op_type in LUT_OPS | {"Relu"} and node.input and all(not i or i in consts for i in node.input[1:]):
        return node.input[0]
    return None


def is_gate(node: onnx.NodeProto, x: str, cur: str) -> bool:
    """Whether `node` is Mul(x, cur): the x * f(x) that closes a SiLU/HardSwish/GELU table."""
    return node.op_type == "Mul" and x != cur and sorted(node.input) == sorted([x, cur])


def _lut_chain(node, x, consumers, outputs, consts) -> list[onnx.NodeProto]:
    """Nodes after `node` (a table of `x`) that fold into its table: single-reader elementwise
    functions, and at most one gate Mul(x, chain(x)) (SiLU, HardSwish, GELU as exporters write them)."""
    chain, cur, gated = [], node.output[0], False
    while cur not in outputs and len(consumers.get(cur, [])) == 1:
        nxt = consumers[cur][0]
        gate = not gated and is_gate(nxt, x, cur)
        if not gate and unary_input(nxt, consts) != cur:
            break
        gated |= gate
        chain.append(nxt)
        cur = nxt.output[0]
    return chain


def annotate(model: onnx.ModelProto, layers: list[Layer], shapes: dict, bits: dict[str, LayerBits],
             default: LayerBits) -> Annotation:
    """Walk the graph in order and mark quantized nodes, fusions, roots and bits."""
    g = model.graph
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    layer_by_node = {l.node_name: l for l in layers}
    qnodes, quantized, fused_ids, inherit, float_ops = [], set(), set(), {}, []
    produced: set[str] = set()  # outputs of integer nodes so far
    for node in g.node:
        if id(node) in fused_ids:
            continue
        kind, data = _classify(node, _kind(node, layer_by_node, consts, shapes), quantized, produced, consts)
        if kind is None:
            float_ops.append(node.op_type)
            continue
        fused = _fusable_relu(node, consumers, outputs) if kind in (Kind.CONV, Kind.GEMM, Kind.MATMUL, Kind.ADD) else None
        chain = _lut_chain(node, data[0], consumers, outputs, consts) if kind == Kind.LUT else []
        fused_ids.update(id(n) for n in [fused, *chain] if n is not None)
        out = (chain[-1] if chain else fused or node).output[0]
        qn = QNode(node, kind, out, data, fused, layer_by_node.get(node.name), chain)
        qnodes.append(qn)
        # a Concat's float inputs stay out: it may still be dropped, and they should not pull
        # pass-through readers into the integer domain
        quantized.update([out, *(data if kind != Kind.CONCAT else [i for i in data if i in produced])])
        produced.add(out)
        if kind in (Kind.PASS, Kind.RELU):
            inherit[out] = data[0]
    qnodes = _drop_float_fed_concats(qnodes, produced, float_ops)
    qnodes = _drop_tables_after_float_outputs(qnodes, produced, float_ops)
    _mark_float_outputs(qnodes)
    return _finish(qnodes, bits, default, inherit, float_ops)


def _classify(node, kind: Kind | None, quantized: set[str], produced: set[str],
              consts: dict) -> tuple[Kind | None, list[str]]:
    """(kind, quantized data inputs) of `node` given what is quantized so far; kind None: float."""
    data = [i for i in node.input[:_data_inputs(kind)] if i]
    x = unary_input(node, consts) if kind is None and node.op_type != "Relu" else None
    if x is not None and x in quantized:
        return Kind.LUT, [x]
    if kind is None and node.input and node.input[0] in quantized:
        if moves_codes(node):
            return Kind.PASS, [node.input[0]]
        if node.op_type == "Relu":
            return Kind.RELU, [node.input[0]]
    if kind in (Kind.ADD, Kind.MUL, Kind.CONCAT) and not any(i in produced for i in data):
        return None, data  # all inputs float: quantizing would only add error (transformer residuals)
    return kind, data


def _finish(qnodes, bits, default, inherit, float_ops) -> Annotation:
    """Bits per tensor (Concat groups take their widest), calibration roots, shared quantizers."""
    tbits = _tensor_bits(qnodes, bits, default, inherit)
    roots = [t for t in dict.fromkeys(t for q in qnodes for t in [*q.inputs, *q.quantized_out()])
             if t not in inherit]
    shared = _concat_groups(qnodes, inherit)
    for group in shared:
        top = max(tbits.get(t, 8) for t in group)
        tbits.update((t, top) for t in group)
    return Annotation(qnodes, tbits, roots, inherit, sorted(set(float_ops)), shared)


def _data_inputs(kind: Kind | None) -> int | None:
    """How many leading node inputs are quantized data (None: all)."""
    if kind in LAYER_KINDS.values() or kind == Kind.GAP:
        return 1
    return None if kind == Kind.CONCAT else 2


def _concat_groups(qnodes: list[QNode], inherit: dict[str, str]) -> list[list[str]]:
    """Tensors that must share one scale and zero point so a Concat copies codes unchanged: each
    Concat's inputs and output (and what they pass through from), merged where they overlap."""
    groups: list[set[str]] = []
    for q in qnodes:
        if q.kind != Kind.CONCAT:
            continue
        members = set()
        for t in [q.out, *q.inputs]:
            while t not in members:
                members.add(t)
                t = inherit.get(t, t)
        overlapping = [g for g in groups if g & members]
        groups = [g for g in groups if not g & members] + [members.union(*overlapping)]
    return [sorted(g) for g in groups]


def _useful(qnodes: list[QNode]) -> dict[int, bool]:
    """Whether each node's codes reach an integer node that is neither a Concat nor a table."""
    readers: dict[str, list[QNode]] = {}
    for q in qnodes:
        for t in q.inputs:
            readers.setdefault(t, []).append(q)
    useful: dict[int, bool] = {}
    for q in reversed(qnodes):  # readers come later in graph order
        useful[id(q)] = any(r.kind not in (Kind.CONCAT, Kind.LUT) or useful[id(r)] for r in readers.get(q.out, []))
    return useful


def _drop(qnodes: list[QNode], drop: set[int], produced: set[str], float_ops: list[str]) -> list[QNode]:
    float_ops += [n.op_type for q in qnodes if id(q) in drop for n in [q.node, *q.chain]]
    produced -= {q.out for q in qnodes if id(q) in drop}
    return [q for q in qnodes if id(q) not in drop]


def _drop_float_fed_concats(qnodes: list[QNode], produced: set[str], float_ops: list[str]) -> list[QNode]:
    """A Concat that reads a float input and whose codes reach no integer compute node (only float
    ops, tables, or other such Concats) stays float: quantizing it would add a QuantizeLinear and its
    rounding only to dequantize again (DenseNet: Concat -> BatchNorm and the next Concat). Tables
    that read it stay float with it."""
    while True:
        useful = _useful(qnodes)
        drop = {id(q) for q in qnodes if q.kind == Kind.CONCAT and not useful[id(q)]
                and not all(t in produced for t in q.inputs)}
        dropped = {q.out for q in qnodes if id(q) in drop}
        drop |= {id(q) for q in qnodes if q.kind == Kind.LUT and q.inputs[0] in dropped}
        if not drop:
            return qnodes
        qnodes = _drop(qnodes, drop, produced, float_ops)


def _drop_tables_after_float_outputs(qnodes: list[QNode], produced: set[str], float_ops: list[str]) -> list[QNode]:
    """A table of a MatMul layer's output whose codes reach no integer compute node stays float, so
    the layer keeps its float output (see `_mark_float_outputs`)."""
    while True:
        useful, by_out = _useful(qnodes), {q.out: q for q in qnodes}
        drop = {id(q) for q in qnodes if q.kind == Kind.LUT and not useful[id(q)]
                and getattr(by_out.get(q.inputs[0]), "kind", None) == Kind.MATMUL and by_out[q.inputs[0]].fused is None}
        if not drop:
            return qnodes
        qnodes = _drop(qnodes, drop, produced, float_ops)


def _mark_float_outputs(qnodes: list[QNode]) -> None:
    """MatMul layers whose output no integer node reads keep a float output: requantizing it to
    8 bits would only add error (transformer projections feed float bias Adds and LayerNorms)."""
    read = {t for q in qnodes for t in q.inputs}
    for q in qnodes:
        if q.kind == Kind.MATMUL and q.fused is None and q.out not in read:
            q.kind = Kind.MATMUL_FLOAT


def _tensor_bits(qnodes, bits, default, inherit) -> dict[str, int]:
    """A tensor takes the most bits any integer consumer asks for (plan default otherwise)."""
    out: dict[str, int] = {}
    for q in reversed(qnodes):
        if q.quantized_out():
            out.setdefault(q.out, 8)  # no integer consumer: dequantized at 8 bits
        for t in q.inputs:
            want = bits[q.layer.name].a_bits if q.layer is not None else default.a_bits
            if q.kind in (Kind.PASS, Kind.RELU, Kind.CONCAT):
                want = out[q.out]
            out[t] = max(out.get(t, 0), want)
    for t, src in reversed(list(inherit.items())):
        out[t] = out[src] = max(out[t], out[src])
    return out
