"""The trained transformer sample (sample_models/digits_transformer.py): quantize, sensitivity,
validate and auto on a real transformer graph (LayerNormalization, Softmax, Erf, MatMul + bias)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnx_hawq.ort import session
from onnx_hawq.cli.main import cli
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_model
from onnx_hawq.validation.comparator import Comparator
from onnx_hawq.validation.config import CompareOptions
from tests.helpers import ORT_EXACT, SAMPLE

MODEL = SAMPLE / "digits_transformer.onnx"
FP32 = json.loads((SAMPLE / "digits_transformer.json").read_text())["fp32_test_accuracy"]
TEST = np.load(SAMPLE / "digits_test.npz")


@pytest.fixture(scope="module")
def w8a8():
    model = onnx.load(str(MODEL))
    return model, quantize_model(model, uniform_plan("8"), load_data(SAMPLE / "digits_calib.npz", model),
                                 rounding=ORT_EXACT)


def accuracy(model: onnx.ModelProto) -> float:
    return float((session(model).run(None, {"input": TEST["input"]})[0].argmax(1) == TEST["label"]).mean())


def test_w8a8_keeps_the_float_accuracy_and_quantizes_every_projection(w8a8):
    model, res = w8a8
    ops = [n.op_type for n in res.model.graph.node]
    assert accuracy(model) == pytest.approx(FP32, abs=1e-9)
    assert accuracy(res.model) >= FP32 - 0.005
    assert len(res.records) == 14 and ops.count("MatMulInteger") == 13  # embed, Q/K/V/out/FFN: float output
    assert "QLinearAdd" not in ops  # residual Adds of two float tensors stay float
    assert {"LayerNormalization", "Softmax", "Erf"} <= set(res.float_ops)
    onnx.checker.check_model(res.model)


def test_reference_backend_agrees_bit_for_bit_before_float_ops_and_by_cosine_after(w8a8):
    model, res = w8a8
    comp = Comparator(model, res.model, CompareOptions(backends=("ort", "reference"))).run(
        {"input": TEST["input"][:64]})
    assert comp.float_rounding and "LayerNormalization" in comp.float_rounding
    assert all(m.mismatches == 0 for m in comp.backends["reference"].values())
    assert comp.backend_cosine["reference"]["logits"] > 0.999


def test_converter_and_sensitivity_run_on_the_transformer():
    torch = pytest.importorskip("torch")
    from onnx_hawq.calibration.hessian import HessianConfig
    from onnx_hawq.calibration.onnx_route import onnx_sensitivities
    from onnx_hawq.calibration.onnx_to_torch import to_torch
    from onnx_hawq.transforms.prepare import prepare_model

    model = prepare_model(onnx.load(str(MODEL)))
    x = TEST["input"][:32]
    with torch.no_grad():
        out = to_torch(model)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, session(model).run(None, {"input": x})[0], rtol=1e-4, atol=1e-4)
    res = onnx_sensitivities(model, {"input": x}, TEST["label"][:32],
                             HessianConfig(max_iter=6, blocks="layer", deflate=4), 32, 1, False)
    assert len(res.layers) == 14 and all(s.trace > 0 for s in res.layers.values())


@pytest.mark.slow
def test_auto_end_to_end(tmp_path):
    pytest.importorskip("torch")
    args = ["auto", str(MODEL), "--calib", str(SAMPLE / "digits_calib.npz"), "--data", str(SAMPLE / "digits_test.npz"),
            "--labels", "label", "--max-size", "30%", "--max-iter", "6", "--threads", "1", "--no-layerwise",
            "-o", str(tmp_path / "auto"), "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "auto" / "auto.json").read_text())
    assert summary["passed"] and summary["accuracy"]["drop"] <= 1.0 and summary["plan"].get("w4a8", 0) > 0


def test_compile_check_passes_by_cosine(w8a8, tmp_path):
    pytest.importorskip("tvm")
    from onnx_hawq.compiler.run import CompileConfig, run_compile

    onnx.save(w8a8[1].model, str(tmp_path / "q.onnx"))
    np.savez(tmp_path / "x.npz", input=TEST["input"][:16])
    res = run_compile(CompileConfig(str(tmp_path / "q.onnx"), str(tmp_path / "q.so"), check=str(tmp_path / "x.npz")))
    assert res.passed and res.approx == ("logits",) and "LayerNormalization" in res.float_ops
