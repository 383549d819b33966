"""Layer-input statistics for data-driven rounding: H = 2 X^T X / n and the mean input row (numpy only).

X holds one row per input the layer's weight sees: a Conv's im2col patches (per group, columns in
the weight's (c, kh, kw, ...) reshape order), a Gemm's rows of A (A^T with transA), a MatMul's
input flattened over its leading dims. Memory stays bounded two ways:

* rows: a batch that yields more than ``max_rows`` rows keeps a uniform random subset of
  ``max_rows`` of them (seeded ``numpy.random.default_rng(seed)``, drawn anew per batch), and only
  those patches are ever materialized, in chunks of ``CHUNK_VALUES`` values;
* columns: a layer with k > ``max_k`` input columns keeps H block-diagonal over consecutive column
  blocks of ``max_k`` (k * max_k * 8 bytes per group instead of k^2 * 8), dropping correlations
  across blocks; GPTQ then rounds each block independently (``onnx_hawq.arith.gptq`` accepts the
  list of diagonal blocks wherever it takes H).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from onnx_hawq.errors import InputError
from onnx_hawq.arith import gptq

CHUNK_VALUES = 1 << 22  # X values (float64: 32 MB) materialized at once while accumulating


@dataclasses.dataclass(frozen=True)
class GramSpec:
    """How a layer's input maps to X rows. Conv fields are per spatial dim; pads = begins + ends."""

    op_type: str  # "Conv", "Gemm" or "MatMul"
    in_channels: int  # K of Gemm/MatMul, C of Conv
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    groups: int = 1
    auto_pad: str = "NOTSET"
    trans_a: bool = False
    trans_b: bool = False
    max_rows: int = 65536
    max_k: int = 8192
    seed: int = 0

    @property
    def k(self) -> int:
        """Input columns per group (the weight's row length)."""
        return self.in_channels // self.groups * int(np.prod(self.kernel, dtype=np.int64))


