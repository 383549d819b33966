"""The quantization report, read back from a quantized model's node metadata and initializers.

`quantize` writes it as JSON next to the model; `inspect` prints it for any model we produced.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import numpy_helper

from onnx_hawq.errors import InputError

KIND, VERSION = "onnx-hawq-report", 1


def node_meta(node: onnx.NodeProto) -> dict:
    """hawq.* metadata of `node` without the prefix, JSON-decoded where the value is JSON."""
    out = {}
    for p in node.metadata_props:
        if p.key.startswith("hawq."):
            try:
                out[p.key[5:]] = json.loads(p.value)
            except json.JSONDecodeError:
                out[p.key[5:]] = p.value
    if "output" in out and not isinstance(out["output"], str):  # a tensor named like a number
        out["output"] = next(p.value for p in node.metadata_props if p.key == "hawq.output")
    return out


def _layer_row(node, meta, inits) -> dict:
    w = inits[node.input[3]]
    bias = inits.get(node.input[8] if node.op_type == "QLinearConv" else node.input[6]) \
        if node.op_type in ("QLinearConv", "QGemm") else None
    channels = int(np.asarray(inits[node.input[4]]).size)
    packed = int(np.ceil(w.size * meta["w_bits"] / 8)) + 4 * channels + (4 * bias.size if bias is not None else 0)
    scale = np.asarray(inits[node.input[4]], np.float64)
    return {"layer": meta.get("layer", node.name), "op": node.op_type, "w_bits": meta["w_bits"],
            "a_bits_in": meta.get("a_bits_in"), "a_bits_out": meta.get("a_bits_out"), "form": meta.get("form"),
            "exact": meta.get("exact"), "params": int(w.size), "size_bytes": packed,
            "w_scale_range": [float(scale.min()), float(scale.max())],
            "dyadic_first": meta.get("dyadic", [[None, None]])[0], "relu": meta.get("relu", False)}


def build_report(model: onnx.ModelProto) -> dict:
    """Per-layer and per-node rows plus totals, from a model onnx-hawq produced."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    layers, nodes, float_ops = [], [], []
    for node in model.graph.node:
        meta = node_meta(node)
        if not meta:
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Clip"):
                float_ops.append(node.op_type)
            continue
        if "w_bits" in meta:
            layers.append(_layer_row(node, meta, inits))
        else:
            nodes.append({"node": node.name, "op": node.op_type, "a_bits_out": meta.get("a_bits_out"),
                          "dyadic": meta.get("dyadic")})
    if not layers and not nodes:
        raise InputError("model has no onnx-hawq metadata (was it produced by `onnx-hawq quantize`?)")
    size = sum(r["size_bytes"] for r in layers)
    params = sum(r["params"] for r in layers)
    totals = {"layers": len(layers), "size_bytes": size, "fp32_size_bytes": 4 * params,
              "compression": round(4 * params / size, 3) if size else None,
              "all_exact": all(bool(r["exact"]) for r in layers)}
    return {"kind": KIND, "version": VERSION, "layers": layers, "nodes": nodes, "totals": totals,
            "float_ops": sorted(set(float_ops))}


def format_table(report: dict) -> str:
    """A plain-text table of the layers and the totals."""
    head = f"{'layer':<32} {'op':<13} {'w':>2} {'a_in':>4} {'form':<16} {'exact':<5} {'bytes':>9}"
    lines = [head, "-" * len(head)]
    for r in report["layers"]:
        lines.append(f"{r['layer'][:32]:<32} {r['op']:<13} {r['w_bits']:>2} {str(r['a_bits_in']):>4} "
                     f"{str(r['form']):<16} {str(bool(r['exact'])):<5} {r['size_bytes']:>9}")
    t = report["totals"]
    lines.append("-" * len(head))
    lines.append(f"{t['layers']} layers, {t['size_bytes']} bytes (fp32 {t['fp32_size_bytes']}, "
                 f"{t['compression']}x smaller), all requantizations exact: {t['all_exact']}")
    if report["float_ops"]:
        lines.append("kept in float: " + ", ".join(report["float_ops"]))
    return "\n".join(lines)
