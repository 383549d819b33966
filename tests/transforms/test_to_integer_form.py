"""The integer-only form: one test per int_* rule (exact op list, onnx.checker, equal to the QLinear
form in onnxruntime) and the digits sample at W8A8, W4A8 and a mixed plan, tensor by tensor."""

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from onnx_hawq.ort import expose
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_model
from onnx_hawq.transforms.to_integer_form import to_integer_form
from tests.compile.qgraphs import U8, f32, typed_model
from tests.helpers import ORT_EXACT, SAMPLE, op_list, rng, run_ort
from tests.test_digits_exact import MIXED

INTEGER_OPS = {"ConvInteger", "MatMulInteger", "ReduceSum", "Gather", "Cast", "Add", "Sub", "Mul", "Div", "Mod",
               "Clip", "Max", "MaxPool", "Flatten", "Reshape", "Transpose"}
CHAIN = ["Cast", "Mul", "Mod", "Sub", "Div", "Mod", "Add", "Add", "Div", "Add"]  # int64 v, then rne(v / 2^c)
TO_U8 = ["Add", "Clip", "Cast"]


def integer_equals_qlinear(model, feeds, expected_ops=None) -> onnx.ModelProto:
    """Rewrite, check, compare every tensor the two forms share; return the integer form."""
    before = model.SerializeToString()
    out = to_integer_form(model)
    assert model.SerializeToString() == before
    onnx.checker.check_model(out)
    if expected_ops is not None:
        assert op_list(out) == expected_ops
    shared = sorted({o for n in model.graph.node for o in n.output} & {o for n in out.graph.node for o in n.output})
    want, got = run_ort(expose(model, shared), feeds, shared), run_ort(expose(out, shared), feeds, shared)
    for name, a, b in zip(shared, want, got):
        assert a.dtype == b.dtype and int(np.sum(a != b)) == 0, name
    return out


def _conv(scales, x_zp=7):
    r = rng(1)
    inits = {"xs": f32(scales[0]), "xz": np.uint8(x_zp), "w": r.integers(-8, 9, (4, 2, 3, 3)).astype(np.int8),
             "ws": f32(scales[1](r)), "wz": np.zeros(4, np.int8), "ys": f32(scales[2]), "yz": np.uint8(5),
             "b": r.integers(-500, 500, 4).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            name="conv", pads=[1, 1, 1, 1], group=2)
    return typed_model([node], [("x", U8, [2, 4, 5, 5])], [("y", U8, [2, 4, 5, 5])], inits)


def test_qlinearconv_becomes_convinteger_and_an_integer_chain():
    model = _conv((2.0**-4, lambda r: r.integers(1, 32, 4) * 2.0**-9, 1.0))
    x = rng(2).integers(0, 256, (2, 4, 5, 5)).astype(np.uint8)
    integer_equals_qlinear(model, {"x": x}, ["ConvInteger", "Add", *CHAIN, *TO_U8])


def test_inexact_conv_is_kept_and_reported():
    model = _conv((0.0173, lambda r: r.uniform(0.001, 0.01, 4), 0.0911))
    out = integer_equals_qlinear(model, {"x": rng(3).integers(0, 256, (2, 4, 5, 5)).astype(np.uint8)}, ["QLinearConv"])
    kept = json.loads({p.key: p.value for p in out.metadata_props}["hawq.integer_kept"])
    reason = "float32 requantization is not exact for this layer's accumulator range"
    assert kept == [{"node": "conv", "reason": reason}]


def test_a_four_bit_input_range_makes_a_layer_exact():
    """The same conv is exact once a Clip bounds its input to [0, 15]."""
    model = _conv((2.0**-4, lambda r: (2 * r.integers(1024, 2048, 4) + 1) * 2.0**-18, 1.0), x_zp=0)
    assert op_list(to_integer_form(model)) == ["QLinearConv"]
    clip = helper.make_node("Clip", ["x_in", "lo", "hi"], ["x"], name="clip")
    model.graph.node.insert(0, clip)
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.uint8(v), n) for n, v in (("lo", 0), ("hi", 15))])
    model.graph.input[0].name = "x_in"
    out = integer_equals_qlinear(model, {"x_in": rng(4).integers(0, 256, (2, 4, 5, 5)).astype(np.uint8)})
    assert "ConvInteger" in op_list(out)


