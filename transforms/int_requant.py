"""ONNX node chains for exact integer requantization (shared by the int_* rules).

BitShift is unsigned-only, so the round-half-even division by 2^c is built from int64 Mod (fmod=0,
a floor modulo), Sub, Div and Add, each of which onnxruntime and TVM evaluate exactly:
r = v mod D, q = (v - r) / D, q += (r + (q mod 2) + D/2 - 1) / D, with D = 2^c. Every Div has a
non-negative or exactly divisible numerator, so truncating and flooring division agree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_hawq.arith.requant import LayerQ, Requant, layer_params
from onnx_hawq.arith.signatures import LAYER_CONSTANTS, slots_of
from onnx_hawq.transforms.graph import Graph


@dataclasses.dataclass(frozen=True)
class IntContext:
    """Graph facts the rules need: value ranges of uint8 tensors, pooled spatial sizes."""

    ranges: dict[str, tuple[int, int]]
    spatial: dict[str, int]

    def x_range(self, node: onnx.NodeProto) -> tuple[int, int]:
        return self.ranges.get(node.input[0], (0, 255))


@dataclasses.dataclass
class Chain:
    """Nodes and constants being built for one rewritten node; names are unique in the graph."""

    graph: Graph
    base: str
    nodes: list[onnx.NodeProto] = dataclasses.field(default_factory=list)
    consts: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def const(self, label: str, value) -> str:
        name = self.graph.fresh(f"{self.base}_{label}")
        self.consts[name] = np.asarray(value)
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.graph.fresh(f"{self.base}_{op_type.lower()}")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.graph.fresh(self.base), **attrs))
        return out


def per_channel(values: np.ndarray, tail: int) -> np.ndarray:
    """A per-channel int64 vector shaped to broadcast against [.., C, *tail ones]; scalar if uniform."""
    values = np.asarray(values, np.int64).reshape(-1)
    if np.all(values == values[0]):
        return np.array(values[0], np.int64)
    return values.reshape((-1,) + (1,) * tail)


def rne_div(ch: Chain, v: str, c: np.ndarray, tail: int) -> str:
    """int64 round-half-even of v / 2^c (c >= 1, per channel)."""
    d = ch.const("pow2", per_channel(np.left_shift(1, c), tail))
    h = ch.const("half_m1", per_channel(np.left_shift(1, c - 1) - 1, tail))
    r = ch.op("Mod", [v, d], fmod=0)
    q = ch.op("Div", [ch.op("Sub", [v, r]), d])
    odd = ch.op("Mod", [q, ch.const("two", np.array(2, np.int64))], fmod=0)
    up = ch.op("Div", [ch.op("Add", [ch.op("Add", [r, odd]), h]), d])
    return ch.op("Add", [q, up])


def to_uint8(ch: Chain, q: str, zp: int, lo: int, hi: int, out: str) -> str:
    """Cast(Clip(q + zp, lo, hi), uint8) into `out`."""
    shifted = ch.op("Add", [q, ch.const("zp", np.array(zp, np.int64))]) if zp else q
    clipped = ch.op("Clip", [shifted, ch.const("lo", np.array(lo, np.int64)), ch.const("hi", np.array(hi, np.int64))])
    return ch.op("Cast", [clipped], out, to=TensorProto.UINT8)


def requantize(ch: Chain, acc: str, req: Requant, tail: int, out: str) -> str:
    """uint8 `out` = clamp(rne(acc * b / 2^c) + zp) for an int32 accumulator `acc`."""
    v = ch.op("Mul", [ch.op("Cast", [acc], to=TensorProto.INT64), ch.const("mult", per_channel(req.b, tail))])
    return to_uint8(ch, rne_div(ch, v, req.c, tail), req.zp, req.lo, req.hi, out)


def scalar(graph: Graph, name: str) -> np.ndarray | None:
    """The value of a one-element constant input, or None."""
    value = graph.const(name) if name else None
    return value.reshape(()) if value is not None and value.size == 1 else None


def layer_q(graph: Graph, node: onnx.NodeProto, out_axis: int) -> LayerQ | str:
    """The layer's constants (inputs by the op's signature), or why they cannot be used."""
    names = slots_of(node)
    return layer_params({k: graph.const(names.get(k, "")) for k in LAYER_CONSTANTS}, out_axis)


def exact_reason(lq: LayerQ, x_range: tuple[int, int]) -> str | None:
    """None when the integer requantization equals onnxruntime's float32 one for every input."""
    return None if lq.exact(x_range) else "float32 requantization is not exact for this layer's accumulator range"
