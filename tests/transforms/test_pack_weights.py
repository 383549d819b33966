"""pack_weights: 2-4-bit weights as INT4 initializers + Cast; same outputs, smaller file."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnx_hawq.plans import LayerBits, Plan
from onnx_hawq.reference import ReferenceRunner
from onnx_hawq.report import build_report
from onnx_hawq.transforms.pack_weights import pack_model, unpack_int4
from tests.helpers import make_model, op_list, rng, run_ort
from tests.qhelpers import quantize_tiny


def _conv_gemm(cout=5, k=3):
    r = rng(3)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "g", "gb"], ["y"], name="fc", transB=1)]
    inits = {"w": r.normal(size=(cout, 3, k, k)).astype(np.float32), "b": r.normal(size=cout).astype(np.float32),
             "g": r.normal(size=(7, cout * 16)).astype(np.float32), "gb": r.normal(size=7).astype(np.float32)}
    model = make_model(nodes, [("x", [None, 3, 4, 4])], [("y", [None, 7])], inits)
    return model, {"x": r.normal(size=(8, 3, 4, 4)).astype(np.float32)}


@pytest.mark.parametrize("cout", [5, 4])  # odd and even weight element counts
def test_packed_model_equals_unpacked_in_ort_and_reference(cout):
    model, feeds = _conv_gemm(cout)
    quant = quantize_tiny(model, feeds, Plan(default=LayerBits(4, 8)))
    packed, n = pack_model(quant)
    assert n == 2
    onnx.checker.check_model(packed)
    assert [t.data_type for t in packed.graph.initializer if t.name.endswith("_int4")] == [TensorProto.INT4] * 2
    assert op_list(packed) == ["QuantizeLinear", "Cast", "QLinearConv", "Flatten", "Cast", "QGemm", "DequantizeLinear"]
    assert packed.opset_import[0].version >= 21
    want = run_ort(quant, feeds)[0]
    np.testing.assert_array_equal(run_ort(packed, feeds)[0], want)
    np.testing.assert_array_equal(ReferenceRunner(packed).run(None, feeds)[0], want)
    weight_bytes = lambda m: sum(len(t.raw_data) for t in m.graph.initializer if t.dims)
    assert weight_bytes(packed) < weight_bytes(quant)


def test_disk_bytes_match_the_size_model_and_unpack_restores_int8():
    model, feeds = _conv_gemm(5)
    packed, _ = pack_model(quantize_tiny(model, feeds, Plan(default=LayerBits(4, 8))))
    totals = build_report(packed)["totals"]
    assert totals["disk_bytes"] == totals["size_bytes"]
    back = unpack_int4(packed)
    assert TensorProto.INT4 not in {t.data_type for t in back.graph.initializer}
    np.testing.assert_array_equal(run_ort(back, feeds)[0], run_ort(packed, feeds)[0])


def test_eight_bit_models_are_left_alone():
    model, feeds = _conv_gemm(5)
    quant = quantize_tiny(model, feeds, Plan(default=LayerBits(8, 8)))
    assert pack_model(quant) == (quant, 0)
