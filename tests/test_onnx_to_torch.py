"""The ONNX -> torch converter reproduces onnxruntime, op by op and on the digits model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from onnx_hawq.calibration.onnx_to_torch import to_torch, unsupported_ops  # noqa: E402
from onnx_hawq.errors import HawqError  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
RNG = np.random.default_rng(0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_both(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    """(onnxruntime outputs, converter outputs) for the same feeds."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)
    with torch.no_grad():
        out = to_torch(model)(*(torch.from_numpy(v) for v in feeds.values()))
    out = out if isinstance(out, tuple) else (out,)
    return ref, [o.numpy() for o in out]


def graph(nodes, inputs, outputs, inits=(), opset=17):
    """A model from nodes; inputs/outputs are (name, shape) with float32 unless given a dtype."""
    vi = lambda n, s, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, s)
    g = helper.make_graph(nodes, "g", [vi(*i) for i in inputs], [vi(*o) for o in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


N = helper.make_node
CASES = {
    "conv_bias_stride_group": (
        [N("Conv", ["x", "w", "b"], ["y"], strides=[2, 1], pads=[1, 1, 1, 1], group=2)],
        [("x", [2, 4, 7, 6])], [("y", None)], [("w", w(6, 2, 3, 3)), ("b", w(6))]),
    "conv_asymmetric_pads_dilation": (
        [N("Conv", ["x", "w"], ["y"], pads=[0, 1, 2, 0], dilations=[2, 1])],
        [("x", [1, 3, 8, 8])], [("y", None)], [("w", w(4, 3, 3, 3))]),
    "conv_same_upper": (
        [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
        [("x", [1, 3, 7, 8])], [("y", None)], [("w", w(4, 3, 4, 4))]),
    "conv1d": ([N("Conv", ["x", "w"], ["y"], pads=[1, 1])], [("x", [2, 3, 9])], [("y", None)], [("w", w(5, 3, 3))]),
    "pools": (
        [N("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
         N("AveragePool", ["x"], ["b"], kernel_shape=[2, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
         N("AveragePool", ["x"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
         N("MaxPool", ["x"], ["d"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
         N("GlobalAveragePool", ["x"], ["e"]), N("GlobalMaxPool", ["x"], ["f"]),
         N("AveragePool", ["x"], ["g"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1),
         N("LRN", ["x"], ["h"], size=3, alpha=0.01, beta=0.6, bias=1.5)],
        [("x", [2, 3, 7, 6])], [(n, None) for n in "abcdefgh"], []),
    "gemm_matmul": (
        [N("Gemm", ["x", "w", "b"], ["g"], transB=1, alpha=0.5, beta=2.0),
         N("MatMul", ["g", "m"], ["y"])],
        [("x", [3, 5])], [("y", None)], [("w", w(4, 5)), ("b", w(4)), ("m", w(4, 2))]),
    "elementwise": (
        [N("Add", ["x", "c"], ["a"]), N("Sub", ["a", "x"], ["s"]), N("Mul", ["s", "c"], ["m"]),
         N("Div", ["m", "d"], ["q"]), N("Sum", ["q", "x", "a"], ["t"]), N("Relu", ["t"], ["r"]),
         N("LeakyRelu", ["t"], ["l"], alpha=0.2), N("Sigmoid", ["l"], ["g"]), N("Tanh", ["r"], ["h"]),
         N("Clip", ["t", "lo", "hi"], ["k"]), N("HardSigmoid", ["t"], ["hs"]), N("Max", ["g", "h"], ["y"])],
        [("x", [2, 3, 4])], [("y", None), ("k", None), ("hs", None)],
        [("c", w(3, 1)), ("d", np.full((4,), 2.0, np.float32)), ("lo", np.float32(-0.5)), ("hi", np.float32(0.7))]),
    "batchnorm_softmax": (
        [N("BatchNormalization", ["x", "s", "b", "mu", "var"], ["n"], epsilon=1e-3),
         N("Softmax", ["n"], ["y"], axis=1), N("LogSoftmax", ["n"], ["z"])],
        [("x", [2, 3, 4, 4])], [("y", None), ("z", None)],
        [("s", w(3)), ("b", w(3)), ("mu", w(3)), ("var", np.abs(w(3)) + 0.5)]),
    "shape_chain": (
        [N("Shape", ["x"], ["sh"]), N("Gather", ["sh", "zero"], ["n"], axis=0),
         N("Unsqueeze", ["n", "ax0"], ["n1"]), N("Concat", ["n1", "minus1"], ["tgt"], axis=0),
         N("Reshape", ["x", "tgt"], ["flat"]), N("Flatten", ["x"], ["f2"], axis=2),
         N("Transpose", ["x"], ["tr"], perm=[0, 2, 3, 1]), N("Squeeze", ["sq1", "ax0"], ["sq"]),
         N("Slice", ["x", "st", "en", "axs"], ["sl"]), N("Dropout", ["sl"], ["dr"]), N("Identity", ["dr"], ["id"]),
         N("Constant", [], ["k"], value=numpy_helper.from_array(np.float32([2.0]))), N("Mul", ["id", "k"], ["y"])],
        [("x", [2, 3, 4, 5]), ("sq1", [1, 6])],
        [("flat", None), ("f2", None), ("tr", None), ("sq", None), ("y", None)],
        [("zero", np.int64(0)), ("ax0", np.int64([0])), ("minus1", np.int64([-1])),
         ("st", np.int64([1, 0])), ("en", np.int64([3, -1])), ("axs", np.int64([1, 3]))]),
    "pad_reduce_split_cast": (
        [N("Pad", ["x", "p"], ["pd"], mode="reflect"), N("ReduceMean", ["pd"], ["rm"], axes=[2, 3], keepdims=1),
         N("Split", ["x", "sp"], ["s1", "s2"], axis=1), N("Cast", ["s2"], ["c"], to=TensorProto.INT64),
         N("Cast", ["c"], ["cf"], to=TensorProto.FLOAT), N("Expand", ["rm", "shp"], ["ex"]),
         N("ConstantOfShape", ["shp"], ["z"], value=numpy_helper.from_array(np.float32([0.5])))],
        [("x", [2, 3, 4, 5])], [("ex", None), ("s1", None), ("cf", None), ("z", None)],
        [("p", np.int64([0, 0, 1, 2, 0, 0, 1, 0])), ("sp", np.int64([1, 2])), ("shp", np.int64([2, 3, 2, 2]))],
        13),
    "softmax_opset11_unsqueeze_attr": (
        [N("Softmax", ["x"], ["y"], axis=1), N("Unsqueeze", ["y"], ["u"], axes=[0, 3]),
         N("Squeeze", ["u"], ["v"], axes=[0])],
        [("x", [2, 3, 4])], [("v", None)], [], 11),
    "transformer_ops": (
        [N("LayerNormalization", ["x", "s", "b"], ["ln", "mu", "isd"], axis=-1, epsilon=1e-3),
         N("LayerNormalization", ["x", "s2"], ["ln2"], axis=1),
         N("GatherElements", ["x", "gi"], ["ge"], axis=2),
         N("Range", ["r0", "r1", "r2"], ["rg"]), N("Add", ["ge", "rg"], ["gr"]),
         N("Tile", ["gr", "rep"], ["ti"]),
         N("Greater", ["x", "zf"], ["pos"]), N("Less", ["x", "half"], ["small"]), N("And", ["pos", "small"], ["mid"]),
         N("Not", ["mid"], ["out"]), N("Or", ["out", "pos"], ["any"]), N("Where", ["any", "x", "zf"], ["wh"])],
        [("x", [2, 3, 4])], [("ln", None), ("mu", None), ("isd", None), ("ln2", None), ("ti", None), ("wh", None)],
        [("s", w(4)), ("b", w(4)), ("s2", w(3, 4)),
         ("gi", np.int64([[[0, -1, 2, 1], [3, 1, -4, 0], [2, 2, 0, -2]]] * 2)),
         ("r0", np.float32(0.5)), ("r1", np.float32(3.6)), ("r2", np.float32(1.0)), ("rep", np.int64([1, 2, 2])),
         ("zf", np.float32(0.0)), ("half", np.float32(0.5))]),
    "gelu_opset20": (
        [N("Gelu", ["x"], ["a"]), N("Gelu", ["x"], ["b"], approximate="tanh")],
        [("x", [2, 3, 4])], [("a", None), ("b", None)], [], 20),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_converter_matches_onnxruntime(name):
    nodes, inputs, outputs, inits, *opset = CASES[name]
    model = graph(nodes, inputs, outputs, inits, *opset)
    feeds = {n: RNG.standard_normal(s).astype(np.float32) for n, s in inputs}
    ref, out = run_both(model, feeds)
    assert len(ref) == len(out)
    for r, o in zip(ref, out):
        assert r.shape == o.shape and r.dtype == o.dtype
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)


def test_digits_model_matches_onnxruntime():
    model = onnx.load(SAMPLES / "digits_resnet.onnx")
    x = np.load(SAMPLES / "digits_calib.npz")["input"][:128]
    (ref,), (out,) = run_both(model, {"input": x})
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_layer_weights_are_named_parameters_with_gradients():
    model = onnx.load(SAMPLES / "digits_resnet.onnx")
    module = to_torch(model)
    params = module.layer_parameters()
    assert list(params) == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.downsample.0",
                            "layer2.0.conv1", "layer2.0.conv2", "fc"]
    assert all(isinstance(p, torch.nn.Parameter) for p in params.values())
    assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in params.values())
    module(torch.ones(2, 1, 8, 8)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())


def test_unsupported_ops_are_named():
    nodes = [N("Loop", ["x"], ["a"]), N("Relu", ["a"], ["b"]), N("Erf", ["b"], ["c"]), N("Loop", ["c"], ["d"]),
             N("FusedConv", ["d"], ["e"], domain="com.microsoft"), N("ImageDecoder", ["e"], ["y"])]
    model = graph(nodes, [("x", [1, 3, 4, 4])], [("y", None)])
    assert unsupported_ops(model.graph) == ["ImageDecoder", "Loop", "com.microsoft::FusedConv"]
    with pytest.raises(HawqError) as err:
        to_torch(model)
    assert str(err.value) == ("cannot convert the model to torch: unsupported op(s) "
                              "ImageDecoder, Loop (x2), com.microsoft::FusedConv")


def test_nodes_out_of_order_are_sorted():
    nodes = [N("Relu", ["a"], ["y"]), N("Neg", ["x"], ["a"])]
    model = graph(nodes, [("x", [2, 3])], [("y", None)])
    with torch.no_grad():
        out = to_torch(model)(torch.tensor([[1.0, -2.0, 3.0], [0.0, -1.0, 4.0]]))
    assert out.tolist() == [[0.0, 2.0, 0.0], [0.0, 1.0, 0.0]]
