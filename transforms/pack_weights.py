"""Rule: a layer's 2-4-bit integer weight stored in an int8 container -> a packed INT4 initializer
(two values a byte on disk) widened by `Cast(to=INT8)`, which onnxruntime folds once at session
creation, so QLinearConv/QLinearMatMul/QGemm/ConvInteger/MatMulInteger keep their int8 kernels.

Needs opset >= 21 (Cast from INT4); `quantization` raises the model's opset before the rewrite.
The unpacking for backends without INT4 (TVM's importer) is `unpack_int4`.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_hawq.arith import schema
from onnx_hawq.arith.signatures import SIGNATURES, slots_of
from onnx_hawq.transforms.graph import Graph, Replacement, Rule, apply_rules

PACKED_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger")
MIN_OPSET = 21
SUFFIX = "_int4"


def match(graph: Graph, node: onnx.NodeProto):
    if not match_bits(node) or slots_of(node).get("w") in graph.producer:
        return None  # not a sub-byte layer, or already packed (its weight comes from the Cast)
    return node


def check(graph: Graph, node) -> str | None:
    w = graph.const(slots_of(node).get("w", ""))
    if w is None or w.dtype != np.int8:
        return "weight is not a constant int8 tensor"
    if w.size and (w.min() < -8 or w.max() > 7):
        return "weight values do not fit 4 bits"
    if len(graph.consumers.get(slots_of(node)["w"], [])) != 1:
        return "weight is read by more than one node"
    return None


def replace(graph: Graph, node) -> Replacement:
    """The int8 initializer (pruned afterwards) gives way to its INT4 twin and a Cast."""
    w_name = slots_of(node)["w"]
    packed, widened = w_name + SUFFIX, w_name + "_unpacked"
    cast = helper.make_node("Cast", [packed], [widened], name=f"{w_name}_unpack", to=TensorProto.INT8)
    schema.write_meta(cast, {"role": "unpack"})
    keep = onnx.NodeProto()
    keep.CopyFrom(node)
    keep.input[list(SIGNATURES[node.op_type]).index("w")] = widened
    return Replacement(remove=[node], add=[cast, keep],
                       constants={packed: graph.const(w_name).astype(ml_dtypes.int4)})


RULE = Rule("pack-int4-weights", match, check, replace)


def unpack_int4(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every `Cast(INT4 initializer -> INT8)` folded into an int8 initializer."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    folded, keep = {}, []
    for node in out.graph.node:
        src = inits.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if src is not None and src.data_type in (TensorProto.INT4, TensorProto.UINT4):
            folded[node.output[0]] = onnx.numpy_helper.to_array(src).astype(np.int8)
            continue
        keep.append(node)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    used = {i for n in keep for i in n.input}
    kept_inits = [i for i in out.graph.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept_inits)
    out.graph.initializer.extend(onnx.numpy_helper.from_array(v, k) for k, v in folded.items())
    return out


def pack_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """`model` with every 2-4-bit layer weight packed as INT4 (opset raised to 21 when needed);
    returns the model and the number of weights packed. A model without such layers is returned as is."""
    if not any(match_bits(n) for n in model.graph.node):
        return model, 0
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    out = model if opset >= MIN_OPSET else _keep_metadata(model, version_converter.convert_version(model, MIN_OPSET))
    if out is model:
        out = onnx.ModelProto()
        out.CopyFrom(model)
    apply_rules(out, [RULE])
    del out.graph.value_info[:]  # the converter's shape annotations; quantize writes none
    packed = sum(1 for n in out.graph.node if n.op_type == "Cast" and n.input and n.input[0].endswith(SUFFIX))
    return out, packed


def match_bits(node: onnx.NodeProto) -> bool:
    bits = schema.read_meta(node).get("w_bits") if node.op_type in PACKED_OPS else None
    return isinstance(bits, int) and bits <= 4


def _keep_metadata(src: onnx.ModelProto, out: onnx.ModelProto) -> onnx.ModelProto:
    """onnx's version converter drops node and model metadata: copy it back (by node output)."""
    meta = {tuple(n.output): list(n.metadata_props) for n in src.graph.node if n.metadata_props}
    for node in out.graph.node:
        if not node.metadata_props and tuple(node.output) in meta:
            node.metadata_props.extend(meta[tuple(node.output)])
    if not out.metadata_props:
        out.metadata_props.extend(src.metadata_props)
    return out
