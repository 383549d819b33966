"""ONNX activations, normalizations and layout ops as torch functions (registered into `torch_ops.OPS`).

All are differentiable in their float inputs (explicit formulas, so double backward works).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from onnx_hawq.calibration.torch_ops import Attrs, op


def _zero(x):
    return torch.zeros_like(x)


@op("Mish")
def mish(a: Attrs, x):
    return x * torch.tanh(F.softplus(x))


@op("Softplus")
def softplus(a: Attrs, x):
    return F.softplus(x)


@op("Softsign")
def softsign(a: Attrs, x):
    return x / (1 + x.abs())


@op("PRelu")
def prelu(a: Attrs, x, slope):
    return torch.where(x < 0, slope * x, x)


@op("Elu")
def elu(a: Attrs, x):
    return torch.where(x > 0, x, a.get("alpha", 1.0) * torch.expm1(x))


@op("Selu")
def selu(a: Attrs, x):
    alpha, gamma = a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@op("Celu")
def celu(a: Attrs, x):
    alpha = a.get("alpha", 1.0)
    return torch.relu(x) + torch.clamp(alpha * torch.expm1(x / alpha), max=0.0)


@op("ThresholdedRelu")
def thresholded_relu(a: Attrs, x):
    return torch.where(x > a.get("alpha", 1.0), x, _zero(x))


@op("Swish")
def swish(a: Attrs, x):
    return x * torch.sigmoid(a.get("alpha", 1.0) * x)


@op("InstanceNormalization")
def instance_norm(a: Attrs, x, scale, bias):
    """Normalize each (sample, channel) over its spatial axes, then scale and shift per channel."""
    dims = tuple(range(2, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean) * torch.rsqrt(var + a.get("epsilon", 1e-5)) * scale.reshape(shape) + bias.reshape(shape)


@op("GroupNormalization")
def group_norm(a: Attrs, x, scale, bias):
    """Normalize over (channels of a group, spatial axes); scale/bias per channel (opset 21) or per group (18)."""
    groups, c = a.get("num_groups"), x.shape[1]
    g = x.reshape(x.shape[0], groups, -1)
    mean = g.mean(dim=2, keepdim=True)
    var = ((g - mean) ** 2).mean(dim=2, keepdim=True)
    y = ((g - mean) * torch.rsqrt(var + a.get("epsilon", 1e-5))).reshape(x.shape)
    if scale.numel() != c:
        scale, bias = scale.repeat_interleave(c // groups), bias.repeat_interleave(c // groups)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return y * scale.reshape(shape) + bias.reshape(shape)


@op("DepthToSpace")
def depth_to_space(a: Attrs, x):
    bs = a.get("blocksize")
    n, c, h, w = x.shape
    if a.get("mode", "DCR") == "DCR":
        y = x.reshape(n, bs, bs, c // bs ** 2, h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // bs ** 2, bs, bs, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // bs ** 2, h * bs, w * bs)


@op("SpaceToDepth")
def space_to_depth(a: Attrs, x):
    bs = a.get("blocksize")
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // bs, bs, w // bs, bs)
    perm = (0, 1, 3, 5, 2, 4) if a.get("mode", "DCR") == "CRD" else (0, 3, 5, 1, 2, 4)
    return y.permute(perm).reshape(n, c * bs * bs, h // bs, w // bs)


@op("Einsum")
def einsum(a: Attrs, *xs):
    return torch.einsum(a.get("equation").replace(" ", ""), *xs)


@op("LpNormalization")
def lp_normalization(a: Attrs, x):
    p = a.get("p", 2)
    norm = x.abs().sum(a.get("axis", -1), keepdim=True) if p == 1 else \
        torch.sqrt((x * x).sum(a.get("axis", -1), keepdim=True))
    return x / norm


@op("Shrink")
def shrink(a: Attrs, x):
    bias, lambd = a.get("bias", 0.0), a.get("lambd", 0.5)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, _zero(x)))


@op("MeanVarianceNormalization")
def mean_variance_normalization(a: Attrs, x):
    dims = tuple(a.get("axes", [0, 2, 3]))
    mean = x.mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(dim=dims, keepdim=True) + 1e-9)


@op("Hardmax")
def hardmax(a: Attrs, x):
    """One-hot of the first maximum along `axis` (opset 13+), or per row of the 2-D coercion before."""
    if a.opset < 13:
        axis = a.get("axis", 1) % x.dim()
        flat = x.reshape(int(math.prod(x.shape[:axis])), -1)
        return F.one_hot(flat.argmax(1), flat.shape[1]).to(x.dtype).reshape(x.shape)
    axis = a.get("axis", -1)
    return F.one_hot(x.argmax(axis), x.shape[axis]).movedim(-1, axis).to(x.dtype)
