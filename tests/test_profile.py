"""`onnx-hawq profile`: isolated integer nodes compute the layer, and the table feeds the planner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from onnx_hawq.arith.quantizer import WeightQuant
from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
from onnx_hawq.cli.main import cli
from onnx_hawq.errors import InputError
from onnx_hawq.layers import find_layers
from onnx_hawq.plans import Plan, fingerprint
from onnx_hawq.planning.instance import load_prepared
from onnx_hawq.planning.latency import LatencyTable
from onnx_hawq.planning.profiler import ProfileConfig, profile, quantized_weight, single_node_graph
from tests.helpers import ORT_EXACT_RANGE

MODEL = str(Path(__file__).resolve().parents[1] / "sample_models" / "digits_resnet.onnx")
X_SCALE, Y_SCALE = 0.02, 0.05  # the profiler's fixed scales


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def float_reference(node, layer, q, scales, x) -> np.ndarray:
    """The same layer in float on dequantized inputs and weights, requantized like the node."""
    shape = [-1 if k == layer.out_axis else 1 for k in range(q.ndim)]
    w = q.astype(np.float32) * scales.reshape(shape)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if layer.op_type == "Conv":
        ref = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    elif layer.op_type == "Gemm":
        ref = helper.make_node("Gemm", ["x", "w"], ["y"], transB=attrs.get("transB", 0))
    else:
        ref = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([ref], "ref", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    ref_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    y = run(ref_model, x.astype(np.float32) * X_SCALE)
    return np.clip(np.rint(y / Y_SCALE), 0, 255)


def check_node(model, layer, node, shape, w_bits, a_bits):
    q, scales = quantized_weight(model, layer, w_bits, a_bits, WeightQuant(range=ORT_EXACT_RANGE))
    assert np.abs(q).max() <= (1 << (w_bits - 1)) - 1
    x = np.random.default_rng(1).integers(0, (1 << a_bits), size=shape, dtype=np.uint8)
    got = run(single_node_graph(node, layer, q, scales, shape), x).astype(np.int32)
    assert np.abs(got - float_reference(node, layer, q, scales, x)).max() <= 1


@pytest.mark.parametrize("w_bits,a_bits", [(4, 8), (8, 8), (2, 4)])
def test_isolated_nodes_compute_the_layer(w_bits, a_bits):
    model, layers = load_prepared(MODEL)
    nodes = {n.name: n for n in model.graph.node}
    shapes = {"conv1": (1, 1, 8, 8), "layer2.0.conv1": (1, 16, 8, 8), "fc": (1, 32)}
    for name, shape in shapes.items():
        layer = next(l for l in layers if l.name == name)
        check_node(model, layer, nodes[layer.node_name], shape, w_bits, a_bits)


def test_matmul_layers_use_qlinearmatmul():
    w = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    (layer,) = find_layers(model)
    check_node(model, layer, node, (1, 6), 4, 8)


def test_profile_cli_table_feeds_max_latency(tmp_path):
    lat = tmp_path / "latency.json"
    result = CliRunner().invoke(cli, ["profile", MODEL, "--bits", "2,8", "--runs", "3", "--warmup", "1",
                                      "-o", str(lat)])
    assert result.exit_code == 0, result.output
    table = LatencyTable.load(lat)
    layers = load_prepared(MODEL)[1]
    assert table.model == fingerprint(layers) and table.threads == 1 and table.runs == 3
    assert set(table.layers) == {l.name for l in layers}
    assert all(set(v) == {"w2a8", "w8a8"} and min(v.values()) > 0 for v in table.layers.values())
    cfg = ProfileConfig(model=MODEL, output=str(lat), bits=(2, 4), act_bits=(4, 8), threads=2)
    assert ProfileConfig.from_json(cfg.to_json()) == cfg
    assert LatencyTable.from_json(table.to_json()) == table

    sens = tmp_path / "sens.json"
    Sensitivity(model=fingerprint(layers), method="trace",
                layers={l.name: LayerSensitivity(trace=1.0) for l in layers}).save(sens)
    out = tmp_path / "plan.json"
    # timings are noisy: a limit of every layer's slowest choice is always feasible, but still binds
    worst_ns = sum(max(table.latency_ns(name, label) for label in v) for name, v in table.layers.items())
    result = CliRunner().invoke(cli, ["plan", MODEL, "--sensitivity", str(sens), "--bits", "2,8",
                                      "--latency", str(lat), "--max-latency", f"{worst_ns}ns", "--max-size", "70%",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    latency = Plan.load(out).meta["resources"]["latency"]
    assert latency["use"] <= latency["limit"] == worst_ns
    assert latency["all8"] == sum(table.latency_ns(name, "w8a8") for name in table.layers)


def test_profile_always_measures_the_w8a8_reference():
    model, layers = load_prepared(MODEL)
    table = profile(model, layers[:1], ProfileConfig(model=MODEL, output="-", bits=(2,), warmup=0, runs=1))
    assert set(table.layers[layers[0].name]) == {"w2a8", "w8a8"}


def test_table_checks_model_and_labels(tmp_path):
    layers = load_prepared(MODEL)[1]
    table = LatencyTable(model="0" * 16, device="cpu", runtime="ort", threads=1, batch=1, warmup=0, runs=1,
                         layers={"conv1": {"w8a8": 0.5}})
    with pytest.raises(InputError, match="another model"):
        table.check_model(layers)
    assert table.latency_ns("conv1", "w8a8") == 500_000
    with pytest.raises(InputError, match="lacks layer conv1 at w4a8"):
        table.latency_ns("conv1", "w4a8")
    data = json.loads(table.to_json())
    data["version"] = 99
    with pytest.raises(InputError, match="version"):
        LatencyTable.from_dict(data)
