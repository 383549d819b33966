"""`onnx-hawq quantize`: prepare, calibrate and rewrite a float ONNX model into integer QLinear ops.

`quantize_model` works on objects; `run_quantize` is the command's library call (files at the edges).
"""

from __future__ import annotations

import dataclasses
import logging
import types
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.arith import schema
from onnx_hawq.arith.quantizer import (FULL_RANGE_FORM, TensorQ, WeightQuant, WeightRange, activation_params,
                                       host_weight_range)
from onnx_hawq.arith.signatures import MS
from onnx_hawq.calibration.ranges import CalibConfig, Method, collect_ranges
from onnx_hawq.calibration.rounding import RoundingConfig, round_layers
from onnx_hawq.config import JsonConfig, atomic_write_json
from onnx_hawq.errors import InputError
from onnx_hawq.layers import find_layers, inferred_shapes, name_nodes
from onnx_hawq.model_io import check_output_path, fixed_batch, load_data, load_model, save_model
from onnx_hawq.ort import check_written
from onnx_hawq.plans import Plan, uniform_plan
from onnx_hawq.report import build_report
from onnx_hawq.topology import sort_graph
from onnx_hawq.transforms import (q_add, q_concat, q_conv, q_gap, q_gemm, q_hardswish, q_lut, q_matmul,
                                  q_matmul_float, q_mul, q_passthrough)
from onnx_hawq.transforms.align import align
from onnx_hawq.transforms.annotate import Annotation, Kind, annotate
from onnx_hawq.transforms.graph import Graph, apply_rules
from onnx_hawq.transforms.prepare import prepare_model
from onnx_hawq.transforms.q_boundary import dequantize_output, quantize_input
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.version import __version__

log = logging.getLogger("onnx_hawq")

RULES = (q_conv, q_gemm, q_matmul, q_matmul_float, q_add, q_concat, q_gap, q_passthrough, q_hardswish, q_lut, q_mul)
IR_VERSION = 10  # node metadata_props


@dataclasses.dataclass
class QuantizeResult:
    model: onnx.ModelProto
    records: list[dict]
    float_ops: list[str]
    refused: list[dict]
    layers: list


def quantize_model(model: onnx.ModelProto, plan: Plan, data: dict[str, np.ndarray],
                   calib: CalibConfig = CalibConfig(), progress=None, prepared: bool = False,
                   rounding: RoundingConfig = RoundingConfig()) -> QuantizeResult:
    """Return the integer form of `model` for `plan`, calibrated on `data` (`prepared`: the model
    already went through `prepare_model`); weights rounded as `rounding` says."""
    check_float32(model)
    prepared = _copy(model) if prepared else prepare_model(model)
    name_nodes(prepared)  # layers and annotations are keyed by node name
    shapes = inferred_shapes(prepared)
    layers = find_layers(prepared, shapes)
    bits = plan.resolve(layers)
    ann = annotate(prepared, layers, shapes, bits, plan.default)
    batch = fixed_batch(prepared)
    if batch and batch != calib.batch_size:
        calib = dataclasses.replace(calib, batch_size=batch)
    ranges = collect_ranges(prepared, ann.roots, data, calib, ann.bits, progress)
    spatial = {t: int(np.prod(shapes[t][2:])) for q in ann.qnodes if q.kind == Kind.GAP
               for t in q.inputs if t in shapes and None not in shapes[t][2:]}
    graph = Graph(prepared)
    params, exact = tensor_params(ann, ranges, spatial, graph.consts)
    weights = [l.weight for l in layers]
    ctx = QuantContext.of(graph.consts, params, bits, ann.qnodes, weight_range=rounding.weights.range,
                          spatial=spatial, exact=exact,
                          shared_weights=frozenset(w for w in weights if weights.count(w) > 1))
    ctx = with_rounding(ctx, ann, prepared, layers, data, dataclasses.replace(
        rounding, batch_size=batch or rounding.batch_size), progress)
    outcome = apply_rules(graph, [m.rule(ctx) for m in RULES], prune=False)
    for r in outcome.refused:
        log.info("kept %s float: %s", r.node, r.reason)
    _add_boundaries(graph, ctx)
    _finish(graph)
    schema.set_model_meta(graph.model, "weights", rounding.weights.to_dict())
    return QuantizeResult(graph.model, list(outcome.records), ann.float_ops,
                          [r.to_dict() for r in outcome.refused], layers)


