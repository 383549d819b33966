"""The frozen facts the integer rewrite rules read: tensor params, bits, and the annotated nodes."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.arith import dyadic as qparams
from onnx_hawq.arith import schema
from onnx_hawq.arith.quantizer import (RoundedWeights, TensorQ, WeightRange, channel_scales, quantize_weight,
                                      weight_form, weight_qmax)
from onnx_hawq.arith.ort_math import layer_multiplier
from onnx_hawq.arith.signatures import MS
from onnx_hawq.plans import LayerBits
from onnx_hawq.transforms.annotate import Kind, QNode

__all__ = ["MS", "QuantContext", "LayerWeights", "clip_node", "dyadics", "weight_form_label"]


@dataclasses.dataclass
class LayerWeights:
    """A layer's integer weights in the graph's layout, with scales and requant multipliers."""

    q: np.ndarray
    scales: np.ndarray  # float32 per output channel
    multipliers: np.ndarray  # ORT float32 multipliers (dyadic)
    bias: np.ndarray  # int32
    exact: np.ndarray  # per channel: float32 requant provably equals the integer form
    qmax: int


def _empty() -> types.MappingProxyType:
    return types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class QuantContext:
    """Read-only inputs of the integer rules (the graph's own constants included)."""

    consts: types.MappingProxyType  # initializer name -> array, as the rewrite started
    params: types.MappingProxyType  # float tensor -> TensorQ
    bits: types.MappingProxyType  # layer name -> LayerBits
    weight_range: WeightRange  # |w_q| bound of the weights (see arith.quantizer)
    anchors: types.MappingProxyType = dataclasses.field(default_factory=_empty)  # anchor output -> QNode
    spatial: types.MappingProxyType = dataclasses.field(default_factory=_empty)  # global-pool input -> H*W
    exact: types.MappingProxyType = dataclasses.field(default_factory=_empty)  # aligned Add/pool outputs
    shared_weights: frozenset = frozenset()  # initializers read by more than one layer
    rounded: types.MappingProxyType = dataclasses.field(default_factory=_empty)  # layer -> RoundedWeights

    @classmethod
    def of(cls, consts: dict, params: dict[str, TensorQ], bits: dict[str, LayerBits], qnodes=(), *,
           weight_range: WeightRange, **facts):
        """A context over copies of the given mappings; `qnodes` are indexed by anchor output."""
        frozen = {k: types.MappingProxyType(dict(v)) if isinstance(v, dict) else v for k, v in facts.items()}
        anchors = {q.node.output[0]: q for q in qnodes}
        return cls(types.MappingProxyType(dict(consts)), types.MappingProxyType(dict(params)),
                   types.MappingProxyType(dict(bits)), WeightRange(weight_range), types.MappingProxyType(anchors),
                   **frozen)

    def qmax(self, qn: QNode) -> int:
        """The |code| bound of a layer's weights: its bits, its input's activation bits, the range."""
        return weight_qmax(self.bits[qn.layer.name].w_bits, self.params[qn.inputs[0]].bits, self.weight_range)

    @staticmethod
    def qname(tensor: str) -> str:
        return schema.qname(tensor)

    def weight_key(self, qn: QNode) -> str:
        """Prefix of a layer's integer weight constants: the initializer's name, plus the layer's when
        layers share the initializer (each gets its own scales, fitted to its own activations)."""
        w = qn.layer.weight
        return f"{w}_{qn.layer.name}" if w in self.shared_weights else w

    def scalar_inputs(self, tensor: str) -> tuple[str, str, dict]:
        """Names and constants for a tensor's (scale, zero_point) inputs."""
        p = self.params[tensor]
        s, z = schema.scale_name(tensor), schema.zero_point_name(tensor)
        return s, z, {s: np.array(p.scale, np.float32), z: np.array(p.zero_point, np.uint8)}

    def _channel_weights(self, qn: QNode) -> tuple[np.ndarray, int, np.ndarray]:
        """(float32 weight with output channels on axis 0, |w_q| bound, ideal per-channel scales)."""
        w = np.moveaxis(self.consts[qn.layer.weight].astype(np.float32), qn.layer.out_axis, 0)
        qmax = self.qmax(qn)
        return w, qmax, channel_scales(w, qmax)

    def layer_weights(self, qn: QNode) -> LayerWeights:
        """Quantize a layer's weights so its requant multipliers are exact dyadics (see qparams)."""
        layer = qn.layer
        x, y = self.params[qn.inputs[0]], self.params[qn.out]
        w, qmax, ideal = self._channel_weights(qn)
        bias = self.consts[layer.bias].astype(np.float32) if layer.bias else None
        codes, ideal, bias = self._rounded(qn, w, qmax, ideal, bias)
        x_range = max(x.zero_point, x.qmax - x.zero_point)
        bound = (np.abs(codes).reshape(len(w), -1).sum(1).astype(np.int64) * x_range
                 + np.abs(qparams.bias_int32(bias, x.scale, ideal, len(w)).astype(np.int64)))
        rw = self.rounded.get(layer.name)
        if rw is not None and rw.shipped:  # codes were optimized at these very scales
            scales = rw.scales.astype(np.float32)
            mult = layer_multiplier(x.scale, scales, y.scale)
            exact = qparams.exact_flags(mult, bound)
        else:
            scales, mult, exact = qparams.exact_weight_scales(ideal, x.scale, y.scale,
                                                              qparams.accumulator_bits(bound))
        q = codes if rw is not None else quantize_weight(w, scales.astype(np.float64), qmax)
        b32 = qparams.bias_int32(bias, x.scale, scales, len(w))
        return LayerWeights(np.moveaxis(q, 0, layer.out_axis), scales, mult, b32, exact, qmax)

    def shipped_scales(self, qn: QNode, codes, scales, bias_shift) -> np.ndarray:
        """The scales `layer_weights` will write for `codes` rounded at `scales` (exact-dyadic snap);
        float-output layers keep theirs."""
        if qn.kind == Kind.MATMUL_FLOAT:
            return np.asarray(scales, np.float64)
        probe = dataclasses.replace(self, rounded=types.MappingProxyType(
            {qn.layer.name: RoundedWeights(codes, np.asarray(scales, np.float64), bias_shift)}))
        return probe.layer_weights(qn).scales.astype(np.float64)

    def _rounded(self, qn: QNode, w, qmax: int, ideal, bias):
        """(codes, scales, float bias) from the rounding stage, or nearest codes at `ideal`."""
        rw = self.rounded.get(qn.layer.name)
        if rw is None:
            return quantize_weight(w, ideal, qmax), ideal, bias
        if qn.layer.op_type in ("Conv", "Gemm"):  # their integer ops carry a bias to correct
            bias = (np.zeros(len(w), np.float32) if bias is None else bias) + rw.bias_shift.astype(np.float32)
        return rw.codes, rw.scales, bias

    def float_out_weights(self, qn: QNode) -> LayerWeights:
        """A float-output layer's weights at the ideal per-channel scales (no requantization, so no
        dyadic snapping); `multipliers` are the dequantization factors x_scale * w_scale."""
        x = self.params[qn.inputs[0]]
        w, qmax, ideal = self._channel_weights(qn)
        rw = self.rounded.get(qn.layer.name)
        scales = (ideal if rw is None else rw.scales).astype(np.float32)
        q = quantize_weight(w, scales.astype(np.float64), qmax) if rw is None else rw.codes
        mult = (np.float64(x.scale) * scales.astype(np.float64)).astype(np.float32)
        return LayerWeights(np.moveaxis(q, 0, qn.layer.out_axis), scales, mult, np.zeros(len(w), np.int32),
                            np.zeros(len(w), bool), qmax)


def dyadics(multipliers: np.ndarray) -> list[list[int]]:
    return [list(qparams.dyadic(float(m))) for m in multipliers]


def clip_node(ctx: QuantContext, tensor: str, produced: str) -> tuple[list[onnx.NodeProto], dict, str]:
    """A Clip to the activation's bit range after `produced` when it has fewer than 8 bits."""
    p = ctx.params[tensor]
    if p.bits >= 8:
        return [], {}, produced
    lo, hi = f"{tensor}_clip_lo", f"{tensor}_clip_hi"
    node = helper.make_node("Clip", [produced, lo, hi], [ctx.qname(tensor)], name=f"{tensor}_clip")
    return [node], {lo: np.array(0, np.uint8), hi: np.array(p.qmax, np.uint8)}, ctx.qname(tensor)


def weight_form_label(ctx: QuantContext, qn: QNode) -> str:
    return weight_form(ctx.bits[qn.layer.name].w_bits, ctx.params[qn.inputs[0]].bits, ctx.weight_range)
