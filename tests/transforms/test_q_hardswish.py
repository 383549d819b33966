"""q_hardswish: a HardSwish table on an input whose breakpoints fall on codes becomes exact float32
arithmetic on integers (DequantizeLinear(q, 1, zp) -> Add K -> Clip -> Mul -> QuantizeLinear)."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnx_hawq.arith.quantizer import TensorQ
from onnx_hawq.transforms import q_hardswish
from onnx_hawq.transforms.annotate import Kind
from onnx_hawq.transforms.to_integer_form import to_integer_form
from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import assert_ort_equals_reference, quantize_tiny
from tests.transforms.rule_ctx import qnode

N = helper.make_node
ARITH = ["DequantizeLinear", "Add", "Clip", "Mul", "QuantizeLinear"]


def _conv_hardswish(seed: int, decomposed: bool = False):
    """Conv -> HardSwish (the op, or x * Clip(x + 3, 0, 6) / 6 as exporters write it) -> Conv."""
    r = rng(seed)
    inits = {"w1": r.normal(size=(6, 3, 3, 3)).astype(np.float32), "w2": r.normal(size=(2, 6, 1, 1)).astype(np.float32),
             "three": np.array(3, np.float32), "zero": np.array(0, np.float32), "six": np.array(6, np.float32)}
    act = ([N("Add", ["a", "three"], ["a3"]), N("Clip", ["a3", "zero", "six"], ["ac"]), N("Mul", ["a", "ac"], ["am"]),
            N("Div", ["am", "six"], ["h"])] if decomposed else [N("HardSwish", ["a"], ["h"])])
    nodes = [N("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]), *act, N("Conv", ["h", "w2"], ["y"], name="c2")]
    model = make_model(nodes, [("x", [None, 3, 5, 7])], [("y", None)], inits, opset=17)
    return model, {"x": r.normal(size=(8, 3, 5, 7)).astype(np.float32)}


@pytest.mark.parametrize("decomposed", [False, True])
def test_hardswish_becomes_integer_valued_arithmetic(decomposed):
    model, feeds = _conv_hardswish(71, decomposed)
    q = quantize_tiny(model, feeds)
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", *ARITH, "QLinearConv", "DequantizeLinear"]
    assert_ort_equals_reference(q, feeds)
    f, g = run_ort(model, feeds)[0], run_ort(q, feeds)[0]
    assert np.abs(f - g).max() <= 0.05 * np.abs(f).max()
    np.testing.assert_array_equal(run_ort(to_integer_form(q), feeds)[0], g)


def test_arithmetic_equals_hardswish_of_every_code():
    """The five ops compute quantize(hardswish(dequantize(q))) up to float32's rounding of 6 s_y / s^2."""
    model, feeds = _conv_hardswish(72)
    q = quantize_tiny(model, feeds)
    consts = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    nodes = [n for n in q.graph.node if n.output[0].startswith("h_hswish_") or n.output[0] == "h_quantized"]
    sub = make_model(nodes, [], [("h_quantized", None)], consts)
    sub.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    sub.graph.input.append(helper.make_tensor_value_info("a_quantized", onnx.TensorProto.UINT8, [256]))
    got = run_ort(sub, {"a_quantized": np.arange(256, dtype=np.uint8)})[0].astype(int)
    s, z = float(consts["a_scale"]), int(consts["a_zero_point"])
    sy, zy = float(consts["h_scale"]), int(consts["h_zero_point"])
    assert round(3 / s) * s == pytest.approx(3, rel=1e-6)  # the input scale was snapped
    v = (np.arange(256) - z) * s
    want = np.clip(np.round(v * np.clip(v / 6 + 0.5, 0, 1) / sy) + zy, 0, 255)
    assert np.abs(got - want).max() <= 1 and np.mean(got == want) > 0.99


def test_breakpoints_off_the_grid_keep_the_table():
    qn = qnode("HardSwish", Kind.LUT, ["x"])
    assert q_hardswish.breakpoint_code(TensorQ(0.05, 100, 8)) == 60
    assert q_hardswish.breakpoint_code(TensorQ(0.047, 100, 8)) is None
    assert q_hardswish.is_hardswish({}, qn, TensorQ(0.05, 100, 8))
    assert not q_hardswish.is_hardswish({}, qnode("Sigmoid", Kind.LUT, ["x"]), TensorQ(0.05, 100, 8))


def test_tvm_equals_onnxruntime():
    pytest.importorskip("tvm")
    from tests.compile.qgraphs import assert_tvm_equals_ort

    model, feeds = _conv_hardswish(73)
    assert_tvm_equals_ort(quantize_tiny(model, feeds), feeds)
