"""Data-driven weight rounding (numpy only): GPTQ/OBQ codes, output-error scale search, bias correction.

A layer's rows are its output channels: ``w`` is (out, k), ``codes`` int8 (out, k) in [-qmax, qmax],
``scales`` (out,) symmetric per channel, dequantized ``Q = codes * scales[:, None]``. The calibration
statistic is ``H = 2 X^T X / n`` over the n input rows X (n, k) the layer saw, so a row's output error
``||X (w_c - q_c)||^2 / n`` is ``(w_c - q_c) H (w_c - q_c)^T / 2``; we report ``diag((W-Q) H (W-Q)^T)``.

``h`` is either a (k, k) matrix or a sequence of square blocks along the diagonal of a block-diagonal
one (the fallback for layers whose full H would not fit, see ``calibration.gram``). With a block-diagonal
H every function is exactly the full-matrix result on that matrix (GPTQ's error feedback never crosses
a block; damping is relative to the mean diagonal over all blocks).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from onnx_hawq.errors import HawqError, InputError
from onnx_hawq.arith.quantizer import channel_scales

DEFAULT_GRID = tuple(round(1.0 - 0.05 * i, 2) for i in range(11))  # clipping ratios 1.0 .. 0.5


def _blocks(h, k: int) -> list[tuple[int, int, np.ndarray]]:
    """(start, stop, block) for a (k, k) H or a list of diagonal blocks; checks shapes."""
    mats = [h] if isinstance(h, np.ndarray) else list(h)
    out, start = [], 0
    for m in mats:
        m = np.asarray(m, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise InputError(f"Hessian block must be square 2-D, got shape {m.shape}")
        if not np.isfinite(m).all():
            raise InputError("Hessian has non-finite entries (NaN/inf in the calibration activations?)")
        out.append((start, start + m.shape[0], m))
        start += m.shape[0]
    if start != k:
        raise InputError(f"Hessian covers {start} input columns, weight has {k}")
    return out


def _check(w: np.ndarray, scales: np.ndarray, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(w, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64).reshape(-1)
    if w.ndim != 2 or scales.shape != (w.shape[0],):
        raise InputError(f"need w (out, k) and scales (out,), got {w.shape} and {scales.shape}")
    if not 1 <= int(qmax) <= 127:
        raise InputError(f"qmax must be in 1..127, got {qmax}")
    if not np.all(scales > 0):
        raise InputError("weight scales must be positive")
    return w, scales


def nearest_codes(w: np.ndarray, scales: np.ndarray, qmax: int) -> np.ndarray:
    """Round-to-nearest (half even) codes of w (out, k) at per-row scales, clipped; int8."""
    w, scales = _check(w, scales, qmax)
    return np.clip(np.rint(w / scales[:, None]), -qmax, qmax).astype(np.int8)


def output_error(w: np.ndarray, codes: np.ndarray, scales: np.ndarray, h) -> np.ndarray:
    """Per-channel output error diag((W - Q) H (W - Q)^T) of codes at scales; float64 (out,)."""
    w = np.asarray(w, dtype=np.float64)
    d = w - np.asarray(codes, dtype=np.float64) * np.asarray(scales, dtype=np.float64).reshape(-1, 1)
    return sum(((d[:, a:b] @ m) * d[:, a:b]).sum(axis=1) for a, b, m in _blocks(h, w.shape[1]))


def _inverse_factors(h, k: int, damp: float) -> tuple[list[tuple[int, int, np.ndarray]], np.ndarray]:
    """Upper Cholesky factors U (H_damped^-1 = U^T U) per diagonal block, and the dead-input mask."""
    if damp < 0:
        raise InputError(f"damp must be >= 0, got {damp}")
    blocks = _blocks(h, k)
    dead = np.concatenate([np.diag(m) == 0 for _, _, m in blocks])
    total = sum(np.trace(m) for _, _, m in blocks) + dead.sum()  # dead diagonals count as 1 (GPTQ)
    lam = damp * total / k
    factors = []
    for a, b, m in blocks:
        m = m.copy()
        idx = np.flatnonzero(dead[a:b])
        m[idx, idx] = 1.0
        m[np.diag_indices_from(m)] += lam
        try:  # J H J = L L^T with J the reversal  =>  H^-1 = U^T U for the upper U = J L^-1 J
            lower = np.linalg.cholesky(m[::-1, ::-1])
            factors.append((a, b, np.ascontiguousarray(_lower_inverse(lower)[::-1, ::-1])))
        except np.linalg.LinAlgError:
            raise HawqError(f"calibration Hessian is not positive definite (damp={damp}); raise damp") from None
    return factors, dead


def _lower_inverse(lower: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix by 2x2 block recursion (matmul-bound, ~n^3/3 flops)."""
    n = len(lower)
    if n <= 128:
        return np.tril(np.linalg.inv(lower))
    m = n // 2
    a, d = _lower_inverse(lower[:m, :m]), _lower_inverse(lower[m:, m:])
    out = np.zeros_like(lower)
    out[:m, :m], out[m:, m:] = a, d
    out[m:, :m] = -(d @ (lower[m:, :m] @ a))
    return out


