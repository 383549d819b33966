"""Sequential rounding statistics: stages by layer depth, each later stage on the model whose earlier
layers carry their rounded weights."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnx_hawq.arith.quantizer import WeightQuant
from onnx_hawq.calibration.rounding import (RoundingConfig, _round, layer_stages, layer_statistics, round_layers,
                                            with_rounded)
from onnx_hawq.layers import find_layers
from onnx_hawq.ort import session

R = np.random.default_rng(3)


def chain():
    """x[N,6] -> fc1 -> Relu -> fc2 -> Relu -> fc3, plus a branch fc1b reading x beside fc1."""
    ws = {n: R.normal(size=s).astype(np.float32) for n, s in
          (("fc1", (8, 6)), ("fc1b", (8, 6)), ("fc2", (8, 8)), ("fc3", (4, 8)))}
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h1"], name="fc1", transB=1),
             helper.make_node("Gemm", ["x", "fc1b.weight"], ["hb"], name="fc1b", transB=1),
             helper.make_node("Add", ["h1", "hb"], ["s"]), helper.make_node("Relu", ["s"], ["r1"]),
             helper.make_node("Gemm", ["r1", "fc2.weight", "fc2.bias"], ["h2"], name="fc2", transB=1),
             helper.make_node("Relu", ["h2"], ["r2"]),
             helper.make_node("Gemm", ["r2", "fc3.weight"], ["y"], name="fc3", transB=1)]
    inits = [numpy_helper.from_array(w, f"{n}.weight") for n, w in ws.items()]
    inits += [numpy_helper.from_array(R.normal(size=8).astype(np.float32), f"{n}.bias") for n in ("fc1", "fc2")]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_stages_group_consecutive_depths():
    model = chain()
    layers = find_layers(model)
    names = lambda groups: [[l.name for l in g] for g in groups]
    assert names(layer_stages(model, layers, 1)) == [["fc1", "fc1b", "fc2", "fc3"]]
    assert names(layer_stages(model, layers, 3)) == [["fc1", "fc1b"], ["fc2"], ["fc3"]]  # fc1, fc1b: same depth
    assert names(layer_stages(model, layers, 8)) == [["fc1", "fc1b"], ["fc2"], ["fc3"]]
    assert names(layer_stages(model, layers, 2)) == [["fc1", "fc1b", "fc2"], ["fc3"]]


def test_later_stages_see_the_rounded_layers_in_front():
    model = chain()
    layers = find_layers(model)
    data = {"x": R.normal(size=(64, 6)).astype(np.float32)}
    qmax = {l.name: 3 for l in layers}
    cfg = RoundingConfig(WeightQuant(), stages=3)
    got = round_layers(model, layers, qmax, data, cfg)
    by = {l.name: l for l in layers}
    want = {}
    for stage in (["fc1", "fc1b"], ["fc2"], ["fc3"]):  # by hand: round, bake in, collect the next stage
        current = with_rounded(model, layers, want)
        _, stats = layer_statistics(current, [by[n] for n in stage], data, cfg)
        want.update((n, _round(model, by[n], *stats[n], 3, cfg, None)) for n in stage)
    for name in qmax:
        np.testing.assert_array_equal(got[name].codes, want[name].codes)
        np.testing.assert_array_equal(got[name].scales, want[name].scales)
    one_pass = round_layers(model, layers, qmax, data, RoundingConfig(WeightQuant(), stages=1))
    np.testing.assert_array_equal(one_pass["fc1"].codes, got["fc1"].codes)  # stage 1 reads the float model
    assert any(not np.array_equal(one_pass[n].codes, got[n].codes) or
               not np.array_equal(one_pass[n].scales, got[n].scales) for n in ("fc2", "fc3"))


def test_with_rounded_computes_with_dequantized_codes_and_shifted_bias():
    model = chain()
    layers = find_layers(model)
    data = {"x": R.normal(size=(32, 6)).astype(np.float32)}
    rounded = round_layers(model, layers, {"fc1": 7}, data, RoundingConfig(WeightQuant(), stages=1))
    baked = with_rounded(model, layers, rounded)
    inits = {i.name: numpy_helper.to_array(i) for i in baked.graph.initializer}
    rw = rounded["fc1"]
    np.testing.assert_array_equal(inits["fc1.weight"], (rw.codes * rw.scales[:, None]).astype(np.float32))
    orig = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_allclose(inits["fc1.bias"], orig["fc1.bias"] + rw.bias_shift, rtol=1e-6)
    np.testing.assert_array_equal(inits["fc2.weight"], orig["fc2.weight"])  # not rounded: untouched
    session(baked).run(None, data)
