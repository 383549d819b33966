"""Map a quantized model's integer nodes back to the float graph, for the layer-wise report.

Every node onnx-hawq emits carries ``hawq.output``: the tensor T of the prepared float graph it
stands for. Its quantized value is ``T_quantized`` (uint8) with scale ``T_scale`` and zero point
``T_zero_point``; a float-output layer (``hawq.float_output``) writes T itself. Two errors are measured per node:

* accumulated: T_quantized of the full quantized run vs T of the float run (what the model sees);
* local: the node alone (with its Clip or requantization chain), fed the float run's inputs quantized
  with the node's own input scales, vs T. Errors from earlier layers do not reach it, so a broken
  layer stands out here even when everything after it is broken too.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnx_hawq.arith import schema
from onnx_hawq.arith.ort_math import dequantize_linear, quantize_linear
from onnx_hawq.report import node_meta

log = logging.getLogger("onnx_hawq")
MAX_LOCAL_NODES = 64  # a node plus its requantization chain


@dataclasses.dataclass(frozen=True)
class QuantInput:
    """A data input of a quantized node: its uint8 name, float tensor and quantizer."""

    name: str
    float_name: str
    scale: float
    zero_point: int
    qmax: int


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An integer node the layer-wise report could not map back to the float graph, and why."""

    node: str
    op: str
    tensor: str
    reason: str


@dataclasses.dataclass(frozen=True)
class QuantTensor:
    """One integer node's output, mapped back to the float tensor it stands for."""

    node: str
    op: str
    label: str  # layer name, else node name
    bits: str  # "w4a8" for layers (weight bits, input activation bits), "a8" otherwise
    float_name: str
    qname: str
    scale: float
    zero_point: int
    inputs: tuple[QuantInput, ...] = ()  # empty: no local run possible
    float_out: bool = False  # the node writes T in float (qname == float_name)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return q.astype(np.float32) if self.float_out else dequantize_linear(q, self.scale, self.zero_point)



def bits_label(meta: dict) -> str:
    if "w_bits" in meta:
        return f"w{meta['w_bits']}a{meta.get('a_bits_in', '?')}"
    return f"a{meta.get('a_bits_out', '?')}"


def _scalar(inits: dict, name: str):
    return inits[name].reshape(-1)[0] if name in inits and inits[name].size == 1 else None


def _qmax(qname: str, producers: dict, inits: dict) -> int:
    """The largest code of a uint8 tensor: a Clip's constant max (< 8-bit activations), else 255."""
    p = producers.get(qname)
    if p is not None and p.op_type == "Clip" and len(p.input) > 2 and p.input[2] in inits:
        return int(inits[p.input[2]].reshape(-1)[0])
    return 255


def _quant_input(name: str, producers: dict, inits: dict) -> QuantInput | None:
    if schema.float_name(name) is None:
        return None
    base = schema.float_name(name)
    scale, zp = _scalar(inits, schema.scale_name(base)), _scalar(inits, schema.zero_point_name(base))
    if scale is None or zp is None:
        return None
    return QuantInput(name, base, float(scale), int(zp), _qmax(name, producers, inits))


def _data_inputs(node, producers, inits) -> tuple[QuantInput, ...]:
    names = [i for i in node.input if i and i not in inits]
    found = [_quant_input(n, producers, inits) for n in names]
    return tuple(found) if found and all(found) else ()


def _skip(skipped: list | None, node, tensor: str, reason: str) -> None:
    log.warning("layer-wise: %s: %s; skipped", node.name, reason)
    if skipped is not None:
        skipped.append(Skipped(node.name, node.op_type, tensor, reason))