def _gptq_rows(w: np.ndarray, u: np.ndarray, scales: np.ndarray, qmax: int, block: int) -> np.ndarray:
    """GPTQ on one diagonal block: quantize columns in order, spreading each column's error over the
    later columns through the rows of U; later blocks get the accumulated update lazily."""
    wt = np.ascontiguousarray(w.T)  # (k, out): a column of w is a contiguous row here
    k = len(wt)
    codes = np.zeros(wt.shape, dtype=np.int8)
    inv_s = 1.0 / scales
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1, u1 = wt[i1:i2], u[i1:i2, i1:i2]
        err1 = np.zeros_like(w1)
        for i in range(i2 - i1):
            q = np.clip(np.rint(w1[i] * inv_s), -qmax, qmax)
            codes[i1 + i] = q
            err1[i] = (w1[i] - q * scales) / u1[i, i]
            w1[i:] -= np.outer(u1[i, i:], err1[i])
        wt[i2:] -= u[i1:i2, i2:].T @ err1
    return codes.T
    return codes


def gptq_codes(w: np.ndarray, h, scales: np.ndarray, qmax: int, damp: float = 0.01,
               block: int = 128) -> np.ndarray:
    """GPTQ/OBQ rounding of w (out, k) at fixed per-row scales: int8 codes in [-qmax, qmax].

    Columns are quantized left to right; the remaining columns absorb each rounding error
    optimally for H + damp * mean(diag H) * I (the upper Cholesky factor of its inverse gives the
    updates). Inputs that never fired (zero H diagonal) get diagonal 1 and weight 0, as in GPTQ.
    """
    w, scales = _check(w, scales, qmax)
    if block < 1:
        raise InputError(f"block must be >= 1, got {block}")
    return _gptq_factored(w, _inverse_factors(h, w.shape[1], damp), scales, int(qmax), block)


def _gptq_factored(w: np.ndarray, prepared, scales: np.ndarray, qmax: int, block: int) -> np.ndarray:
    """gptq_codes given _inverse_factors' (factors, dead): zero dead columns, round block by block."""
    factors, dead = prepared
    w = np.where(dead[None, :], 0.0, w)
    codes = np.zeros(w.shape, dtype=np.int8)
    for a, b, u in factors:
        codes[:, a:b] = _gptq_rows(w[:, a:b], u, scales, qmax, block)
    return codes


def search_scales(w: np.ndarray, h, qmax: int, grid: Sequence[float] = DEFAULT_GRID,
                  rounding: str = "nearest", damp: float = 0.01) -> np.ndarray:
    """Per-channel scales max|w_c| * r / qmax, r from `grid`, minimising the output error
    diag((W - Q) H (W - Q)^T) of each row (not its weight MSE).

    rounding="nearest" (default) scores each candidate with round-to-nearest codes: one
    out*k*k product per grid point. rounding="gptq" scores it with GPTQ codes instead (one GPTQ run
    per grid point, rows at once, the Hessian factored once; ~len(grid) times gptq_codes' loop).
    """
    w = np.asarray(w, dtype=np.float64)
    ratios = np.asarray(grid, dtype=np.float64)
    if ratios.size == 0 or not np.all(ratios > 0):
        raise InputError("scale grid must be non-empty positive ratios")
    if rounding not in ("nearest", "gptq"):
        raise InputError(f"rounding must be 'nearest' or 'gptq', got {rounding!r}")
    base = channel_scales(w, int(qmax))
    prepared = _inverse_factors(h, w.shape[1], damp) if rounding == "gptq" else None
    best_err = np.full(w.shape[0], np.inf)
    best = base.copy()
    for r in ratios:
        s = base * r
        codes = nearest_codes(w, s, qmax) if prepared is None else _gptq_factored(w, prepared, s, int(qmax), 128)
        err = output_error(w, codes, s, h)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = np.where(better, s, best)
    return best


def best_codes(w: np.ndarray, h, candidates: Sequence[tuple[np.ndarray, np.ndarray]]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the (codes, scales) candidate with the smallest output error (first wins ties)."""
    if not candidates:
        raise InputError("best_codes needs at least one candidate")
    errs = np.stack([output_error(w, c, s, h) for c, s in candidates])
    pick = errs.argmin(axis=0)
    rows = np.arange(len(pick))
    codes = np.stack([c for c, _ in candidates])[pick, rows]
    scales = np.stack([np.asarray(s, dtype=np.float64) for _, s in candidates])[pick, rows]
    return codes.astype(np.int8), scales


def optimized_codes(w: np.ndarray, h, qmax: int, damp: float = 0.01, block: int = 128,
                    grid: Sequence[float] = DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray]:
    """Scale search + GPTQ, never worse per row than nearest rounding at channel_scales: per row the
    best of nearest and GPTQ rounding at the max-scales and at the searched scales."""
    w = np.asarray(w, dtype=np.float64)
    if block < 1:
        raise InputError(f"block must be >= 1, got {block}")
    prepared = _inverse_factors(h, w.shape[1], damp)
    cands = []
    for s in (channel_scales(w, int(qmax)), search_scales(w, h, qmax, grid)):
        cands += [(nearest_codes(w, s, qmax), s), (_gptq_factored(w, prepared, s, int(qmax), block), s)]
    return best_codes(w, h, cands)


def bias_correction(w: np.ndarray, codes: np.ndarray, scales: np.ndarray, mean_x: np.ndarray) -> np.ndarray:
    """Per-channel shift (W - Q) mean_x; added to the float bias it cancels the mean output shift
    E[(W - Q) x] on the calibration data. mean_x (k,) is the mean input row (for a Conv, the mean
    im2col column of the layer's group, in the weight's (c, kh, kw) order)."""
    w = np.asarray(w, dtype=np.float64)
    mean_x = np.asarray(mean_x, dtype=np.float64).reshape(-1)
    if mean_x.shape != (w.shape[1],):
        raise InputError(f"mean input has {mean_x.size} entries, weight has {w.shape[1]} columns")
    d = w - np.asarray(codes, dtype=np.float64) * np.asarray(scales, dtype=np.float64).reshape(-1, 1)
    return d @ mean_x
