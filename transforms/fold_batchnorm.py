"""Rule: Conv -> BatchNormalization becomes one Conv (W' = W*g/sqrt(v+e), b' = (b-m)*g/sqrt(v+e)+beta).

The folded Conv keeps the original weight initializer name, so layer names do not change.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.transforms.graph import Graph, Replacement, Rule


def match(graph: Graph, node: onnx.NodeProto):
    if node.op_type != "Conv" or len(node.input) < 2:
        return None
    bn = graph.only_consumer(node.output[0])
    if bn is None or bn.op_type != "BatchNormalization":
        return None
    return node, bn


def check(graph: Graph, m) -> str | None:
    conv, bn = m
    if conv.input[1] not in graph.consts:
        return "conv weight is not constant"
    if any(i not in graph.consts for i in bn.input[1:5]):
        return "batch-norm parameters are not constant"
    if len(graph.consumers.get(conv.input[1], [])) > 1:
        return "conv weight is shared with another node"
    if graph.attrs(bn).get("training_mode", 0) or len(bn.output) > 1 and any(bn.output[1:]):
        return "batch-norm is in training mode"
    return None


def replace(graph: Graph, m) -> Replacement:
    conv, bn = m
    gamma, beta, mean, var = (graph.consts[i].astype(np.float64) for i in bn.input[1:5])
    eps = graph.attrs(bn).get("epsilon", 1e-5)
    w = graph.consts[conv.input[1]].astype(np.float64)
    has_bias = len(conv.input) > 2 and conv.input[2]
    b = graph.consts[conv.input[2]].astype(np.float64) if has_bias else np.zeros(w.shape[0])
    k = gamma / np.sqrt(var + eps)
    new_w = (w * k.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
    new_b = ((b - mean) * k + beta).astype(np.float32)
    bias_name = conv.input[2] if has_bias else graph.fresh(conv.input[1] + "_bias")
    folded = helper.make_node("Conv", [conv.input[0], conv.input[1], bias_name], [bn.output[0]], name=conv.name)
    folded.attribute.extend(conv.attribute)
    return Replacement(remove=[conv, bn], add=[folded], constants={conv.input[1]: new_w, bias_name: new_b})


RULE = Rule("fold-batchnorm", match, check, replace)
