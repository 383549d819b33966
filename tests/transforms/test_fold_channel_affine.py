import numpy as np
import onnx
from onnx import helper

from onnx_hawq.transforms import fold_channel_affine
from onnx_hawq.transforms.graph import apply_rules
from tests.helpers import make_model, op_list, rng, run_ort


def test_per_channel_mul_then_add_fold_into_conv():
    r = rng(3)
    inits = {"w": r.normal(size=(4, 2, 3, 3)).astype(np.float32), "s": r.normal(size=(4, 1, 1)).astype(np.float32),
             "t": r.normal(size=(1, 4, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "s"], ["m"]),
             helper.make_node("Add", ["t", "m"], ["y"])]
    model = make_model(nodes, [("x", [1, 2, 5, 5])], [("y", [1, 4, 3, 3])], inits)
    x = r.normal(size=(1, 2, 5, 5)).astype(np.float32)
    before = run_ort(model, {"x": x})[0]
    assert apply_rules(model, [fold_channel_affine.RULE]).refused == ()
    assert op_list(model) == ["Conv"]
    onnx.checker.check_model(model)
    np.testing.assert_allclose(run_ort(model, {"x": x})[0], before, rtol=1e-5, atol=1e-5)


def test_spatial_constant_is_refused():
    r = rng(4)
    inits = {"w": r.normal(size=(4, 2, 1, 1)).astype(np.float32), "s": r.normal(size=(1, 1, 3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "s"], ["y"])]
    model = make_model(nodes, [("x", [1, 2, 3, 3])], [("y", [1, 4, 3, 3])], inits)
    refused = apply_rules(model, [fold_channel_affine.RULE]).refused
    assert refused[0].reason == "Mul constant is not per-channel"
    assert op_list(model) == ["Conv", "Mul"]
