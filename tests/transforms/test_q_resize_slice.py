"""Resize (nearest) and Slice run on uint8 codes (q_passthrough): each output code is an input code, so
they share the input's quantizer; a linear Resize stays float. FPN: Concat of upsampled Adds."""

import numpy as np
import pytest
from onnx import helper

from onnx_hawq.transforms.to_integer_form import to_integer_form
from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import assert_ort_equals_reference, quantize_tiny

N = helper.make_node


def _upsample(seed: int, mode: str = "nearest"):
    """Conv -> Resize x2 -> Slice (rows 1:, every other column) -> Conv."""
    r = rng(seed)
    inits = {"w1": r.normal(size=(4, 3, 3, 3)).astype(np.float32), "w2": r.normal(size=(2, 4, 1, 1)).astype(np.float32),
             "roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32),
             "starts": np.array([1, 0], np.int64), "ends": np.array([99, 99], np.int64),
             "axes": np.array([2, 3], np.int64), "steps": np.array([1, 2], np.int64)}
    nodes = [N("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             N("Resize", ["a", "roi", "scales"], ["u"], mode=mode, coordinate_transformation_mode="asymmetric",
               nearest_mode="floor"),
             N("Slice", ["u", "starts", "ends", "axes", "steps"], ["s"]), N("Conv", ["s", "w2"], ["y"], name="c2")]
    model = make_model(nodes, [("x", [None, 3, "h", "w"])], [("y", None)], inits)
    return model, {"x": r.normal(size=(8, 3, 5, 6)).astype(np.float32)}


def test_nearest_resize_and_slice_copy_codes():
    model, feeds = _upsample(61)
    q = quantize_tiny(model, feeds)
    assert op_list(q) == ["QuantizeLinear", "QLinearConv", "Resize", "Slice", "QLinearConv", "DequantizeLinear"]
    assert_ort_equals_reference(q, feeds)
    f, g = run_ort(model, feeds)[0], run_ort(q, feeds)[0]
    assert f.shape == g.shape and np.abs(f - g).max() <= 0.05 * np.abs(f).max()


def test_linear_resize_stays_float():
    model, feeds = _upsample(62, mode="linear")
    assert op_list(quantize_tiny(model, feeds)) == ["QuantizeLinear", "QLinearConv", "DequantizeLinear", "Resize",
                                                    "Slice", "QuantizeLinear", "QLinearConv", "DequantizeLinear"]


def _fpn(seed: int):
    """Two convs -> Add -> Resize x2, concatenated with a conv of the upsampled input -> Conv."""
    r = rng(seed)
    w = lambda *s: r.normal(size=s).astype(np.float32)  # noqa: E731
    inits = {"w1": w(4, 3, 1, 1), "w2": w(4, 3, 3, 3), "w3": w(4, 3, 1, 1), "w4": w(2, 8, 1, 1),
             "roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}
    resize = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    nodes = [N("Conv", ["x", "w1"], ["a"], name="c1"), N("Conv", ["x", "w2"], ["b"], name="c2", pads=[1, 1, 1, 1]),
             N("Add", ["a", "b"], ["s"]), N("Resize", ["s", "roi", "scales"], ["su"], **resize),
             N("Resize", ["x", "roi", "scales"], ["xu"], **resize), N("Conv", ["xu", "w3"], ["c"], name="c3"),
             N("Concat", ["su", "c"], ["cat"], axis=1), N("Conv", ["cat", "w4"], ["y"], name="c4")]
    model = make_model(nodes, [("x", [None, 3, "h", "w"])], [("y", None)], inits)
    return model, {"x": r.normal(size=(8, 3, 4, 6)).astype(np.float32)}


def test_concat_of_an_upsampled_add_keeps_one_quantizer():
    """The Add's output is a Concat member: it is not re-aligned off the shared quantizer."""
    model, feeds = _fpn(63)
    q = quantize_tiny(model, feeds)
    ops = op_list(q)
    assert ops.count("QuantizeLinear") == 1 and ops.count("DequantizeLinear") == 1
    assert {"QLinearAdd", "Resize", "Concat"} <= set(ops)
    assert_ort_equals_reference(q, feeds)
    np.testing.assert_array_equal(run_ort(to_integer_form(q), feeds)[0], run_ort(q, feeds)[0])


def test_tvm_equals_onnxruntime():
    pytest.importorskip("tvm")
    from tests.compile.qgraphs import assert_tvm_equals_ort

    model, feeds = _upsample(64)
    assert_tvm_equals_ort(quantize_tiny(model, feeds), feeds)
