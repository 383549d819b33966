import numpy as np
import onnx
from onnx import helper

from onnx_hawq.transforms import fold_constants
from onnx_hawq.transforms.graph import apply_rules
from tests.helpers import make_model, op_list, run_ort


def test_constant_of_shape_weight_becomes_initializer():
    value = helper.make_tensor("v", onnx.TensorProto.FLOAT, [1], [0.25])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["w"], value=value),
             helper.make_node("Conv", ["x", "w"], ["y"])]
    model = make_model(nodes, [("x", [1, 2, 4, 4])], [("y", [1, 3, 4, 4])], {"shape": np.array([3, 2, 1, 1], np.int64)})
    x = np.ones((1, 2, 4, 4), np.float32)
    before = run_ort(model, {"x": x})[0]
    assert apply_rules(model, [fold_constants.RULE]).refused == ()
    assert op_list(model) == ["Conv"]
    assert [i.name for i in model.graph.initializer] == ["w"]
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(run_ort(model, {"x": x})[0], before)


def test_graph_output_is_not_folded():
    nodes = [helper.make_node("Neg", ["c"], ["y"])]
    model = make_model(nodes, [], [("y", [2])], {"c": np.array([1.0, 2.0], np.float32)})
    refused = apply_rules(model, [fold_constants.RULE]).refused
    assert refused[0].reason == "its output is a graph output"
    assert op_list(model) == ["Neg"]
