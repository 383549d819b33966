"""qdq_gemm and qdq_matmul: QGemm -> DQ -> Gemm -> Q and QLinearMatMul -> DQ -> MatMul -> Q, per output
column; onnxruntime fuses both back into QGemm / QLinearMatMul bit for bit."""

import numpy as np
import pytest
from onnx import helper

from onnx_hawq.transforms import qdq_gemm
from onnx_hawq.transforms.graph import Graph
from tests.compile.qgraphs import U8, f32, typed_model
from tests.helpers import rng
from tests.transforms.qdq_check import assert_bit_equal, ort_optimized_ops, qdq_outputs


def _layer(op, trans_b=1, trans_a=0):
    r = rng(5)
    inits = {"xs": f32(0.04), "xz": np.uint8(3), "ws": f32(r.uniform(0.01, 0.05, 6)), "wz": np.zeros(6, np.int8),
             "ys": f32(0.5), "yz": np.uint8(9), "b": r.integers(-99, 99, 6).astype(np.int32)}
    w = r.integers(-127, 128, (6, 10)).astype(np.int8)
    if op == "QGemm":
        inits["w"] = w if trans_b else w.T.copy()
        node = helper.make_node(op, ["x", "xs", "xz", "w", "ws", "wz", "b", "ys", "yz"], ["y"], name="fc",
                                domain="com.microsoft", transB=trans_b, transA=trans_a, alpha=1.0)
    else:
        inits["w"], _ = w.T.copy(), inits.pop("b")
        node = helper.make_node(op, ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="fc")
    model = typed_model([node], [("x", U8, [3, 10])], [("y", U8, [3, 6])], inits)
    return model, {"x": r.integers(0, 128, (3, 10)).astype(np.uint8)}


@pytest.mark.parametrize("op,trans_b,float_op,dqs", [("QGemm", 1, "Gemm", 3), ("QGemm", 0, "Gemm", 3),
                                                     ("QLinearMatMul", 0, "MatMul", 2)])
def test_layer_fuses_back_bit_for_bit(tmp_path, op, trans_b, float_op, dqs):
    model, feeds = _layer(op, trans_b)
    out, want, got = qdq_outputs(model, feeds, ["DequantizeLinear"] * dqs + [float_op, "QuantizeLinear"])
    assert_bit_equal(want, got)
    w_dq = next(n for n in out.graph.node if n.output[0] == "fc_w_float")
    assert helper.get_attribute_value(w_dq.attribute[0]) == (0 if trans_b else 1)  # the output-channel axis
    assert ort_optimized_ops(out, tmp_path) == [op]
    assert not any(o.domain == "com.microsoft" for o in out.opset_import)


def test_transposed_input_is_refused():
    model, _ = _layer("QGemm", trans_a=1)
    graph = Graph(model)
    assert qdq_gemm.check(graph, graph.g.node[0]) == "transA=1 is not written by onnx-hawq"
