"""ONNX Reduce* family, ArgMax/ArgMin, TopK, NonZero, NonMaxSuppression and other index/compare ops
as torch functions (registered into `torch_ops.OPS`). Index outputs carry no gradient."""

from __future__ import annotations

import functools

import torch

from onnx_hawq.calibration.torch_ops import Attrs, ints, op


def reduce_axes(a: Attrs, x, axes) -> tuple[int, ...] | None:
    """The axes to reduce (axes input or attribute); None means 'return x unchanged' (noop_with_empty_axes)."""
    dims = ints(axes) if axes is not None else (list(a.get("axes")) if a.get("axes") is not None else [])
    if not dims:
        return None if a.get("noop_with_empty_axes", 0) else tuple(range(x.dim()))
    return tuple(sorted(d % x.dim() for d in dims))


def _amax(x, dim, keepdim):
    if x.numel() == 0:
        return _empty(x, dim, keepdim, float("-inf") if x.dtype.is_floating_point else 0)
    return x.amax(dim=dim, keepdim=keepdim)


def _amin(x, dim, keepdim):
    if x.numel() == 0:
        return _empty(x, dim, keepdim, float("inf") if x.dtype.is_floating_point else 1)
    return x.amin(dim=dim, keepdim=keepdim)


def _empty(x, dim, keepdim, fill):
    """The result shape of reducing `dim` of an empty tensor, filled with the reduction's identity."""
    shape = [1 if i in dim else s for i, s in enumerate(x.shape)] if keepdim else \
        [s for i, s in enumerate(x.shape) if i not in dim]
    return torch.full(shape, fill, dtype=x.dtype)


def _prod(x, dim, keepdim):
    for d in sorted(dim, reverse=True):
        x = x.prod(dim=d, keepdim=keepdim)
    return x


_REDUCERS = {
    "ReduceSum": torch.sum, "ReduceMean": torch.mean, "ReduceMax": _amax, "ReduceMin": _amin,
    "ReduceProd": _prod,
    "ReduceL1": lambda x, dim, keepdim: x.abs().sum(dim=dim, keepdim=keepdim),
    "ReduceL2": lambda x, dim, keepdim: torch.sqrt((x * x).sum(dim=dim, keepdim=keepdim)),
    "ReduceSumSquare": lambda x, dim, keepdim: (x * x).sum(dim=dim, keepdim=keepdim),
    "ReduceLogSum": lambda x, dim, keepdim: torch.log(x.sum(dim=dim, keepdim=keepdim)),
    "ReduceLogSumExp": lambda x, dim, keepdim: _logsumexp(x, dim, keepdim),
}


def _logsumexp(x, dim, keepdim):
    if x.numel() == 0:
        return _empty(x, dim, keepdim, float("-inf"))
    return torch.logsumexp(x, dim=dim, keepdim=keepdim)


@op(*_REDUCERS)
def reduce(a: Attrs, x, axes=None):
    dims = reduce_axes(a, x, axes)
    if dims is None:
        return x
    fn = _REDUCERS[a.op]
    if x.dtype == torch.bool and a.op in ("ReduceMax", "ReduceMin"):
        return fn(x.to(torch.uint8), dims, bool(a.get("keepdims", 1))).bool()
    return fn(x, dims, bool(a.get("keepdims", 1)))


@op("ArgMax", "ArgMin")
def arg_extreme(a: Attrs, x):
    axis, keep = a.get("axis", 0) % x.dim(), bool(a.get("keepdims", 1))
    v = x.detach()
    if a.get("select_last_index", 0):
        v = v.flip(axis)
    idx = v.argmax(axis, keepdim=keep) if a.op == "ArgMax" else v.argmin(axis, keepdim=keep)
    return x.shape[axis] - 1 - idx if a.get("select_last_index", 0) else idx


@op("TopK")
def topk(a: Attrs, x, k=None):
    k = int(a.get("k")) if k is None else int(k.reshape(-1)[0])
    largest = bool(a.get("largest", 1))
    axis = a.get("axis", -1) % x.dim()
    # stable order: equal values keep ascending index, as ONNX requires
    order = torch.sort(x.detach(), dim=axis, descending=largest, stable=True).indices.narrow(axis, 0, k)
    return torch.gather(x, axis, order), order


