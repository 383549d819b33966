"""The committed digits sample: ORT equals the integer reference bit for bit; accuracy holds."""

import json

import numpy as np
import onnx
import pytest

from onnx_hawq.arith.quantizer import WeightQuant, WeightRange
from onnx_hawq.calibration.rounding import RoundingConfig
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import LayerBits, Plan, uniform_plan
from onnx_hawq.quantization import quantize_model
from tests.helpers import ORT_EXACT_RANGE, SAMPLE, needs_int32_u8s8, run_ort
from tests.qhelpers import assert_ort_equals_reference

MIXED = Plan(default=LayerBits(8, 8), layers={"layer1.0.conv1": LayerBits(4, 8), "layer2.0.conv1": LayerBits(4, 8),
                                              "layer2.0.conv2": LayerBits(4, 4), "fc": LayerBits(8, 8)})


@pytest.fixture(scope="module")
def digits():
    model = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    test = np.load(SAMPLE / "digits_test.npz")
    return model, load_data(SAMPLE / "digits_calib.npz", model), test["input"], test["label"]


RANGES = [pytest.param(WeightRange.FULL, marks=needs_int32_u8s8, id="full"), pytest.param(WeightRange.AVX2, id="avx2")]


@pytest.mark.parametrize("weight_range", RANGES)
@pytest.mark.parametrize("plan", [uniform_plan("8"), uniform_plan("w4a8"), MIXED], ids=["w8a8", "w4a8", "mixed"])
def test_ort_equals_reference_on_every_tensor(digits, plan, weight_range):
    model, calib, x, _ = digits
    q = quantize_model(model, plan, calib, rounding=RoundingConfig(WeightQuant(range=weight_range))).model
    onnx.checker.check_model(q)
    assert_ort_equals_reference(q, {"input": x[:128]})
    exact = [json.loads(p.value) for n in q.graph.node for p in n.metadata_props if p.key == "hawq.exact"]
    assert exact and all(exact)


def test_w8a8_accuracy_within_half_a_point_of_fp32(digits):
    model, calib, x, y = digits  # at the range onnxruntime is exact at on this CPU
    rounding = RoundingConfig(WeightQuant(range=ORT_EXACT_RANGE))
    q = quantize_model(model, uniform_plan("8"), calib, rounding=rounding).model
    fp32 = (run_ort(model, {"input": x})[0].argmax(1) == y).mean()
    int8 = (run_ort(q, {"input": x})[0].argmax(1) == y).mean()
    assert fp32 - int8 <= 0.005, (fp32, int8)


def test_mixed_plan_has_four_bit_layers_and_runs(digits):
    model, calib, x, y = digits
    q = quantize_model(model, MIXED, calib)
    bits = {r["layer"]: r["w_bits"] for r in q.records if "layer" in r}
    assert bits["layer1.0.conv1"] == 4 and bits["conv1"] == 8
    acc = (run_ort(q.model, {"input": x})[0].argmax(1) == y).mean()
    assert acc > 0.9
