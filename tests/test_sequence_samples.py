"""`auto` runs end to end with the Hessian route on the LSTM/GRU strip recognizer and the
Resize/ConvTranspose/SiLU locator of sample_models/, and the quantized models keep their task metric."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest

from onnx_hawq.cli.main import main
from tests.helpers import SAMPLE, run_ort

sys.path.insert(0, str(SAMPLE))
from digits_locator import box_iou  # noqa: E402

CASES = {"digits_strip": ("Conv", "LSTM", "GRU", "HardSwish"), "digits_locator": ("Resize", "ConvTranspose")}


def auto(tmp_path, name: str, max_size: str = "50%") -> dict:
    out = tmp_path / name
    code = main(["auto", str(SAMPLE / f"{name}.onnx"), "--calib", str(SAMPLE / f"{name}_calib.npz"),
                 "--data", str(SAMPLE / f"{name}_test.npz"), "--method", "hessian", "--max-iter", "6", "--tol", "0.5",
                 "--threads", "1", "--max-size", max_size, "--no-layerwise", "-q", "-o", str(out)])
    assert code == 0
    return json.loads((out / "auto.json").read_text()) | {"folder": out}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_auto_hessian_route_end_to_end(tmp_path, name):
    ops = {n.op_type for n in onnx.load(str(SAMPLE / f"{name}.onnx")).graph.node}
    assert set(CASES[name]) <= ops  # the blocks the sample is for are really in the export
    summary = auto(tmp_path, name)
    sens = json.loads((summary["folder"] / "sensitivity.json").read_text())
    assert sens["method"] == "trace" and all(np.isfinite(v["trace"]) for v in sens["layers"].values())
    assert summary["passed"] and set(summary["plan"]) == {"w4a8", "w8a8"}


def _strip_accuracy(model: str) -> float:
    test = np.load(SAMPLE / "digits_strip_test.npz")
    pred = run_ort(onnx.load(model), {"input": test["input"]})[0].argmax(2)
    return float((pred == test["label"]).all(axis=1).mean())


@pytest.mark.slow
def test_quantized_strip_recognizer_keeps_string_accuracy(tmp_path):
    summary = auto(tmp_path, "digits_strip", "100%")
    fp32 = json.loads((SAMPLE / "digits_strip.json").read_text())["fp32_test_string_accuracy"]
    assert _strip_accuracy(str(SAMPLE / "digits_strip.onnx")) == pytest.approx(fp32)
    quant = next(summary["folder"].glob("*.quant.onnx"))
    assert _strip_accuracy(str(quant)) >= fp32 - 0.02  # W8A8


@pytest.mark.slow
def test_quantized_locator_keeps_box_iou(tmp_path):
    summary = auto(tmp_path, "digits_locator", "100%")
    test = np.load(SAMPLE / "digits_locator_test.npz")
    fp32 = json.loads((SAMPLE / "digits_locator.json").read_text())["fp32_test_mean_iou"]
    quant = next(summary["folder"].glob("*.quant.onnx"))
    iou = box_iou(run_ort(onnx.load(str(quant)), {"input": test["input"]})[0][:, 0], test["label"]).mean()
    assert iou >= fp32 - 0.02
