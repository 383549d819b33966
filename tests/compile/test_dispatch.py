"""The int8 dispatch: which calls become tensorized kernels, and bit-exact results vs onnxruntime on
the host's ISA; the VNNI route is built (cross-compiled) where the host lacks it."""

import numpy as np
import pytest
from onnx import helper

from tests.compile.qgraphs import EXACT, FLOAT, U8, layer_inits, typed_model
from tests.helpers import rng, run_ort

tvm = pytest.importorskip("tvm")

from onnx_hawq.compiler import vnni  # noqa: E402
from onnx_hawq.compiler.build import build, parse_target, run_vm  # noqa: E402
from onnx_hawq.compiler.dispatch import int8_dispatch  # noqa: E402
from onnx_hawq.compiler.frontend import import_onnx  # noqa: E402

HOST = vnni.host_isa()


def conv_then_matmul(group: int = 1, x_zp: int = 7, channels: int = 20):
    """QLinearConv (`channels` -> 24 channels, 3x3, stride 2, odd sizes) -> Flatten -> QLinearMatMul."""
    r = rng(group + x_zp)
    conv = layer_inits(r, EXACT, r.integers(-8, 9, (24, channels // group, 3, 3)).astype(np.int8), x_zp, 5)
    fc = layer_inits(r, FLOAT, r.integers(-8, 9, (13, 24 * 4 * 3)).astype(np.int8), 5, 128)
    inits = {**{f"c{k}": v for k, v in conv.items()}, **{f"f{k}": v for k, v in fc.items() if k != "b"}}
    inits["fw"] = np.ascontiguousarray(inits["fw"].T)
    nodes = [helper.make_node("QLinearConv", ["x", "cxs", "cxz", "cw", "cws", "cwz", "cys", "cyz", "cb"], ["c"],
                              pads=[1, 1, 1, 1], strides=[2, 2], group=group),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("QLinearMatMul", ["f", "fxs", "fxz", "fw", "fws", "fwz", "fys", "fyz"], ["y"])]
    return typed_model(nodes, [("x", U8, [3, channels, 7, 6])], [("y", U8, None)], inits)


def kernels(mod) -> list[str]:
    return sorted(gv.name_hint for gv, f in mod.functions.items()
                  if isinstance(f, tvm.tirx.PrimFunc) and gv.name_hint.startswith("hawq_"))


def test_int8_calls_become_kernels_and_others_stay():
    mod = int8_dispatch(vnni.AVX2)(import_onnx(conv_then_matmul()))
    assert kernels(mod) == ["hawq_avx2u8_conv", "hawq_avx2u8_dense"]  # |w| <= 8: vpmaddubsw cannot saturate
    text = mod["main"].script()
    assert "R.nn.conv2d" not in text and "R.matmul" not in text and text.count("R.call_tir(hawq_") == 2
    grouped = int8_dispatch(vnni.AVX2)(import_onnx(conv_then_matmul(group=2)))
    assert kernels(grouped) == ["hawq_avx2u8_dense"] and "R.nn.conv2d" in grouped["main"].script()


def test_full_range_weights_take_the_int16_kernel_and_stay_exact():
    model = conv_then_matmul()
    w = next(i for i in model.graph.initializer if i.name == "cw")
    full = np.random.default_rng(3).integers(-128, 128, tuple(w.dims)).astype(np.int8)
    w.CopyFrom(__import__("onnx").numpy_helper.from_array(full, "cw"))
    assert kernels(int8_dispatch(vnni.AVX2)(import_onnx(model))) == ["hawq_avx2_conv", "hawq_avx2u8_dense"]
    if HOST is not None:  # onnxruntime's AVX2 kernel saturates on such weights: TVM's plain lowering is the anchor
        x = rng(6).integers(0, 256, (3, 20, 7, 6)).astype(np.uint8)
        got, want = (run_vm(tvm.relax.VirtualMachine(build(import_onnx(model), parse_target(spec)), tvm.cpu()), model,
                            {"x": x}, tvm.cpu())[0] for spec in ("llvm", "llvm:plain"))
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(HOST is None, reason="this CPU has neither AVX512-VNNI nor AVX2")
@pytest.mark.parametrize("group,x_zp", [(1, 7), (1, 0), (2, 3)])
def test_host_isa_build_equals_onnxruntime(group, x_zp):
    model = conv_then_matmul(group, x_zp)
    target = parse_target("llvm")
    x = rng(5).integers(0, 256, (3, 20, 7, 6)).astype(np.uint8)
    vm = tvm.relax.VirtualMachine(build(import_onnx(model), target), tvm.cpu())
    got, want = run_vm(vm, model, {"x": x}, tvm.cpu())[0], run_ort(model, {"x": x})[0]
    assert got.dtype == want.dtype and int(np.sum(got != want)) == 0


def test_vnni_build_on_any_x86_host():
    ex = build(import_onnx(conv_then_matmul()), parse_target("llvm:vnni"))
    asm = ex.mod.imports[0].inspect_source("asm")
    assert "vpdpbusd" in asm and "vpmaddwd" not in asm
