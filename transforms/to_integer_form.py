"""The integer-only form of a quantized graph: QLinearConv / QGemm / QLinearMatMul / QLinearAdd /
QLinearGlobalAveragePool become ConvInteger / MatMulInteger / ReduceSum plus integer
requantization chains (or lookup tables), so no float op runs between the input QuantizeLinear
and the output DequantizeLinear. Bit-identical to the QLinear form in onnxruntime; a node that
cannot be made exact is kept as it was and named in a warning and in `hawq.integer_kept`.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx

from onnx_hawq.arith import schema
from onnx_hawq.value_ranges import uint8_ranges
from onnx_hawq.transforms import int_add, int_conv, int_gap, int_gemm, int_matmul
from onnx_hawq.transforms.graph import apply_rules
from onnx_hawq.transforms.int_requant import IntContext

log = logging.getLogger("onnx_hawq")


def to_integer_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """A rewritten copy of `model` (a QLinear graph from `quantize_model`); `model` is untouched."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    ctx = IntContext(uint8_ranges(out), pooled_sizes(out))
    refused = apply_rules(out, [m.rule(ctx) for m in (int_conv, int_gemm, int_matmul, int_add, int_gap)]).refused
    for r in refused:
        log.warning("integer form: kept %s as it was (%s): %s", r.node, r.rule, r.reason)
    del out.graph.value_info[:]
    schema.set_model_meta(out, "format", "integer")
    schema.set_model_meta(out, "integer_kept", [{"node": r.node, "reason": r.reason} for r in refused])
    return out


def pooled_sizes(model: onnx.ModelProto) -> dict[str, int]:
    """Number of averaged values per QLinearGlobalAveragePool input, from one onnxruntime run on
    zeros (batch 1); empty when a non-batch input dimension is symbolic or the run fails."""
    from onnx_hawq.ort import expose, session
    from onnx_hawq.model_io import input_specs

    pooled = {n.input[0]: n for n in model.graph.node if n.op_type == "QLinearGlobalAveragePool"}
    specs = input_specs(model)
    if not pooled or any(None in shape[1:] for shape, _ in specs.values()):
        return {}
    feeds = {k: np.zeros((1, *shape[1:]), dtype) for k, (shape, dtype) in specs.items()}
    try:
        arrays = session(expose(model, list(pooled))).run(list(pooled), feeds)
    except Exception as e:  # onnxruntime raises its own exception types
        log.warning("integer form: cannot infer pooled sizes (%s)", str(e).splitlines()[0] if str(e) else e)
        return {}
    sizes = {}
    for (name, node), arr in zip(pooled.items(), arrays):
        last = any(a.name == "channels_last" and a.i for a in node.attribute)
        sizes[name] = int(np.prod(arr.shape[1:-1] if last else arr.shape[2:]))
    return sizes
