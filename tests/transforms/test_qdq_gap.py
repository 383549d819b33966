"""qdq_gap: QLinearGlobalAveragePool -> DQ -> GlobalAveragePool -> Q; onnxruntime fuses it back,
equal bit for bit over every channel sum of 16 values."""

import numpy as np
from onnx import helper

from onnx_hawq.transforms import qdq_gap
from onnx_hawq.transforms.graph import Graph
from tests.compile.qgraphs import U8, f32, typed_model
from tests.transforms.qdq_check import assert_bit_equal, ort_optimized_ops, qdq_outputs


def _gap(x_shape, channels_last=0):
    inits = {"xs": f32(0.05), "xz": np.uint8(10), "ys": f32(0.025), "yz": np.uint8(3)}
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], name="gap",
                            domain="com.microsoft", channels_last=channels_last)
    return typed_model([node], [("x", U8, list(x_shape))], [("y", U8, [1, x_shape[1], 1, 1])], inits)


def test_pool_fuses_back_bit_for_bit(tmp_path):
    s = np.arange(255 * 16 + 1)[:, None]  # channel s holds 16 values summing to s
    x = np.clip(s - 255 * np.arange(16)[None, :], 0, 255).astype(np.uint8).reshape(1, -1, 4, 4)
    out, want, got = qdq_outputs(_gap(x.shape), {"x": x}, ["DequantizeLinear", "GlobalAveragePool", "QuantizeLinear"])
    assert_bit_equal(want, got)
    assert ort_optimized_ops(out, tmp_path) == ["QLinearGlobalAveragePool"]


def test_channels_last_is_refused():
    graph = Graph(_gap((1, 4, 4, 4), channels_last=1))
    assert qdq_gap.check(graph, graph.g.node[0]) == "channels_last=1 has no GlobalAveragePool equivalent"