@op("NonZero")
def nonzero(a: Attrs, x):
    return torch.nonzero(x).t().contiguous()


@op("Size")
def size(a: Attrs, x):
    return torch.tensor(x.numel(), dtype=torch.int64)


@op("CastLike")
def cast_like(a: Attrs, x, target):
    return x.to(target.dtype)


_COMPARE = {"GreaterOrEqual": torch.ge, "LessOrEqual": torch.le, "Xor": torch.logical_xor,
            "BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or, "BitwiseXor": torch.bitwise_xor}
for _name, _fn in _COMPARE.items():
    op(_name)(functools.partial(lambda fn, a, x, y: fn(x, y), _fn))

_ELEMENT = {"Sign": torch.sign, "Round": torch.round, "IsNaN": torch.isnan, "Sin": torch.sin, "Cos": torch.cos,
            "Tan": torch.tan, "Atan": torch.atan, "Asin": torch.asin, "Acos": torch.acos, "Sinh": torch.sinh,
            "Cosh": torch.cosh, "BitwiseNot": torch.bitwise_not}
for _name, _fn in _ELEMENT.items():
    op(_name)(functools.partial(lambda fn, a, x: fn(x), _fn))


@op("IsInf")
def is_inf(a: Attrs, x):
    pos, neg = a.get("detect_positive", 1), a.get("detect_negative", 1)
    return (torch.isposinf(x) & bool(pos)) | (torch.isneginf(x) & bool(neg))


@op("Mod")
def mod(a: Attrs, x, y):
    return torch.fmod(x, y) if a.get("fmod", 0) else torch.remainder(x, y)


@op("Trilu")
def trilu(a: Attrs, x, k=None):
    k = 0 if k is None else int(k)
    return torch.triu(x, k) if a.get("upper", 1) else torch.tril(x, k)


@op("CumSum")
def cumsum(a: Attrs, x, axis):
    axis = int(axis) % x.dim()
    y = x.flip(axis) if a.get("reverse", 0) else x
    out = y.cumsum(axis, dtype=x.dtype)
    if a.get("exclusive", 0):
        out = out - y
    return out.flip(axis) if a.get("reverse", 0) else out


@op("OneHot")
def one_hot(a: Attrs, indices, depth, values):
    depth = int(depth.reshape(-1)[0])
    idx = indices.long()
    idx = torch.where(idx < 0, idx + depth, idx)
    hot = torch.nn.functional.one_hot(idx.clamp(0, depth - 1), depth) * ((idx >= 0) & (idx < depth)).unsqueeze(-1)
    out = torch.where(hot.bool(), values[1], values[0])
    return out.movedim(-1, a.get("axis", -1) % out.dim())


@op("NonMaxSuppression")
def non_max_suppression(a: Attrs, boxes, scores, max_out=None, iou=None, score_min=None):
    """Greedy per (batch, class) suppression -> selected [num, 3] (batch, class, box) indices."""
    limit = int(max_out) if max_out is not None and max_out.numel() else 0
    iou_t = float(iou) if iou is not None and iou.numel() else 0.0
    smin = float(score_min) if score_min is not None and score_min.numel() else None
    corners = _corners(boxes.detach().double(), a.get("center_point_box", 0))
    picked = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            picked += [(b, c, i) for i in _nms_one(corners[b], scores[b, c].detach(), limit, iou_t, smin)]
    return torch.tensor(picked, dtype=torch.int64).reshape(-1, 3)


def _corners(boxes, center: int):
    if center:
        xc, yc, w, h = boxes.unbind(-1)
        return torch.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(y1, y2), torch.minimum(x1, x2), torch.maximum(y1, y2), torch.maximum(x1, x2)], -1)


def _nms_one(box, score, limit, iou_t, smin) -> list[int]:
    order = torch.sort(score, descending=True, stable=True).indices.tolist()
    keep = []
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    for i in order:
        if len(keep) >= limit or (smin is not None and float(score[i]) <= smin):
            break
        ok = True
        for j in keep:
            lo, hi = torch.maximum(box[i, :2], box[j, :2]), torch.minimum(box[i, 2:], box[j, 2:])
            inter = (hi - lo).clamp(min=0).prod()
            union = area[i] + area[j] - inter
            if union > 0 and float(inter / union) > iou_t:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep
