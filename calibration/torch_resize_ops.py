"""ONNX Resize (opset 10-19+) and Upsample as gathers plus interpolation weights in torch.

Resizing is separable: each resized axis gets source indices [out, n] and weights [out, n]
computed in float64 numpy from the runtime shape (as the ONNX reference does), then the tensor
is gathered along that axis and weighted. Gradients flow to X (twice differentiable).
Registered into `torch_ops.OPS`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from onnx_hawq.calibration.torch_ops import Attrs, op
from onnx_hawq.errors import HawqError


@dataclasses.dataclass(frozen=True)
class ResizeMode:
    """The interpolation settings of one Resize node."""

    mode: str = "nearest"
    coords: str = "half_pixel"
    nearest: str = "round_prefer_floor"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation: float = 0.0


def source_coords(m: ResizeMode, n_in: int, n_out: int, scale: float, roi) -> np.ndarray:
    """Output positions along one axis -> source coordinates (float64), per coordinate_transformation_mode."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    if m.coords == "align_corners":
        return np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    if m.coords == "asymmetric":
        return y / scale
    if m.coords == "tf_crop_and_resize":
        start, end = roi
        x = np.full(n_out, (end - start) * (n_in - 1) / 2) if width == 1 else y * (end - start) * (n_in - 1) / (width - 1)
        return x + start * (n_in - 1)
    if m.coords == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    if m.coords == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if m.coords == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5
    if m.coords == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    raise HawqError(f"Resize coordinate_transformation_mode {m.coords!r} is not supported")


def _nearest_index(m: ResizeMode, x: np.ndarray, downsample: bool) -> np.ndarray:
    rule = {"round_prefer_floor": lambda v: np.ceil(v - 0.5), "round_prefer_ceil": lambda v: np.floor(v + 0.5),
            "floor": np.floor, "ceil": np.ceil,
            "simple": lambda v: np.ceil(v) if downsample else np.floor(v)}
    if m.nearest not in rule:
        raise HawqError(f"Resize nearest_mode {m.nearest!r} is not supported")
    return rule[m.nearest](x).astype(np.int64)[:, None]


def _cubic(ratio, a):
    """The 4 Keys cubic weights for neighbors floor-1 .. floor+2 at fractional offset `ratio`."""
    r, s = ratio, 1 - ratio
    return np.stack([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                     ((a + 2) * r - (a + 3)) * r * r + 1, ((a + 2) * s - (a + 3)) * s * s + 1,
                     ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a], axis=1)


def _kernel_weights(m: ResizeMode, ratio: np.ndarray, scale: float) -> np.ndarray:
    """Weights [out, n] for the n neighbors starting at floor(x) - n/2 + 1 (antialias widens n)."""
    if not m.antialias:
        return np.stack([1 - ratio, ratio], axis=1) if m.mode == "linear" else _cubic(ratio, m.cubic_a)
    s = min(scale, 1.0)
    support = 1 if m.mode == "linear" else 2
    start = int(np.floor(-support / s) + 1)
    args = (np.arange(start, 2 - start)[None, :] - ratio[:, None]) * s
    if m.mode == "linear":
        w = np.clip(1 - np.abs(args), 0, 1)
    else:
        t, a = np.abs(args), m.cubic_a
        w = np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                     np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))
    return w / w.sum(axis=1, keepdims=True)


def axis_plan(m: ResizeMode, n_in: int, n_out: int, scale: float, roi):
    """One axis -> (indices [out, n] into the input, weights [out, n] or None for nearest, extrapolated mask or None)."""
    x = source_coords(m, n_in, n_out, scale, roi)
    outside = ((x < 0) | (x > n_in - 1)) if m.coords == "tf_crop_and_resize" else None
    if m.mode == "nearest":
        return np.clip(_nearest_index(m, x, scale < 1), 0, n_in - 1), None, outside
    if m.mode not in ("linear", "cubic"):
        raise HawqError(f"Resize mode {m.mode!r} is not supported")
    base = np.floor(x)
    whole = x == base
    ratio = np.where(whole, 1.0, x - base)
    w = _kernel_weights(m, ratio, scale)
    n = w.shape[1]
    idx = (base - whole - n // 2 + 1).astype(np.int64)[:, None] + np.arange(n)[None, :]
    if m.exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, n_in - 1), w, outside


