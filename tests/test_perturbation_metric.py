"""The forward-only perturbation sensitivity equals a hand computation; the planner's Ω from it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_hawq.arith.quantizer import Rounding, WeightQuant, WeightRange, fake_quantize
from onnx_hawq.calibration.perturbation import (
    PerturbationConfig, delta_losses, omega_from_delta, perturbation_sensitivity, quantizers)
from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
from onnx_hawq.errors import InputError
from onnx_hawq.layers import find_layers
from onnx_hawq.ort import session
from onnx_hawq.plans import LEGACY_WEIGHTS, LayerBits

R = np.random.default_rng(7)
NEAREST = WeightQuant(Rounding.NEAREST)


def mlp():
    """x[N,6] -> Gemm(W1 [8,6], transB=1) -> Relu -> Gemm(W2 [8,5], transB=0: out axis 1) -> logits [N,5]."""
    w1, b1 = R.normal(size=(8, 6)).astype(np.float32), R.normal(size=8).astype(np.float32)
    w2, b2 = R.normal(size=(8, 5)).astype(np.float32), R.normal(size=5).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["y"], name="fc2")]
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "fc1.weight"), (b1, "fc1.bias"), (w2, "fc2.weight"), (b2, "fc2.bias"))]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), (w1, b1, w2, b2)


def numpy_forward(x, w1, b1, w2, b2):
    x = x.astype(np.float64)
    return np.maximum(x @ w1.T.astype(np.float64) + b1, 0) @ w2.astype(np.float64) + b2


def hand_loss(ref, out, loss):
    """Per-sample mean of KL(softmax ref || softmax out) or of the summed squared error."""
    if loss == "mse":
        return float(((out - ref) ** 2).sum(axis=1).mean())
    lp = ref - ref.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    lq = out - out.max(1, keepdims=True)
    lq = lq - np.log(np.exp(lq).sum(1, keepdims=True))
    return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())


@pytest.mark.parametrize("loss,weight_range", [("kl", "avx2"), ("mse", "avx2"), ("kl", "full")])
def test_mlp_matches_hand_computation(loss, weight_range):
    model, (w1, b1, w2, b2) = mlp()
    layers = find_layers(model)
    assert [(l.name, l.out_axis) for l in layers] == [("fc1", 0), ("fc2", 1)]
    x = R.normal(size=(40, 6)).astype(np.float32)
    weights = WeightQuant(Rounding.NEAREST, WeightRange(weight_range))
    cfg = PerturbationConfig(bits=(2, 4, 8), act_bits=(8, 4), loss=loss, batch_size=16, batches=None,
                             weights=weights)
    res = delta_losses(model, layers, {"x": x}, cfg)
    ref = numpy_forward(x, w1, b1, w2, b2)
    keys = {"w2a8": (2, 8), "w4a8": (4, 8), "w8a8": (8, 8)} | ({"w8a4": (8, 4)} if weight_range == "avx2" else {})
    assert list(quantizers(cfg.bits, cfg.act_bits, weights)) == list(keys)  # full range: w8a4 is w8a8's quantizer
    assert res.runs == 3 * (1 + 2 * len(keys))  # 40 samples in batches of 16: 3 batches
    for key, (w, a) in keys.items():
        q1 = fake_quantize(w1, weights.qmax(w, a))  # fc1: out channels already on axis 0
        q2 = fake_quantize(w2.T, weights.qmax(w, a)).T  # fc2: out axis 1 moved to 0 and back
        want = {"fc1": hand_loss(ref, numpy_forward(x, q1, b1, w2, b2), loss),
                "fc2": hand_loss(ref, numpy_forward(x, w1, b1, q2, b2), loss)}
        for name, value in want.items():
            got = res.layers[name].delta_loss[key]
            assert value > 0 and got == pytest.approx(value, rel=1e-4), (name, key)
    assert all(s.samples == 40 and s.params == 48 - 8 * (n == "fc2") for n, s in res.layers.items())
    if weight_range == "avx2":
        assert res.layers["fc1"].delta_loss["w8a4"] != res.layers["fc1"].delta_loss["w8a8"]  # 127 vs 64 levels


def test_gptq_perturbation_measures_the_weights_quantize_writes():
    from onnx_hawq.calibration.rounding import RoundingConfig, rounded_weights

    model, (w1, b1, w2, b2) = mlp()
    layers = find_layers(model)
    x = R.normal(size=(40, 6)).astype(np.float32)
    cfg = PerturbationConfig(bits=(3,), loss="mse", batch_size=40, weights=WeightQuant())
    res = delta_losses(model, layers, {"x": x}, cfg)
    ref = numpy_forward(x, w1, b1, w2, b2)
    rounded = dict(rounded_weights(model, layers, {"fc1": (3,), "fc2": (3,)}, {"x": x}, RoundingConfig(cfg.weights)))
    by_name = {l.name: q for l, q in rounded.items()}
    want = hand_loss(ref, numpy_forward(x, by_name["fc1"][3], b1, w2, b2), "mse")
    assert res.layers["fc1"].delta_loss["w3a8"] == pytest.approx(want, rel=1e-4)
    nearest = hand_loss(ref, numpy_forward(x, fake_quantize(w1, 3), b1, w2, b2), "mse")
    assert want != pytest.approx(nearest)  # GPTQ's weights, not nearest rounding's


def lstm_model():
    """x[N,T,4] -> MatMul(W0 [4,6]) -> LSTM(hidden 5) -> Y_h squeezed -> Gemm(Wc [3,5], transB=1)."""
    t, h = 6, 5
    inits = [numpy_helper.from_array(R.normal(size=(4, 6)).astype(np.float32), "proj.weight"),
             numpy_helper.from_array((R.normal(size=(1, 4 * h, 6)) * 0.5).astype(np.float32), "W"),
             numpy_helper.from_array((R.normal(size=(1, 4 * h, h)) * 0.5).astype(np.float32), "R"),
             numpy_helper.from_array(R.normal(size=(1, 8 * h)).astype(np.float32), "B"),
             numpy_helper.from_array(R.normal(size=(3, h)).astype(np.float32), "head.weight"),
             numpy_helper.from_array(np.array([0], np.int64), "axes")]
    nodes = [helper.make_node("MatMul", ["x", "proj.weight"], ["p"], name="proj"),
             helper.make_node("Transpose", ["p"], ["pt"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["pt", "W", "R", "B"], ["", "yh"], hidden_size=h),
             helper.make_node("Squeeze", ["yh", "axes"], ["last"]),
             helper.make_node("Gemm", ["last", "head.weight"], ["logits"], name="head", transB=1)]
    g = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", t, 4])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def baked(model, weight, array):
    """A copy of `model` with initializer `weight` replaced by `array`."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    init = next(i for i in out.graph.initializer if i.name == weight)
    init.CopyFrom(numpy_helper.from_array(array.astype(np.float32), weight))
    return out


