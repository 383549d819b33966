"""qdq_matmul_float: a float-output MatMul layer (MatMulInteger -> Cast -> Mul) -> DQ(x), DQ(w) -> MatMul.

onnxruntime fuses the pattern into com.microsoft MatMulIntegerToFloat, which rounds differently from
Cast -> Mul: the outputs agree to float32 rounding, not bit for bit."""

import numpy as np
from onnx import helper

from onnx_hawq.arith import schema
from onnx_hawq.plans import uniform_plan
from onnx_hawq.transforms.qdq_matmul_float import weight_scales
from tests.helpers import make_model, op_list, rng
from tests.qhelpers import quantize_tiny
from tests.transforms.qdq_check import ort_optimized_ops, qdq_outputs


def _matmul(bits="8"):
    r = rng(7)
    nodes = [helper.make_node("Flatten", ["x"], ["h"], name="flat"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="proj")]
    model = make_model(nodes, [("x", [None, 16])], [("y", [None, 12])], {"w": r.normal(size=(16, 12)).astype(np.float32)})
    feeds = {"x": r.normal(size=(32, 16)).astype(np.float32)}
    return quantize_tiny(model, feeds, uniform_plan(bits)), feeds


def test_float_output_matmul_becomes_dequantize_and_matmul(tmp_path):
    model, feeds = _matmul()
    assert op_list(model) == ["Flatten", "QuantizeLinear", "MatMulInteger", "Cast", "Mul"]
    out, want, got = qdq_outputs(model, feeds, ["Flatten", "QuantizeLinear", "DequantizeLinear", "DequantizeLinear",
                                                "MatMul"])
    matmul = out.graph.node[-1]
    assert schema.read_meta(matmul)["float_output"] is True and schema.read_meta(matmul)["op"] == "MatMul"
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5 * np.abs(want[0]).max())
    assert "MatMulIntegerToFloat" in ort_optimized_ops(out, tmp_path)


def test_weight_scales_give_back_the_product_within_one_ulp():
    """float32(x_scale * w) steps over some float32 values (x_scale's mantissa > 1): those come out 1 ulp off."""
    x_scale = np.float32(0.0173)
    product = (x_scale * rng(8).uniform(1e-3, 1e-1, 1000).astype(np.float32)).astype(np.float32)
    back = (x_scale * weight_scales(x_scale, product)).astype(np.float32)
    assert np.all(np.abs(back - product) <= np.spacing(product))
    assert int(np.sum(back != product)) < 100
