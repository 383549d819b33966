"""One test per integer rewrite rule: exact op list, onnx.checker, ORT == reference, close to float."""

import numpy as np
import pytest
from onnx import helper

from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import assert_ort_equals_reference, quantize_tiny


def _check(model, x, expected_ops, plan="8", tol=0.1):
    q = quantize_tiny(model, {"x": x}, plan)
    assert op_list(q) == expected_ops
    assert_ort_equals_reference(q, {"x": x})
    f, g = run_ort(model, {"x": x})[0], run_ort(q, {"x": x})[0]
    assert np.abs(f - g).max() <= tol * np.abs(f).max()
    return q


@pytest.mark.parametrize("group,stride", [(1, 1), (2, 2), (4, 1)])
def test_conv_relu_becomes_qlinearconv(group, stride):
    r = rng(group)
    inits = {"w": r.normal(size=(8, 8 // group, 3, 3)).astype(np.float32), "b": r.normal(size=8).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", group=group, strides=[stride] * 2,
                              pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", [None, 8, 9, 9])], [("y", None)], inits)
    x = r.normal(size=(16, 8, 9, 9)).astype(np.float32)
    _check(model, x, ["QuantizeLinear", "QLinearConv", "DequantizeLinear"])


def test_four_bit_activations_get_a_clip():
    r = rng(5)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], [("x", [None, 3, 6, 6])],
                       [("y", None)], {"w": r.normal(size=(4, 3, 1, 1)).astype(np.float32)})
    x = r.normal(size=(8, 3, 6, 6)).astype(np.float32)
    q = _check(model, x, ["QuantizeLinear", "Clip", "QLinearConv", "DequantizeLinear"], "w4a4", tol=0.4)
    from onnx_hawq.reference import ReferenceRunner

    assert int(ReferenceRunner(q).run(["x_quantized"], {"x": x})[0].max()) <= 15


def test_gemm_becomes_qgemm_and_matmul_relu_becomes_qlinearmatmul():
    r = rng(6)
    inits = {"w": r.normal(size=(5, 16)).astype(np.float32), "b": r.normal(size=5).astype(np.float32),
             "m": r.normal(size=(5, 7)).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
             helper.make_node("MatMul", ["g", "m"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"])]
    model = make_model(nodes, [("x", [None, 16])], [("y", None)], inits)
    x = r.normal(size=(32, 16)).astype(np.float32)
    _check(model, x, ["QuantizeLinear", "QGemm", "QLinearMatMul", "DequantizeLinear"])


def test_add_of_two_float_inputs_stays_float():
    """An Add whose inputs both come from float ops gains nothing from QLinearAdd, only error."""
    r = rng(10)
    inits = {"w": r.normal(size=(3, 3, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=1), helper.make_node("Add", ["s", "x"], ["a"]),
             helper.make_node("Conv", ["a", "w"], ["c"], name="c"), helper.make_node("Add", ["c", "a"], ["y"])]
    model = make_model(nodes, [("x", [None, 3, 4, 4])], [("y", None)], inits)
    x = r.normal(size=(8, 3, 4, 4)).astype(np.float32)
    _check(model, x, ["Softmax", "Add", "QuantizeLinear", "QLinearConv", "QLinearAdd", "DequantizeLinear"])


def test_residual_add_relu_pool_chain():
    r = rng(7)
    inits = {"w1": r.normal(size=(4, 4, 3, 3)).astype(np.float32), "w2": r.normal(size=(4, 4, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["b"], name="c2"),
             helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    model = make_model(nodes, [("x", [None, 4, 8, 8])], [("y", None)], inits)
    x = r.normal(size=(16, 4, 8, 8)).astype(np.float32)
    _check(model, x, ["QuantizeLinear", "QLinearConv", "QLinearConv", "QLinearAdd", "MaxPool",
                      "QLinearGlobalAveragePool", "Flatten", "DequantizeLinear"])


def test_standalone_relu_becomes_max_and_unsupported_op_stays_float():
    r = rng(8)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="c"), helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["p"], ["r"]), helper.make_node("Softmax", ["r"], ["y"], axis=1)]
    model = make_model(nodes, [("x", [None, 3, 4, 4])], [("y", None)], {"w": r.normal(size=(5, 3, 1, 1)).astype(np.float32)})
    x = r.normal(size=(8, 3, 4, 4)).astype(np.float32)
    _check(model, x, ["QuantizeLinear", "QLinearConv", "MaxPool", "Max", "DequantizeLinear", "Softmax"])


def test_infinite_values_do_not_break_calibration():
    """Attention masks carry -inf: the range comes from the finite values."""
    r = rng(9)
    inits = {"w": r.normal(size=(4, 3, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c")]
    model = make_model(nodes, [("x", [None, 3, 4, 4])], [("y", None)], inits)
    x = r.normal(size=(8, 3, 4, 4)).astype(np.float32)
    x[0, 0, 0, 0] = -np.inf
    q = quantize_tiny(model, {"x": x})
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", "DequantizeLinear"]
