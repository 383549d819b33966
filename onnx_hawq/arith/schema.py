"""The `hawq.*` node metadata and tensor naming onnx-hawq writes: written and read only here.

Each integer node carries, in `NodeProto.metadata_props`, the record of the float node it stands
for: ``hawq.output`` (the float tensor T of the prepared graph), ``hawq.layer``, the bit-widths, the
dyadic multipliers ``[b, c]`` per channel, exactness and the kernel form. T's quantized value is
the tensor ``T_quantized`` with constants ``T_scale`` and ``T_zero_point``.
"""

from __future__ import annotations

import json

import onnx

PREFIX = "hawq."
# values that are names, kept as strings even when they look like JSON (a layer named "391")
TEXT_KEYS = frozenset({"layer", "output", "op", "float_op", "form", "role", "weight"})
KEYS = ("layer", "output", "op", "float_op", "role", "w_bits", "a_bits_in", "a_bits_out", "form", "dyadic",
        "exact", "relu", "params", "size_bytes", "w_scale_range", "float_output", "weight")
QUANTIZED, SCALE, ZERO_POINT = "_quantized", "_scale", "_zero_point"


def qname(tensor: str) -> str:
    """The uint8 tensor that stands for float `tensor`."""
    return tensor + QUANTIZED


def scale_name(tensor: str) -> str:
    return tensor + SCALE


def zero_point_name(tensor: str) -> str:
    return tensor + ZERO_POINT


def float_name(quantized: str) -> str | None:
    """T for `T_quantized`, else None."""
    return quantized[: -len(QUANTIZED)] if quantized.endswith(QUANTIZED) else None


def write_meta(node: onnx.NodeProto, record: dict) -> None:
    """Attach `record` (keys from KEYS, JSON values) to `node` as hawq.* metadata."""
    for key, value in record.items():
        if key not in KEYS:
            raise KeyError(f"unknown hawq metadata key {key!r}")
        entry = node.metadata_props.add()
        entry.key = PREFIX + key
        entry.value = value if key in TEXT_KEYS else json.dumps(value)


def read_meta(node: onnx.NodeProto) -> dict:
    """hawq.* metadata of `node` without the prefix; names stay strings, other values JSON-decoded."""
    out = {}
    for p in node.metadata_props:
        if not p.key.startswith(PREFIX):
            continue
        key = p.key[len(PREFIX):]
        if key in TEXT_KEYS:
            out[key] = p.value
            continue
        try:
            out[key] = json.loads(p.value)
        except json.JSONDecodeError:
            out[key] = p.value
    return out


# weights: the WeightQuant record ({"rounding": ..., "range": ...}) the layers were quantized with
MODEL_KEYS = frozenset({"producer", "format", "integer_kept", "weights"})


def set_model_meta(model: onnx.ModelProto, key: str, value) -> None:
    """Set model-level hawq.<key> (replacing an earlier value); non-strings are stored as JSON."""
    if key not in MODEL_KEYS:
        raise KeyError(f"unknown hawq model metadata key {key!r}")
    full = PREFIX + key
    kept = [p for p in model.metadata_props if p.key != full]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = full, value if isinstance(value, str) else json.dumps(value)


def set_producer(model: onnx.ModelProto, text: str) -> None:
    """Record which onnx-hawq wrote `model`."""
    set_model_meta(model, "producer", text)


def model_meta(model: onnx.ModelProto) -> dict:
    """Model-level hawq.* metadata without the prefix; JSON values decoded."""
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(PREFIX) and p.key[len(PREFIX):] in MODEL_KEYS:
            try:
                out[p.key[len(PREFIX):]] = json.loads(p.value)
            except json.JSONDecodeError:
                out[p.key[len(PREFIX):]] = p.value
    return out
