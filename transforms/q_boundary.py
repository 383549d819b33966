"""Boundaries of the integer domain: QuantizeLinear where a float tensor enters it (plus a Clip for
< 8-bit activations), DequantizeLinear where a quantized tensor leaves it under its float name."""

from __future__ import annotations

from onnx import helper

from onnx_hawq.transforms.qcontext import QuantContext, clip_node
from onnx_hawq.transforms.graph import Replacement


def quantize_input(ctx: QuantContext, tensor: str) -> Replacement:
    """float `tensor` -> QuantizeLinear -> its quantized name."""
    s, z, consts = ctx.scalar_inputs(tensor)
    bits = ctx.params[tensor].bits
    out = ctx.qname(tensor) if bits >= 8 else f"{tensor}_unclipped"
    node = helper.make_node("QuantizeLinear", [tensor, s, z], [out], name=f"{tensor}_quantize")
    clip, cc, _ = clip_node(ctx, tensor, out)
    return Replacement(remove=[], add=[node, *clip], constants={**consts, **cc})


def dequantize_output(ctx: QuantContext, tensor: str) -> Replacement:
    """quantized `tensor` -> DequantizeLinear -> the float name float consumers read."""
    s, z, consts = ctx.scalar_inputs(tensor)
    node = helper.make_node("DequantizeLinear", [ctx.qname(tensor), s, z], [tensor], name=f"{tensor}_dequantize")
    return Replacement(remove=[], add=[node], constants=consts)