def with_rounding(ctx: QuantContext, ann: Annotation, model, layers, data, rounding: RoundingConfig, progress):
    """`ctx` with the rounding stage's codes and shipped scales for every weight layer."""
    by_layer = {q.layer.name: q for q in ann.qnodes if q.layer is not None}
    snap = lambda layer, codes, scales, shift: ctx.shipped_scales(by_layer[layer.name], codes, scales, shift)
    bounds = {name: ctx.qmax(qn) for name, qn in by_layer.items()}
    rounded = round_layers(model, layers, bounds, data, rounding, progress, snap)
    return dataclasses.replace(ctx, rounded=types.MappingProxyType(rounded))


def warn_full_range(report: dict) -> None:
    """One warning when full-range 8-bit layers were written on a host whose onnxruntime u8 x s8 kernel
    (AVX2, int16 pair sums) can saturate on them (`host_weight_range` is AVX2)."""
    if host_weight_range() == WeightRange.AVX2 and any(r["form"] == FULL_RANGE_FORM for r in report["layers"]):
        log.warning("this CPU has no AVX512-VNNI/AVX-VNNI/AMX-INT8: onnxruntime's AVX2 kernel can saturate on the "
                    "full-range 8-bit layers here (TVM stays exact); for AVX2 targets quantize "
                    "with --weight-range avx2")


HALF_TYPES = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}


def check_float32(model: onnx.ModelProto) -> None:
    """Refuse float16/bfloat16 models in one line (onnxruntime quantizes float32 tensors only)."""
    g = model.graph
    typed = [(v.name, v.type.tensor_type.elem_type) for v in list(g.input) + list(g.output)]
    typed += [(i.name, i.data_type) for i in g.initializer]
    typed += [(n.output[0], a.i) for n in g.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    half = next(((name, HALF_TYPES[t]) for name, t in typed if t in HALF_TYPES), None)
    if half:
        raise InputError(f"the model computes in {half[1]} (tensor {half[0]!r}); onnx-hawq quantizes float32 "
                         f"models: convert it to float32 first")


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def tensor_params(ann: Annotation, ranges: dict, spatial: dict,
                  consts=types.MappingProxyType({})) -> tuple[dict[str, TensorQ], dict[str, bool]]:
    """Scale/zero-point per quantized tensor (Adds and pools aligned for exactness, HardSwish inputs
    snapped to integer breakpoints, see q_hardswish); pass-through outputs share their input's. Also
    returns the exactness of each aligned node's output."""
    params = {t: activation_params(*ranges[t], ann.bits[t]) for t in ann.roots}
    for group in ann.shared:  # one quantizer over the union of the members' ranges
        lo, hi = zip(*(ranges[t] for t in group if t in ranges))
        params.update((t, activation_params(min(lo), max(hi), ann.bits[t])) for t in group)
    _inherit(ann, params)
    exact = align(ann, params, spatial)
    q_hardswish.snap_inputs(ann, params, consts)
    _inherit(ann, params)
    return params, exact


def _inherit(ann: Annotation, params: dict) -> None:
    for out, src in ann.inherit.items():
        params[out] = params[src]


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
    sort_graph(graph.g)
    graph.refresh()
    graph.prune()
    model = graph.model
    model.ir_version = max(model.ir_version, IR_VERSION)
    if not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, 1))
    del model.graph.value_info[:]
    schema.set_producer(model, f"onnx-hawq {__version__}")


FORMATS = ("qlinear", "integer", "qdq")