@pytest.mark.parametrize("op,domain", [("QGemm", "com.microsoft"), ("QLinearMatMul", "")])
def test_gemm_and_matmul_become_matmulinteger(op, domain):
    r = rng(5)
    inits = {"xs": f32(2.0**-4), "xz": np.uint8(3), "ws": f32(r.integers(1, 32, 6) * 2.0**-9),
             "wz": np.zeros(6, np.int8), "ys": f32(1.0), "yz": np.uint8(0),
             "b": r.integers(-99, 99, 6).astype(np.int32)}
    if op == "QGemm":
        inits["w"] = r.integers(-8, 9, (6, 10)).astype(np.int8)
        node = helper.make_node(op, ["x", "xs", "xz", "w", "ws", "wz", "b", "ys", "yz"], ["y"], domain=domain, transB=1)
        expected = ["MatMulInteger", "Add", *CHAIN, "Clip", "Cast"]
    else:
        inits["w"], _ = r.integers(-8, 9, (10, 6)).astype(np.int8), inits.pop("b")
        node = helper.make_node(op, ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
        expected = ["MatMulInteger", *CHAIN, "Clip", "Cast"]
    model = typed_model([node], [("x", U8, [3, 10])], [("y", U8, [3, 6])], inits)
    integer_equals_qlinear(model, {"x": r.integers(0, 256, (3, 10)).astype(np.uint8)}, expected)


@pytest.mark.parametrize("scales,expected", [
    ((0.05, 10, 0.025, 3, 0.1, 0), ["Cast", "Mul", "Cast", "Mul", "Add", "Add", *CHAIN[2:], "Clip", "Cast"]),
    ((0.0635, 0, 0.0404, 0, 0.0452, 0), ["Cast", "Mul", "Cast", "Add", "Gather"]),
], ids=["chain", "table"])
def test_qlinearadd_over_every_input_pair(scales, expected):
    a_s, a_z, b_s, b_z, c_s, c_z = scales
    inits = {"as": f32(a_s), "az": np.uint8(a_z), "bs": f32(b_s), "bz": np.uint8(b_z), "cs": f32(c_s),
             "cz": np.uint8(c_z)}
    node = helper.make_node("QLinearAdd", ["a", "as", "az", "b", "bs", "bz", "cs", "cz"], ["y"], domain="com.microsoft")
    model = typed_model([node], [("a", U8, [256, 256]), ("b", U8, [256, 256])], [("y", U8, [256, 256])], inits)
    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    integer_equals_qlinear(model, {"a": a, "b": b}, expected)


@pytest.mark.parametrize("scales,expected", [
    ((0.05, 10, 0.025, 3), ["Cast", "ReduceSum", "Add", *CHAIN, *TO_U8]),
    ((0.0315, 0, 0.0889, 0), ["Cast", "ReduceSum", "Gather"]),
], ids=["chain", "table"])
def test_qlinearglobalaveragepool_over_every_sum(scales, expected):
    xs, xz, ys, yz = scales
    inits = {"xs": f32(xs), "xz": np.uint8(xz), "ys": f32(ys), "yz": np.uint8(yz)}
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft")
    s = np.arange(255 * 16 + 1)[:, None]  # channel s holds 16 values summing to s
    x = np.clip(s - 255 * np.arange(16)[None, :], 0, 255).astype(np.uint8).reshape(1, -1, 4, 4)
    model = typed_model([node], [("x", U8, list(x.shape))], [("y", U8, [1, x.shape[1], 1, 1])], inits)
    integer_equals_qlinear(model, {"x": x}, expected)


@pytest.fixture(scope="module")
def digits():
    model = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    return model, load_data(SAMPLE / "digits_calib.npz", model), np.load(SAMPLE / "digits_test.npz")["input"]


@pytest.mark.parametrize("plan", [uniform_plan("8"), uniform_plan("w4a8"), MIXED], ids=["w8a8", "w4a8", "mixed"])
def test_digits_integer_form_is_integer_only_and_bit_identical(digits, plan):
    model, calib, x = digits
    q = quantize_model(model, plan, calib, rounding=ORT_EXACT).model
    out = integer_equals_qlinear(q, {"input": x})
    assert json.loads({p.key: p.value for p in out.metadata_props}["hawq.integer_kept"]) == []
    for node in out.graph.node:
        if node.op_type == "QuantizeLinear":
            assert node.input[0] in {i.name for i in out.graph.input}
        elif node.op_type == "DequantizeLinear":
            assert node.output[0] in {o.name for o in out.graph.output}
        else:
            assert node.op_type in INTEGER_OPS and node.domain == "", node.op_type
