"""Activation calibration: run the float model on user data and pick a range per tensor."""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

from onnx_hawq.model_io import fixed_batch
from onnx_hawq.model_io import padded_batches
from onnx_hawq.model_io import unpad
from onnx_hawq.ort import expose, session

SAMPLE_CAP = 200_000  # values kept per tensor for percentile/MSE


class Method(str, enum.Enum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"


@dataclasses.dataclass(frozen=True)
class CalibConfig:
    method: Method = Method.MINMAX
    percentile: float = 99.99
    batch_size: int = 32
    max_samples: int = 512


class _Stats:
    def __init__(self, keep_samples: bool = True):
        self.lo, self.hi, self.samples, self.rng = np.inf, -np.inf, [], np.random.default_rng(0)
        self.keep_samples = keep_samples  # percentile / MSE need values; min-max only the range

    def add(self, x: np.ndarray) -> None:
        x = x.reshape(-1)
        if not x.size:
            return
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            x = x[np.isfinite(x)]  # masks use -inf; a range must stay finite
            if not len(x):
                return
            lo, hi = float(x.min()), float(x.max())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        if not self.keep_samples:
            return
        x = x.astype(np.float32)
        take = min(len(x), SAMPLE_CAP // 8)
        self.samples.append(x if take == len(x) else self.rng.choice(x, take, replace=False))

    def values(self) -> np.ndarray:
        v = np.concatenate(self.samples) if self.samples else np.zeros(1, np.float32)
        return v if len(v) <= SAMPLE_CAP else self.rng.choice(v, SAMPLE_CAP, replace=False)


def collect_ranges(model, tensors, data, config: CalibConfig, bits: dict[str, int], progress=None) -> dict:
    """Map each tensor to its (lo, hi) range on `data` by the configured method. A fixed-batch model
    runs in its own batch size, its short last batch padded and the padded rows dropped."""
    sess = session(expose(model, tensors))
    stats = {t: _Stats(config.method != Method.MINMAX) for t in tensors}
    n = min(config.max_samples, len(next(iter(data.values()))))
    fixed = fixed_batch(model)
    size = fixed or config.batch_size
    chunks = padded_batches({k: v[:n] for k, v in data.items()}, size, fixed is not None)
    total = -(-n // size)
    for feed, count in (progress(chunks, total=total, desc="calibrate") if progress else chunks):
        for t, value in zip(tensors, sess.run(tensors, feed)):
            stats[t].add(unpad(value, count, size))
    return {t: _pick(s, config, bits.get(t, 8)) for t, s in stats.items()}


def _pick(stats: _Stats, config: CalibConfig, bits: int) -> tuple[float, float]:
    if not np.isfinite(stats.lo):  # no finite value seen
        return 0.0, 0.0
    if config.method == Method.MINMAX:
        return stats.lo, stats.hi
    values = stats.values()
    if config.method == Method.PERCENTILE:
        p = config.percentile
        lo = float(np.percentile(values, 100 - p)) if stats.lo < 0 else 0.0
        return min(lo, 0.0), float(np.percentile(values, p))
    return _mse_range(values, stats.lo, stats.hi, bits)


def _mse_range(values: np.ndarray, lo: float, hi: float, bits: int) -> tuple[float, float]:
    """Shrink [lo, hi] by the factor that minimises the quantization MSE on `values`."""
    qmax = (1 << bits) - 1
    best, best_err = (lo, hi), np.inf
    for f in np.linspace(0.3, 1.0, 36):
        a, b = min(lo, 0.0) * f, max(hi, 0.0) * f
        scale = max(b - a, 1e-12) / qmax
        zp = np.round(-a / scale)
        q = np.clip(np.round(values / scale) + zp, 0, qmax)
        err = float(np.mean(((q - zp) * scale - values) ** 2))
        if err < best_err:
            best, best_err = (a, b), err
    return best
