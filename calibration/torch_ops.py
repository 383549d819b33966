"""ONNX operators as torch functions: ``OPS[op_type](attrs, *inputs) -> output(s)``.

Each function takes the node's attributes (`Attrs`, which knows the opset) and its input tensors
(None for an omitted optional input) and returns a tensor or a tuple of tensors. Imports torch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from onnx_hawq.errors import HawqError


@dataclasses.dataclass(frozen=True)
class Attrs:
    """A node's attributes (ONNX names -> Python values) and the model's default-domain opset."""

    values: dict[str, Any]
    opset: int
    op: str = ""
    n_outputs: int = 1

    def get(self, name: str, default=None):
        return self.values.get(name, default)


OPS: dict[str, Callable] = {}


def op(*names: str):
    """Register a function under one or more ONNX op types."""
    def deco(fn):
        for name in names:
            OPS[name] = fn
        return fn
    return deco


def ints(t) -> list[int]:
    """A 1-D integer tensor (or None) -> a Python list."""
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _spatial_pads(a: Attrs, x, kernel, strides, dilations) -> list[int]:
    """ONNX pads / auto_pad -> [begin_1.., end_1..] for the spatial axes of `x`."""
    n = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else big)
            ends.append(big if auto == "SAME_UPPER" else small)
        return begins + ends
    if auto == "VALID":
        return [0] * (2 * n)
    return list(a.get("pads", [0] * (2 * n)))


def _pad_args(pads: list[int], x, value: float = 0.0, limits=None):
    """[begins.., ends..] -> (x padded where asymmetric or beyond `limits`, symmetric padding tuple for the op)."""
    n = len(pads) // 2
    begins, ends = pads[:n], pads[n:]
    if begins == ends and (limits is None or all(b <= m for b, m in zip(begins, limits))):
        return x, tuple(begins)
    flat = [p for b, e in zip(reversed(begins), reversed(ends)) for p in (b, e)]
    return F.pad(x, flat, value=value), (0,) * n


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVGPOOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@op("Conv")
def conv(a: Attrs, x, w, b=None):
    n = w.dim() - 2
    kernel = list(w.shape[2:])
    strides, dil = a.get("strides", [1] * n), a.get("dilations", [1] * n)
    x, pad = _pad_args(_spatial_pads(a, x, kernel, strides, dil), x)
    return _CONV[n](x, w, b, tuple(strides), pad, tuple(dil), a.get("group", 1))


def _pool_geometry(a: Attrs, x):
    kernel = list(a.get("kernel_shape"))
    n = len(kernel)
    strides, dil = a.get("strides", [1] * n), a.get("dilations", [1] * n)
    return kernel, strides, dil, _spatial_pads(a, x, kernel, strides, dil)


def _pool_pad_limits(kernel, dil) -> list[int]:
    """The largest symmetric padding torch's pools accept: half the effective kernel."""
    return [((k - 1) * d + 1) // 2 for k, d in zip(kernel, dil)]


@op("MaxPool")
def max_pool(a: Attrs, x):
    kernel, strides, dil, pads = _pool_geometry(a, x)
    x, pad = _pad_args(pads, x, value=float("-inf"), limits=_pool_pad_limits(kernel, dil))
    return _MAXPOOL[len(kernel)](x, tuple(kernel), tuple(strides), pad, tuple(dil),
                                 ceil_mode=bool(a.get("ceil_mode", 0)))


@op("AveragePool")
def avg_pool(a: Attrs, x):
    """Mean over each window; without count_include_pad the mean is window sum / count of real inputs."""
    kernel, strides, dil, pads = _pool_geometry(a, x)
    if any(d != 1 for d in dil):
        raise HawqError("AveragePool with dilations is not supported")
    pool = functools.partial(_AVGPOOL[len(kernel)], kernel_size=tuple(kernel), stride=tuple(strides),
                             ceil_mode=bool(a.get("ceil_mode", 0)), count_include_pad=True)
    limits = _pool_pad_limits(kernel, dil)
    padded, pad = _pad_args(pads, x, limits=limits)
    if a.get("count_include_pad", 0):
        return pool(padded, padding=pad)
    ones, _ = _pad_args(pads, torch.ones_like(x[:1, :1]), limits=limits)
    return pool(padded, padding=pad) / pool(ones, padding=pad)


@op("GlobalAveragePool")
def global_avg_pool(a: Attrs, x):
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@op("GlobalMaxPool")
def global_max_pool(a: Attrs, x):
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@op("Gemm")
def gemm(a: Attrs, x, w, c=None):
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y if c is None else y + a.get("beta", 1.0) * c


@op("MatMul")
def matmul(a: Attrs, x, y):
    return torch.matmul(x, y)


@op("BatchNormalization")
def batch_norm(a: Attrs, x, scale, bias, mean, var):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _softmax_like(fn):
    def run(a: Attrs, x):
        if a.opset >= 13:
            return fn(x, a.get("axis", -1))
        axis = a.get("axis", 1) % x.dim()
        flat = x.reshape(int(math.prod(x.shape[:axis])), -1)
        return fn(flat, 1).reshape(x.shape)
    return run


OPS["Softmax"] = _softmax_like(torch.softmax)
OPS["LogSoftmax"] = _softmax_like(torch.log_softmax)


@op("Relu")
def relu(a: Attrs, x):
    return torch.relu(x)


@op("LeakyRelu")
def leaky_relu(a: Attrs, x):
    return F.leaky_relu(x, a.get("alpha", 0.01))


@op("Clip")
def clip(a: Attrs, x, lo=None, hi=None):
    """Clamp to [min, max] (attributes before opset 11, optional inputs after); min > max gives max."""
    lo = a.get("min") if lo is None else lo.to(x.dtype)
    hi = a.get("max") if hi is None else hi.to(x.dtype)
    if lo is None and hi is None:
        return x
    return torch.clamp(x, min=lo, max=hi)


@op("HardSigmoid")
def hard_sigmoid(a: Attrs, x):
    return torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0)


