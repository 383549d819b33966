"""A small ONNX -> torch converter for computing Hessians of plain ONNX models.

`OnnxModule` runs an ONNX graph's nodes in topological order with torch functions
(`torch_ops.OPS`, filled by torch_ops and the torch_{shape,nn,conv,reduce,resize,rnn}_ops modules
imported below, all built from torch ops that autograd differentiates twice). Each quantizable
layer's weight (`onnx_hawq.layers.find_layers`) is an ``nn.Parameter`` reachable by layer name
(`layer_parameters()`); every other initializer is a buffer. Unsupported ops are reported all at
once, in one line (sorted, with node counts), when the module is built.
Imports torch at module import: import this module only where torch is needed.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable

import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from onnx_hawq.calibration import torch_shape_ops  # noqa: F401  (registers the shape ops)
from onnx_hawq.calibration import torch_nn_ops  # noqa: F401  (registers activations / norms)
from onnx_hawq.calibration import torch_conv_ops  # noqa: F401  (registers ConvTranspose)
from onnx_hawq.calibration import torch_reduce_ops  # noqa: F401  (registers Reduce*, index ops)
from onnx_hawq.calibration import torch_resize_ops  # noqa: F401  (registers Resize / Upsample)
from onnx_hawq.calibration import torch_rnn_ops  # noqa: F401  (registers LSTM / GRU / RNN)
from onnx_hawq.calibration.torch_ops import OPS, Attrs
from onnx_hawq.calibration.torch_shape_ops import tensor_from_numpy
from onnx_hawq.errors import HawqError
from onnx_hawq.layers import find_layers


@dataclasses.dataclass(frozen=True)
class Step:
    """One node to execute: its function, attributes and value names."""

    fn: Callable
    attrs: Attrs
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset for the default ONNX domain."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _attr_value(attr: onnx.AttributeProto):
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


def _op_key(n: onnx.NodeProto) -> str:
    return n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"


def unsupported_ops(graph: onnx.GraphProto) -> list[str]:
    """Op types (domain-qualified when not the default domain) the converter cannot run, sorted."""
    return sorted(unsupported_op_counts(graph))


def unsupported_op_counts(graph: onnx.GraphProto) -> dict[str, int]:
    """Unsupported op type -> number of nodes using it."""
    return dict(collections.Counter(_op_key(n) for n in graph.node
                                    if n.domain not in ("", "ai.onnx") or n.op_type not in OPS))


def unsupported_message(graph: onnx.GraphProto) -> str | None:
    """One line naming every unsupported op (sorted, node count when > 1); None when all are supported."""
    counts = unsupported_op_counts(graph)
    if not counts:
        return None
    names = ", ".join(f"{k} (x{counts[k]})" if counts[k] > 1 else k for k in sorted(counts))
    return f"cannot convert the model to torch: unsupported op(s) {names}"


def topological_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes ordered so every input is produced before it is used."""
    known = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [all(i in known for i in n.input) for n in pending]
        if not any(ready):
            missing = sorted({i for n in pending for i in n.input if i not in known})
            raise HawqError(f"graph has a cycle or undefined input(s): {', '.join(missing[:5])}")
        ordered += [n for n, r in zip(pending, ready) if r]
        known.update(o for n, r in zip(pending, ready) if r for o in n.output)
        pending = [n for n, r in zip(pending, ready) if not r]
    return ordered


def build_steps(model: onnx.ModelProto) -> list[Step]:
    """The model's nodes -> Steps; unsupported ops raise one HawqError naming them all."""
    message = unsupported_message(model.graph)
    if message:
        raise HawqError(message)
    opset = default_opset(model)
    return [Step(OPS[n.op_type],
                 Attrs({a.name: _attr_value(a) for a in n.attribute}, opset, n.op_type, len(n.output)),
                 tuple(n.input), tuple(n.output)) for n in topological_nodes(model.graph)]


class OnnxModule(nn.Module):
    """An ONNX graph as a torch module; forward(*inputs) -> output tensor (tuple if several)."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        self.steps = build_steps(model)
        inits = {i.name: i for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in inits]
        self.output_names = [o.name for o in model.graph.output]
        layers = find_layers(model)
        shared = sorted({l.weight for l in layers if sum(m.weight == l.weight for m in layers) > 1})
        if shared:
            raise HawqError(f"layers share weight initializer(s) {', '.join(shared)}; "
                            "their Hessian blocks are not separable")
        self.layer_names = [l.name for l in layers]
        self.weights = nn.ParameterList(
            nn.Parameter(tensor_from_numpy(numpy_helper.to_array(inits[l.weight]))) for l in layers)
        self._weight_of = {l.weight: i for i, l in enumerate(layers)}
        self._buffer_of = {}
        for name, init in inits.items():
            if name not in self._weight_of:
                self._buffer_of[name] = f"const{len(self._buffer_of)}"
                self.register_buffer(self._buffer_of[name], tensor_from_numpy(numpy_helper.to_array(init)))

    def layer_parameters(self) -> dict[str, nn.Parameter]:
        """Layer name -> the Parameter holding its weight (in find_layers order)."""
        return dict(zip(self.layer_names, self.weights))

    def _initial_values(self, inputs) -> dict[str, torch.Tensor]:
        if len(inputs) != len(self.input_names):
            raise HawqError(f"model takes {len(self.input_names)} input(s), got {len(inputs)}")
        env = {name: self.weights[i] for name, i in self._weight_of.items()}
        env.update({name: getattr(self, attr) for name, attr in self._buffer_of.items()})
        env.update(zip(self.input_names, inputs))
        return env

    def forward(self, *inputs):
        env = self._initial_values(inputs)
        for step in self.steps:
            out = step.fn(step.attrs, *(env[i] if i else None for i in step.inputs))
            outs = out if isinstance(out, tuple) else (out,)
            env.update((name, t) for name, t in zip(step.outputs, outs) if name)
        results = tuple(env[name] for name in self.output_names)
        return results[0] if len(results) == 1 else results


def to_torch(model: onnx.ModelProto) -> OnnxModule:
    """An ONNX model -> an `OnnxModule` in eval mode."""
    return OnnxModule(model).eval()
