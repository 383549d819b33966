"""q_lut: unary ops (and x * gate(x)) on quantized tensors become Cast -> Gather of a code table."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnx_hawq.arith.ort_math import dequantize_linear, quantize_linear
from onnx_hawq.transforms import q_lut
from onnx_hawq.transforms.annotate import Kind
from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import assert_ort_equals_reference, quantize_tiny
from tests.transforms.rule_ctx import context, qnode, tq

OPSET = 20  # Gelu
LUT_CHAIN = ["QuantizeLinear", "QLinearConv", "Cast", "Gather", "QLinearConv", "DequantizeLinear"]
# HardSwish (here, and as exporters decompose it) is integer-valued arithmetic instead (test_q_hardswish)
HARDSWISH_CHAIN = ["QuantizeLinear", "QLinearConv", "DequantizeLinear", "Add", "Clip", "Mul", "QuantizeLinear",
                   "QLinearConv", "DequantizeLinear"]
UNARY = [("Sigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("Tanh", {}), ("Erf", {}),
         ("Gelu", {}), ("Gelu", {"approximate": "tanh"}), ("Elu", {"alpha": 0.7}), ("Selu", {}),
         ("Softplus", {}), ("Mish", {}), ("LeakyRelu", {"alpha": 0.1}), ("Exp", {}),
         ("Softsign", {}), ("Celu", {"alpha": 2.0})]


def _conv_op_conv(op_nodes, r, bounds=None):
    """Conv -> op_nodes (reading c, writing f) -> Conv."""
    inits = {"w1": r.normal(size=(4, 3, 1, 1)).astype(np.float32), "w2": r.normal(size=(2, 4, 1, 1)).astype(np.float32)}
    inits.update(bounds or {})
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="c1"), *op_nodes,
             helper.make_node("Conv", ["f", "w2"], ["y"], name="c2")]
    return make_model(nodes, [("x", [None, 3, 5, 5])], [("y", None)], inits, opset=OPSET)


def _quantized(model, r, plan="8"):
    x = (r.normal(size=(16, 3, 5, 5)) * 0.5).astype(np.float32)
    q = quantize_tiny(model, {"x": x}, plan)
    assert_ort_equals_reference(q, {"x": x})
    return q, x


def _const(model, name) -> np.ndarray:
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


def _ort_table(q, float_nodes, inits=None) -> np.ndarray:
    """The table recomputed independently: every input code dequantized, the float op in onnxruntime, quantized."""
    cs, cz, fs, fz = (_const(q, n) for n in ("c_scale", "c_zero_point", "f_scale", "f_zero_point"))
    real = dequantize_linear(np.arange(len(_const(q, "f_table"))), cs, cz).reshape(1, -1)
    vi = lambda n: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
    consts = [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()]
    m = helper.make_model(helper.make_graph(float_nodes, "f", [vi("c")], [vi("f")], consts),
                          opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return quantize_linear(run_ort(m, {"c": real})[0], fs, fz)[0]


@pytest.mark.parametrize("op,attrs", UNARY, ids=[f"{o}{'-' + str(a) if a else ''}" for o, a in UNARY])
def test_unary_op_becomes_a_table_equal_to_the_float_op(op, attrs):
    r = rng(len(op))
    nodes = [helper.make_node(op, ["c"], ["f"], **attrs)]
    q, x = _quantized(_conv_op_conv(nodes, r), r)
    assert op_list(q) == LUT_CHAIN
    table, want = _const(q, "f_table"), _ort_table(q, nodes)
    assert table.dtype == np.uint8 and table.shape == (256,)
    diff = np.abs(table.astype(int) - want.astype(int))
    assert diff.max() <= 1 and diff.sum() <= 4  # float32 (ORT) vs float64 (table) at rounding ties
    assert len(set(table.tolist())) > 8  # the output params were calibrated on the op's own output


def test_clip_with_constant_bounds_becomes_a_table():
    r = rng(1)
    bounds = {"lo": np.array(-0.2, np.float32), "hi": np.array(0.3, np.float32)}
    nodes = [helper.make_node("Clip", ["c", "lo", "hi"], ["f"])]
    q, _ = _quantized(_conv_op_conv(nodes, r, bounds), r)
    assert op_list(q) == LUT_CHAIN
    assert np.array_equal(_const(q, "f_table"), _ort_table(q, nodes, bounds))


@pytest.mark.parametrize("gate", ["Sigmoid", "HardSigmoid"])
@pytest.mark.parametrize("swap", [False, True])
def test_x_times_gate_of_x_fuses_into_one_table(gate, swap):
    """SiLU (x * Sigmoid(x)) and HardSwish (x * HardSigmoid(x)) as exporters write them."""
    r = rng(3)
    nodes = [helper.make_node(gate, ["c"], ["g"]),
             helper.make_node("Mul", ["g", "c"] if swap else ["c", "g"], ["f"])]
    q, x = _quantized(_conv_op_conv(nodes, r), r)
    assert op_list(q) == LUT_CHAIN
    assert np.abs(_const(q, "f_table").astype(int) - _ort_table(q, nodes).astype(int)).max() <= 1
    f, g = run_ort(_conv_op_conv(nodes, rng(3)), {"x": x})[0], run_ort(q, {"x": x})[0]
    assert np.abs(f - g).max() <= 0.1 * np.abs(f).max()


SCALARS = {"three": np.array(3.0, np.float32), "six": np.array(6.0, np.float32), "zero": np.array(0.0, np.float32),
           "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32),
           "sqrt2": np.array(np.sqrt(2.0), np.float32)}
DECOMPOSED = {
    "hardswish-div-last": [("Add", ["c", "three"], "h1"), ("Clip", ["h1", "zero", "six"], "h2"),
                           ("Mul", ["c", "h2"], "h3"), ("Div", ["h3", "six"], "f")],
    "hardswish-gate-last": [("Add", ["three", "c"], "h1"), ("Clip", ["h1", "zero", "six"], "h2"),
                            ("Div", ["h2", "six"], "h3"), ("Mul", ["h3", "c"], "f")],
    "gelu-erf": [("Div", ["c", "sqrt2"], "e1"), ("Erf", ["e1"], "e2"), ("Add", ["e2", "one"], "e3"),
                 ("Mul", ["c", "e3"], "e4"), ("Mul", ["e4", "half"], "f")],
    "scalar-affine": [("Sub", ["one", "c"], "a1"), ("Mul", ["a1", "half"], "a2"), ("Pow", ["a2", "three"], "f")],
}


@pytest.mark.parametrize("form", DECOMPOSED)
def test_exporter_decompositions_fuse_into_one_table(form):
    r = rng(7)
    nodes = [helper.make_node(op, ins, [out]) for op, ins, out in DECOMPOSED[form]]
    model = _conv_op_conv(nodes, r, SCALARS)
    q, x = _quantized(model, r)
    if form.startswith("hardswish"):
        assert op_list(q) == HARDSWISH_CHAIN
    else:
        assert op_list(q) == LUT_CHAIN
        assert np.abs(_const(q, "f_table").astype(int) - _ort_table(q, nodes, SCALARS).astype(int)).max() <= 1
    f, g = run_ort(model, {"x": x})[0], run_ort(q, {"x": x})[0]
    assert np.abs(f - g).max() <= 0.1 * np.abs(f).max()


def test_gate_read_elsewhere_is_not_fused():
    r = rng(4)
    nodes = [helper.make_node("Sigmoid", ["c"], ["g"]), helper.make_node("Mul", ["c", "g"], ["m"]),
             helper.make_node("Add", ["m", "g"], ["f"])]
    q, _ = _quantized(_conv_op_conv(nodes, r), r)
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", "Cast", "Gather", "Cast", "Cast", "Mul", "Add",
                          "Gather", "QLinearAdd", "QLinearConv", "DequantizeLinear"]


def test_four_bit_input_gets_a_16_entry_table():
    r = rng(5)
    q, _ = _quantized(_conv_op_conv([helper.make_node("Tanh", ["c"], ["f"])], r), r, "w4a4")
    assert _const(q, "f_table").shape == (16,)
    assert int(_const(q, "f_table").max()) <= 15


def test_op_on_a_float_input_stays_float():
    r = rng(6)
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Conv", ["s", "w"], ["y"], name="c")]
    model = make_model(nodes, [("x", [None, 3, 4, 4])], [("y", None)], {"w": r.normal(size=(2, 3, 1, 1)).astype(np.float32)})
    q = quantize_tiny(model, {"x": r.normal(size=(8, 3, 4, 4)).astype(np.float32)})
    assert op_list(q) == ["Sigmoid", "QuantizeLinear", "QLinearConv", "DequantizeLinear"]


def test_refusals():
    clip = qnode("Clip", Kind.LUT, ["x", "lo", "hi"])
    clip.inputs = ["x"]
    params = {"x": tq(), "y": tq()}
    assert q_lut.check(context(params), clip) == "Clip bounds are not constants"
    assert q_lut.check(context(params, consts={"lo": np.float32(0), "hi": np.float32(1)}), clip) is None
    exp = qnode("Exp", Kind.LUT, ["x"])
    assert q_lut.check(context({"x": tq(scale=10.0), "y": tq()}), exp) == "Exp is not finite over the input's range"
    assert q_lut.check(context(params), exp) is None


def test_table_after_a_float_output_matmul_stays_float():
    """Its codes would reach no integer compute node: the MatMul keeps its float output."""
    r = rng(8)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"), helper.make_node("Sigmoid", ["m"], ["y"])]
    model = make_model(nodes, [("x", [None, 8])], [("y", None)], {"w": r.normal(size=(8, 4)).astype(np.float32)})
    q = quantize_tiny(model, {"x": r.normal(size=(16, 8)).astype(np.float32)})
    assert "MatMulInteger" in op_list(q) and "Gather" not in op_list(q) and op_list(q)[-1] == "Sigmoid"


def test_an_op_of_a_custom_domain_named_like_a_table_op_stays_float():
    from onnx_hawq.transforms.annotate import unary_input

    assert unary_input(helper.make_node("Sigmoid", ["x"], ["y"], domain="my.ops"), {}) is None
    assert unary_input(helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft"), {}) == "x"
    assert unary_input(helper.make_node("Sigmoid", ["x"], ["y"]), {}) == "x"
