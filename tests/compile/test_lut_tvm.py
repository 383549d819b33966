"""Lookup tables (q_lut) in the integer-only form and in TVM: bit-identical to onnxruntime."""

import numpy as np
import pytest
from onnx import helper

from tests.compile.qgraphs import assert_tvm_equals_ort
from tests.helpers import SAMPLE, make_model, op_list, rng
from tests.qhelpers import assert_ort_equals_reference, quantize_tiny
from tests.transforms.test_to_integer_form import INTEGER_OPS, integer_equals_qlinear

pytest.importorskip("tvm")


def _silu_tanh_model(r):
    """Conv -> SiLU -> Conv -> Tanh -> HardSwish (the last two: one table)."""
    inits = {"w1": r.normal(size=(4, 3, 3, 3)).astype(np.float32), "w2": r.normal(size=(4, 4, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["d"], name="c2"), helper.make_node("Tanh", ["d"], ["t"]),
             helper.make_node("HardSwish", ["t"], ["y"])]
    return make_model(nodes, [("x", [2, 3, 6, 6])], [("y", None)], inits)


@pytest.mark.slow
def test_tables_compile_in_tvm_and_stay_in_the_integer_form():
    r = rng(11)
    x = r.normal(size=(2, 3, 6, 6)).astype(np.float32)
    q = quantize_tiny(_silu_tanh_model(r), {"x": x})
    lut = ["Cast", "Gather"]
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", *lut, "QLinearConv", *lut, "DequantizeLinear"]
    assert_ort_equals_reference(q, {"x": x})
    assert_tvm_equals_ort(q, {"x": x})
    out = integer_equals_qlinear(q, {"x": x})
    assert set(op_list(out)[1:-1]) <= INTEGER_OPS and op_list(out).count("Gather") >= 2
    assert_tvm_equals_ort(out, {"x": x})


@pytest.mark.slow
def test_squeeze_excite_pair_table_compiles_in_tvm():
    from tests.transforms.test_q_mul import se_block

    r = rng(12)
    x = r.normal(size=(2, 3, 6, 6)).astype(np.float32)
    model = se_block(r)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    q = quantize_tiny(model, {"x": x})
    assert "QLinearGlobalAveragePool" in op_list(q) and op_list(q).count("Gather") == 2
    assert_tvm_equals_ort(q, {"x": x})
    assert_tvm_equals_ort(integer_equals_qlinear(q, {"x": x}), {"x": x})


@pytest.mark.slow
def test_mobilenet_sample_compiles_in_tvm_bit_for_bit():
    from tests.transforms.test_q_mobilenet_sample import quantize_sample

    q = quantize_sample()[1].model
    feeds = {"input": np.load(SAMPLE / "digits_test.npz")["input"][:16]}
    assert_tvm_equals_ort(q, feeds)
    integer_equals_qlinear(q, feeds)
