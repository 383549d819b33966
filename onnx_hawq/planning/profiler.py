"""Measure each layer's latency in onnxruntime as an isolated single-node integer graph.

Conv -> QLinearConv (uint8 input, int8 weights clipped to the bit range, per-channel scales,
int32 bias); Gemm -> com.microsoft QGemm; MatMul -> QLinearMatMul. Weights are the layer's own,
quantized with the rewrite's quantizer; inputs are random codes in the activation's range.
Each graph runs `warmup` times, then `runs` timed runs; the table keeps the median. W8A8 is
always measured too: it is the reference of `--max-latency N%`.

On x86 CPUs onnxruntime runs every one of these nodes with the same u8 x s8 kernel whatever the
bit-width inside the int8 container, so the table shows no gain below 8 bits there; it matters
for targets whose kernels do get faster with fewer bits.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError
from onnx_hawq.layers import Layer, inferred_shapes, weights_of
from onnx_hawq.plans import LayerBits, fingerprint
from onnx_hawq.planning.costs import candidate_choices
from onnx_hawq.planning.latency import LatencyTable
from onnx_hawq.planning.residual import layer_node_index
from onnx_hawq.arith.signatures import domain_of, ordered
from onnx_hawq.arith.quantizer import WeightQuant, act_qmax, channel_scales, quantize_weight

OPSET = 17


@dataclasses.dataclass(frozen=True)
class ProfileConfig(JsonConfig):
    """What `onnx-hawq profile` measures and where it writes the table."""

    model: str
    output: str
    bits: tuple[int, ...] = (4, 8)
    act_bits: tuple[int, ...] = (8,)
    threads: int = 1
    warmup: int = 10
    runs: int = 50
    batch: int = 1
    weights: WeightQuant = WeightQuant()  # its code range bounds the weights profiled


def quantized_weight(model, layer: Layer, w_bits: int, a_bits: int,
                     weights: WeightQuant) -> tuple[np.ndarray, np.ndarray]:
    """The layer's int8 weight (its own layout) and per-output-channel float32 scales."""
    w = weights_of(model, layer)
    qmax = weights.qmax(w_bits, a_bits)
    scales = channel_scales(w, qmax)
    q = np.moveaxis(quantize_weight(w, scales, qmax), 0, layer.out_axis)
    return np.ascontiguousarray(q), scales.astype(np.float32)


def _scalars(prefix: str, scale: float, zp_type) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(np.array(scale, np.float32), f"{prefix}_scale"),
            numpy_helper.from_array(np.array(0, zp_type), f"{prefix}_zp")]


def single_node_graph(node: onnx.NodeProto, layer: Layer, q: np.ndarray, scales: np.ndarray,
                      in_shape: tuple[int, ...]) -> onnx.ModelProto:
    """A one-node integer model computing `layer` with weights `q` (see module doc)."""
    m = layer.out_channels
    inits = _scalars("x", 0.02, np.uint8) + _scalars("y", 0.05, np.uint8) + [
        numpy_helper.from_array(q, "w"), numpy_helper.from_array(scales, "w_scale"),
        numpy_helper.from_array(np.zeros(m, np.int8), "w_zp")]
    if layer.op_type != "MatMul":
        inits.append(numpy_helper.from_array(np.zeros(m, np.int32), "bias"))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    slots = {k: k for k in ("x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "bias")}
    if layer.op_type == "Conv":
        qnode = helper.make_node("QLinearConv", ordered("QLinearConv", slots), ["y"], **attrs)
    elif layer.op_type == "Gemm":
        keep = {k: v for k, v in attrs.items() if k in ("transA", "transB", "alpha")}
        qnode = helper.make_node("QGemm", ordered("QGemm", slots), ["y"], domain=domain_of("QGemm"), **keep)
    else:
        del slots["bias"]
        qnode = helper.make_node("QLinearMatMul", ordered("QLinearMatMul", slots), ["y"])
    graph = helper.make_graph(
        [qnode], f"profile_{layer.name}",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def time_model(model: onnx.ModelProto, feed: dict, threads: int, warmup: int, runs: int) -> float:
    """Median wall time of one onnxruntime run of `model`, in milliseconds."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        sess.run(None, feed)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e6


def input_shape(node: onnx.NodeProto, layer: Layer, shapes: dict, batch: int) -> tuple[int, ...]:
    """The layer's input shape with the batch dimension set; unknown dims are InputErrors."""
    shape = shapes.get(node.input[0])
    if not shape or any(d is None for d in shape[1:]):
        raise InputError(f"cannot profile layer {layer.name}: its input shape is unknown ({shape})")
    return (batch,) + tuple(int(d) for d in shape[1:])


def profile_layer(model, node, layer: Layer, choices, shape, cfg: ProfileConfig, rng) -> dict[str, float]:
    """Median ms of `layer` at each choice."""
    out = {}
    for ch in choices:
        q, scales = quantized_weight(model, layer, ch.w_bits, ch.a_bits, cfg.weights)
        graph = single_node_graph(node, layer, q, scales, shape)
        feed = {"x": rng.integers(0, act_qmax(ch.a_bits) + 1, size=shape, dtype=np.uint8)}
        out[ch.label()] = time_model(graph, feed, cfg.threads, cfg.warmup, cfg.runs)
    return out


def profile(model: onnx.ModelProto, layers: list[Layer], cfg: ProfileConfig, progress=iter) -> LatencyTable:
    """Measure every layer at every (w_bits, a_bits) choice of `cfg` into a LatencyTable."""
    import onnxruntime as ort

    choices = tuple(sorted(set(candidate_choices(cfg.bits, cfg.act_bits)) | {LayerBits(8, 8)},
                           key=lambda c: (c.w_bits, c.a_bits)))
    shapes = inferred_shapes(model)
    nodes = {name: model.graph.node[k] for k, name in layer_node_index(model, layers).items()}
    rng = np.random.default_rng(0)
    shape_of = {l.name: input_shape(nodes[l.name], l, shapes, cfg.batch) for l in layers}
    table = {l.name: profile_layer(model, nodes[l.name], l, choices, shape_of[l.name], cfg, rng)
             for l in progress(layers)}
    return LatencyTable(
        model=fingerprint(layers), device=cpu_name(), runtime=f"onnxruntime {ort.__version__} CPUExecutionProvider",
        threads=cfg.threads, batch=cfg.batch, warmup=cfg.warmup, runs=cfg.runs, layers=table)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_profile(cfg: ProfileConfig, progress=iter) -> LatencyTable:
    """Profile the prepared model of `cfg.model` and write the table to `cfg.output` atomically."""
    from onnx_hawq.model_io import check_output_path
    from onnx_hawq.planning.instance import load_prepared

    candidate_choices(cfg.bits, cfg.act_bits)
    out = check_output_path(cfg.output, cfg.model)
    model, layers = load_prepared(cfg.model)
    table = profile(model, layers, cfg, progress)
    table.save(out)
    return table