@dataclasses.dataclass(frozen=True)
class QuantizeConfig(JsonConfig):
    """Everything `onnx-hawq quantize` needs."""

    model: str
    output: str
    calib: str
    plan: str | None = None
    bits: str | None = None
    method: str = "minmax"
    percentile: float = 99.99
    max_samples: int = 512
    report: str | None = None
    format: str = "qlinear"
    pack: bool = True  # 2-4-bit weights as INT4 initializers
    rounding: str | None = None  # gptq (data-driven, second order) | nearest; None: the plan's, else gptq
    weight_range: str | None = None  # full | avx2; None: the plan's, else full
    rounding_stages: int | None = None  # sequential GPTQ stages (1: one pass); None: RoundingConfig's

    def calib_config(self) -> CalibConfig:
        return CalibConfig(Method(self.method), self.percentile, max_samples=self.max_samples)

    def rounding_config(self, plan: Plan | None = None) -> RoundingConfig:
        """The given rounding and range, the others from the plan's record (else the defaults); a plan
        made for other weights is refused (its Ω measured another quantizer)."""
        made = plan.weight_quant() if plan is not None else None
        weights = WeightQuant.of(self.rounding, self.weight_range, made)
        if made is not None and weights != made:
            raise InputError(f"{self.plan} was planned for {made.label()} (its Ω measured that quantizer), "
                             f"not {weights.label()}: drop the option or re-run `onnx-hawq plan` with it")
        if self.rounding_stages is not None and self.rounding_stages < 1:
            raise InputError(f"--rounding-stages {self.rounding_stages}: give 1 or more")
        stages = {} if self.rounding_stages is None else {"stages": self.rounding_stages}
        return RoundingConfig(weights, **stages)

    def report_path(self) -> str:
        return self.report or str(Path(self.output).with_suffix(".report.json"))


def quantize_to_format(model: onnx.ModelProto, plan: Plan, data: dict[str, np.ndarray], calib: CalibConfig,
                       fmt: str = "qlinear", progress: Callable | None = None,
                       prepared: bool = False, pack: bool = True,
                       rounding: RoundingConfig = RoundingConfig()) -> tuple[onnx.ModelProto, dict]:
    """The quantized model in format `fmt` (checked by onnx.checker and onnxruntime) and its report;
    `pack` stores 2-4-bit weights as INT4 on disk."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    result = quantize_model(model, plan, data, calib, progress, prepared, rounding)
    out = result.model
    if fmt == "integer":
        from onnx_hawq.transforms.to_integer_form import to_integer_form

        out = to_integer_form(out)
    if pack:
        from onnx_hawq.transforms.pack_weights import pack_model

        out, _ = pack_model(out)
    if fmt == "qdq":  # from the (packed) QLinear form: same scales, zero points and codes
        from onnx_hawq.transforms.to_qdq_form import to_qdq_form

        out = to_qdq_form(out)
    check_written(out)
    report = build_report(out)
    report.update(plan=plan.to_dict(), refused=result.refused, format=fmt, rounding=rounding.method.value,
                  rounding_stages=rounding.stages)
    warn_full_range(report)
    return out, report


def run_quantize(config: QuantizeConfig, progress: Callable | None = None) -> dict:
    """Load, quantize, check and atomically save; return the report (also written as JSON)."""
    if (config.plan is None) == (config.bits is None):
        raise InputError("give exactly one of --bits-from plan.json or --bits SPEC")
    inputs = [config.model, config.calib, config.plan]
    check_output_path(config.output, *inputs)
    check_output_path(config.report_path(), *inputs, others=[config.output])
    plan = Plan.load(config.plan, "plan") if config.plan else uniform_plan(config.bits)
    model = load_model(config.model)
    data = load_data(config.calib, model, "calibration")
    rounding = config.rounding_config(plan)
    out, report = quantize_to_format(model, plan, data, config.calib_config(), config.format, progress,
                                     pack=config.pack, rounding=rounding)
    report.update(model=config.model, output=config.output)
    save_model(out, config.output)
    atomic_write_json(config.report_path(), report)
    return report
