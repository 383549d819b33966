"""Rule q_concat: a Concat of quantized tensors runs on uint8 codes under one shared quantizer."""

import numpy as np
import pytest
from onnx import helper

from onnx_hawq.transforms import q_concat
from onnx_hawq.transforms.to_integer_form import to_integer_form
from onnx_hawq.validation import layerwise as lw
from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import assert_ort_equals_reference, quantize_tiny

N = helper.make_node


def _inception(seed: int, relu_b: bool = True):
    """Two conv branches of x (the second optionally without Relu) -> Concat -> 1x1 conv."""
    r = rng(seed)
    inits = {"w1": r.normal(size=(4, 3, 3, 3)).astype(np.float32), "w2": r.normal(size=(5, 3, 1, 1)).astype(np.float32),
             "w3": r.normal(size=(2, 9, 1, 1)).astype(np.float32)}
    nodes = [N("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]), N("Relu", ["a"], ["ar"]),
             N("Conv", ["x", "w2"], ["b"], name="c2"), *([N("Relu", ["b"], ["br"])] if relu_b else []),
             N("Concat", ["ar", "br" if relu_b else "b"], ["c"], axis=1), N("Conv", ["c", "w3"], ["y"], name="c3")]
    model = make_model(nodes, [("x", [None, 3, 6, 6])], [("y", None)], inits)
    return model, {"x": r.normal(size=(8, 3, 6, 6)).astype(np.float32)}


def _close(model, q, feeds, tol=0.05):
    f, g = run_ort(model, feeds)[0], run_ort(q, feeds)[0]
    assert np.abs(f - g).max() <= tol * np.abs(f).max()


def test_concat_of_relu_branches_copies_codes():
    model, feeds = _inception(31)
    q = quantize_tiny(model, feeds)
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", "QLinearConv", "Concat", "QLinearConv", "DequantizeLinear"]
    assert_ort_equals_reference(q, feeds)
    _close(model, q, feeds)
    (concat,) = [t for t in lw.quant_tensors(q) if t.op == "Concat"]
    assert concat.float_name == "c" and len(concat.inputs) == 2


def test_fused_relu_is_applied_when_the_shared_quantizer_has_negative_values():
    """conv2's output is signed, so the shared zero point is not 0 and conv1's Relu needs a Max."""
    model, feeds = _inception(32, relu_b=False)
    q = quantize_tiny(model, feeds)
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", "Max", "QLinearConv", "Concat", "QLinearConv",
                          "DequantizeLinear"]
    assert_ort_equals_reference(q, feeds)
    _close(model, q, feeds)


def test_integer_form_has_no_float_island():
    model, feeds = _inception(33)
    integer = to_integer_form(quantize_tiny(model, feeds))
    ops = op_list(integer)
    assert ops[0] == "QuantizeLinear" and ops[-1] == "DequantizeLinear" and "Concat" in ops
    assert not {"QLinearConv", "QuantizeLinear", "DequantizeLinear"} & set(ops[1:-1])
    np.testing.assert_array_equal(run_ort(integer, feeds)[0], run_ort(quantize_tiny(model, feeds), feeds)[0])


def test_concat_of_a_float_input_feeding_only_float_ops_stays_float():
    """DenseNet: Concat(pooled float features, conv output) -> BatchNormalization."""
    r = rng(34)
    inits = {"w": r.normal(size=(4, 3, 1, 1)).astype(np.float32)}
    nodes = [N("Conv", ["x", "w"], ["a"], name="c"), N("Softmax", ["x"], ["s"], axis=1),
             N("Concat", ["s", "a"], ["c"], axis=1), N("Sigmoid", ["c"], ["y"])]
    model = make_model(nodes, [("x", [None, 3, 4, 4])], [("y", None)], inits)
    x = r.normal(size=(8, 3, 4, 4)).astype(np.float32)
    q = quantize_tiny(model, {"x": x})
    assert op_list(q) == ["Softmax", "QuantizeLinear", "QLinearConv", "DequantizeLinear", "Concat", "Sigmoid"]


