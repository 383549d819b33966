"""Rule: Conv -> Mul/Add by a per-output-channel constant folds into the Conv's weight/bias.

Old Caffe2 exports (Inception v2, DenseNet-121) follow BatchNormalization with such a scale/shift.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.transforms.graph import Graph, Replacement, Rule


def _channel_vector(value: np.ndarray, channels: int, out_rank: int) -> np.ndarray | None:
    """Return value as a length-C vector if it broadcasts only along the channel axis."""
    shape = list(value.shape)
    while len(shape) < out_rank:
        shape.insert(0, 1)
    if len(shape) != out_rank or shape[0] != 1 or any(d != 1 for d in shape[2:]):
        return None
    if shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float64)


def match(graph: Graph, node: onnx.NodeProto):
    if node.op_type != "Conv" or node.input[1] not in graph.consts:
        return None
    nxt = graph.only_consumer(node.output[0])
    if nxt is None or nxt.op_type not in ("Mul", "Add"):
        return None
    other = nxt.input[1] if nxt.input[0] == node.output[0] else nxt.input[0]
    if other not in graph.consts:
        return None
    return node, nxt, other


def check(graph: Graph, m) -> str | None:
    conv, nxt, other = m
    w = graph.consts[conv.input[1]]
    if _channel_vector(graph.consts[other], w.shape[0], w.ndim) is None:
        return f"{nxt.op_type} constant is not per-channel"
    if len(graph.consumers.get(conv.input[1], [])) > 1:
        return "conv weight is shared with another node"
    return None


def replace(graph: Graph, m) -> Replacement:
    conv, nxt, other = m
    w = graph.consts[conv.input[1]].astype(np.float64)
    has_bias = len(conv.input) > 2 and conv.input[2]
    b = graph.consts[conv.input[2]].astype(np.float64) if has_bias else np.zeros(w.shape[0])
    v = _channel_vector(graph.consts[other], w.shape[0], w.ndim)
    if nxt.op_type == "Mul":
        w = w * v.reshape((-1,) + (1,) * (w.ndim - 1))
        b = b * v
    else:
        b = b + v
    bias_name = conv.input[2] if has_bias else graph.fresh(conv.input[1] + "_bias")
    folded = helper.make_node("Conv", [conv.input[0], conv.input[1], bias_name], [nxt.output[0]], name=conv.name)
    folded.attribute.extend(conv.attribute)
    return Replacement(remove=[conv, nxt], add=[folded],
                       constants={conv.input[1]: w.astype(np.float32), bias_name: b.astype(np.float32)})


RULE = Rule("fold-channel-affine", match, check, replace)
