"""The QDQ form on OpenVINO's CPU plugin (the optional `openvino` extra): the digits CNN at W8A8 and
W4A8 against onnxruntime's QLinear output, per-sample cosine of the logits."""

import numpy as np
import onnx
import pytest

from onnx_hawq.arith.similarity import sample_cosines
from onnx_hawq.calibration.ranges import CalibConfig
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_to_format
from tests.helpers import SAMPLE, run_ort

try:
    import openvino
except ImportError as e:  # an optional extra: pip install -e ".[openvino]"
    pytest.skip(f"openvino is not installed ({e}); pip install -e '.[openvino]'", allow_module_level=True)


def run_openvino(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU")
    return compiled(x)[compiled.output(0)]


@pytest.mark.parametrize("bits", ["w8a8", "w4a8"])
def test_qdq_model_runs_on_openvino_close_to_ort(bits):
    model = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    calib = load_data(SAMPLE / "digits_calib.npz", model)
    x = np.load(SAMPLE / "digits_test.npz")["input"][:128]
    qlinear, _ = quantize_to_format(model, uniform_plan(bits), calib, CalibConfig())
    qdq, _ = quantize_to_format(model, uniform_plan(bits), calib, CalibConfig(), fmt="qdq")
    want, got = run_ort(qlinear, {"input": x})[0], run_openvino(qdq, x)
    assert got.shape == want.shape
    assert sample_cosines(want, got).min() >= 0.999
    assert np.mean(want.argmax(1) == got.argmax(1)) >= 0.99
