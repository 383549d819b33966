"""Hand-made annotated nodes and contexts for checking a rule's refusals directly."""

import numpy as np
from onnx import helper

from onnx_hawq.arith.quantizer import TensorQ, WeightRange
from onnx_hawq.layers import Layer
from onnx_hawq.plans import LayerBits
from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.qcontext import QuantContext


def qnode(op: str, kind: Kind, inputs, out="y", layer=None, fused=False) -> QNode:
    node = helper.make_node(op, list(inputs), [out], name=f"{op}_0")
    relu = helper.make_node("Relu", [out], [f"{out}_relu"]) if fused else None
    return QNode(node, kind, f"{out}_relu" if fused else out, list(inputs), relu, layer)


def context(params: dict, consts=None, weight_range=WeightRange.FULL, **facts) -> QuantContext:
    return QuantContext.of(consts or {}, params, {"conv": LayerBits(8, 8)}, weight_range=weight_range, **facts)


def tq(scale=0.1, zp=0, bits=8) -> TensorQ:
    return TensorQ(scale, zp, bits)


def conv_layer(weight: np.ndarray) -> Layer:
    return Layer(name="conv", node_name="Conv_0", op_type="Conv", weight="w", bias=None,
                 weight_shape=tuple(weight.shape), out_axis=0, macs=0)
