"""qdq_conv: QLinearConv -> DQ(x), DQ(w), DQ(bias) -> Conv -> Q; onnxruntime fuses it back into
QLinearConv bit for bit with int8 (and Cast-widened INT4) weights; INT4 dequantized directly runs a
float Conv instead, within 1 LSB here."""

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_hawq.arith import schema
from onnx_hawq.transforms import qdq_conv
from onnx_hawq.transforms.graph import Graph
from tests.compile.qgraphs import U8, f32, typed_model
from tests.helpers import rng
from tests.transforms.qdq_check import assert_bit_equal, ort_optimized_ops, qdq_outputs

DQ3 = ["DequantizeLinear"] * 3


def _conv(packed=False, w_zp=0):
    r = rng(1)
    w = r.integers(-8, 8, (4, 2, 3, 3)).astype(np.int8)
    inits = {"xs": f32(0.05), "xz": np.uint8(7), "ws": f32(r.uniform(0.01, 0.05, 4)), "wz": np.full(4, w_zp, np.int8),
             "ys": f32(0.3), "yz": np.uint8(5), "b": r.integers(-500, 500, 4).astype(np.int32)}
    nodes = []
    if packed:
        inits["w4"] = w.astype(ml_dtypes.int4)
        nodes.append(helper.make_node("Cast", ["w4"], ["w"], name="unpack", to=TensorProto.INT8))
    else:
        inits["w"] = w
    conv = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            name="conv", pads=[1, 1, 1, 1], group=2)
    schema.write_meta(conv, {"layer": "conv", "op": "QLinearConv", "w_bits": 4, "dyadic": [[3, 10]] * 4})
    model = typed_model(nodes + [conv], [("x", U8, [2, 4, 5, 5])], [("y", U8, [2, 4, 5, 5])], inits,
                        opset=21 if packed else 17)
    return model, {"x": r.integers(0, 256, (2, 4, 5, 5)).astype(np.uint8)}


def test_int8_conv_fuses_back_into_qlinearconv_bit_for_bit(tmp_path):
    model, feeds = _conv()
    out, want, got = qdq_outputs(model, feeds, [*DQ3, "Conv", "QuantizeLinear"])
    assert_bit_equal(want, got)
    assert ort_optimized_ops(out, tmp_path) == ["QLinearConv"]
    conv = next(n for n in out.graph.node if n.op_type == "Conv")
    assert schema.read_meta(conv) == {"layer": "conv", "op": "Conv", "w_bits": 4, "dyadic": [[3, 10]] * 4}
    assert {a.name for a in conv.attribute} == {"pads", "group"}
    w_dq, b_dq = [n for n in out.graph.node if n.op_type == "DequantizeLinear"][1:]
    assert helper.get_attribute_value(w_dq.attribute[0]) == 0 and list(w_dq.input) == ["w", "ws", "wz"]
    bias_scale = {i.name: onnx.numpy_helper.to_array(i) for i in out.graph.initializer}[b_dq.input[1]]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(bias_scale, np.float32(inits["xs"]) * inits["ws"])


def test_cast_widened_int4_weights_still_fuse(tmp_path):
    model, feeds = _conv(packed=True)
    out, want, got = qdq_outputs(model, feeds, ["Cast", *DQ3, "Conv", "QuantizeLinear"])
    assert_bit_equal(want, got)
    assert ort_optimized_ops(out, tmp_path) == ["QLinearConv"]


def test_int4_dequantized_directly_runs_a_float_conv_within_one_lsb(tmp_path):
    model, feeds = _conv(packed=True)
    out, want, got = qdq_outputs(model, feeds, [*DQ3, "Conv", "QuantizeLinear"], int4="direct")
    w_dq = next(n for n in out.graph.node if n.output[0] == "conv_w_float")
    assert list(w_dq.input) == ["w4", "ws"]  # the packed initializer itself, zero point 0 by default
    assert "QLinearConv" not in ort_optimized_ops(out, tmp_path)
    diff = np.abs(want[0].astype(int) - got[0].astype(int))
    assert diff.max() <= 1


def test_nonzero_weight_zero_points_and_computed_weights_are_refused():
    model, _ = _conv(w_zp=1)
    graph = Graph(model)
    assert qdq_conv.check(graph, graph.g.node[0]) == "weight zero points are not 0"
    model, _ = _conv()
    model.graph.input.append(helper.make_tensor_value_info("w_in", TensorProto.INT8, [4, 2, 3, 3]))
    model.graph.node.insert(0, helper.make_node("Identity", ["w_in"], ["w"]))
    del model.graph.initializer[[i.name for i in model.graph.initializer].index("w")]
    graph = Graph(model)
    assert qdq_conv.check(graph, graph.g.node[1]) == "weight is not a constant (nor a packed INT4 initializer)"
