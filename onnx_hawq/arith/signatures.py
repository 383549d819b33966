"""The input order of every integer op onnx-hawq writes or reads: the one op-signature table.

Slots are named after the layer view y = W·x: x (the quantized activation), w (the integer
weight), bias, and the (scale, zero point) pairs of x, w and y. Binary ops use a, b.
"""

from __future__ import annotations

import onnx

MS = "com.microsoft"

SIGNATURES: dict[str, tuple[str, ...]] = {
    "QLinearConv": ("x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "bias"),
    "QLinearMatMul": ("x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp"),
    "QGemm": ("x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "bias", "y_scale", "y_zp"),
    "ConvInteger": ("x", "w", "x_zp", "w_zp"),
    "MatMulInteger": ("x", "w", "x_zp", "w_zp"),
    "QLinearAdd": ("a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"),
    "QLinearGlobalAveragePool": ("x", "x_scale", "x_zp", "y_scale", "y_zp"),
    "QuantizeLinear": ("x", "y_scale", "y_zp"),
    "DequantizeLinear": ("x", "x_scale", "x_zp"),
}
DOMAINS = {"QGemm": MS, "QLinearAdd": MS, "QLinearGlobalAveragePool": MS}
# the slots a layer's constants are read from (the x input itself is a runtime tensor)
LAYER_CONSTANTS = ("x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "bias")


def domain_of(op_type: str) -> str:
    """The ONNX domain onnx-hawq writes `op_type` in ('' for the default domain)."""
    return DOMAINS.get(op_type, "")


def ordered(op_type: str, slots: dict[str, str]) -> list[str]:
    """The input list of `op_type` from tensor names by slot (a missing trailing slot is dropped,
    a missing inner one becomes '')."""
    names = [slots.get(s, "") for s in SIGNATURES[op_type]]
    while names and not names[-1]:
        names.pop()
    return names


def slots_of(node: onnx.NodeProto) -> dict[str, str]:
    """Slot name -> tensor name for a node of a known integer op (absent inputs left out)."""
    return {s: t for s, t in zip(SIGNATURES[node.op_type], node.input) if t}


def by_slot(op_type: str, values: list) -> dict[str, object]:
    """Slot name -> value for positional `values` (e.g. a converter's inputs) of `op_type`."""
    return dict(zip(SIGNATURES[op_type], values))
