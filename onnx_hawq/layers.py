"""Quantizable layers of an ONNX graph and the names plans, sensitivities and reports use.

A layer is a Conv, Gemm or MatMul whose weight is a constant initializer. Its name is the PyTorch
module path when the graph came from ``torch.onnx.export`` (either exporter), so plans written
against module names apply without user effort:

* dynamo exporter: initializer ``layer1.0.conv1.weight`` -> ``layer1.0.conv1``;
* TorchScript exporter: node ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``;
* otherwise the weight initializer's name, else the node's label (`node_labels`: its name, else its
  output tensor's).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import numpy_helper

from onnx_hawq.large_models import shapes_only

@dataclasses.dataclass(frozen=True)
class Layer:
    """One quantizable layer: where it is in the graph and what it costs."""

    name: str
    node_name: str
    op_type: str
    weight: str  # initializer name
    bias: str | None
    weight_shape: tuple[int, ...]
    out_axis: int  # axis of the weight that indexes output channels
    macs: int  # multiply-accumulates per sample (0 when shapes are unknown)

    @property
    def params(self) -> int:
        return int(np.prod(self.weight_shape))

    @property
    def out_channels(self) -> int:
        return self.weight_shape[self.out_axis]


def torchscript_module_path(node_name: str) -> str | None:
    """'/layer2/layer2.0/downsample/downsample.0/Conv' -> 'layer2.0.downsample.0'."""
    if not node_name.startswith("/"):
        return None
    parts = [p for p in node_name.split("/") if p][:-1]
    if not parts:
        return None
    path, last = "", ""
    for seg in parts:
        if last and seg.startswith(last + "."):
            path = f"{path}{seg[len(last):]}"
        else:
            path = f"{path}.{seg}" if path else seg
        last = seg
    return path


def node_labels(model: onnx.ModelProto) -> list[str]:
    """A unique label per node in graph order: its name, else its first output's name (suffixed when taken)."""
    used = {n.name for n in model.graph.node if n.name}
    labels = []
    for node in model.graph.node:
        label = node.name
        if not label:
            base = node.output[0] if node.output and node.output[0] else node.op_type
            label, k = base, 0
            while label in used:
                k += 1
                label = f"{base}_node{k}"
            used.add(label)
        labels.append(label)
    return labels


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node its `node_labels` label, in place (quantize keys layers by node name)."""
    for node, label in zip(model.graph.node, node_labels(model)):
        node.name = label


def _base_name(node: onnx.NodeProto, weight: str, label: str) -> str:
    if weight.endswith(".weight") and not weight.startswith("onnx::"):
        return weight[: -len(".weight")]
    scoped = torchscript_module_path(node.name)
    if scoped:
        return scoped
    if weight and not weight.startswith("onnx::"):
        return weight
    return label


def weight_input(node: onnx.NodeProto, inits: dict) -> tuple[str, str | None, int] | None:
    """Return (weight, bias, out_axis) if `node` is a quantizable layer with constant weights."""
    if node.op_type == "Conv" and len(node.input) >= 2 and node.input[1] in inits:
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        return node.input[1], bias, 0
    if node.op_type == "Gemm" and len(node.input) >= 2 and node.input[1] in inits:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0):
            return None
        bias = node.input[2] if len(node.input) > 2 and node.input[2] in inits else None
        return node.input[1], bias, 0 if attrs.get("transB", 0) else 1
    if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
        return node.input[1], None, 1
    return None


def find_layers(model: onnx.ModelProto, value_shapes: dict[str, tuple] | None = None) -> list[Layer]:
    """List the quantizable layers of `model` in graph order, with unique names."""
    inits = {i.name: i for i in model.graph.initializer}
    shapes = value_shapes if value_shapes is not None else inferred_shapes(model)
    layers, seen = [], {}
    labels = node_labels(model)
    for index, node in enumerate(model.graph.node):
        found = weight_input(node, inits)
        if found is None:
            continue
        weight, bias, axis = found
        name = _base_name(node, weight, labels[index])
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name] - 1}"
        wshape = tuple(int(d) for d in inits[weight].dims)
        layers.append(Layer(name, labels[index], node.op_type, weight, bias, wshape, axis,
                            _macs(node, wshape, axis, shapes)))
    return layers


def _macs(node, wshape, axis, shapes) -> int:
    out = shapes.get(node.output[0])
    if not out or any(d is None for d in out):
        return 0
    out = [d for d in out]
    if node.op_type == "Conv":
        # out: N, Cout, *spatial; each output element costs Cin/groups * kernel MACs
        per_out = int(np.prod(wshape[1:]))
        return int(np.prod(out[1:])) * per_out
    k = wshape[1 - axis]
    return int(np.prod(out[1:])) * k if len(out) > 1 else int(out[0]) * k


def inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Shapes (batch dim taken as 1) of every tensor onnx shape inference can tell (already inferred
    models, such as `prepare_model`'s output, are read as they are)."""
    known = {v.name for v in list(model.graph.value_info) + list(model.graph.output)}
    inferred = model
    if any(o not in known for n in model.graph.node for o in n.output if o):
        try:
            inferred = shapes_only(model)  # any size: a > 2 GB model is inferred without its weights
        except Exception:
            pass
    out = {}
    vis = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    for vi in vis:
        dims = vi.type.tensor_type.shape.dim
        if not vi.type.tensor_type.HasField("shape"):
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        if shape and shape[0] is None:
            shape = (1,) + shape[1:]
        out[vi.name] = shape
    return out


def weights_of(model: onnx.ModelProto, layer: Layer) -> np.ndarray:
    """The float weight array of `layer`, output channels on axis 0."""
    init = next(i for i in model.graph.initializer if i.name == layer.weight)
    w = numpy_helper.to_array(init).astype(np.float32)
    return np.moveaxis(w, layer.out_axis, 0)