def resize_axis(x: torch.Tensor, axis: int, plan, m: ResizeMode) -> torch.Tensor:
    """Gather and weight `x` along `axis` by an `axis_plan`."""
    idx, w, outside = plan
    out_len, n = idx.shape
    picked = x.index_select(axis, torch.from_numpy(idx.reshape(-1)))
    shape = x.shape[:axis] + (out_len, n) + x.shape[axis + 1:]
    picked = picked.reshape(shape)
    bshape = (1,) * axis + (out_len, n) + (1,) * (x.dim() - axis - 1)
    if w is None:
        y = picked.squeeze(axis + 1)
    else:
        work = x.dtype if x.dtype.is_floating_point else torch.float64
        y = (picked.to(work) * torch.from_numpy(w).to(work).reshape(bshape)).sum(axis + 1)
    if outside is not None and outside.any():
        mask = torch.from_numpy(outside).reshape(bshape[:axis + 1] + bshape[axis + 2:])
        y = torch.where(mask, torch.full_like(y, m.extrapolation), y)
    if not x.dtype.is_floating_point and y.dtype != x.dtype:
        info = torch.iinfo(x.dtype)
        y = torch.round(y).clamp(info.min, info.max).to(x.dtype)
    return y


def resize(x: torch.Tensor, m: ResizeMode, scales=None, sizes=None, roi=None, axes=None, policy="stretch"):
    """X -> X resized along `axes` (all by default) to `sizes` or by `scales` (lists), ONNX semantics."""
    r = x.dim()
    axes = list(range(r)) if axes is None else [d % r for d in axes]
    if roi is not None and len(roi) == 2 * len(axes) and len(axes) != r:
        full = [0.0] * r + [1.0] * r
        for i, d in enumerate(axes):
            full[d], full[r + d] = roi[i], roi[len(axes) + i]
        roi = full
    if sizes is not None:
        scale_of = {d: sizes[i] / x.shape[d] for i, d in enumerate(axes)}
        out = {d: int(sizes[i]) for i, d in enumerate(axes)}
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            s = pick(scale_of.values())
            scale_of = {d: s for d in axes}
            out = {d: int(s * x.shape[d] + 0.5) for d in axes}
    else:
        scale_of = {d: float(scales[i]) for i, d in enumerate(axes)}
        out = {d: int(math.floor(np.float64(scales[i]) * x.shape[d])) for i, d in enumerate(axes)}
    for d in axes:
        pair = None if roi is None or len(roi) == 0 else (float(roi[d]), float(roi[d + r]))
        if math.isclose(scale_of[d], 1.0) and out[d] == x.shape[d] and (
                pair is None or (math.isclose(pair[0], 0.0) and math.isclose(pair[1], 1.0))):
            continue
        if m.coords == "tf_crop_and_resize" and pair is None:
            raise HawqError("Resize tf_crop_and_resize needs an roi input")
        x = resize_axis(x, d, axis_plan(m, x.shape[d], out[d], scale_of[d], pair), m)
    return x


def _values(t) -> list | None:
    """An optional 1-D tensor -> list of floats; None when absent or empty."""
    return None if t is None or t.numel() == 0 else t.reshape(-1).tolist()


@op("Resize")
def resize_op(a: Attrs, x, roi=None, scales=None, sizes=None):
    if a.opset < 11:
        m = ResizeMode(mode=a.get("mode", "nearest"), coords="asymmetric", nearest="simple")
        return resize(x, m, scales=np.asarray(_values(roi), np.float32))
    m = ResizeMode(a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel"),
                   a.get("nearest_mode", "round_prefer_floor"), a.get("cubic_coeff_a", -0.75),
                   bool(a.get("exclude_outside", 0)), bool(a.get("antialias", 0)), a.get("extrapolation_value", 0.0))
    sz, sc = _values(sizes), _values(scales)
    if sz is None and sc is None:
        raise HawqError("Resize needs scales or sizes")
    return resize(x, m, scales=None if sc is None else np.asarray(sc, np.float32),
                  sizes=None if sz is None else [int(v) for v in sz], roi=_values(roi),
                  axes=a.get("axes"), policy=a.get("keep_aspect_ratio_policy", "stretch"))


@op("Upsample")
def upsample(a: Attrs, x, scales=None):
    """Upsample-7 (scales attribute) / 9 (scales input): asymmetric coordinates, nearest takes floor."""
    values = list(a.get("scales")) if scales is None else _values(scales)
    mode = a.get("mode", "nearest")
    m = ResizeMode(mode="linear" if mode in ("linear", "bilinear") else mode, coords="asymmetric", nearest="floor")
    return resize(x, m, scales=np.asarray(values, np.float32))
