"""The int8 dense and conv kernels (VNNI and AVX2) equal numpy's int32 results on shapes that do not
divide the tiles; each ISA runs where the CPU has it and is built (not run) elsewhere."""

import numpy as np
import pytest

from onnx_hawq.compiler import vnni
from onnx_hawq.errors import InputError

pytest.importorskip("tvm", reason="TVM is not installed (the tvm extra)")

from onnx_hawq.compiler import kernels as K  # noqa: E402
from onnx_hawq.compiler.kernels_conv import build_conv, conv_primfunc  # noqa: E402

ISAS = [pytest.param(i, marks=pytest.mark.skipif(not vnni.host_has(i.flag), reason=f"this CPU lacks {i.flag}"),
                     id=i.name) for i in (vnni.VNNI, vnni.AVX2, vnni.AVX2_U8)]


def weights(rng, shape, isa):
    """Random int8 weights; |w| <= 64 for AVX2_U8, whose vpmaddubsw is exact only then."""
    bound = 64 if isa is vnni.AVX2_U8 else 128
    return rng.integers(-bound, bound, shape, dtype=np.int8)


def conv_ref(x, w, stride, pad, dil):
    """int64 NCHW conv by explicit loops over the kernel taps."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad[0],) * 2, (pad[1],) * 2))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dil[0]:i * dil[0] + stride[0] * oh:stride[0], j * dil[1]:j * dil[1] + stride[1] * ow:stride[1]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.int64))
    return out


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", [(37, 45, 23), (1, 17, 5), (13, 64, 64), (6, 100, 130)])
def test_dense_exact(isa, m, n, k):
    rng = np.random.default_rng(m * n + k)
    a, w = rng.integers(0, 256, (m, k), dtype=np.uint8), weights(rng, (n, k), isa)
    out = K.build_dense(m, n, k, num_threads=2, isa=isa)(a, K.pack_dense_weight(w, isa))
    np.testing.assert_array_equal(out, a.astype(np.int64) @ w.astype(np.int64).T)


@pytest.mark.parametrize("isa", ISAS)
def test_dense_extremes_do_not_overflow(isa):
    low = -64 if isa is vnni.AVX2_U8 else -128
    a, w = np.full((7, 260), 255, np.uint8), np.full((18, 260), low, np.int8)
    out = K.build_dense(7, 18, 260, isa=isa)(a, K.pack_dense_weight(w, isa))
    assert (out == 255 * low * 260).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [
    K.ConvShape(2, 5, 19, 11, 13, (3, 3), (2, 2), (1, 1)),
    K.ConvShape(1, 16, 32, 9, 9, (3, 3), (1, 1), (1, 1)),
    K.ConvShape(1, 3, 7, 10, 7, (1, 1), (1, 1), (0, 0)),
    K.ConvShape(1, 6, 17, 12, 15, (3, 2), (2, 1), (2, 0), (2, 1)),
])
def test_conv_exact(isa, shape):
    rng = np.random.default_rng(shape.out_channels)
    x = rng.integers(0, 256, (shape.batch, shape.in_channels, shape.height, shape.width), dtype=np.uint8)
    w = weights(rng, (shape.out_channels, shape.in_channels, *shape.kernel), isa)
    got = build_conv(shape, num_threads=2, isa=isa)(x, K.pack_conv_weight(w, isa))
    np.testing.assert_array_equal(got, conv_ref(x, w, shape.stride, shape.padding, shape.dilation))


@pytest.mark.parametrize("isa", [vnni.VNNI, vnni.AVX2, vnni.AVX2_U8], ids=lambda i: i.name)
def test_kernels_build_for_every_isa_on_any_host(isa):
    import tvm

    func = conv_primfunc(K.ConvShape(1, 5, 19, 9, 9, (3, 3), (1, 1), (1, 1)), isa)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=vnni.isa_target(isa, 2, isa.mcpu))
    asm = lib.mod.inspect_source("asm")
    assert {"vnni": "vpdpbusd", "avx2": "vpmaddwd", "avx2u8": "vpmaddubsw"}[isa.name] in asm


def test_pair_bound_of_vpmaddubsw():
    assert vnni.pairs_fit_int16(np.array([[64, -64, 127, 1]], np.int8))
    assert not vnni.pairs_fit_int16(np.array([[64, -65, 0, 0]], np.int8))


def test_packing_layouts_and_refusals():
    w = np.arange(17 * 6, dtype=np.int64).reshape(17, 6).astype(np.int8)
    p = K.pack_dense_weight(w)
    assert p.shape == (2, 2, 16, 4) and p[1, 1, 0, 1] == w[16, 5] and p[1, 1, 0, 2] == 0
    q = K.pack_dense_weight(w, vnni.AVX2)
    assert q.shape == (3, 3, 8, 2) and q.dtype == np.int16 and q[2, 2, 0, 1] == w[16, 5] and q[2, 2, 1, 0] == 0
    with pytest.raises(InputError):
        K.pack_dense_weight(w.astype(np.int32))
    with pytest.raises(InputError):
        build_conv(K.ConvShape(1, 4, 4, 2, 2, (3, 3)))
