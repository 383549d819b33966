"""The quantization report, read back from a quantized model's node metadata and initializers.

`quantize` writes it as JSON next to the model; `inspect` prints it for any model we produced.
"""

from __future__ import annotations

import onnx

import numpy as np

from onnx_hawq.arith import schema
from onnx_hawq.arith.signatures import SIGNATURES, slots_of
from onnx_hawq.large_models import shapes_only
from onnx_hawq.errors import InputError

KIND, VERSION = "onnx-hawq-report", 1


def node_meta(node: onnx.NodeProto) -> dict:
    """hawq.* metadata of `node` without the prefix (see `arith.schema`)."""
    return schema.read_meta(node)


def _layer_row(node, meta) -> dict:
    return {"layer": meta.get("layer", node.name), "op": node.op_type, "w_bits": meta["w_bits"],
            "a_bits_in": meta.get("a_bits_in"), "a_bits_out": meta.get("a_bits_out"), "form": meta.get("form"),
            "exact": meta.get("exact"), "params": meta.get("params", 0), "size_bytes": meta.get("size_bytes", 0),
            "w_scale_range": meta.get("w_scale_range"), "dyadic_first": (meta.get("dyadic") or [[None, None]])[0],
            "relu": meta.get("relu", False)}


FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor shape inference can type (contrib ops' outputs often stay untyped)."""
    try:
        inferred = shapes_only(model)
    except Exception:
        inferred = model
    infos = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    return {v.name: v.type.tensor_type.elem_type for v in infos if v.type.tensor_type.elem_type}


def float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of float tensors (by shape inference): nodes producing them ran in float."""
    return {name for name, kind in tensor_types(model).items() if kind in FLOAT_TYPES}


# float ops whose results are exact (they move, select, compare or clamp values): they round nothing
EXACT_OPS = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Concat", "Slice", "Gather",
             "GatherElements", "Split", "Expand", "MaxPool", "GlobalMaxPool", "ReduceMax", "ReduceMin", "ArgMax",
             "ArgMin", "Shape", "Size", "ConstantOfShape", "Cast", "Where", "Equal", "Less", "Greater", "Pad",
             "Tile", "Relu", "Max", "Min", "Clip", "Neg", "Abs", "Sign", "Floor", "Ceil", "QuantizeLinear",
             "DequantizeLinear"}


def float_rounding(model: onnx.ModelProto) -> tuple[set[str], tuple[str, ...]]:
    """(tensors computed from float arithmetic outside onnx-hawq's integer nodes, the op types doing it).

    Backends round such float ops (LayerNormalization, Softmax, ...) differently in the last ulp, so
    those tensors, and every quantized value derived from them, cannot be compared bit for bit."""
    types = tensor_types(model)
    tainted, ops = set(), set()
    for node in model.graph.node:  # topological order (quantize sorts its output)
        if node.op_type in ("Shape", "Size"):
            continue  # a shape is exact whatever the values
        rounding = (node.op_type not in EXACT_OPS and not node_meta(node)
                    and any(types.get(o, onnx.TensorProto.FLOAT) in FLOAT_TYPES for o in node.output if o))
        if rounding or any(i in tainted for i in node.input):
            tainted.update(o for o in node.output if o)
            ops.update([node.op_type] if rounding else [])
    return tainted, tuple(sorted(ops))


def build_report(model: onnx.ModelProto) -> dict:
    """Per-layer and per-node rows plus totals, from a model onnx-hawq produced."""
    layers, nodes, float_ops = [], [], []
    floats = float_tensors(model)
    disk = _disk_bytes(model)
    for node in model.graph.node:
        meta = node_meta(node)
        # Cast/Mul after a float-output layer, INT4 widening, the exact float32 steps of q_hardswish
        if meta.get("role") in ("dequantize", "unpack", "arith"):
            continue
        if not meta:
            if node.op_type != "DequantizeLinear" and any(o in floats for o in node.output):
                float_ops.append(node.op_type)
            continue
        if "w_bits" in meta:
            layers.append({**_layer_row(node, meta), "disk_bytes": disk(node)})
        else:
            nodes.append({"node": node.name, "op": node.op_type, "a_bits_out": meta.get("a_bits_out"),
                          "dyadic": meta.get("dyadic")})
    if not layers and not nodes:
        raise InputError("model has no onnx-hawq metadata (was it produced by `onnx-hawq quantize`?)")
    size = sum(r["size_bytes"] for r in layers)
    params = sum(r["params"] for r in layers)
    totals = {"layers": len(layers), "size_bytes": size, "disk_bytes": sum(r["disk_bytes"] for r in layers),
              "fp32_size_bytes": 4 * params,
              "compression": round(4 * params / size, 3) if size else None,
              "all_exact": all(bool(r["exact"]) for r in layers if r["exact"] is not None)}
    return {"kind": KIND, "version": VERSION, "layers": layers, "nodes": nodes, "totals": totals,
            "float_ops": sorted(set(float_ops)), "weights": schema.model_meta(model).get("weights")}


WEIGHT_SLOTS = ("w", "w_scale", "w_zp", "bias")


def _disk_bytes(model: onnx.ModelProto):
    """node -> bytes its weight-side initializers take in the file (INT4 packed two a byte),
    following an unpacking Cast to its packed initializer and a QDQ layer's DequantizeLinear inputs."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    casts = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast" and n.input}

    def size(name: str) -> int:
        init = inits.get(casts.get(name, name))
        if init is None:
            return 0
        count = int(np.prod(init.dims)) if init.dims else 1
        if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            return (count + 1) // 2
        return numpy_helper.to_array(init).nbytes

    dqs = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    # a float-output layer's accumulator -> the x_scale * w_scale factors its Cast -> Mul applies
    factors = {casts[n.input[0]]: n.input[1] for n in model.graph.node
               if n.op_type == "Mul" and n.input[0] in casts and node_meta(n).get("role") == "dequantize"}

    def node_bytes(node: onnx.NodeProto) -> int:
        if node.op_type not in SIGNATURES:  # a QDQ-form layer: the DequantizeLinear nodes of its constants
            return sum(size(t) for i in node.input if i in dqs and size(dqs[i].input[0]) for t in dqs[i].input)
        factor = size(factors[node.output[0]]) if node.output and node.output[0] in factors else 0
        return factor + sum(size(t) for slot, t in slots_of(node).items() if slot in WEIGHT_SLOTS)

    return node_bytes


def _exact_label(exact) -> str:
    return "float" if exact is None else str(bool(exact))  # None: float output, nothing requantized


def format_table(report: dict) -> str:
    """A plain-text table of the layers and the totals."""
    head = (f"{'layer':<32} {'op':<13} {'w':>2} {'a_in':>4} {'form':<16} {'exact':<5} {'bytes':>9} "
            f"{'on disk':>9}")
    lines = [head, "-" * len(head)]
    for r in report["layers"]:
        lines.append(f"{r['layer'][:32]:<32} {r['op']:<13} {r['w_bits']:>2} {str(r['a_bits_in']):>4} "
                     f"{str(r['form']):<16} {_exact_label(r['exact']):<5} {r['size_bytes']:>9} "
                     f"{r.get('disk_bytes', '-'):>9}")
    t = report["totals"]
    lines.append("-" * len(head))
    lines.append(f"{t['layers']} layers, {t['size_bytes']} bytes planned, {t.get('disk_bytes', '-')} on disk "
                 f"(fp32 {t['fp32_size_bytes']}, "
                 f"{t['compression']}x smaller), all requantizations exact: {t['all_exact']}"
                 + (" ('float': layer output stays float, no requantization)"
                    if any(r["exact"] is None for r in report["layers"]) else ""))
    if report.get("weights"):
        lines.append(weights_line(report["weights"]))
    if report["float_ops"]:
        lines.append("kept in float: " + ", ".join(report["float_ops"]))
    return "\n".join(lines)


RANGE_TEXT = {"full": "full range |w_q| <= 2^(b-1)-1 (8-bit layers on 8-bit inputs exact in onnxruntime on "
                      "VNNI/AMX CPUs)",
              "avx2": "8-bit weights on 8-bit inputs capped at |w_q| <= 64 (exact on AVX2's u8s8 kernel too)"}


def weights_line(weights: dict) -> str:
    """One line naming the weight rounding and range a model was quantized with."""
    rng = weights.get("range")
    return f"weights: {weights.get('rounding')} rounding, {RANGE_TEXT.get(rng, rng)}"
