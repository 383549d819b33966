"""Rule: an elementwise function of one quantized tensor -> Cast(uint8 -> int32) -> Gather(table).

The function is an op (Sigmoid, Tanh, Gelu, HardSwish, Clip, ..., Add/Mul/Div by a scalar) and the
chain of such ops annotation folded after it, with at most one x * chain(x) Mul: SiLU, HardSwish's
Add(3)/Clip(0, 6)/Div(6)/Mul and GELU's Div(sqrt 2)/Erf/Add(1)/Mul/Mul(0.5) become one table.

The table holds, for every input code c, quantize(f(dequantize(c))) with the input's and the output's
calibrated params: exact in every backend (a gather of constants), 2^bits entries (16 for 4 bits)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.arith.ort_math import dequantize_linear, quantize_linear
from onnx_hawq.transforms.annotate import Kind, QNode, is_gate, scalar_operand
from onnx_hawq.transforms.graph import Replacement
from onnx_hawq.transforms.qcontext import QuantContext
from onnx_hawq.transforms.qrule import node_record, qrule

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


ARITH = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power}


def _step(consts, node: onnx.NodeProto) -> Fn | str:
    """One node of a table's chain as a float64 function of its data input, or why it has none."""
    attrs, op = _attrs(node), node.op_type
    scalar = scalar_operand(node, consts)
    if scalar is not None:
        c, first = float(consts[scalar].reshape(())), scalar == node.input[0]
        return lambda v: ARITH[op](c, v) if first else ARITH[op](v, c)
    if op == "Relu":
        return lambda v: np.maximum(v, 0)
    if op != "Clip":
        return lambda v: FUNCTIONS[op](v, **attrs)
    bounds = [attrs.get("min"), attrs.get("max")]  # opset < 11
    for k, name in enumerate(node.input[1:3]):
        if name and name not in consts:
            return "Clip bounds are not constants"
        bounds[k] = float(consts[name]) if name else bounds[k]
    lo, hi = (-np.inf if bounds[0] is None else bounds[0]), (np.inf if bounds[1] is None else bounds[1])
    return lambda v: np.clip(v, lo, hi)


def function(consts, qn: QNode) -> Fn | str:
    """The float function of the input the table stands for (anchor and chain composed; `consts`: the
    graph's initializers), or why none."""
    x, cur, steps = qn.inputs[0], qn.inputs[0], []
    for node in [qn.node, *qn.chain]:
        step = (lambda v, x0: x0 * v) if is_gate(node, x, cur) else _step(consts, node)
        if isinstance(step, str):
            return step
        steps.append((step, is_gate(node, x, cur)))
        cur = node.output[0]

    def composed(v):
        out = v
        for step, gate in steps:
            out = step(out, v) if gate else step(out)
        return out

    return composed


def code_values(ctx: QuantContext, tensor: str) -> np.ndarray:
    """The float64 value of every code of a quantized tensor (as DequantizeLinear computes it)."""
    x = ctx.params[tensor]
    return dequantize_linear(np.arange(x.qmax + 1), x.scale, x.zero_point).astype(np.float64)


def output_codes(ctx: QuantContext, tensor: str, values: np.ndarray) -> np.ndarray:
    """uint8 codes of float `values` under the tensor's params (clamped to its bits)."""
    y = ctx.params[tensor]
    return np.minimum(quantize_linear(values, y.scale, y.zero_point), y.qmax).astype(np.uint8)


def table(ctx: QuantContext, qn: QNode) -> np.ndarray:
    """uint8 output code for every input code."""
    with np.errstate(over="ignore", invalid="ignore"):
        values = function(ctx.consts, qn)(code_values(ctx, qn.inputs[0]))
    return output_codes(ctx, qn.out, values)


def check(ctx: QuantContext, qn: QNode) -> str | None:
    f = function(ctx.consts, qn)
    if isinstance(f, str):
        return f
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(f(code_values(ctx, qn.inputs[0]))).all():
            return f"{qn.node.op_type} is not finite over the input's range"
    return None


def replace(ctx: QuantContext, qn: QNode) -> Replacement:
    x, name = qn.inputs[0], qn.node.name or qn.out
    codes, tab = f"{qn.out}_codes", f"{qn.out}_table"
    cast = helper.make_node("Cast", [ctx.qname(x)], [codes], name=f"{name}_codes", to=onnx.TensorProto.INT32)
    gather = helper.make_node("Gather", [tab, codes], [ctx.qname(qn.out)], name=f"{name}_quant", axis=0)
    values = table(ctx, qn)
    row = node_record(ctx, gather, qn, a_bits_in=ctx.params[x].bits, exact=True, params=int(values.size))
    return Replacement(remove=[qn.node, *qn.chain], add=[cast, gather], constants={tab: values}, records=[row])


rule = qrule("lut", (Kind.LUT,), check, replace)
