"""AMX-INT8 tile kernels: exact against numpy on odd shapes, routed by the dispatch where the reduction is
deep enough, cross-compiled anywhere, and equal to onnxruntime bit for bit on an AMX host."""

import numpy as np
import pytest

from tests.compile.test_dispatch import conv_then_matmul, kernels
from tests.helpers import rng, run_ort

tvm = pytest.importorskip("tvm")

from onnx_hawq.compiler import amx, vnni  # noqa: E402
from onnx_hawq.compiler.build import build, parse_target, run_vm  # noqa: E402
from onnx_hawq.compiler.dispatch import int8_dispatch  # noqa: E402
from onnx_hawq.compiler.frontend import import_onnx  # noqa: E402
from onnx_hawq.compiler.kernels import ConvShape  # noqa: E402

ON_AMX = vnni.host_isa() is vnni.AMX
needs_amx = pytest.mark.skipif(not ON_AMX, reason="this CPU has no AMX-INT8 (amx_int8 in /proc/cpuinfo)")


def numpy_conv(x: np.ndarray, w: np.ndarray, s: ConvShape) -> np.ndarray:
    """Direct int64 NCHW conv2d with zero padding (the reference)."""
    (ph, pw), (sh, sw), (dh, dw), (oh, ow) = s.padding, s.stride, s.dilation, s.out_hw()
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((s.batch, s.out_channels, oh, ow), np.int64)
    for r in range(s.kernel[0]):
        for q in range(s.kernel[1]):
            patch = xp[:, :, r * dh:r * dh + sh * (oh - 1) + 1:sh, q * dw:q * dw + sw * (ow - 1) + 1:sw]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, r, q].astype(np.int64))
    return out


def run_kernel(func, *arrays, out_shape):
    f = tvm.compile(tvm.IRModule({"main": func}), target=vnni.isa_target(vnni.AMX, 2))["main"]
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in arrays]
    out = tvm.runtime.tensor(np.zeros(out_shape, np.int32), tvm.cpu())
    f(*args, out)
    return out.numpy()


@needs_amx
@pytest.mark.parametrize("s", [ConvShape(2, 37, 19, 11, 13, (3, 3), (2, 1), (1, 0), (1, 2)),
                               ConvShape(1, 64, 40, 9, 9, (1, 1), (2, 2), (1, 1)),
                               ConvShape(1, 130, 33, 5, 18, (3, 3), (1, 1), (1, 1)),
                               ConvShape(1, 3, 16, 23, 21, (7, 7), (2, 2), (3, 3)),  # (kw, channel) runs
                               ConvShape(2, 17, 19, 9, 10, (3, 5), (2, 1), (1, 2), (2, 1))])
def test_amx_conv_equals_numpy_on_odd_shapes(s):
    r = rng(s.in_channels)
    x = r.integers(0, 256, (s.batch, s.in_channels, s.height, s.width)).astype(np.uint8)
    w = r.integers(-128, 128, (s.out_channels, s.in_channels, *s.kernel)).astype(np.int8)
    got = run_kernel(amx.amx_primfunc(s), x, amx.pack_amx_conv_weight(w, s), amx.tile_config(),
                     out_shape=(s.batch, s.out_channels, *s.out_hw()))
    np.testing.assert_array_equal(got, numpy_conv(x, w, s))


@needs_amx
@pytest.mark.parametrize("m,n,k", [(1, 1000, 512), (100, 70, 300), (33, 17, 40)])
def test_amx_dense_equals_numpy_on_odd_shapes(m, n, k):
    r = rng(m + n)
    a, w = r.integers(0, 256, (m, k)).astype(np.uint8), r.integers(-128, 128, (n, k)).astype(np.int8)
    got = run_kernel(amx.amx_primfunc(amx.dense_shape(m, n, k), dense=True), a, amx.pack_amx_dense_weight(w),
                     amx.tile_config(), out_shape=(m, n))
    np.testing.assert_array_equal(got, a.astype(np.int64) @ w.T.astype(np.int64))


def test_amx_takes_deep_or_packable_reductions_and_vnni_the_rest():
    assert kernels(int8_dispatch(vnni.AMX)(import_onnx(conv_then_matmul()))) == ["hawq_amx_conv", "hawq_amx_dense"]
    assert amx.packs(ConvShape(1, 20, 24, 7, 6)) and not amx.packs(ConvShape(1, 40, 24, 7, 6))
    shallow_1x1, dilated = ConvShape(1, 20, 24, 7, 6, (1, 1)), ConvShape(1, 20, 24, 7, 6, dilation=(1, 2))
    assert not amx.conv_fits(shallow_1x1) and not amx.conv_fits(dilated)  # these take the VNNI kernel


def test_amx_build_on_any_x86_host():
    ex = build(import_onnx(conv_then_matmul(channels=40)), parse_target("llvm:amx"))
    asm = ex.mod.imports[0].inspect_source("asm")
    assert "tdpbusd" in asm and "tileloadd" in asm and "ldtilecfg" in asm


@needs_amx
@pytest.mark.parametrize("channels,x_zp", [(40, 7), (64, 0), (20, 3)])
def test_amx_build_equals_onnxruntime(channels, x_zp):
    model = conv_then_matmul(x_zp=x_zp, channels=channels)
    x = rng(5).integers(0, 256, (3, channels, 7, 6)).astype(np.uint8)
    vm = tvm.relax.VirtualMachine(build(import_onnx(model), parse_target("llvm:amx")), tvm.cpu())
    got, want = run_vm(vm, model, {"x": x}, tvm.cpu())[0], run_ort(model, {"x": x})[0]
    assert got.dtype == want.dtype and int(np.sum(got != want)) == 0