def test_lstm_model_runs_forward_only_without_torch():
    model = lstm_model()  # an RNN in the middle: measured in onnxruntime alone
    layers = find_layers(model)
    assert [l.name for l in layers] == ["proj", "head"]
    x = R.normal(size=(20, 6, 4)).astype(np.float32)
    sens = perturbation_sensitivity(model, layers, {"x": x}, PerturbationConfig(bits=(3, 8), batch_size=8,
                                                                                weights=NEAREST))
    assert sens.method == "perturbation" and sens.loss == "kl"
    ref = session(model).run(None, {"x": x})[0].astype(np.float64)
    for layer in layers:
        w = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == layer.weight))
        for bits in (3, 8):
            q = np.moveaxis(fake_quantize(np.moveaxis(w, layer.out_axis, 0), NEAREST.qmax(bits, 8)), 0,
                            layer.out_axis)
            out = session(baked(model, layer.weight, q)).run(None, {"x": x})[0].astype(np.float64)
            want = hand_loss(ref, out, "kl")
            assert want > 0 and sens.layers[layer.name].delta_loss[f"w{bits}a8"] == pytest.approx(want, rel=1e-4)


def test_sensitivity_file_round_trip_and_backward_compatible(tmp_path):
    model, _ = mlp()
    layers = find_layers(model)
    sens = perturbation_sensitivity(model, layers, {"x": R.normal(size=(8, 6)).astype(np.float32)},
                                    PerturbationConfig(bits=(4, 8), loss="mse"))
    sens.save(tmp_path / "p.json")
    loaded = Sensitivity.load(tmp_path / "p.json")
    assert loaded == sens and loaded.layers["fc1"].delta_loss.keys() == {"w4a8", "w8a8"}
    assert loaded.weights == WeightQuant()  # the measured quantizer is recorded
    loaded.check_model(layers)
    hessian = Sensitivity(model=sens.model, method="trace", layers={"fc1": LayerSensitivity(trace=2.0, samples=3)})
    written = hessian.to_dict()
    assert "loss" not in written and "weights" not in written  # Hessian files as before
    assert "delta_loss" not in written["layers"]["fc1"]
    assert written["version"] == 1
    old = {"kind": "onnx-hawq-sensitivity", "version": 1, "model": "m", "method": "trace", "seed": 0,
           "source": "onnx", "hvp_count": 3, "layers": {"a": {"trace": 1.0, "stderr": 0.1, "samples": 3,
                                                                 "params": 4, "eigenvalue": None, "eigen_iters": None}}}
    assert Sensitivity.from_json(json.dumps(old)).layers["a"].delta_loss is None


