"""`onnx-hawq quantize`: prepare, calibrate and rewrite a float ONNX model into integer QLinear ops."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx
from onnx import helper

from onnx_hawq import __version__
from onnx_hawq.align import align
from onnx_hawq.annotate import Annotation, annotate
from onnx_hawq.calibrate import CalibConfig, collect_ranges
from onnx_hawq.layers import find_layers, inferred_shapes
from onnx_hawq.model_io import fixed_batch
from onnx_hawq.plan import Plan
from onnx_hawq.qcontext import MS, QuantContext
from onnx_hawq.qparams import TensorQ, activation_params
from onnx_hawq.transforms import q_add, q_concat, q_conv, q_gap, q_gemm, q_matmul, q_matmul_float, q_passthrough
from onnx_hawq.transforms.graph import Graph
from onnx_hawq.transforms.prepare import prepare_model
from onnx_hawq.transforms.q_boundary import dequantize_output, quantize_input

log = logging.getLogger("onnx_hawq")

RULES = {r.kind: r for r in (q_conv.RULE, q_gemm.RULE, q_matmul.RULE, q_matmul_float.RULE, q_add.RULE,
                             q_concat.RULE, q_gap.RULE, q_passthrough.PASS_RULE, q_passthrough.RELU_RULE)}
IR_VERSION = 10  # node metadata_props


@dataclasses.dataclass
class QuantizeResult:
    model: onnx.ModelProto
    records: list[dict]
    float_ops: list[str]
    refused: list[dict]
    layers: list


def quantize_model(model: onnx.ModelProto, plan: Plan, data: dict[str, np.ndarray],
                   calib: CalibConfig = CalibConfig(), progress=None) -> QuantizeResult:
    """Return the integer form of `model` for `plan`, calibrated on `data`."""
    prepared = prepare_model(model)
    shapes = inferred_shapes(prepared)
    layers = find_layers(prepared, shapes)
    bits = plan.resolve(layers)
    ann = annotate(prepared, layers, shapes, bits, plan.default)
    batch = fixed_batch(prepared)
    if batch and batch != calib.batch_size:
        calib = dataclasses.replace(calib, batch_size=batch)
    ranges = collect_ranges(prepared, ann.roots, data, calib, ann.bits, progress)
    spatial = {t: int(np.prod(shapes[t][2:])) for q in ann.qnodes if q.kind == "gap"
               for t in q.inputs if t in shapes and None not in shapes[t][2:]}
    params, exact = tensor_params(ann, ranges, spatial)
    graph = Graph(prepared)
    weights = [l.weight for l in layers]
    ctx = QuantContext(graph.consts, params, bits, spatial=spatial, exact=exact,
                       shared_weights=frozenset(w for w in weights if weights.count(w) > 1))

    refused = _rewrite(graph, ann, ctx)
    _add_boundaries(graph, ctx)
    _finish(graph)
    return QuantizeResult(graph.model, ctx.records, ann.float_ops, refused, layers)


def tensor_params(ann: Annotation, ranges: dict, spatial: dict) -> tuple[dict[str, TensorQ], dict[str, bool]]:
    """Scale/zero-point per quantized tensor (Adds and pools aligned for exactness); pass-through
    outputs share their input's. Also returns the exactness of each aligned node's output."""
    params = {t: activation_params(*ranges[t], ann.bits[t]) for t in ann.roots}
    for group in ann.shared:  # one quantizer over the union of the members' ranges
        lo, hi = zip(*(ranges[t] for t in group if t in ranges))
        params.update((t, activation_params(min(lo), max(hi), ann.bits[t])) for t in group)
    _inherit(ann, params)
    exact = align(ann, params, spatial)
    _inherit(ann, params)
    return params, exact


def _inherit(ann: Annotation, params: dict) -> None:
    for out, src in ann.inherit.items():
        params[out] = params[src]


def _rewrite(graph: Graph, ann: Annotation, ctx: QuantContext) -> list[dict]:
    refused = []
    for qn in ann.qnodes:
        rule = RULES[qn.kind]
        reason = rule.check(ctx, qn)
        if reason:
            refused.append({"node": qn.node.name or qn.out, "op": qn.node.op_type, "reason": reason})
            log.info("kept %s float: %s", qn.node.name or qn.out, reason)
            continue
        graph.apply(rule.replace(ctx, qn))
    return refused


def _add_boundaries(graph: Graph, ctx: QuantContext) -> None:
    """QuantizeLinear where quantized names are read but not produced; DequantizeLinear where
    float names are read (or are graph outputs) but only their quantized form is produced."""
    produced = {o for n in graph.g.node for o in n.output} | {i.name for i in graph.g.input}
    read = {i for n in graph.g.node for i in n.input} | graph.graph_outputs
    for tensor in ctx.params:
        q = ctx.qname(tensor)
        if q in read and q not in produced and tensor in produced:
            graph.apply(quantize_input(ctx, tensor))
    produced = {o for n in graph.g.node for o in n.output} | {i.name for i in graph.g.input}
    for tensor in ctx.params:
        if tensor in read and tensor not in produced and ctx.qname(tensor) in produced:
            graph.apply(dequantize_output(ctx, tensor))


def _finish(graph: Graph) -> None:
    """Sort nodes topologically, drop dead float weights, set opsets and IR version."""
    graph.flush()
    _toposort(graph.g)
    graph.refresh()
    graph.prune()
    model = graph.model
    model.ir_version = max(model.ir_version, IR_VERSION)
    if not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, 1))
    del model.graph.value_info[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "hawq.producer", f"onnx-hawq {__version__}"


def _toposort(g: onnx.GraphProto) -> None:
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        rest = []
        for node in pending:
            (ordered.append(node), ready.update(node.output)) if all(i in ready for i in node.input) else rest.append(node)
        if len(rest) == len(pending):
            raise RuntimeError(f"graph has a cycle or a dangling input at {rest[0].name}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)
