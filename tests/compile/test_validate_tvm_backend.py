"""`onnx-hawq validate --backends ort,tvm` checks TVM against onnxruntime bit for bit."""

import json

import pytest

from onnx_hawq.cli.main import main
from tests.helpers import ORT_EXACT_RANGE, SAMPLE

pytest.importorskip("tvm")


def test_tvm_backend_equals_ort(tmp_path):
    q, report = tmp_path / "q.onnx", tmp_path / "r.json"
    model, calib = str(SAMPLE / "digits_resnet.onnx"), str(SAMPLE / "digits_calib.npz")
    assert main(["quantize", "-q", model, "--bits", "8", "--calib", calib, "-o", str(q),
                 "--weight-range", ORT_EXACT_RANGE.value]) == 0  # compared with onnxruntime on this CPU
    rc = main(["validate", "-q", model, str(q), "--data", calib, "--backends", "ort,tvm", "--report", str(report)])
    assert rc == 0
    checks = json.loads(report.read_text())["checks"]
    tvm = [c for c in checks if c["name"].startswith("tvm")]
    assert tvm and tvm[0]["passed"]
