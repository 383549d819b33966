"""DESIGN.md's claim, checked: ORT's AVX2 u8 x s8 kernel sums pairs of products in int16, so it is
exact iff 2 * max|x_q| * max|w_q| <= 32767; its VNNI/AMX kernels accumulate in int32 and are exact at
the full range. Full range is the default; `WeightRange.AVX2` caps |w_q| at 64 for 8-bit activations."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnx_hawq.arith.quantizer import WeightRange, weight_form, weight_qmax
from onnx_hawq.reference import qlinear_conv
from tests.helpers import CPU_FLAGS, INT32_U8S8, needs_int32_u8s8, run_ort


def _qconv(w: np.ndarray) -> onnx.ModelProto:
    c = w.shape[0]
    inits = {"w": w, "xs": np.array(0.02, np.float32), "xz": np.array(0, np.uint8),
             "ws": np.full(c, 0.01, np.float32), "wz": np.zeros(c, np.int8),
             "ys": np.array(8.0, np.float32), "yz": np.array(0, np.uint8)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    g = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, None)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _mismatches(qmax: int) -> int:
    r = np.random.default_rng(0)
    w = np.where(r.random((32, 64, 3, 3)) < 0.5, -qmax, qmax).astype(np.int8)  # worst case: |w| = qmax
    x = r.integers(200, 256, (2, 64, 8, 8)).astype(np.uint8)
    got = run_ort(_qconv(w), {"x": x})[0]
    want = qlinear_conv(x, 0.02, 0, w, np.full(32, 0.01, np.float32), np.zeros(32, np.int8), 8.0, 0)
    return int(np.sum(got != want))


def test_weight_cap_keeps_u8s8_exact():
    assert weight_qmax(8, 8, WeightRange.AVX2) == 64 and 2 * 255 * 64 <= 32767
    assert weight_qmax(4, 8, WeightRange.AVX2) == 7 and weight_qmax(8, 4, WeightRange.AVX2) == 127
    assert weight_form(8, 8, WeightRange.AVX2) == "u8s8(|w|<=64)" and weight_form(8, 4, WeightRange.AVX2) == "u8s8"
    assert _mismatches(64) == 0


def test_full_range_is_the_full_bit_width():
    assert [weight_qmax(b, 8, WeightRange.FULL) for b in (2, 4, 7, 8)] == [1, 7, 63, 127]
    assert weight_form(8, 8, WeightRange.FULL) == "u8s8(vnni|amx)"  # needs an int32-accumulating kernel
    assert weight_form(7, 8, WeightRange.FULL) == "u8s8" and weight_form(8, 4, WeightRange.FULL) == "u8s8"


@needs_int32_u8s8
def test_full_range_int8_weights_exact_on_vnni_or_amx():
    assert _mismatches(127) == 0  # VNNI/AMX accumulate u8*s8 in int32: no int16 pair sums


def test_full_range_int8_weights_saturate_without_vnni():
    if not CPU_FLAGS or "avx2" not in CPU_FLAGS:
        pytest.skip("not an x86 CPU with AVX2 flags in /proc/cpuinfo: cannot tell which u8s8 kernel runs")
    if INT32_U8S8:
        pytest.skip("this CPU has VNNI/AMX: onnxruntime's int16 pair sums are not used")
    assert _mismatches(127) > 0  # AVX2 vpmaddubsw saturates the pair sums
