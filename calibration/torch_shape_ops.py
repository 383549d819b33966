"""ONNX shape, layout and constant operators as torch functions (registered into `torch_ops.OPS`)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from onnx_hawq.calibration.torch_ops import Attrs, ints, op
from onnx_hawq.errors import HawqError


def tensor_from_numpy(arr: np.ndarray) -> torch.Tensor:
    """A numpy array (any ONNX dtype torch has) -> a torch tensor that owns its memory."""
    return torch.from_numpy(np.array(arr, copy=True))


def _axes(a: Attrs, given) -> list[int] | None:
    """Axes from the `axes` input (newer opsets) or attribute (older ones); None when absent."""
    if given is not None:
        return ints(given)
    return list(a.get("axes")) if a.get("axes") is not None else None


@op("Identity")
def identity(a: Attrs, x):
    return x


@op("Dropout")
def dropout(a: Attrs, x, ratio=None, training=None):
    return x, torch.ones_like(x, dtype=torch.bool)


@op("Flatten")
def flatten(a: Attrs, x):
    axis = a.get("axis", 1) % (x.dim() + 1) if x.dim() else 0
    return x.reshape(int(math.prod(x.shape[:axis])), -1)


@op("Reshape")
def reshape(a: Attrs, x, shape):
    dims = ints(shape)
    if not a.get("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@op("Concat")
def concat(a: Attrs, *xs):
    return torch.cat(xs, dim=a.get("axis"))


@op("Transpose")
def transpose(a: Attrs, x):
    return x.permute(a.get("perm", list(range(x.dim()))[::-1]))


@op("Unsqueeze")
def unsqueeze(a: Attrs, x, axes=None):
    rank = x.dim() + len(_axes(a, axes))
    for axis in sorted(d % rank for d in _axes(a, axes)):
        x = x.unsqueeze(axis)
    return x


@op("Squeeze")
def squeeze(a: Attrs, x, axes=None):
    axes = _axes(a, axes)
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(d % x.dim() for d in axes))


@op("Constant")
def constant(a: Attrs):
    if a.get("value") is not None:
        return tensor_from_numpy(a.get("value"))
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
        if a.get(name) is not None:
            return tensor_from_numpy(np.asarray(a.get(name), dtype=dtype))
    raise HawqError(f"Constant with attribute(s) {', '.join(a.values)} is not supported")


@op("ConstantOfShape")
def constant_of_shape(a: Attrs, shape):
    value = a.get("value")
    fill = value.reshape(-1)[:1] if value is not None else np.zeros(1, np.float32)
    return tensor_from_numpy(fill).expand(*ints(shape)).clone()


@op("Shape")
def shape(a: Attrs, x):
    dims = list(x.shape)[a.get("start", 0):a.get("end", None)]
    return torch.tensor(dims, dtype=torch.int64)


@op("Gather")
def gather(a: Attrs, data, indices):
    axis = a.get("axis", 0) % data.dim()
    idx = indices.long()
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    out = data.index_select(axis, idx.reshape(-1))
    return out.reshape(tuple(data.shape[:axis]) + tuple(idx.shape) + tuple(data.shape[axis + 1:]))


@op("GatherElements")
def gather_elements(a: Attrs, data, indices):
    axis = a.get("axis", 0) % data.dim()
    idx = indices.long()
    return torch.gather(data, axis, torch.where(idx < 0, idx + data.shape[axis], idx))


@op("Range")
def range_(a: Attrs, start, limit, delta):
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


@op("Tile")
def tile(a: Attrs, x, repeats):
    return x.repeat(ints(repeats))


@op("Cast")
def cast(a: Attrs, x):
    np_type = helper.tensor_dtype_to_np_dtype(a.get("to", TensorProto.FLOAT))
    return x.to(tensor_from_numpy(np.zeros(0, np_type)).dtype)


@op("Slice")
def slice_(a: Attrs, x, starts=None, ends=None, axes=None, steps=None):
    """ONNX Slice (attributes before opset 10, inputs after; negative steps run backwards)."""
    starts = ints(starts) if starts is not None else list(a.get("starts"))
    ends = ints(ends) if ends is not None else list(a.get("ends"))
    axes = ints(axes) if axes is not None else list(a.get("axes", range(len(starts))))
    steps = ints(steps) if steps is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax, n = ax % x.dim(), x.shape[ax % x.dim()]
        if st == 0:
            raise HawqError("Slice step 0 is invalid")
        s, e, _ = slice(s, e, st).indices(n) if st > 0 else _backward_bounds(s, e, n)
        x = x.index_select(ax, torch.tensor(list(range(s, e, st)), dtype=torch.int64))
    return x


def _backward_bounds(start: int, end: int, n: int) -> tuple[int, int, int]:
    """Clamp a negative-step slice's bounds as ONNX does (start in [0, n-1], end in [-1, n-1])."""
    start = start + n if start < 0 else start
    end = end + n if end < 0 else end
    return min(max(start, 0), n - 1), min(max(end, -1), n - 1), -1


