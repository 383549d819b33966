"""q_mul: Mul of two quantized tensors (a squeeze-excite gate) becomes a Gather of a code-pair table."""

import numpy as np
from onnx import helper

from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import assert_ort_equals_reference, quantize_tiny

MUL_OPS = ["Cast", "Cast", "Mul", "Add", "Gather"]


def se_block(r):
    """Conv -> squeeze-excite (GAP, 1x1 Conv, HardSigmoid, broadcast Mul) -> Conv."""
    w = lambda co, ci, k: r.normal(size=(co, ci, k, k)).astype(np.float32)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Conv", ["g", "w2"], ["h"], name="c2"), helper.make_node("HardSigmoid", ["h"], ["s"]),
             helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Conv", ["m", "w3"], ["y"], name="c3")]
    return make_model(nodes, [("x", [None, 3, 6, 6])], [("y", None)],
                      {"w1": w(8, 3, 3), "w2": w(8, 8, 1), "w3": w(4, 8, 1)})


def test_squeeze_excite_gate_is_a_pair_table():
    r = rng(21)
    model, x = se_block(r), r.normal(size=(16, 3, 6, 6)).astype(np.float32)
    q = quantize_tiny(model, {"x": x})
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", "QLinearGlobalAveragePool", "QLinearConv", "Cast",
                          "Gather", *MUL_OPS, "QLinearConv", "DequantizeLinear"]
    assert_ort_equals_reference(q, {"x": x})
    table = next(i for i in q.graph.initializer if i.name == "m_table")
    assert table.dims == [256 * 256]
    f, g = run_ort(model, {"x": x})[0], run_ort(q, {"x": x})[0]
    assert np.abs(f - g).max() <= 0.1 * np.abs(f).max()


def test_four_bit_inputs_get_a_16_by_16_table():
    r = rng(22)
    q = quantize_tiny(se_block(r), {"x": r.normal(size=(8, 3, 6, 6)).astype(np.float32)}, "w4a4")
    table = next(i for i in q.graph.initializer if i.name == "m_table")
    assert table.dims == [16 * 16]


def test_mul_of_two_float_inputs_stays_float():
    r = rng(23)
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=1), helper.make_node("Mul", ["s", "x"], ["m"]),
             helper.make_node("Conv", ["m", "w"], ["y"], name="c")]
    model = make_model(nodes, [("x", [None, 3, 4, 4])], [("y", None)], {"w": r.normal(size=(2, 3, 1, 1)).astype(np.float32)})
    q = quantize_tiny(model, {"x": r.normal(size=(8, 3, 4, 4)).astype(np.float32)})
    assert op_list(q) == ["Softmax", "Mul", "QuantizeLinear", "QLinearConv", "DequantizeLinear"]
