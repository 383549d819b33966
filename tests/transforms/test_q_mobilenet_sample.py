"""The MobileNetV3-style sample (sample_models/digits_mobilenet.py: HardSwish, squeeze-excite with
HardSigmoid gates, a SiLU block): quantized, the whole graph is integer between one QuantizeLinear
and one DequantizeLinear, ORT equals the reference bit for bit, and accuracy holds."""

import collections
import json

import numpy as np
import onnx
import pytest

from onnx_hawq.arith import schema
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_model
from tests.helpers import ORT_EXACT, SAMPLE, op_list, run_ort
from tests.qhelpers import assert_ort_equals_reference

MODEL = SAMPLE / "digits_mobilenet.onnx"
FP32 = json.loads((SAMPLE / "digits_mobilenet.json").read_text())["fp32_test_accuracy"]


def quantize_sample():
    """(float model, W8A8 QuantizeResult) of the sample, calibrated on its calibration images."""
    model = onnx.load(MODEL)
    data = load_data(str(SAMPLE / "digits_calib.npz"), model, "calibration")
    result = quantize_model(model, uniform_plan("8"), data, rounding=ORT_EXACT)
    onnx.checker.check_model(result.model)
    return model, result


def f_ops(model) -> collections.Counter:
    return collections.Counter(op_list(model))


@pytest.fixture(scope="module")
def quantized():
    return quantize_sample()


def test_only_the_graph_boundaries_are_quantized_or_dequantized(quantized):
    model, result = quantized
    ops = collections.Counter(op_list(result.model))
    boundaries = len(model.graph.input) + len(model.graph.output)
    # HardSwish's integer-valued arithmetic (q_hardswish) converts codes with a DequantizeLinear of scale 1
    # and rounds with a QuantizeLinear: inside one integer op, not boundaries of a float island
    inner = sum(1 for n in result.model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and schema.read_meta(n).get("output") is not None)
    assert ops["QuantizeLinear"] + ops["DequantizeLinear"] - inner <= boundaries
    assert inner == 2 * f_ops(model)["HardSwish"]
    assert result.float_ops == [] and result.refused == []
    f = f_ops(model)
    silu, gates = f["Sigmoid"], f["Mul"] - f["Sigmoid"]  # SiLU: Sigmoid and Mul in one table; SE: pair tables
    assert ops["Gather"] == f["HardSigmoid"] + silu + gates


@pytest.mark.slow
def test_ort_equals_reference_and_accuracy_holds(quantized):
    model, result = quantized
    test = np.load(SAMPLE / "digits_test.npz")
    assert_ort_equals_reference(result.model, {"input": test["input"][:32]})
    pred = run_ort(result.model, {"input": test["input"]})[0].argmax(1)
    assert float((pred == test["label"]).mean()) >= FP32 - 0.01
