"""to_qdq_form end to end: the digits CNN at W8A8, W4A8 and a mixed plan through `quantize_to_format(fmt="qdq")`:
plain-ONNX ops only, the opset the weights need, the hawq records kept, onnxruntime equal to the
QLinear form bit for bit (its QDQ fusion rebuilds every integer kernel), on-disk bytes counted."""

import numpy as np
import onnx
import pytest

from onnx_hawq.arith import schema
from onnx_hawq.calibration.ranges import CalibConfig
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_to_format
from onnx_hawq.transforms.to_qdq_form import to_qdq_form
from tests.helpers import SAMPLE, run_ort
from tests.test_digits_exact import MIXED
from tests.transforms.qdq_check import assert_bit_equal, ort_optimized_ops

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm", "Add", "GlobalAveragePool", "Flatten", "Cast", "Clip"}


@pytest.fixture(scope="module")
def digits():
    model = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    return model, load_data(SAMPLE / "digits_calib.npz", model), np.load(SAMPLE / "digits_test.npz")["input"][:256]


@pytest.mark.parametrize("plan,opset", [(uniform_plan("8"), 17), (uniform_plan("w4a8"), 21), (MIXED, 21)],
                         ids=["w8a8", "w4a8", "mixed"])
def test_digits_qdq_equals_qlinear_bit_for_bit(digits, tmp_path, plan, opset):
    model, calib, x = digits
    qlinear, _ = quantize_to_format(model, plan, calib, CalibConfig())
    qdq, report = quantize_to_format(model, plan, calib, CalibConfig(), fmt="qdq")
    assert {n.op_type for n in qdq.graph.node} <= QDQ_OPS and all(n.domain == "" for n in qdq.graph.node)
    assert [(o.domain, o.version) for o in qdq.opset_import] == [("", opset)]
    assert {p.key: p.value for p in qdq.metadata_props}["hawq.format"] == "qdq"
    layers = [n for n in qdq.graph.node if n.op_type in ("Conv", "Gemm")]
    assert all(len(schema.read_meta(n)["dyadic"]) > 0 and "w_bits" in schema.read_meta(n) for n in layers)
    assert_bit_equal(run_ort(qlinear, {"input": x}), run_ort(qdq, {"input": x}))
    assert not {"Conv", "Gemm", "Add", "GlobalAveragePool"} & set(ort_optimized_ops(qdq, tmp_path))
    channels = sum(int(np.prod(i.dims)) for i in qdq.graph.initializer if i.name.endswith("_bias_quantized"))
    t = report["totals"]
    assert t["disk_bytes"] == t["size_bytes"] + 4 * channels  # plus each bias's float32 scale per channel


def test_digits_int4_dequantized_directly_runs_float_layers(digits, tmp_path):
    """INT4 weights read by DequantizeLinear itself: onnxruntime fuses only the Adds and the pool; the
    float Conv/Gemm round differently, a logit off by at most 1 LSB."""
    model, calib, x = digits
    qlinear, _ = quantize_to_format(model, uniform_plan("w4a8"), calib, CalibConfig())
    direct = to_qdq_form(qlinear, int4="direct")
    onnx.checker.check_model(direct, full_check=True)
    assert "Cast" not in {n.op_type for n in direct.graph.node}
    ops = ort_optimized_ops(direct, tmp_path)
    assert {"Conv", "Gemm", "QLinearAdd", "QLinearGlobalAveragePool"} <= set(ops) and "QLinearConv" not in ops
    want, got = run_ort(qlinear, {"input": x})[0], run_ort(direct, {"input": x})[0]
    lsb = {i.name: onnx.numpy_helper.to_array(i) for i in qlinear.graph.initializer}["logits_scale"]
    diff = np.abs(want - got) / lsb
    assert diff.max() <= 1.001 and np.mean(diff > 0.5) < 0.05  # measured: 86 of 2560 logits, 1 LSB
