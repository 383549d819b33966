"""Real model-zoo graphs shipped in the onnx wheel quantize at W8A8 and stay close to fp32."""

import pathlib

import numpy as np
import onnx
import pytest

from onnx_hawq.calibration.ranges import CalibConfig
from onnx_hawq.arith.quantizer import Rounding, WeightQuant
from onnx_hawq.calibration.rounding import RoundingConfig
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_model
from tests.helpers import run_ort

LIGHT = pathlib.Path(onnx.__file__).parent / "backend/test/data/light"
MODELS = ["resnet50", "densenet121", "inception_v1", "inception_v2", "squeezenet", "shufflenet", "vgg19"]


@pytest.mark.parametrize("name", MODELS)
def test_zoo_model_quantizes_and_runs_close_to_fp32(name):
    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    inp = next(i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    r = np.random.default_rng(0)
    calib = {inp.name: r.random((4, *shape[1:]), dtype=np.float32)}
    # graph coverage on random inputs: round to nearest (GPTQ on VGG-19 alone would take minutes)
    result = quantize_model(model, uniform_plan("8"), calib, CalibConfig(batch_size=1),
                            rounding=RoundingConfig(WeightQuant(Rounding.NEAREST)))
    onnx.checker.check_model(result.model)
    ops = [n.op_type for n in result.model.graph.node]
    assert ops.count("QLinearConv") >= 0.9 * sum(n.op_type == "Conv" for n in model.graph.node)
    x = r.random((1, *shape[1:]), dtype=np.float32)
    want = run_ort(model, {inp.name: x})[0]
    got = run_ort(result.model, {inp.name: x})[0]
    cos = float(np.dot(want.ravel(), got.ravel()) / (np.linalg.norm(want) * np.linalg.norm(got) + 1e-30))
    assert cos > 0.98, cos