def quant_tensors(model: onnx.ModelProto, skipped: list | None = None) -> list[QuantTensor]:
    """Every node with hawq.output whose T_quantized, T_scale and T_zero_point exist, in graph order;
    the others are appended to `skipped` (a `Skipped` each)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    out, seen = [], set()
    for node in model.graph.node:
        meta = node_meta(node)
        tensor = meta.get("output")
        if not isinstance(tensor, str) or tensor in seen:
            continue
        if meta.get("float_output") and tensor in producers:
            seen.add(tensor)
            out.append(QuantTensor(node.name, node.op_type, str(meta.get("layer", node.name)), bits_label(meta),
                                   tensor, tensor, 1.0, 0, _data_inputs(node, producers, inits), float_out=True))
            continue
        qname = schema.qname(tensor)
        scale, zp = _scalar(inits, schema.scale_name(tensor)), _scalar(inits, schema.zero_point_name(tensor))
        if qname not in producers or scale is None or zp is None:
            missing = [what for what, ok in ((qname, qname in producers), (schema.scale_name(tensor), scale is not None),
                                             (schema.zero_point_name(tensor), zp is not None)) if not ok]
            _skip(skipped, node, tensor, f"no {', '.join(missing)} in the quantized model")
            continue
        seen.add(tensor)
        out.append(QuantTensor(node.name, node.op_type, str(meta.get("layer", node.name)), bits_label(meta),
                               tensor, qname, float(scale), int(zp), _data_inputs(node, producers, inits)))
    return out


def _subgraph(model: onnx.ModelProto, qt: QuantTensor) -> list[onnx.NodeProto] | None:
    """The nodes between `qt`'s data inputs and T_quantized, in graph order (the node, then e.g. its
    Clip or an integer requantization chain); None when the walk leaves the node's own inputs."""
    nodes = list(model.graph.node)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    stop = {qi.name for qi in qt.inputs} | {i.name for i in model.graph.initializer} | {""}
    stack, picked = [qt.qname], set()
    while stack:
        tensor = stack.pop()
        if tensor in stop or producer.get(tensor) in picked:
            continue
        if tensor not in producer or len(picked) >= MAX_LOCAL_NODES:
            return None
        picked.add(producer[tensor])
        stack.extend(nodes[producer[tensor]].input)
    return [nodes[k] for k in sorted(picked)] if any(nodes[k].name == qt.node for k in picked) else None


def local_model(model: onnx.ModelProto, qt: QuantTensor) -> onnx.ModelProto | None:
    """A model of `qt`'s node alone: uint8 inputs in, T_quantized (or float T) out; None when not extractable."""
    nodes = _subgraph(model, qt) if qt.inputs else None
    if nodes is None:
        return None
    used = {i for n in nodes for i in n.input}
    inits = [i for i in model.graph.initializer if i.name in used]
    u8 = onnx.TensorProto.UINT8
    graph = helper.make_graph(nodes, f"local_{qt.label}", [helper.make_tensor_value_info(i.name, u8, None)
                                                            for i in qt.inputs],
                              [helper.make_tensor_value_info(qt.qname, onnx.TensorProto.FLOAT if qt.float_out else u8,
                                                             None)], inits)
    sub = helper.make_model(graph, opset_imports=list(model.opset_import))
    sub.ir_version = model.ir_version
    return sub


def local_feeds(qt: QuantTensor, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The node's uint8 inputs: the float run's tensors quantized with the node's input quantizers."""
    out = {}
    for qi in qt.inputs:
        q = quantize_linear(values[qi.float_name], qi.scale, qi.zero_point)
        out[qi.name] = np.minimum(q, np.uint8(qi.qmax))
    return out


def float_names(tensors: list[QuantTensor]) -> list[str]:
    """Float tensors the float run must expose: outputs and local inputs of every node."""
    names = [t.float_name for t in tensors] + [qi.float_name for t in tensors for qi in t.inputs]
    return list(dict.fromkeys(names))


def matched(tensors: list[QuantTensor], float_model: onnx.ModelProto, skipped: list | None = None) -> list[QuantTensor]:
    """Keep the tensors whose float counterparts exist in `float_model` (others go to `skipped`)."""
    known = {o for n in float_model.graph.node for o in n.output} | {i.name for i in float_model.graph.input}
    keep = []
    for t in tensors:
        if t.float_name not in known:
            reason = f"float tensor {t.float_name} is not in the float model"
            log.warning("layer-wise: %s: %s; skipped", t.node, reason)
            if skipped is not None:
                skipped.append(Skipped(t.node, t.op, t.float_name, reason))
            continue
        if any(qi.float_name not in known for qi in t.inputs):
            t = dataclasses.replace(t, inputs=())
        keep.append(t)
    return keep
