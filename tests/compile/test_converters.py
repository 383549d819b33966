"""One tiny graph per TVM converter: TVM (llvm) equals onnxruntime bit for bit, on both the exact
integer requantization path and the float32 emulation path."""

import numpy as np
import pytest
from onnx import helper

from onnx_hawq.arith.requant import add_program, gap_program
from tests.compile.qgraphs import (EXACT, F32, I8, I32, PATHS, U8, assert_tvm_equals_ort, f32, layer_inits,
                                   relax_text, typed_model)
from tests.helpers import rng

pytest.importorskip("tvm")

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("group,x_zp", [(1, 7), (2, 0)])
def test_qlinearconv(path, group, x_zp):
    r = rng(group)
    params, marker = PATHS[path]
    inits = layer_inits(r, params, r.integers(-8, 9, (4, 4 // group, 3, 3)).astype(np.int8), x_zp, 5)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[1, 0, 2, 1], strides=[2, 1], group=group)
    model = typed_model([node], [("x", U8, [2, 4, 7, 6])], [("y", U8, None)], inits)
    assert marker in relax_text(model)
    assert_tvm_equals_ort(model, {"x": r.integers(0, 256, (2, 4, 7, 6)).astype(np.uint8)})


@pytest.mark.parametrize("path", PATHS)
def test_qlinearmatmul_on_3d_input(path):
    r = rng(3)
    params, marker = PATHS[path]
    inits = layer_inits(r, params, r.integers(-8, 9, (8, 16)).astype(np.int8), 5, 128)
    inits["w"] = np.ascontiguousarray(inits["w"].T)  # [K, N], per-column scales
    del inits["b"]
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    model = typed_model([node], [("x", U8, [2, 3, 16])], [("y", U8, None)], inits)
    assert marker in relax_text(model)
    assert_tvm_equals_ort(model, {"x": r.integers(0, 256, (2, 3, 16)).astype(np.uint8)})


@pytest.mark.parametrize("trans_b", [0, 1])
def test_qgemm_with_bias(trans_b):
    r = rng(4 + trans_b)
    inits = layer_inits(r, EXACT, r.integers(-8, 9, (6, 12)).astype(np.int8), 3, 0)
    if not trans_b:
        inits["w"] = np.ascontiguousarray(inits["w"].T)
    node = helper.make_node("QGemm", ["x", "xs", "xz", "w", "ws", "wz", "b", "ys", "yz"], ["y"],
                            domain="com.microsoft", transB=trans_b, alpha=1.0)
    model = typed_model([node], [("x", U8, [5, 12])], [("y", U8, None)], inits)
    assert_tvm_equals_ort(model, {"x": r.integers(0, 256, (5, 12)).astype(np.uint8)})


ADD_CHAIN = (0.05, 10, 0.025, 3, 0.1, 0)
ADD_TABLE = (0.0635, 0, 0.0404, 0, 0.0452, 0)


@pytest.mark.parametrize("params", [ADD_CHAIN, ADD_TABLE], ids=["chain", "table"])
def test_qlinearadd_over_every_input_pair(params):
    a_s, a_z, b_s, b_z, c_s, c_z = params
    prog = add_program(f32(a_s), np.uint8(a_z), f32(b_s), np.uint8(b_z), f32(c_s), np.uint8(c_z))
    assert (prog.table is None) == (params is ADD_CHAIN)
    inits = {"as": f32(a_s), "az": np.uint8(a_z), "bs": f32(b_s), "bz": np.uint8(b_z), "cs": f32(c_s),
             "cz": np.uint8(c_z)}
    node = helper.make_node("QLinearAdd", ["a", "as", "az", "b", "bs", "bz", "cs", "cz"], ["y"],
                            domain="com.microsoft")
    model = typed_model([node], [("a", U8, [256, 256]), ("b", U8, [256, 256])], [("y", U8, None)], inits)
    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    assert_tvm_equals_ort(model, {"a": a, "b": b})


def _all_sums(n: int) -> np.ndarray:
    """[1, 255n+1, n] uint8: channel s holds n values summing to s."""
    s = np.arange(255 * n + 1)[:, None]
    return np.clip(s - 255 * np.arange(n)[None, :], 0, 255).astype(np.uint8)[None]


@pytest.mark.parametrize("params", [(0.05, 10, 0.025, 3), (0.0315, 0, 0.0889, 0)], ids=["chain", "table"])
def test_qlinearglobalaveragepool_over_every_sum(params):
    xs, xz, ys, yz = params
    assert (gap_program(f32(xs), np.uint8(xz), f32(ys), np.uint8(yz), 16).table is None) == (xz == 10)
    inits = {"xs": f32(xs), "xz": np.uint8(xz), "ys": f32(ys), "yz": np.uint8(yz)}
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"],
                            domain="com.microsoft", channels_last=0)
    x = _all_sums(16).reshape(1, -1, 4, 4)
    model = typed_model([node], [("x", U8, list(x.shape))], [("y", U8, None)], inits)
    assert_tvm_equals_ort(model, {"x": x})


def test_qlinearglobalaveragepool_channels_last():
    inits = {"xs": f32(0.05), "xz": np.uint8(10), "ys": f32(0.025), "yz": np.uint8(3)}
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"],
                            domain="com.microsoft", channels_last=1)
    model = typed_model([node], [("x", U8, [2, 3, 5, 6])], [("y", U8, None)], inits)
    assert_tvm_equals_ort(model, {"x": rng(8).integers(0, 256, (2, 3, 5, 6)).astype(np.uint8)})


def test_convinteger():
    r = rng(9)
    node = helper.make_node("ConvInteger", ["x", "w", "xz"], ["y"], pads=[1, 1, 1, 1], group=2)
    inits = {"w": r.integers(-128, 128, (4, 2, 3, 3)).astype(np.int8), "xz": np.uint8(9)}
    model = typed_model([node], [("x", U8, [1, 4, 5, 5])], [("y", I32, None)], inits)
    assert_tvm_equals_ort(model, {"x": r.integers(0, 256, (1, 4, 5, 5)).astype(np.uint8)})


@pytest.mark.parametrize("zp", [np.uint8(100), np.int8(-3)])
def test_quantizelinear_rounds_half_to_even(zp):
    ties = (np.arange(-600, 600) + 0.5).astype(np.float32) * np.float32(0.25)
    x = np.concatenate([ties, rng(10).normal(scale=40, size=800).astype(np.float32)])
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    model = typed_model([node], [("x", F32, [2000])], [("y", U8 if zp.dtype == np.uint8 else I8, None)],
                        {"s": f32(0.25), "z": zp})
    assert_tvm_equals_ort(model, {"x": x})


def test_tvm_own_uint8_ops_match_onnxruntime():
    """DequantizeLinear, Clip, Max, MaxPool and Flatten keep TVM's converters; they are exact."""
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]), helper.make_node("Max", ["c", "floor"], ["m"]),
             helper.make_node("MaxPool", ["m"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("DequantizeLinear", ["f", "s", "z"], ["y"])]
    inits = {"lo": np.uint8(3), "hi": np.uint8(200), "floor": np.uint8(17), "s": f32(0.0371), "z": np.uint8(11)}
    model = typed_model(nodes, [("x", U8, [2, 3, 6, 6])], [("f", U8, None), ("y", F32, None)], inits)
    assert_tvm_equals_ort(model, {"x": rng(11).integers(0, 256, (2, 3, 6, 6)).astype(np.uint8)})


def test_converters_are_registered_only_inside_the_shim():
    from tvm.relax.frontend.onnx import onnx_frontend as fe

    from onnx_hawq.compiler.frontend import hawq_converters

    original = fe._get_convert_map
    with hawq_converters():
        assert {"QLinearConv", "QGemm", "QLinearAdd", "ConvInteger"} <= set(fe._get_convert_map())
    assert fe._get_convert_map is original and "QLinearConv" not in fe._get_convert_map()


def test_a_weight_that_is_not_constant_is_a_one_line_error():
    from onnx_hawq.compiler.frontend import import_onnx
    from onnx_hawq.errors import InputError

    inits = {k: v for k, v in layer_inits(rng(14), EXACT, np.zeros((2, 2, 1, 1), np.int8), 0, 0).items() if k != "w"}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"])
    model = typed_model([node], [("x", U8, [1, 2, 3, 3]), ("w", I8, [2, 2, 1, 1])], [("y", U8, None)], inits)
    with pytest.raises(InputError, match="^QLinearConv: w must be a constant initializer for TVM$"):
        import_onnx(model)


@pytest.mark.parametrize("x_zp", [0, 9])
def test_matmulinteger_is_an_int8_matmul(x_zp):
    r = rng(15 + x_zp)
    node = helper.make_node("MatMulInteger", ["x", "w", "xz"], ["y"])
    # |w| <= 64: onnxruntime's AVX2 u8 x s8 kernel saturates pairs of products above 2^15 (vpmaddubsw)
    inits = {"w": r.integers(-64, 65, (20, 7)).astype(np.int8), "xz": np.uint8(x_zp)}
    model = typed_model([node], [("x", U8, [2, 3, 20])], [("y", I32, None)], inits)
    text = relax_text(model)
    assert 'R.matmul(x, metadata["ir.GenericConst"][0], out_dtype="int32")' in text and "astype" not in text
    assert_tvm_equals_ort(model, {"x": r.integers(0, 256, (2, 3, 20)).astype(np.uint8)})


def test_matmulinteger_by_a_runtime_weight_keeps_tvm_converter():
    r = rng(17)
    node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
    model = typed_model([node], [("x", U8, [3, 4]), ("w", I8, [4, 5])], [("y", I32, None)], {})
    assert 'R.astype(w, dtype="int32")' in relax_text(model)
    assert_tvm_equals_ort(model, {"x": r.integers(0, 256, (3, 4)).astype(np.uint8),
                                  "w": r.integers(-64, 65, (4, 5)).astype(np.int8)})
