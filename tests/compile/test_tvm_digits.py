"""The digits sample through TVM (llvm): bit-identical to onnxruntime for W8A8, W4A8 and a mixed
plan, in the QLinear form and in the integer-only form (at the weight range onnxruntime is exact at on
this CPU), and to the integer reference at the full range on any CPU."""

import numpy as np
import onnx
import pytest

from onnx_hawq.arith.quantizer import FULL_RANGE_FORM, WeightQuant, WeightRange
from onnx_hawq.calibration.rounding import RoundingConfig
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_model
from onnx_hawq.report import build_report
from onnx_hawq.transforms.to_integer_form import to_integer_form
from tests.compile.qgraphs import assert_tvm_equals_ort, relax_text
from tests.helpers import ORT_EXACT, SAMPLE, run_ort
from tests.test_digits_exact import MIXED

pytest.importorskip("tvm")

PLANS = {"w8a8": uniform_plan("8"), "w4a8": uniform_plan("w4a8"), "mixed": MIXED}


@pytest.fixture(scope="module")
def digits():
    model = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    x = np.load(SAMPLE / "digits_test.npz")["input"][:96]
    return model, load_data(SAMPLE / "digits_calib.npz", model), {"input": x}


@pytest.mark.parametrize("plan", PLANS)
def test_tvm_equals_onnxruntime(digits, plan):
    model, calib, feeds = digits
    q = quantize_model(model, PLANS[plan], calib, rounding=ORT_EXACT).model
    assert relax_text(q).count("T.nearbyint") == 1  # the input QuantizeLinear: every layer requantizes in integers
    assert_tvm_equals_ort(q, feeds)


def test_integer_form_in_tvm_equals_qlinear_form_in_onnxruntime(digits):
    model, calib, feeds = digits
    q = quantize_model(model, MIXED, calib, rounding=ORT_EXACT).model
    got = assert_tvm_equals_ort(to_integer_form(q), feeds)
    np.testing.assert_array_equal(got[0], run_ort(q, feeds)[0])


@pytest.mark.parametrize("form", ["qlinear", "integer"])
def test_full_range_w8a8_in_tvm_equals_the_reference_on_any_cpu(digits, form):
    """Full-range 8-bit weights (the default on VNNI/AMX hosts): TVM's int32 arithmetic equals the integer reference bit for
    bit whatever onnxruntime's kernel does on this CPU."""
    from onnx_hawq.compiler.build import run_tvm
    from onnx_hawq.reference import ReferenceRunner

    model, calib, feeds = digits
    full = RoundingConfig(WeightQuant(range=WeightRange.FULL))
    q = quantize_model(model, PLANS["w8a8"], calib, rounding=full).model
    assert {r["form"] for r in build_report(q)["layers"]} == {FULL_RANGE_FORM}
    q = to_integer_form(q) if form == "integer" else q
    names = [o.name for o in q.graph.output]
    for name, got, want in zip(names, run_tvm(q, feeds), ReferenceRunner(q).run(names, feeds)):
        np.testing.assert_array_equal(got, want, err_msg=name)
