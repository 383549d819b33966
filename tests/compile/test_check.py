"""compile --check / validate --backends: bit for bit on integer graphs, by cosine after float ops."""

import numpy as np
import onnx
import pytest
from onnx import helper

from onnx_hawq.compiler.check import compare
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_model
from onnx_hawq.report import float_rounding
from onnx_hawq.validation.comparator import Comparator
from onnx_hawq.validation.config import CompareOptions
from onnx_hawq.validation.config import Thresholds
from onnx_hawq.validation.report import evaluate
from tests.helpers import ORT_EXACT, SAMPLE, make_model, rng


def layernorm_projection():
    """x -> LayerNormalization -> MatMul: a float op in front of an integer layer (a transformer)."""
    r = rng(21)
    inits = {"g": r.normal(size=16).astype(np.float32), "w": r.normal(size=(16, 8)).astype(np.float32)}
    nodes = [helper.make_node("LayerNormalization", ["x", "g"], ["n"], axis=-1),
             helper.make_node("MatMul", ["n", "w"], ["y"], name="proj")]
    feeds = {"x": r.normal(size=(6, 5, 16)).astype(np.float32)}
    model = make_model(nodes, [("x", [None, 5, 16])], [("y", None)], inits)
    return model, quantize_model(model, uniform_plan("8"), feeds, rounding=ORT_EXACT).model, feeds


def test_float_rounding_taints_what_follows_a_float_op():
    _, q, _ = layernorm_projection()
    tainted, ops = float_rounding(q)
    assert ops == ("LayerNormalization",)
    assert {"n", "n_quantized", "y"} <= tainted


def test_integer_digits_graph_has_no_float_rounding():
    model = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    calib = load_data(SAMPLE / "digits_calib.npz", model)
    q = quantize_model(model, uniform_plan("w4a8"), calib, rounding=ORT_EXACT).model
    assert float_rounding(q) == (set(), ())


def test_compare_is_bit_for_bit_without_float_ops_and_by_cosine_with_them():
    model = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    calib = load_data(SAMPLE / "digits_calib.npz", model)
    q = quantize_model(model, uniform_plan("8"), calib, rounding=ORT_EXACT).model
    want = [np.ones((2, 10), np.float32)]
    off = [want[0] + np.float32(1e-6)]
    assert compare(q, want, want, 0.99).passed and not compare(q, off, want, 0.99).passed
    _, lnq, _ = layernorm_projection()
    res = compare(lnq, [np.ones((2, 4)) + 1e-6], [np.ones((2, 4))], 0.99)
    assert res.passed and res.float_ops == ("LayerNormalization",) and "not bit for bit" in res.line()
    assert not compare(lnq, [-np.ones((2, 4))], [np.ones((2, 4))], 0.99).passed


def test_validate_backend_after_float_ops_is_checked_by_cosine():
    model, q, feeds = layernorm_projection()
    comp = Comparator(model, q, CompareOptions(backends=("ort", "reference"))).run(feeds)
    assert comp.float_rounding == ("LayerNormalization",) and comp.not_compared > 0
    assert list(comp.backend_cosine["reference"]) == ["y"] and comp.backend_cosine["reference"]["y"] > 0.999
    checks = {c.name: c for c in evaluate(comp, Thresholds(min_sqnr=None))}
    assert list(checks) == ["reference vs ort outputs after float ops, min per-sample cosine"]


def test_compile_check_on_a_graph_with_float_ops(tmp_path):
    pytest.importorskip("tvm")
    from onnx_hawq.compiler.run import CompileConfig, run_compile

    _, q, feeds = layernorm_projection()
    onnx.save(q, str(tmp_path / "q.onnx"))
    np.savez(tmp_path / "x.npz", **feeds)
    res = run_compile(CompileConfig(str(tmp_path / "q.onnx"), str(tmp_path / "q.so"), check=str(tmp_path / "x.npz")))
    assert res.passed and res.float_ops == ("LayerNormalization",) and min(res.min_cosine.values()) > 0.999


def test_float_rounding_counts_untyped_contrib_ops_and_stops_at_shapes():
    r = rng(22)
    w = {"w": r.normal(size=(16, 8)).astype(np.float32), "w2": r.normal(size=(8, 4)).astype(np.float32)}
    gelu = [helper.make_node("MatMul", ["x", "w"], ["h"], name="p1"), helper.make_node("Relu", ["h"], ["hr"]),
            helper.make_node("QuickGelu", ["hr"], ["g"], domain="com.microsoft"),  # no table rule
            helper.make_node("MatMul", ["g", "w2"], ["y"], name="p2")]
    model = make_model(gelu, [("x", [None, 16])], [("y", None)], w)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    q = quantize_model(model, uniform_plan("8"), {"x": r.normal(size=(8, 16)).astype(np.float32)}).model
    tainted, ops = float_rounding(q)
    assert ops == ("QuickGelu",) and "y" in tainted and "h" not in tainted  # Relu rounds nothing

    _, lnq, _ = layernorm_projection()
    shape = [helper.make_node("Shape", ["n"], ["s"]), helper.make_node("Reshape", ["x_q", "s"], ["r"])]
    lnq.graph.node.extend(shape)
    assert "s" not in float_rounding(lnq)[0] and "n" in float_rounding(lnq)[0]


def test_outputs_before_float_ops_stay_bit_for_bit_and_one_value_samples_use_the_whole_tensor():
    from onnx_hawq.compiler.check import worst_cosine

    r = rng(23)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="p1"), helper.make_node("Relu", ["h"], ["y1"]),
             helper.make_node("LayerNormalization", ["x", "g"], ["n"], axis=-1),
             helper.make_node("MatMul", ["n", "w2"], ["y2"], name="p2")]
    inits = {"w1": r.normal(size=(16, 4)).astype(np.float32), "w2": r.normal(size=(16, 4)).astype(np.float32),
             "g": r.normal(size=16).astype(np.float32)}
    model = make_model(nodes, [("x", [None, 16])], [("y1", None), ("y2", None)], inits)
    q = quantize_model(model, uniform_plan("8"), {"x": r.normal(size=(8, 16)).astype(np.float32)}).model
    one = np.ones((2, 4), np.float32)
    ok = compare(q, [one, one], [one, one], 0.99)
    assert ok.approx == ("y2",) and ok.passed
    assert not compare(q, [one + np.float32(1e-6), one], [one, one], 0.99).passed  # y1 is bit for bit
    assert compare(q, [one, one + np.float32(1e-6)], [one, one], 0.99).passed
    assert worst_cosine(np.array([1.0, -1.0]), np.array([1.0, 1.0])) == 0.0  # not +-1 per sample
    assert worst_cosine(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0