@op("HardSwish")
def hard_swish(a: Attrs, x):
    return F.hardswish(x)


_UNARY = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf, "Sqrt": torch.sqrt,
          "Exp": torch.exp, "Log": torch.log, "Neg": torch.neg, "Abs": torch.abs,
          "Reciprocal": torch.reciprocal, "Floor": torch.floor, "Ceil": torch.ceil, "Not": torch.logical_not}
for _name, _fn in _UNARY.items():
    OPS[_name] = functools.partial(lambda fn, a, x: fn(x), _fn)


def _div(x, y):
    if x.dtype.is_floating_point or y.dtype.is_floating_point:
        return x / y
    return torch.div(x, y, rounding_mode="trunc")


_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": _div, "Pow": torch.pow,
           "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt, "And": torch.logical_and,
           "Or": torch.logical_or}
for _name, _fn in _BINARY.items():
    OPS[_name] = functools.partial(lambda fn, a, x, y: fn(x, y), _fn)


@op("Sum")
def sum_(a: Attrs, *xs):
    return functools.reduce(torch.add, xs)


@op("Max", "Min", "Mean")
def variadic(a: Attrs, *xs):
    if a.op == "Mean":
        return functools.reduce(torch.add, xs) / len(xs)
    return functools.reduce(torch.maximum if a.op == "Max" else torch.minimum, xs)


@op("Where")
def where(a: Attrs, cond, x, y):
    return torch.where(cond.bool(), x, y)


@op("LRN")
def lrn(a: Attrs, x):
    return F.local_response_norm(x, a.get("size"), a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))


@op("LayerNormalization")
def layer_norm(a: Attrs, x, scale, bias=None):
    """Normalize over axes [axis, rank); optional Mean / InvStdDev outputs keep the reduced axes as 1."""
    axis = a.get("axis", -1) % x.dim()
    dims = tuple(range(axis, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    inv_std = torch.rsqrt(((x - mean) ** 2).mean(dim=dims, keepdim=True) + a.get("epsilon", 1e-5))
    y = (x - mean) * inv_std * scale
    y = y if bias is None else y + bias
    return (y, mean, inv_std)[:a.n_outputs] if a.n_outputs > 1 else y


@op("Gelu")
def gelu(a: Attrs, x):
    return F.gelu(x, approximate="tanh" if a.get("approximate", "none") == "tanh" else "none")
