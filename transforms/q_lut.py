"""Rule: a unary function of a quantized tensor (Sigmoid, Tanh, Gelu, HardSwish, ...; or x * gate(x)
with the Mul fused: SiLU, HardSwish) -> Cast(uint8 -> int32) -> Gather(table).

The table holds, for every input code c, quantize(f(dequantize(c))) with the input's and the output's
calibrated params: exact in every backend (a gather of constants), 2^bits entries (16 for 4 bits)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.arith.ort_math import dequantize_linear, quantize_linear
from onnx_hawq.transforms.annotate import Kind, QNode
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import node_record, qrule, removed

Fn = Callable[[np.ndarray], np.ndarray]
SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _elu(x, alpha):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "Sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "HardSigmoid": lambda x, alpha=0.2, beta=0.5: np.clip(alpha * x + beta, 0, 1),
    "HardSwish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "Tanh": np.tanh,
    "Erf": _erf,
    "Gelu": _gelu,
    "Elu": lambda x, alpha=1.0: _elu(x, alpha),
    "Celu": lambda x, alpha=1.0: np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(np.minimum(x, 0) / alpha)),
    "Selu": lambda x, alpha=SELU_ALPHA, gamma=SELU_GAMMA: gamma * _elu(x, alpha),
    "Softplus": lambda x: np.logaddexp(0, x),
    "Softsign": lambda x: x / (1 + np.abs(x)),
    "Mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
    "LeakyRelu": lambda x, alpha=0.01: np.where(x >= 0, x, alpha * x),
    "Exp": np.exp,
}


def _attrs(node: onnx.NodeProto) -> dict:
    out = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


def function(ctx: QuantContext, qn: QNode) -> Fn | str:
    """The float function the table stands for, or why there is none."""
    node, attrs = qn.node, _attrs(qn.node)
    if node.op_type == "Clip":
        bounds = [attrs.get("min"), attrs.get("max")]  # opset < 11
        for k, name in enumerate(node.input[1:3]):
            if name and name not in ctx.consts:
                return "Clip bounds are not constants"
            bounds[k] = float(ctx.consts[name]) if name else bounds[k]
        lo, hi = (-np.inf if bounds[0] is None else bounds[0]), (np.inf if bounds[1] is None else bounds[1])
        f = lambda x: np.clip(x, lo, hi)
    else:
        f = lambda x: FUNCTIONS[node.op_type](x, **attrs)
    return (lambda x: x * f(x)) if qn.fused is not None else f


def table(ctx: QuantContext, qn: QNode) -> np.ndarray:
    """uint8 output code for every input code."""
    x, y = ctx.params[qn.inputs[0]], ctx.params[qn.out]
    real = dequantize_linear(np.arange(x.qmax + 1), x.scale, x.zero_point).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        values = function(ctx, qn)(real)
    return np.minimum(quantize_linear(values, y.scale, y.zero_point), y.qmax).astype(np.uint8)


def check(ctx: QuantContext, qn: QNode) -> str | None:
    f = function(ctx, qn)
    if isinstance(f, str):
        return f
    x = ctx.params[qn.inputs[0]]
    real = dequantize_linear(np.arange(x.qmax + 1), x.scale, x.zero_point).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(f(real)).all():
            return f"{qn.node.op_type} is not finite over the input's range"
    return None


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    x, name = qn.inputs[0], qn.node.name or qn.out
    codes, tab = f"{qn.out}_codes", f"{qn.out}_table"
    cast = helper.make_node("Cast", [ctx.qname(x)], [codes], name=f"{name}_codes", to=onnx.TensorProto.INT32)
    gather = helper.make_node("Gather", [tab, codes], [ctx.qname(qn.out)], name=f"{name}_quant", axis=0)
    values = table(ctx, qn)
    row = node_record(ctx, gather, qn, a_bits_in=ctx.params[x].bits, exact=True, params=int(values.size))
    return Replacement(remove=removed(qn), add=[cast, gather], constants={tab: values}, records=[row])


rule = qrule("lut", (Kind.LUT,), check, replace)
