"""q_gap on a symbolic spatial size (detectors and OCR models take any image size): the pool stays
integer, onnxruntime and the reference average over the size they see, the integer form keeps it."""

import numpy as np
from onnx import helper

from onnx_hawq.transforms.to_integer_form import to_integer_form
from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import assert_ort_equals_reference, quantize_tiny

N = helper.make_node


def _squeeze_excite(seed: int):
    """Conv -> Relu -> GlobalAveragePool -> Conv -> HardSigmoid -> Mul(features, gate) on [N, 3, H, W]."""
    r = rng(seed)
    inits = {"w1": r.normal(size=(4, 3, 3, 3)).astype(np.float32), "w2": r.normal(size=(4, 4, 1, 1)).astype(np.float32)}
    nodes = [N("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]), N("Relu", ["a"], ["ar"]),
             N("GlobalAveragePool", ["ar"], ["p"]), N("Conv", ["p", "w2"], ["g"], name="c2"),
             N("HardSigmoid", ["g"], ["gs"]), N("Mul", ["ar", "gs"], ["y"])]
    model = make_model(nodes, [("x", [None, 3, "h", "w"])], [("y", None)], inits)
    return model, {"x": r.normal(size=(8, 3, 6, 10)).astype(np.float32)}


def test_pool_over_a_symbolic_size_is_integer_and_exact_at_any_size():
    model, feeds = _squeeze_excite(51)
    q = quantize_tiny(model, feeds)
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", "QLinearGlobalAveragePool", "QLinearConv", "Cast",
                          "Gather", "Cast", "Cast", "Mul", "Add", "Gather", "DequantizeLinear"]
    for shape in ((2, 3, 6, 10), (1, 3, 7, 5), (1, 3, 32, 17)):
        assert_ort_equals_reference(q, {"x": rng(52).normal(size=shape).astype(np.float32)})


def test_integer_form_keeps_the_pool_of_a_symbolic_size():
    model, feeds = _squeeze_excite(53)
    q = quantize_tiny(model, feeds)
    integer = to_integer_form(q)
    assert "QLinearGlobalAveragePool" in op_list(integer)
    np.testing.assert_array_equal(run_ort(integer, feeds)[0], run_ort(q, feeds)[0])
