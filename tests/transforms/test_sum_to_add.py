import numpy as np
import onnx
from onnx import helper

from onnx_hawq.transforms import sum_to_add
from onnx_hawq.transforms.graph import apply_rules
from tests.helpers import make_model, op_list, run_ort


def test_two_input_sum_becomes_add():
    model = make_model([helper.make_node("Sum", ["a", "b"], ["y"])], [("a", [3]), ("b", [3])], [("y", [3])], {})
    feeds = {"a": np.array([1, 2, 3], np.float32), "b": np.array([4, 5, 6], np.float32)}
    assert apply_rules(model, [sum_to_add.RULE]).refused == ()
    assert op_list(model) == ["Add"]
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(run_ort(model, feeds)[0], [5, 7, 9])


def test_three_input_sum_is_refused():
    model = make_model([helper.make_node("Sum", ["a", "a", "a"], ["y"])], [("a", [3])], [("y", [3])], {})
    refused = apply_rules(model, [sum_to_add.RULE]).refused
    assert refused[0].reason == "Sum has 3 inputs"
    assert op_list(model) == ["Sum"]
