"""Layer-input statistics (calibration.gram): im2col order, H, batching, caps, layer-level rounding."""

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from onnx_hawq.calibration import gram
from onnx_hawq.arith import gptq
from onnx_hawq.arith.quantizer import WeightRange, channel_scales, quantize_weight, weight_qmax
from onnx_hawq.errors import InputError

CONVS = {  # name: (C, M, kernel, strides, pads(begins+ends), dilations, groups, spatial)
    "plain": (3, 4, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, (7, 6)),
    "strided_padded": (4, 6, (3, 2), (2, 1), (1, 0, 2, 1), (1, 1), 1, (8, 7)),
    "dilated": (2, 3, (3, 3), (1, 2), (2, 2, 2, 2), (2, 2), 1, (9, 9)),
    "grouped": (6, 4, (2, 3), (1, 1), (1, 1, 0, 1), (1, 1), 2, (5, 6)),
    "depthwise": (5, 10, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 5, (7, 8)),
    "conv1d": (3, 5, (4,), (2,), (1, 2), (2,), 1, (15,)),
    "conv1d_grouped": (4, 6, (3,), (1,), (0, 1), (1,), 2, (9,)),
}


def conv_case(name, seed=0, n=3):
    c, m, kern, st, pads, dil, g, sp = CONVS[name]
    spec = gram.GramSpec("Conv", c, kern, st, pads, dil, g)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c) + sp).astype(np.float32) + 0.5
    w = rng.normal(size=(m, c // g) + kern)
    return spec, x, w


def torch_conv(spec, x, w):
    """Reference conv output (N, M, *out) in float64; ONNX pads applied explicitly."""
    nd = len(spec.kernel)
    pad = []
    for i in reversed(range(nd)):
        pad += [spec.pads[i], spec.pads[nd + i]]
    xp = F.pad(torch.from_numpy(x).double(), pad)
    conv = F.conv1d if nd == 1 else F.conv2d
    return conv(xp, torch.from_numpy(w).double(), stride=spec.strides, dilation=spec.dilations,
                groups=spec.groups).numpy()


@pytest.mark.parametrize("name", list(CONVS))
def test_im2col_rows_times_weight_rows_is_the_conv(name):
    spec, x, w = conv_case(name)
    rows, total = gram.input_rows(spec, x)
    assert len(rows) == total
    out = np.einsum("rgk,gmk->rgm", rows.astype(np.float64), gram.weight_rows(w, spec)).reshape(len(rows), -1)
    ref = torch_conv(spec, x, w)
    np.testing.assert_allclose(out, np.moveaxis(ref, 1, -1).reshape(-1, w.shape[0]), atol=1e-9)


@pytest.mark.parametrize("name", [n for n in CONVS if not n.startswith("conv1d")])
def test_conv_h_equals_torch_unfold(name):
    spec, x, _ = conv_case(name)
    acc = gram.GramAccumulator(spec)
    acc.add(x)
    st = acc.stats()
    nd = len(spec.kernel)
    xp = F.pad(torch.from_numpy(x).double(), [spec.pads[1], spec.pads[3], spec.pads[0], spec.pads[2]])
    cols = F.unfold(xp, spec.kernel, dilation=spec.dilations, stride=spec.strides)  # (N, C*kk, L)
    cols = cols.permute(0, 2, 1).reshape(-1, spec.groups, spec.k).numpy()
    assert nd == 2 and st.rows == len(cols) and not st.subsampled
    for g in range(spec.groups):
        xg = cols[:, g]
        np.testing.assert_allclose(st.hessian(g), 2 * xg.T @ xg / len(xg), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(st.mean[g], xg.mean(axis=0), atol=1e-12)


@pytest.mark.parametrize("name", ["strided_padded", "depthwise", "conv1d"])
def test_batches_equal_one_big_batch(name):
    spec, x, _ = conv_case(name, n=6)
    one, many = gram.GramAccumulator(spec), gram.GramAccumulator(spec)
    one.add(x)
    for part in (x[:1], x[1:4], x[4:]):
        many.add(part)
    a, b = one.stats(), many.stats()
    assert a.rows == b.rows
    np.testing.assert_allclose(a.blocks[0], b.blocks[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-12)


def test_row_cap_subsamples_seeded():
    spec, x, _ = conv_case("plain", n=4)
    capped = gram.GramSpec("Conv", 3, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, max_rows=50, seed=3)
    rows, total = gram.input_rows(capped, x)
    assert rows.shape == (50, 1, 27) and total == 4 * 5 * 4
    full, _ = gram.input_rows(spec, x)
    assert all(any(np.array_equal(r, f) for f in full) for r in rows)  # a subset of the real patches
    stats = [gram.GramAccumulator(capped) for _ in range(2)]
    for acc in stats:
        acc.add(x)
        acc.add(x)
    a, b = (acc.stats() for acc in stats)
    assert a.subsampled and a.rows == 100
    np.testing.assert_array_equal(a.blocks[0], b.blocks[0])


def test_gemm_and_matmul_rows():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(7, 5))
    gt = gram.GramSpec("Gemm", 5, trans_a=True)
    np.testing.assert_array_equal(gram.input_rows(gt, a.T)[0][:, 0], a)
    x3 = rng.normal(size=(2, 3, 4, 5))
    mm = gram.GramAccumulator(gram.GramSpec("MatMul", 5))
    mm.add(x3)
    flat = x3.reshape(-1, 5)
    np.testing.assert_allclose(mm.stats().hessian(0), 2 * flat.T @ flat / 24)
    with pytest.raises(InputError):
        mm.add(rng.normal(size=(3, 4)))


def test_gram_spec_and_weight_layouts():
    w = np.arange(12.0).reshape(3, 4)  # raw (K=3, N=4) for MatMul / Gemm transB=0
    node = onnx.helper.make_node("Gemm", ["x", "w"], ["y"], transB=0)
    spec = gram.gram_spec(node, w.shape)
    np.testing.assert_array_equal(gram.onnx_weight_rows(w, spec)[0], w.T)
    spec_t = gram.gram_spec(onnx.helper.make_node("Gemm", ["x", "w"], ["y"], transB=1), w.T.shape)
    np.testing.assert_array_equal(gram.onnx_weight_rows(w.T, spec_t)[0], w.T)
    mm = gram.gram_spec(onnx.helper.make_node("MatMul", ["x", "w"], ["y"]), w.shape)
    assert mm.in_channels == 3 and gram.onnx_weight_rows(w, mm).shape == (1, 4, 3)
    conv = onnx.helper.make_node("Conv", ["x", "w"], ["y"], group=2, strides=[2, 1], pads=[1, 0, 1, 0])
    cs = gram.gram_spec(conv, (6, 2, 3, 3))
    assert (cs.in_channels, cs.groups, cs.k, cs.strides, cs.pads) == (4, 2, 18, (2, 1), (1, 0, 1, 0))


def test_auto_pad_same_upper_matches_same_padding():
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 3))
    node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER")
    spec = gram.gram_spec(node, w.shape)
    rows, _ = gram.input_rows(spec, x)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same").numpy()
    np.testing.assert_allclose(rows[:, 0] @ w.reshape(4, -1).T, np.moveaxis(ref, 1, -1).reshape(-1, 4), atol=1e-9)


def test_large_layer_block_diagonal_fallback():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 10)) @ rng.normal(size=(10, 10))
    full_acc = gram.GramAccumulator(gram.GramSpec("MatMul", 10))
    cap_acc = gram.GramAccumulator(gram.GramSpec("MatMul", 10, max_k=4))
    for acc in (full_acc, cap_acc):
        acc.add(x)
    full, cap = full_acc.stats(), cap_acc.stats()
    assert [b.shape for b in cap.blocks] == [(1, 4, 4), (1, 4, 4), (1, 2, 2)]
    for b, (lo, hi) in zip(cap.blocks, [(0, 4), (4, 8), (8, 10)]):
        np.testing.assert_allclose(b[0], full.hessian(0)[lo:hi, lo:hi])
    w = rng.normal(size=(6, 10))  # out-axis-0 layout of a (10, 6) MatMul weight
    spec = cap_acc.spec
    s = channel_scales(w, 7)
    codes = gram.layer_codes(w, cap, spec, s, 7)
    bd = np.zeros((10, 10))
    for lo, hi in [(0, 4), (4, 8), (8, 10)]:
        bd[lo:hi, lo:hi] = full.hessian(0)[lo:hi, lo:hi]
    np.testing.assert_array_equal(codes, gptq.gptq_codes(w, bd, s, 7))
    near = quantize_weight(w, s, 7)
    assert gram.layer_output_error(w, codes, s, full, gram.GramSpec("MatMul", 10)).sum() < \
        gram.layer_output_error(w, near, s, full, gram.GramSpec("MatMul", 10)).sum()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("name", ["strided_padded", "grouped", "depthwise", "matmul"])
