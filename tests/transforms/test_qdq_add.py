"""qdq_add: QLinearAdd -> DQ(a), DQ(b) -> Add -> Q; onnxruntime fuses it back into QLinearAdd, equal
bit for bit over every pair of uint8 inputs."""

import numpy as np
from onnx import helper

from onnx_hawq.transforms import qdq_add
from onnx_hawq.transforms.graph import Graph
from tests.compile.qgraphs import U8, f32, typed_model
from tests.transforms.qdq_check import assert_bit_equal, ort_optimized_ops, qdq_outputs


def _add(inputs=("a", "as", "az", "b", "bs", "bz", "cs", "cz")):
    inits = {"as": f32(0.05), "az": np.uint8(10), "bs": f32(0.025), "bz": np.uint8(3), "cs": f32(0.1),
             "cz": np.uint8(0)}
    node = helper.make_node("QLinearAdd", list(inputs), ["y"], name="add", domain="com.microsoft")
    return typed_model([node], [("a", U8, [256, 256]), ("b", U8, [256, 256])], [("y", U8, [256, 256])], inits)


def test_add_over_every_input_pair_fuses_back_bit_for_bit(tmp_path):
    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    out, want, got = qdq_outputs(_add(), {"a": a, "b": b}, ["DequantizeLinear"] * 2 + ["Add", "QuantizeLinear"])
    assert_bit_equal(want, got)
    assert ort_optimized_ops(out, tmp_path) == ["QLinearAdd"]


def test_missing_output_zero_point_is_refused():
    graph = Graph(_add(("a", "as", "az", "b", "bs", "bz", "cs")))
    assert qdq_add.check(graph, graph.g.node[0]) == "the output zero point is missing"
