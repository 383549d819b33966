"""Residual tie groups found in the ONNX graph (HAWQ ties a block's downsample conv to conv2).

For each Add/Sum, each input is traced back through activation and normalisation nodes to the
layer that produces it. A branch counts only while every tensor on the way has a single consumer:
a downsample conv and a block's last conv feed nothing but the Add, whereas an identity shortcut
(the previous block's ReLU output) also feeds the next conv, so it is not a layer branch.
An Add with two or more layer branches ties those layers.
"""

from __future__ import annotations

import onnx

from onnx_hawq.layers import Layer, weight_input

PASS_THROUGH = ("Relu", "BatchNormalization", "Identity", "Clip", "LeakyRelu", "Cast")
JOINS = ("Add", "Sum")


def _consumers(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> number of consuming node inputs (graph outputs count as consumers)."""
    count: dict[str, int] = {o.name: 1 for o in model.graph.output}
    for node in model.graph.node:
        for name in node.input:
            if name:
                count[name] = count.get(name, 0) + 1
    return count


def branch_layer(tensor: str, nodes: list, producer: dict, consumers: dict, layer_at: dict) -> str | None:
    """The layer whose output reaches `tensor` through single-consumer pass-through nodes."""
    while consumers.get(tensor, 0) == 1 and tensor in producer:
        k = producer[tensor]
        if k in layer_at:
            return layer_at[k]
        node = nodes[k]
        if node.op_type not in PASS_THROUGH or not node.input:
            return None
        tensor = node.input[0]
    return None


def layer_node_index(model: onnx.ModelProto, layers: list[Layer]) -> dict[int, str]:
    """Node index -> layer name, pairing nodes with layers in graph order as `find_layers` does."""
    inits = {i.name: i for i in model.graph.initializer}
    found = [k for k, n in enumerate(model.graph.node) if weight_input(n, inits) is not None]
    return {k: l.name for k, l in zip(found, layers)}


def residual_ties(model: onnx.ModelProto, layers: list[Layer]) -> list[tuple[str, ...]]:
    """Tie groups of layer names: the layer branches that meet at each residual Add/Sum."""
    nodes = list(model.graph.node)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    layer_at = layer_node_index(model, layers)
    consumers = _consumers(model)
    ties = []
    for node in nodes:
        if node.op_type not in JOINS:
            continue
        found = [branch_layer(t, nodes, producer, consumers, layer_at) for t in node.input if t]
        names = tuple(dict.fromkeys(n for n in found if n))
        if len(names) >= 2:
            ties.append(names)
    return ties