def gram_spec(node: onnx.NodeProto, weight_shape: tuple[int, ...], **caps) -> GramSpec:
    """The GramSpec of an ONNX Conv/Gemm/MatMul node with raw weight shape `weight_shape`."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        nd = len(weight_shape) - 2
        g = int(attrs.get("group", 1))
        auto = attrs.get("auto_pad", b"NOTSET")
        return GramSpec("Conv", int(weight_shape[1]) * g, tuple(int(d) for d in weight_shape[2:]),
                        tuple(attrs.get("strides", [1] * nd)), tuple(attrs.get("pads", [0] * 2 * nd)),
                        tuple(attrs.get("dilations", [1] * nd)), g,
                        auto.decode() if isinstance(auto, bytes) else auto, **caps)
    if node.op_type == "Gemm":
        tb = bool(attrs.get("transB", 0))
        return GramSpec("Gemm", int(weight_shape[1] if tb else weight_shape[0]), trans_a=bool(attrs.get("transA", 0)),
                        trans_b=tb, **caps)
    if node.op_type == "MatMul":
        return GramSpec("MatMul", int(weight_shape[0]), **caps)
    raise InputError(f"no input statistics for op {node.op_type}")


def _conv_pads(spec: GramSpec, spatial: tuple[int, ...]) -> list[tuple[int, int]]:
    nd = len(spatial)
    strides = spec.strides or (1,) * nd
    dil = spec.dilations or (1,) * nd
    if spec.auto_pad in ("NOTSET", ""):
        pads = spec.pads or (0,) * 2 * nd
        return [(pads[i], pads[nd + i]) for i in range(nd)]
    if spec.auto_pad == "VALID":
        return [(0, 0)] * nd
    out = []
    for n, kk, s, d in zip(spatial, spec.kernel, strides, dil):
        total = max(0, (-(-n // s) - 1) * s + (kk - 1) * d + 1 - n)
        small = total // 2
        out.append((small, total - small) if spec.auto_pad == "SAME_UPPER" else (total - small, small))
    return out


def _conv_source(spec: GramSpec, x: np.ndarray):
    """(take, positions) for im2col of x (N, C, *spatial): take(flat indices into positions)
    materializes only those patches as (rows, groups, k)."""
    nd = len(spec.kernel)
    if x.ndim != nd + 2 or x.shape[1] != spec.in_channels:
        raise InputError(f"Conv input must be (N, {spec.in_channels}, {nd} spatial dims), got {x.shape}")
    strides = spec.strides or (1,) * nd
    dil = spec.dilations or (1,) * nd
    xp = np.pad(x, [(0, 0), (0, 0)] + _conv_pads(spec, x.shape[2:]))
    span = tuple((kk - 1) * d + 1 for kk, d in zip(spec.kernel, dil))
    if any(s > n for s, n in zip(span, xp.shape[2:])):
        raise InputError(f"Conv input {x.shape} is smaller than the dilated kernel {span}")
    win = np.lib.stride_tricks.sliding_window_view(xp, span, axis=tuple(range(2, nd + 2)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
              + tuple(slice(None, None, d) for d in dil)]  # (N, C, *out, *kernel), a view
    positions = (x.shape[0],) + win.shape[2:2 + nd]

    def take(flat: np.ndarray) -> np.ndarray:
        idx = np.unravel_index(flat, positions)
        patches = win[(idx[0], slice(None)) + tuple(idx[1:])]  # (rows, C, *kernel)
        return patches.reshape(len(flat), spec.groups, spec.k)
    return take, int(np.prod(positions))


def _pick(n: int, cap: int, rng) -> np.ndarray:
    """All row indices, or a sorted uniform subset of `cap` of them when n > cap."""
    return np.arange(n) if n <= cap else np.sort(rng.choice(n, size=cap, replace=False))


def _row_source(spec: GramSpec, x: np.ndarray):
    """(take, total): take(indices) gives those X rows of batch x as (rows, groups, k)."""
    x = np.asarray(x)
    if spec.op_type == "Conv":
        return _conv_source(spec, x)
    if spec.op_type == "Gemm":
        if x.ndim != 2:
            raise InputError(f"Gemm input must be 2-D, got {x.shape}")
        x = x.T if spec.trans_a else x
    if x.ndim == 0 or x.shape[-1] != spec.in_channels:
        raise InputError(f"{spec.op_type} input {x.shape} does not end in {spec.in_channels} features")
    rows = x.reshape(-1, spec.in_channels)
    return (lambda idx: rows[idx][:, None, :]), len(rows)


def input_rows(spec: GramSpec, x: np.ndarray, rng=None) -> tuple[np.ndarray, int]:
    """The X rows (rows, groups, k) one activation batch contributes, subsampled to max_rows,
    and how many rows the batch had before subsampling."""
    rng = rng if rng is not None else np.random.default_rng(spec.seed)
    take, total = _row_source(spec, x)
    return take(_pick(total, spec.max_rows, rng)), total


@dataclasses.dataclass(frozen=True)
class GramStats:
    """Accumulated statistics of one layer: H per group as diagonal blocks, mean input row per group."""

    blocks: tuple[np.ndarray, ...]  # each (groups, b, b) float64; one block unless k > max_k
    mean: np.ndarray  # (groups, k) float64
    rows: int  # X rows seen (after subsampling)
    subsampled: bool

    @property
    def groups(self) -> int:
        return self.mean.shape[0]

    def hessian(self, group: int):
        """H of `group` as gptq takes it: a (k, k) array, or the list of its diagonal blocks."""
        mats = [b[group] for b in self.blocks]
        return mats[0] if len(mats) == 1 else mats


class GramAccumulator:
    """Sums X^T X (float64, block-diagonal beyond max_k columns) and X's column sums over batches."""

    def __init__(self, spec: GramSpec):
        if spec.op_type not in ("Conv", "Gemm", "MatMul"):
            raise InputError(f"no input statistics for op {spec.op_type}")
        if spec.in_channels % spec.groups or spec.max_rows < 1 or spec.max_k < 1:
            raise InputError(f"bad statistics spec: {spec}")
        self.spec = spec
        self._rng = np.random.default_rng(spec.seed)
        k = spec.k
        self._bounds = [(a, min(a + spec.max_k, k)) for a in range(0, k, spec.max_k)]
        self._sums = [np.zeros((spec.groups, b - a, b - a)) for a, b in self._bounds]
        self._col = np.zeros((spec.groups, k))
        self._rows = 0
        self._subsampled = False

    def add(self, x: np.ndarray) -> None:
        """Accumulate one batch of the layer's input activation (the tensor the node reads)."""
        take, total = _row_source(self.spec, x)
        picked = _pick(total, self.spec.max_rows, self._rng)
        self._subsampled |= len(picked) < total
        step = max(1, CHUNK_VALUES // (self.spec.groups * self.spec.k))
        for start in range(0, len(picked), step):  # materialize at most CHUNK_VALUES floats at once
            xg = take(picked[start:start + step]).astype(np.float64).transpose(1, 0, 2)  # (groups, rows, k)
            for (a, b), s in zip(self._bounds, self._sums):
                part = xg[:, :, a:b]
                s += np.matmul(part.transpose(0, 2, 1), part)
            self._col += xg.sum(axis=1)
        self._rows += len(picked)

    def stats(self) -> GramStats:
        """H = 2 X^T X / n per group and block, and the mean row; needs at least one row."""
        if self._rows == 0:
            raise InputError("no calibration rows were accumulated for this layer")
        n = float(self._rows)
        return GramStats(tuple(2.0 * s / n for s in self._sums), self._col / n, self._rows, self._subsampled)


def weight_rows(w0: np.ndarray, spec: GramSpec) -> np.ndarray:
    """A weight with output channels on axis 0 (``layers.weights_of``'s layout: Conv (M, C/g, *kernel),
    Gemm/MatMul (N, K)) as the per-group rows gptq takes: (groups, M/g, k), columns in X's order."""
    w0 = np.asarray(w0)
    g = spec.groups
    if w0.shape[0] % g or w0[0].size != spec.k:
        raise InputError(f"weight {w0.shape} does not match {spec.op_type} input of {spec.k} columns x {g} groups")
    return w0.reshape(g, w0.shape[0] // g, spec.k)


def onnx_weight_rows(w: np.ndarray, spec: GramSpec) -> np.ndarray:
    """weight_rows of a raw ONNX weight: Conv as is, Gemm (N, K) with transB else (K, N), MatMul (K, N)."""
    w = np.asarray(w)
    transposed = spec.op_type == "MatMul" or (spec.op_type == "Gemm" and not spec.trans_b)
    return weight_rows(w.T if transposed else w, spec)


def _groups(w0: np.ndarray, stats: GramStats, spec: GramSpec):
    rows = weight_rows(w0, spec)
    if stats.mean.shape != (spec.groups, spec.k):
        raise InputError(f"statistics are for {stats.mean.shape} inputs, layer has {(spec.groups, spec.k)}")
    per = rows.shape[1]
    for g in range(spec.groups):
        yield slice(g * per, (g + 1) * per), rows[g], stats.hessian(g), stats.mean[g]


def layer_codes(w0, stats: GramStats, spec: GramSpec, scales, qmax: int, damp: float = 0.01,
                block: int = 128) -> np.ndarray:
    """GPTQ codes of a whole layer (w0 out-axis-0 layout, scales (M,)), in w0's shape; int8."""
    scales = np.asarray(scales, dtype=np.float64)
    codes = np.zeros(weight_rows(w0, spec).shape, dtype=np.int8)
    for g, (sl, w, h, _) in enumerate(_groups(w0, stats, spec)):
        codes[g] = gptq.gptq_codes(w, h, scales[sl], qmax, damp, block)
    return codes.reshape(np.shape(w0))


def layer_optimized(w0, stats: GramStats, spec: GramSpec, qmax: int, damp: float = 0.01,
                    block: int = 128, grid=gptq.DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray]:
    """gptq.optimized_codes per group: (codes in w0's shape, scales (M,)); never worse per channel
    than nearest rounding at channel_scales on the calibration statistics."""
    codes = np.zeros(weight_rows(w0, spec).shape, dtype=np.int8)
    scales = np.zeros(np.shape(w0)[0])
    for g, (sl, w, h, _) in enumerate(_groups(w0, stats, spec)):
        codes[g], scales[sl] = gptq.optimized_codes(w, h, qmax, damp, block, grid)
    return codes.reshape(np.shape(w0)), scales


def layer_output_error(w0, codes, scales, stats: GramStats, spec: GramSpec) -> np.ndarray:
    """Per-channel diag((W - Q) H (W - Q)^T) of a whole layer, (M,)."""
    c = weight_rows(codes, spec)
    scales = np.asarray(scales, dtype=np.float64)
    return np.concatenate([gptq.output_error(w, c[g], scales[sl], h)
                           for g, (sl, w, h, _) in enumerate(_groups(w0, stats, spec))])


def layer_bias_shift(w0, codes, scales, stats: GramStats, spec: GramSpec) -> np.ndarray:
    """Per-channel float shift to add to the layer's bias so the mean output on the calibration
    data is unchanged by rounding, (M,)."""
    c = weight_rows(codes, spec)
    scales = np.asarray(scales, dtype=np.float64)
    return np.concatenate([gptq.bias_correction(w, c[g], scales[sl], m)
                           for g, (sl, w, _, m) in enumerate(_groups(w0, stats, spec))])
