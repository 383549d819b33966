import numpy as np
import onnx
from onnx import helper

from onnx_hawq.transforms import remove_identity
from onnx_hawq.transforms.graph import apply_rules
from tests.helpers import make_model, op_list, run_ort


def test_dropout_and_identity_disappear():
    nodes = [helper.make_node("Dropout", ["x"], ["d"]), helper.make_node("Identity", ["d"], ["i"]),
             helper.make_node("Relu", ["i"], ["y"])]
    model = make_model(nodes, [("x", [4])], [("y", [4])], {})
    x = np.array([-1, 2, -3, 4], np.float32)
    assert apply_rules(model, [remove_identity.RULE]).refused == ()
    assert op_list(model) == ["Relu"]
    assert model.graph.node[0].input[0] == "x"
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(run_ort(model, {"x": x})[0], [0, 2, 0, 4])