def test_omega_from_delta_maps_choices_by_weight_quantizer():
    layers = find_layers(mlp()[0])
    entry = lambda v: LayerSensitivity(trace=0.0, delta_loss={"w4a8": v, "w8a8": v / 100, "w8a4": v / 300})
    sens = Sensitivity(model="m", method="perturbation", layers={"fc1": entry(3.0), "fc2": entry(-1e-18)})
    choices = (LayerBits(4, 4), LayerBits(4, 8), LayerBits(8, 4), LayerBits(8, 8))
    omega = omega_from_delta(sens, layers, choices, LEGACY_WEIGHTS)  # a file without the record: nearest/avx2
    assert omega[0] == (3.0, 3.0, 0.01, 0.03)  # w4a4 uses the w4a8 quantizer (same |w_q| <= 7)
    assert omega[1] == (0.0,) * 4  # float noise below zero is clamped
    with pytest.raises(InputError, match="no measured ΔL for layer fc1 at w2a8"):
        omega_from_delta(sens, layers, (LayerBits(2, 8),), LEGACY_WEIGHTS)
    with pytest.raises(InputError, match="holds no measured"):
        omega_from_delta(Sensitivity(model="m", method="trace", layers=sens.layers), layers, choices, LEGACY_WEIGHTS)
    with pytest.raises(InputError, match="measured ΔL for --rounding nearest --weight-range avx2"):
        omega_from_delta(sens, layers, choices, WeightQuant())
    bad = Sensitivity(model="m", method="perturbation", layers={"fc1": LayerSensitivity(0.0, delta_loss={"x": 1.0}),
                                                                 "fc2": entry(1.0)})
    with pytest.raises(InputError, match="malformed"):
        omega_from_delta(bad, layers, choices, LEGACY_WEIGHTS)


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="weight bits"):
        PerturbationConfig(bits=(1, 8))
    with pytest.raises(InputError, match="activation bits"):
        PerturbationConfig(act_bits=(6,))
    with pytest.raises(InputError, match="loss"):
        PerturbationConfig(loss="ce")
    model, _ = mlp()
    with pytest.raises(InputError, match="lacks array"):
        delta_losses(model, find_layers(model), {"z": np.zeros((2, 6), np.float32)})
