"""Sound value ranges of the uint8 tensors of a quantized graph (onnx only, no tvm).

A tensor produced by Clip with constant bounds lies within them; MaxPool, Flatten, Reshape and the
like keep their input's range; Concat spans its inputs' ranges; Max with a constant raises the
floor; anything else may take any uint8 value. Narrow ranges (4-bit activations live in [0, 15]) let more layers requantize exactly
in integers.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

FULL = (0, 255)
KEEPS_RANGE = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity"}


def uint8_ranges(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """{tensor: (lo, hi)} for tensors whose range is narrower than the full uint8 range."""
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    ranges: dict[str, tuple[int, int]] = {}
    for node in model.graph.node:
        if not node.input or not node.output:
            continue
        src = ranges.get(node.input[0], FULL)
        bound = [_scalar(consts, n) for n in node.input[1:3]]
        if node.op_type in KEEPS_RANGE:
            out = src
        elif node.op_type == "Clip" and len(node.input) == 3 and None not in bound:
            out = (max(src[0], bound[0]), min(src[1], bound[1]))
        elif node.op_type == "Max" and len(node.input) == 2 and bound[0] is not None:
            out = (max(src[0], bound[0]), max(src[1], bound[0]))
        elif node.op_type == "Concat":
            parts = [ranges.get(i, FULL) for i in node.input]
            out = (min(p[0] for p in parts), max(p[1] for p in parts))
        else:
            continue
        if out != FULL and out[0] <= out[1]:
            ranges[node.output[0]] = out
    return ranges


def node_input_ranges(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """{node name: range of its first input}; a name shared by several nodes gets the widest."""
    ranges = uint8_ranges(model)
    out: dict[str, tuple[int, int]] = {}
    for node in model.graph.node:
        r = ranges.get(node.input[0], FULL) if node.input else FULL
        if node.name in out:
            r = (min(r[0], out[node.name][0]), max(r[1], out[node.name][1]))
        out[node.name] = r
    return out


def _scalar(consts: dict, name: str) -> int | None:
    value = consts.get(name)
    if value is None or value.size != 1 or value.dtype.kind not in "ui":
        return None
    return int(value.reshape(()))