def pad_index(mode: str, begin: int, end: int, n: int) -> torch.Tensor:
    """Source indices along one axis for reflect / edge / wrap padding (negative pads crop)."""
    i = torch.arange(-begin, n + end)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i.remainder(n)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


@op("Pad")
def pad(a: Attrs, x, pads=None, value=None, axes=None):
    """ONNX Pad, every opset: constant / reflect / edge / wrap on any axes (the `axes` input too)."""
    pads = ints(pads) if pads is not None else list(a.get("pads", a.get("paddings")))
    n = x.dim()
    axes = [d % n for d in ints(axes)] if axes is not None else list(range(n))
    k = len(axes)
    begin, end = [0] * n, [0] * n
    for i, d in enumerate(axes):
        begin[d], end[d] = pads[i], pads[i + k]
    mode = a.get("mode", "constant")
    if mode == "constant":
        fill = value.reshape(-1)[0].item() if value is not None and value.numel() else a.get("value", 0.0)
        flat = [p for i in reversed(range(n)) for p in (begin[i], end[i])]
        return F.pad(x, flat, mode="constant", value=fill)
    if mode not in ("reflect", "edge", "wrap"):
        raise HawqError(f"Pad mode {mode!r} is not supported")
    for d in range(n):
        if begin[d] or end[d]:
            x = x.index_select(d, pad_index(mode, begin[d], end[d], x.shape[d]))
    return x


@op("Expand")
def expand(a: Attrs, x, shape):
    target = torch.broadcast_shapes(tuple(x.shape), tuple(ints(shape)))
    return x.expand(target)


@op("Split")
def split(a: Attrs, x, sizes=None):
    axis = a.get("axis", 0)
    sizes = ints(sizes) if sizes is not None and sizes.numel() else a.get("split")
    if sizes is None:
        n = a.get("num_outputs") or a.n_outputs
        part = math.ceil(x.shape[axis] / n)
        sizes = [part] * (n - 1) + [x.shape[axis] - part * (n - 1)]
    return tuple(torch.split(x, list(sizes), dim=axis))


@op("GatherND")
def gather_nd(a: Attrs, data, indices):
    """Gather slices of `data` addressed by the last axis of `indices` (with batch_dims leading axes)."""
    bd = a.get("batch_dims", 0)
    idx = indices.long()
    k = idx.shape[-1]
    lead = data.shape[bd:bd + k]
    idx = torch.where(idx < 0, idx + torch.tensor(lead), idx)
    batch = int(math.prod(data.shape[:bd]))
    flat = data.reshape((batch, int(math.prod(lead))) + tuple(data.shape[bd + k:]))
    strides = torch.tensor([int(math.prod(lead[i + 1:])) for i in range(k)], dtype=torch.int64)
    lin = (idx * strides).sum(-1).reshape(batch, -1)
    out = torch.stack([flat[b].index_select(0, lin[b]) for b in range(batch)])
    return out.reshape(tuple(indices.shape[:-1]) + tuple(data.shape[bd + k:]))


_SCATTER_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


@op("ScatterND")
def scatter_nd(a: Attrs, data, indices, updates):
    """Copy of `data` with slices at `indices` replaced (or combined by `reduction`) by `updates`."""
    k = indices.shape[-1]
    idx = indices.long().reshape(-1, k)
    strides = torch.tensor([int(math.prod(data.shape[i + 1:k])) for i in range(k)], dtype=torch.int64)
    flat = data.reshape((int(math.prod(data.shape[:k])), -1))
    lin = (idx * strides).sum(-1)
    ups = updates.reshape(idx.shape[0], -1)
    red = a.get("reduction", "none")
    lin = lin.reshape(-1, 1).expand_as(ups)
    out = flat.scatter(0, lin, ups) if red == "none" else \
        flat.scatter_reduce(0, lin, ups, _SCATTER_REDUCE[red])
    return out.reshape(data.shape)


@op("ScatterElements", "Scatter")
def scatter_elements(a: Attrs, data, indices, updates):
    axis = a.get("axis", 0) % data.dim()
    idx = indices.long()
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    red = a.get("reduction", "none")
    if red == "none":
        return data.scatter(axis, idx, updates)
    return data.scatter_reduce(axis, idx, updates, _SCATTER_REDUCE[red])
