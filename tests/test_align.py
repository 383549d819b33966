"""Aligned QLinearAdd / global-pool scales make onnxruntime's float32 arithmetic equal the integer form."""

import numpy as np
import pytest

from onnx_hawq.transforms.align import align_add, align_gap
from onnx_hawq.arith.dyadic import dyadic
from onnx_hawq.arith.quantizer import TensorQ
from onnx_hawq.reference import qlinear_add, qlinear_gap


def _rne_div(num: np.ndarray, c: int) -> np.ndarray:
    """round-half-even(num / 2^c) in exact integer arithmetic."""
    q, r = np.divmod(num, 1 << c)
    half = 1 << (c - 1)
    return q + ((r > half) | ((r == half) & (q % 2 == 1)))


@pytest.mark.parametrize("seed", range(6))
def test_aligned_add_float_path_equals_integer_form(seed):
    r = np.random.default_rng(seed)
    pa = TensorQ(float(np.float32(r.uniform(0.01, 0.1))), int(r.integers(0, 256)), 8)
    pb = TensorQ(float(np.float32(r.uniform(0.01, 0.1))), int(r.integers(0, 256)), 8)
    pc = TensorQ(float(np.float32(r.uniform(0.02, 0.2))), int(r.integers(0, 256)), 8)
    pb, pc, exact = align_add(pa, pb, pc, b_free=True)
    assert exact
    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
    got = qlinear_add(a, pa.scale, pa.zero_point, b, pb.scale, pb.zero_point, pc.scale, pc.zero_point)
    (ba, ca), (bb, cb) = (dyadic(float(np.float32(p.scale) / np.float32(pc.scale))) for p in (pa, pb))
    c = max(ca, cb, 1)
    num = (ba << (c - ca)) * (a.astype(np.int64) - pa.zero_point) + (bb << (c - cb)) * (b.astype(np.int64) - pb.zero_point)
    # QLinearAdd adds zC before rounding (ties go to the even *output* code)
    want = np.clip(_rne_div(num + (pc.zero_point << c), c), 0, 255)
    np.testing.assert_array_equal(got, want)


def test_aligned_pool_float_path_equals_integer_form():
    px, py = TensorQ(0.0371, 3, 8), TensorQ(0.0213, 0, 8)
    py, exact = align_gap(px, py, 49)
    assert exact
    x = np.random.default_rng(0).integers(0, 256, (64, 8, 7, 7)).astype(np.uint8)
    got = qlinear_gap(x, px.scale, px.zero_point, py.scale, py.zero_point)
    b, c = dyadic(float(np.float32(px.scale) / (np.float32(py.scale) * np.float32(49))))
    acc = x.astype(np.int64).reshape(64, 8, -1).sum(-1) - 3 * 49
    want = np.clip(_rne_div(acc * b, c), 0, 255).reshape(64, 8, 1, 1)
    np.testing.assert_array_equal(got, want)


def test_align_gap_finds_an_exact_scale_where_the_first_target_is_stepped_over():
    # seen on the digits CNN: float32 quotients around the 12-bit target skip it
    from onnx_hawq.arith.ort_math import gap_multiplier
    from onnx_hawq.arith.quantizer import TensorQ
    from onnx_hawq.transforms.align import align_gap

    px, py = TensorQ(0.04273024946451187, 0, 8), TensorQ(0.02403039112687111, 0, 8)
    out, exact = align_gap(px, py, 16)
    assert exact and abs(out.scale / py.scale - 1) < 1e-3
    m = float(gap_multiplier(px.scale, out.scale, 16))
    mant, _ = __import__("math").frexp(m)
    assert (mant * 2**12).is_integer()  # significand short enough for 255*16 sums
