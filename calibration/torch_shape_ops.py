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
    starts = ints(starts) if starts is not None else list(a.get("starts"))
    ends = ints(ends) if ends is not None else list(a.get("ends"))
    axes = ints(axes) if axes is not None else list(a.get("axes", range(len(starts))))
    steps = ints(steps) if steps is not None else [1] * len(starts)
    if any(s <= 0 for s in steps):
        raise HawqError("Slice with non-positive steps is not supported")
    index = [slice(None)] * x.dim()
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[ax % x.dim()] = slice(s, e, st)
    return x[tuple(index)]


@op("Pad")
def pad(a: Attrs, x, pads=None, value=None, axes=None):
    if axes is not None:
        raise HawqError("Pad with an `axes` input is not supported")
    pads = ints(pads) if pads is not None else list(a.get("pads"))
    n = x.dim()
    flat = [p for i in reversed(range(n)) for p in (pads[i], pads[i + n])]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[a.get("mode", "constant")]
    fill = float(value) if value is not None else a.get("value", 0.0)
    if mode == "constant":
        return F.pad(x, flat, mode=mode, value=fill)
    while len(flat) > 2 and flat[-2:] == [0, 0]:
        flat = flat[:-2]  # torch pads only the trailing (spatial) axes in these modes
    if len(flat) > 2 * (n - 2):
        raise HawqError(f"Pad mode {a.get('mode')!r} on the batch or channel axis is not supported")
    return F.pad(x, flat, mode=mode)


def _reduce(fn):
    def run(a: Attrs, x, axes=None):
        dims = _axes(a, axes)
        if not dims:
            if a.get("noop_with_empty_axes", 0):
                return x
            dims = list(range(x.dim()))
        return fn(x, dim=tuple(d % x.dim() for d in dims), keepdim=bool(a.get("keepdims", 1)))
    return run


op("ReduceMean")(_reduce(torch.mean))
op("ReduceSum")(_reduce(torch.sum))
op("ReduceMax")(_reduce(torch.amax))


@op("Expand")
def expand(a: Attrs, x, shape):
    target = torch.broadcast_shapes(tuple(x.shape), tuple(ints(shape)))
    return x.expand(target)


@op("Split")
def split(a: Attrs, x, sizes=None):
    axis = a.get("axis", 0)
    sizes = ints(sizes) if sizes is not None else a.get("split")
    if sizes is None:
        n = a.get("num_outputs") or a.n_outputs
        sizes = [math.ceil(x.shape[axis] / n)] * n
    return tuple(torch.split(x, list(sizes), dim=axis))
