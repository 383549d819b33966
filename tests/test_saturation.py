"""DESIGN.md's claim, checked: ORT's AVX2 u8 x s8 kernel sums pairs of products in int16, so it is
exact iff 2 * max|x_q| * max|w_q| <= 32767. We cap |w_q| at 64 for 8-bit activations."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnx_hawq.arith.quantizer import weight_qmax
from onnx_hawq.reference import qlinear_conv
from tests.helpers import run_ort


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
    assert weight_qmax(8, 8) == 64 and 2 * 255 * 64 <= 32767
    assert weight_qmax(4, 8) == 7 and weight_qmax(8, 4) == 127
    assert _mismatches(64) == 0


def _cpu_flags() -> set[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return set()
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def test_full_range_int8_weights_saturate_only_without_vnni():
    flags = _cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo: cannot tell which u8s8 kernel onnxruntime uses")
    bad = _mismatches(127)
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        assert bad == 0  # VNNI/AMX accumulate u8*s8 in int32: no int16 pair sums
    else:
        assert bad > 0  # AVX2 vpmaddubsw saturates the pair sums
