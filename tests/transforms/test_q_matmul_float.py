"""Rule q_matmul_float: a MatMul layer whose output no integer node reads keeps a float output."""

import numpy as np
import pytest
from onnx import helper

from onnx_hawq.reference import ReferenceRunner
from onnx_hawq.report import node_meta
from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import quantize_tiny

FLOAT_OUT = ["MatMulInteger", "Cast", "Mul"]


def _projection(seed: int):
    """x (batch, 6, 16) @ w (16, 8) + bias: a transformer projection."""
    r = rng(seed)
    inits = {"w": r.normal(size=(16, 8)).astype(np.float32), "b": r.normal(size=8).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="proj"), helper.make_node("Add", ["m", "b"], ["y"])]
    model = make_model(nodes, [("x", [None, 6, 16])], [("y", None)], inits)
    return model, {"x": r.normal(size=(4, 6, 16)).astype(np.float32)}


def test_projection_becomes_matmulinteger_with_float_output():
    model, feeds = _projection(11)
    q = quantize_tiny(model, feeds)
    assert op_list(q) == ["QuantizeLinear", *FLOAT_OUT, "Add"]
    meta = node_meta(next(n for n in q.graph.node if n.op_type == "MatMulInteger"))
    assert meta["float_output"] is True and meta["layer"] == "w" and meta["a_bits_out"] is None
    f, g = run_ort(model, feeds)[0], run_ort(q, feeds)[0]
    assert np.abs(f - g).max() <= 0.02 * np.abs(f).max()


def test_float_output_equals_the_reference_bit_for_bit():
    model, feeds = _projection(12)
    q = quantize_tiny(model, feeds)
    names = ["m", "y"]
    exposed = q.__class__()
    exposed.CopyFrom(q)
    exposed.graph.output.extend([helper.make_tensor_value_info("m", 1, None)])
    got = run_ort(exposed, feeds, names)
    want = ReferenceRunner(q).run(names, feeds)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_only_the_last_of_a_matmul_chain_has_a_float_output():
    r = rng(13)
    inits = {"a": r.normal(size=(16, 8)).astype(np.float32), "b": r.normal(size=(8, 4)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "a"], ["h"], name="m1"), helper.make_node("MatMul", ["h", "b"], ["y"],
                                                                                         name="m2")]
    model = make_model(nodes, [("x", [None, 16])], [("y", None)], inits)
    feeds = {"x": r.normal(size=(32, 16)).astype(np.float32)}
    q = quantize_tiny(model, feeds)
    assert op_list(q) == ["QuantizeLinear", "QLinearMatMul", *FLOAT_OUT]
    f, g = run_ort(model, feeds)[0], run_ort(q, feeds)[0]
    assert np.abs(f - g).max() <= 0.05 * np.abs(f).max()


def test_four_bit_input_activation_is_clipped():
    model, feeds = _projection(14)
    q = quantize_tiny(model, feeds, "w4a4")
    assert op_list(q) == ["QuantizeLinear", "Clip", *FLOAT_OUT, "Add"]
    assert int(ReferenceRunner(q).run(["x_quantized"], feeds)[0].max()) <= 15


def test_tvm_equals_onnxruntime():
    pytest.importorskip("tvm")
    from tests.compile.qgraphs import assert_tvm_equals_ort

    model, feeds = _projection(15)
    assert_tvm_equals_ort(quantize_tiny(model, feeds), feeds)


def test_layerwise_report_and_quantization_report_cover_the_float_output_layer():
    from onnx_hawq.report import build_report, format_table
    from onnx_hawq.validation import layerwise as lw
    from onnx_hawq.validation.comparator import Comparator
    from onnx_hawq.validation.config import CompareOptions

    model, feeds = _projection(16)
    q = quantize_tiny(model, feeds)
    (t,) = lw.quant_tensors(q)
    assert t.float_out and t.qname == t.float_name == "m" and t.bits == "w8a8"
    assert op_list(lw.local_model(q, t)) == FLOAT_OUT
    (row,) = Comparator(model, q, CompareOptions(layerwise=True)).run(feeds).layers
    assert row.label == "w" and row.local_sqnr_db > 30
    report = build_report(q)
    assert [r["exact"] for r in report["layers"]] == [None] and report["float_ops"] == ["Add"]
    assert "float" in format_table(report).splitlines()[2]


@pytest.mark.parametrize("relu", [False, True])
def test_layers_sharing_a_weight_get_their_own_integer_constants(relu):
    """ALBERT-style sharing: each layer's scales fit its own input, so constants are per layer."""
    from tests.qhelpers import assert_ort_equals_reference

    r = rng(17)
    act = (lambda i, o: [helper.make_node("Relu", [i], [o])]) if relu else (lambda i, o: [])  # noqa: E731
    mid, out = ("h", "y") if relu else ("y1", "y2")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m1"] if relu else [mid], name="p1"), *act("m1", mid),
             helper.make_node("Mul", [mid, "ten"], ["z"]),
             helper.make_node("MatMul", ["z", "W"], ["m2"] if relu else [out], name="p2"), *act("m2", out)]
    outputs = [(out, None)] if relu else [(mid, None), (out, None)]
    model = make_model(nodes, [("x", [None, 8])], outputs,
                       {"W": r.normal(size=(8, 8)).astype(np.float32), "ten": np.full(8, 10.0, np.float32)})
    feeds = {"x": r.normal(size=(32, 8)).astype(np.float32)}
    q = quantize_tiny(model, feeds)
    assert op_list(q).count("QLinearMatMul" if relu else "MatMulInteger") == 2
    assert {"W_W_quantized", "W_W#1_quantized"} <= {i.name for i in q.graph.initializer}
    assert_ort_equals_reference(q, feeds)
    for f, g in zip(run_ort(model, feeds), run_ort(q, feeds)):
        assert np.abs(f - g).max() <= 0.03 * np.abs(f).max()