def test_tvm_equals_onnxruntime():
    pytest.importorskip("tvm")
    from tests.compile.qgraphs import assert_tvm_equals_ort

    model, feeds = _inception(35, relu_b=False)
    assert_tvm_equals_ort(quantize_tiny(model, feeds), feeds)


def test_concats_that_share_a_tensor_share_one_quantizer_through_pass_through_ops():
    r = rng(36)
    w = lambda co, ci: r.normal(size=(co, ci, 1, 1)).astype(np.float32)  # noqa: E731
    inits = {"w1": w(4, 3), "w2": w(4, 3), "w3": w(2, 8), "w4": w(4, 3), "w5": w(2, 8)}
    nodes = [N("Conv", ["x", "w1"], ["a"], name="c1"), N("Relu", ["a"], ["ar"]),
             N("MaxPool", ["ar"], ["p"], kernel_shape=[1, 1]),
             N("Conv", ["x", "w2"], ["b"], name="c2"), N("Relu", ["b"], ["br"]),
             N("Concat", ["p", "br"], ["k1"], axis=1), N("Conv", ["k1", "w3"], ["y1"], name="c3"),
             N("Conv", ["x", "w4"], ["d"], name="c4"), N("Relu", ["d"], ["dr"]),
             N("Concat", ["br", "dr"], ["k2"], axis=1), N("Conv", ["k2", "w5"], ["y2"], name="c5"),
             N("Add", ["y1", "y2"], ["y"])]
    model = make_model(nodes, [("x", [None, 3, 5, 5])], [("y", None)], inits)
    feeds = {"x": r.normal(size=(8, 3, 5, 5)).astype(np.float32)}
    q = quantize_tiny(model, feeds)
    inits = {i.name: i for i in q.graph.initializer}
    scales = {t: onnx_value(inits[f"{t}_scale"]) for t in ("ar", "br", "dr", "k1", "k2")}
    assert len(set(scales.values())) == 1, scales
    assert op_list(q).count("Concat") == 2 and "MaxPool" in op_list(q)
    assert_ort_equals_reference(q, feeds)
    _close(model, q, feeds)


def onnx_value(tensor) -> float:
    from onnx import numpy_helper

    return float(numpy_helper.to_array(tensor))


def test_a_dropped_concat_leaves_its_float_inputs_other_readers_float():
    r = rng(37)
    nodes = [N("Conv", ["x", "w"], ["a"], name="c"), N("Softmax", ["x"], ["s"], axis=1),
             N("Concat", ["s", "a"], ["k"], axis=1), N("Sigmoid", ["k"], ["y"]),
             N("Transpose", ["s"], ["t"], perm=[0, 1, 3, 2]), N("Sigmoid", ["t"], ["z"])]
    model = make_model(nodes, [("x", [None, 3, 4, 4])], [("y", None), ("z", None)],
                       {"w": r.normal(size=(4, 3, 1, 1)).astype(np.float32)})
    feeds = {"x": r.normal(size=(8, 3, 4, 4)).astype(np.float32)}
    q = quantize_tiny(model, feeds)
    assert op_list(q).count("QuantizeLinear") == 1  # the Conv's input only
    np.testing.assert_array_equal(run_ort(model, feeds)[1], run_ort(q, feeds)[1])


def test_concat_with_an_input_quantizer_unlike_the_output_is_refused():
    from onnx_hawq.transforms.annotate import Kind
    from tests.transforms.rule_ctx import context, qnode, tq

    qn = qnode("Concat", Kind.CONCAT, ["a", "b"])
    ctx = context({"a": tq(), "b": tq(scale=0.2), "y": tq()})
    assert q_concat.check(ctx, qn) == "input quantizers differ from the output's (b: an aligned Add or pool)"
