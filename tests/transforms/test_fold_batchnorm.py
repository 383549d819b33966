import numpy as np
import onnx
from onnx import helper

from onnx_hawq.transforms import fold_batchnorm
from onnx_hawq.transforms.graph import apply_rules
from tests.helpers import make_model, op_list, rng, run_ort


def _conv_bn(with_bias: bool, shared_weight: bool = False):
    r = rng(1)
    inits = {"w": r.normal(size=(4, 3, 3, 3)).astype(np.float32), "g": r.uniform(0.5, 2, 4).astype(np.float32),
             "b": r.normal(size=4).astype(np.float32), "m": r.normal(size=4).astype(np.float32),
             "v": r.uniform(0.5, 2, 4).astype(np.float32)}
    conv_in = ["x", "w"] + (["cb"] if with_bias else [])
    if with_bias:
        inits["cb"] = r.normal(size=4).astype(np.float32)
    nodes = [helper.make_node("Conv", conv_in, ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=1e-3)]
    outputs = [("y", [1, 4, 5, 5])]
    if shared_weight:
        nodes.append(helper.make_node("Conv", ["x", "w"], ["z"], pads=[1, 1, 1, 1]))
        outputs.append(("z", [1, 4, 5, 5]))
    return make_model(nodes, [("x", [1, 3, 5, 5])], outputs, inits)


def test_conv_bn_folds_into_one_conv_with_same_output():
    for with_bias in (False, True):
        model = _conv_bn(with_bias)
        x = rng(2).normal(size=(1, 3, 5, 5)).astype(np.float32)
        before = run_ort(model, {"x": x})[0]
        refused = apply_rules(model, [fold_batchnorm.RULE]).refused
        assert refused == ()
        assert op_list(model) == ["Conv"]
        assert model.graph.node[0].input[1] == "w"  # weight name kept: layer names survive
        onnx.checker.check_model(model)
        np.testing.assert_allclose(run_ort(model, {"x": x})[0], before, rtol=1e-5, atol=1e-5)


def test_shared_weight_is_refused_with_reason():
    model = _conv_bn(False, shared_weight=True)
    refused = apply_rules(model, [fold_batchnorm.RULE]).refused
    assert refused and "shared" in refused[0].reason
    assert op_list(model) == ["Conv", "BatchNormalization", "Conv"]