def test_optimized_layer_never_worse_than_nearest(name, bits, seed):
    if name == "matmul":
        rng = np.random.default_rng(seed)
        spec = gram.GramSpec("MatMul", 12)
        x = rng.normal(size=(4, 20, 12)) @ rng.normal(size=(12, 12))
        w = rng.standard_t(3, size=(8, 12))
    else:
        spec, x, w = conv_case(name, seed)
    acc = gram.GramAccumulator(spec)
    acc.add(x)
    stats = acc.stats()
    qmax = weight_qmax(bits, 8, WeightRange.FULL)
    codes, scales = gram.layer_optimized(w, stats, spec, qmax)
    base = channel_scales(w, qmax)
    near = gram.layer_output_error(w, quantize_weight(w, base, qmax), base, stats, spec)
    assert np.all(gram.layer_output_error(w, codes, scales, stats, spec) <= near * (1 + 1e-12))
    assert codes.shape == w.shape and codes.dtype == np.int8 and np.abs(codes).max() <= qmax


@pytest.mark.parametrize("name", ["grouped", "depthwise", "conv1d"])
def test_layer_error_and_bias_shift_on_the_conv_outputs(name):
    spec, x, w = conv_case(name, seed=5)
    acc = gram.GramAccumulator(spec)
    acc.add(x)
    stats = acc.stats()
    qmax = weight_qmax(3, 8, WeightRange.FULL)
    s = channel_scales(w, qmax)
    codes = gram.layer_codes(w, stats, spec, s, qmax)
    wq = codes * s.reshape(-1, *([1] * (w.ndim - 1)))
    dy = torch_conv(spec, x, w) - torch_conv(spec, x, wq)
    per_channel = np.moveaxis(dy, 1, -1).reshape(-1, w.shape[0])
    np.testing.assert_allclose(gram.layer_output_error(w, codes, s, stats, spec), 2 * (per_channel ** 2).mean(0),
                               rtol=1e-6)
    shift = gram.layer_bias_shift(w, codes, s, stats, spec)
    assert np.abs(per_channel.mean(0)).max() > 1e-4
    np.testing.assert_allclose(per_channel.mean(0) - shift, 0.0, atol=1e-9)


def test_bad_specs_and_inputs():
    with pytest.raises(InputError):
        gram.GramAccumulator(gram.GramSpec("Relu", 3))
    with pytest.raises(InputError):
        gram.GramAccumulator(gram.GramSpec("Conv", 5, (3,), groups=2))
    with pytest.raises(InputError):
        gram.GramAccumulator(gram.GramSpec("MatMul", 3)).stats()
    spec, x, w = conv_case("plain")
    with pytest.raises(InputError):
        gram.input_rows(spec, x[:, :2])
    with pytest.raises(InputError):
        gram.weight_rows(w[:, :2], spec)


def test_chunked_accumulation_equals_whole(monkeypatch):
    spec, x, _ = conv_case("grouped", n=4)
    whole = gram.GramAccumulator(spec)
    whole.add(x)
    monkeypatch.setattr(gram, "CHUNK_VALUES", 2 * spec.groups * spec.k + 1)  # 2 rows per chunk
    chunked = gram.GramAccumulator(spec)
    chunked.add(x)
    a, b = whole.stats(), chunked.stats()
    assert a.rows == b.rows
    np.testing.assert_allclose(a.blocks[0], b.blocks[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-12)
