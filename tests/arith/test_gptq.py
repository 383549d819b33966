"""GPTQ rounding, output-error scale search and bias correction (onnx_hawq.arith.gptq)."""

import numpy as np
import pytest

from onnx_hawq.arith import gptq
from onnx_hawq.arith.quantizer import WeightRange, channel_scales, quantize_weight, weight_qmax
from onnx_hawq.errors import HawqError, InputError


def correlated(seed: int, n: int, k: int) -> np.ndarray:
    """n input rows with strongly correlated features (what makes error feedback pay off)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(k, k)) + 2.0 * np.eye(k)
    return rng.normal(size=(n, k)) @ mix + 0.3


def hess(x: np.ndarray) -> np.ndarray:
    return 2.0 * x.T @ x / len(x)


def obq_reference(w, h, scales, qmax, damp):
    """OBQ with the fixed column order, one column at a time: quantize column j, move the remaining
    weights by -err * Hinv[:, j] / Hinv[j, j], then eliminate j from the inverse Hessian."""
    w, h = w.astype(np.float64).copy(), h.astype(np.float64).copy()
    out, k = w.shape
    for j in range(k):
        if h[j, j] == 0:
            h[j, j], w[:, j] = 1.0, 0.0
    h += damp * np.mean(np.diag(h)) * np.eye(k)
    codes = np.zeros((out, k), dtype=np.int64)
    for r in range(out):
        hinv, row = np.linalg.inv(h), w[r].copy()
        for j in range(k):
            q = min(max(round(row[j] / scales[r]), -qmax), qmax)
            codes[r, j] = q
            e = (row[j] - q * scales[r]) / hinv[j, j]
            row[j + 1:] -= e * hinv[j + 1:, j]
            hinv = hinv - np.outer(hinv[:, j], hinv[j, :]) / hinv[j, j]
    return codes


@pytest.mark.parametrize("shape,bits,block", [((4, 8), 4, 128), ((3, 6), 2, 1), ((4, 8), 3, 3), ((2, 7), 8, 2),
                                              ((2, 300), 4, 128)])  # k > 128: the recursive inverse
def test_gptq_equals_obq_reference(shape, bits, block):
    rng = np.random.default_rng(sum(shape) + bits)
    w = rng.normal(size=shape)
    h = hess(correlated(bits, 64, shape[1]))
    qmax = weight_qmax(bits, 8, WeightRange.FULL)
    s = channel_scales(w, qmax)
    codes = gptq.gptq_codes(w, h, s, qmax, damp=0.01, block=block)
    np.testing.assert_array_equal(codes, obq_reference(w, h, s, qmax, 0.01))
    errs = gptq.output_error(w, codes, s, h)
    assert errs.sum() <= gptq.output_error(w, gptq.nearest_codes(w, s, qmax), s, h).sum()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_gptq_total_error_below_nearest(seed, bits):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(16, 32))
    h = hess(correlated(seed, 256, 32))
    qmax = weight_qmax(bits, 8, WeightRange.FULL)
    s = channel_scales(w, qmax)
    e_gptq = gptq.output_error(w, gptq.gptq_codes(w, h, s, qmax), s, h).sum()
    e_near = gptq.output_error(w, gptq.nearest_codes(w, s, qmax), s, h).sum()
    assert e_gptq < 0.9 * e_near


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_optimized_never_worse_than_nearest_per_channel(seed, bits):
    rng = np.random.default_rng(100 + seed)
    w = rng.normal(size=(12, 24)) * rng.uniform(0.1, 3.0, size=(12, 1))
    w[0, 3] = 8.0  # an outlier, where clipping pays
    h = hess(correlated(seed, 200, 24))
    qmax = weight_qmax(bits, 8, WeightRange.FULL)
    codes, scales = gptq.optimized_codes(w, h, qmax)
    base = channel_scales(w, qmax)
    near = gptq.output_error(w, quantize_weight(w, base, qmax), base, h)
    assert np.all(gptq.output_error(w, codes, scales, h) <= near)
    assert codes.dtype == np.int8 and np.abs(codes).max() <= qmax


@pytest.mark.parametrize("bits", range(2, 9))
def test_codes_int8_in_range(bits):
    rng = np.random.default_rng(bits)
    w = rng.normal(size=(5, 20)) * 4
    h = hess(correlated(bits, 80, 20))
    qmax = weight_qmax(bits, 8, WeightRange.FULL)
    codes = gptq.gptq_codes(w, h, channel_scales(w, qmax) * 0.4, qmax)  # heavy clipping
    assert codes.dtype == np.int8 and codes.shape == w.shape
    assert np.abs(codes).max() == qmax


def test_dead_inputs():
    x = correlated(1, 100, 10)
    x[:, [2, 7]] = 0.0
    h = hess(x)
    w = np.random.default_rng(1).normal(size=(6, 10))
    s = channel_scales(w, 7)
    codes = gptq.gptq_codes(w, h, s, 7, damp=0.0)  # positive definite only through the dead fix
    assert np.all(codes[:, [2, 7]] == 0)
    assert np.isfinite(gptq.output_error(w, codes, s, h)).all()
    with pytest.raises(HawqError, match="positive definite"):
        x2 = x.copy()
        x2[:, 3] = x2[:, 4]  # rank deficient without damping
        gptq.gptq_codes(w, hess(x2), s, 7, damp=0.0)


def test_damp_effect():
    w = np.random.default_rng(2).normal(size=(8, 16))
    h = hess(correlated(2, 100, 16))
    s = channel_scales(w, 7)
    near = gptq.nearest_codes(w, s, 7)
    np.testing.assert_array_equal(gptq.gptq_codes(w, h, s, 7, damp=1e9), near)  # H ~ lam*I: no feedback
    small, big = (gptq.gptq_codes(w, h, s, 7, damp=d) for d in (0.001, 1.0))
    assert not np.array_equal(small, big)
    errs = [gptq.output_error(w, c, s, h).sum() for c in (small, big, near)]
    assert errs[0] < errs[2] and errs[1] < errs[2]


def test_block_diagonal_h_equals_full():
    w = np.random.default_rng(3).normal(size=(5, 12))
    h1, h2 = hess(correlated(3, 50, 7)), hess(correlated(4, 50, 5))
    full = np.zeros((12, 12))
    full[:7, :7], full[7:, 7:] = h1, h2
    s = channel_scales(w, 3)
    codes = gptq.gptq_codes(w, [h1, h2], s, 3, block=4)
    np.testing.assert_array_equal(codes, gptq.gptq_codes(w, full, s, 3, block=4))
    np.testing.assert_allclose(gptq.output_error(w, codes, s, [h1, h2]), gptq.output_error(w, codes, s, full))
    np.testing.assert_array_equal(gptq.search_scales(w, [h1, h2], 3), gptq.search_scales(w, full, 3))


@pytest.mark.parametrize("rounding", ["nearest", "gptq"])
def test_search_scales_minimises_output_error_over_grid(rounding):
    rng = np.random.default_rng(5)
    w = rng.standard_t(2, size=(10, 16))
    h = hess(correlated(5, 120, 16))
    qmax = weight_qmax(3, 8, WeightRange.FULL)
    best = gptq.search_scales(w, h, qmax, rounding=rounding)
    quant = gptq.nearest_codes if rounding == "nearest" else (lambda w_, s_, q_: gptq.gptq_codes(w_, h, s_, q_))
    err = gptq.output_error(w, quant(w, best, qmax), best, h)
    base = channel_scales(w, qmax)
    cands = [gptq.output_error(w, quant(w, base * r, qmax), base * r, h) for r in gptq.DEFAULT_GRID]
    np.testing.assert_allclose(err, np.min(cands, axis=0))
    assert np.any(best < base)  # heavy-tailed rows prefer clipping


def test_output_error_is_mean_squared_output_difference():
    x = correlated(6, 90, 9)
    w = np.random.default_rng(6).normal(size=(4, 9))
    s = channel_scales(w, 1)
    codes = gptq.nearest_codes(w, s, 1)
    dy = x @ (w - codes * s[:, None]).T
    np.testing.assert_allclose(gptq.output_error(w, codes, s, hess(x)), 2 * (dy ** 2).mean(axis=0))


def test_bias_correction_zeroes_mean_shift():
    x = correlated(7, 150, 11)
    rng = np.random.default_rng(7)
    w, b = rng.normal(size=(6, 11)), rng.normal(size=6)
    qmax = weight_qmax(2, 8, WeightRange.FULL)
    s = channel_scales(w, qmax)
    codes = gptq.gptq_codes(w, hess(x), s, qmax)
    shift = gptq.bias_correction(w, codes, s, x.mean(axis=0))
    y, yq = x @ w.T + b, x @ (codes * s[:, None]).T + b + shift
    np.testing.assert_allclose((y - yq).mean(axis=0), 0.0, atol=1e-12)
    assert np.abs((x @ w.T - x @ (codes * s[:, None]).T).mean(axis=0)).max() > 1e-3  # there was a shift


def test_bad_inputs():
    w, h = np.ones((2, 3)), np.eye(3)
    with pytest.raises(InputError):
        gptq.gptq_codes(w, np.eye(4), np.ones(2), 7)
    with pytest.raises(InputError):
        gptq.gptq_codes(w, h, np.ones(3), 7)
    with pytest.raises(InputError):
        gptq.gptq_codes(w, h, np.ones(2), 0)
    with pytest.raises(InputError):
        gptq.search_scales(w, h, 7, grid=())
    with pytest.raises(InputError):
        gptq.bias_correction(w, np.zeros((2, 3)), np.ones(2), np.ones(4))
