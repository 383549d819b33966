"""Converter vs onnxruntime for what the ONNX node cases leave out: older opsets, sequence_lens,
clip, input_forget, activation parameters, Resize/Upsample variants and dynamic shapes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from onnx_hawq.calibration.onnx_to_torch import to_torch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RNG = np.random.default_rng(1)
N = helper.make_node


def model_of(nodes, inputs, outputs, inits=(), opset=17):
    """A model; inputs are (name, shape[, dtype]) and outputs names (shape and type left to inference)."""
    vi = lambda n, s, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, s)
    g = helper.make_graph(nodes, "g", [vi(*i) for i in inputs], [helper.make_empty_tensor_value_info(o) for o in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    ir = 7 if opset < 15 else 8
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def assert_same(model, feeds, atol=1e-5):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)
    with torch.no_grad():
        out = to_torch(model)(*(torch.from_numpy(v) for v in feeds.values()))
    out = out if isinstance(out, tuple) else (out,)
    assert len(out) == len(ref)
    for r, o in zip(ref, out):
        assert o.shape == r.shape
        np.testing.assert_allclose(o.numpy(), r, rtol=1e-4, atol=atol)


def w(*shape):
    return (RNG.standard_normal(shape) * 0.5).astype(np.float32)


def rnn_case(op, gates, direction, layout, **attrs):
    """An LSTM/GRU/RNN node with every optional input: (model, feeds)."""
    seq, batch, inp, hid = 4, 3, 2, 3
    dirs = 2 if direction == "bidirectional" else 1
    x_shape = [batch, seq, inp] if layout else [seq, batch, inp]
    h_shape = [batch, dirs, hid] if layout else [dirs, batch, hid]
    ins = ["x", "W", "R", "B", "lens", "h0"] + (["c0", "P"] if op == "LSTM" else [])
    outs = ["y", "yh"] + (["yc"] if op == "LSTM" else [])
    inits = [("W", w(dirs, gates * hid, inp)), ("R", w(dirs, gates * hid, hid)), ("B", w(dirs, 2 * gates * hid)),
             ("lens", np.int32([4, 2, 3]))] + ([("P", w(dirs, 3 * hid))] if op == "LSTM" else [])
    node = N(op, ins, outs, hidden_size=hid, direction=direction, layout=layout, **attrs)
    inputs = [("x", x_shape), ("h0", h_shape)] + ([("c0", h_shape)] if op == "LSTM" else [])
    feeds = {n: w(*s) for n, s in inputs}
    return model_of([node], inputs, outs, inits, 14), feeds


RNN_CASES = {
    "lstm_fwd_lens": ("LSTM", 4, "forward", 0, {}),
    "lstm_bidir_clip": ("LSTM", 4, "bidirectional", 0, {"clip": 0.4}),
    "lstm_reverse_input_forget": ("LSTM", 4, "reverse", 0, {"input_forget": 1}),
    "lstm_activations_alpha": ("LSTM", 4, "forward", 0, {
        "activations": ["HardSigmoid", "LeakyRelu", "Tanh"], "activation_alpha": [0.3, 0.1],
        "activation_beta": [0.4]}),
    "gru_bidir_lbr0": ("GRU", 3, "bidirectional", 0, {"linear_before_reset": 0}),
    "gru_reverse_lbr1_clip": ("GRU", 3, "reverse", 0, {"linear_before_reset": 1, "clip": 0.5}),
    "rnn_bidir_relu": ("RNN", 1, "bidirectional", 0, {"activations": ["Relu", "Tanh"]}),
    "rnn_forward_clip": ("RNN", 1, "forward", 0, {"clip": 0.3}),
}


@pytest.mark.parametrize("name", sorted(RNN_CASES))
def test_recurrent_matches_ort(name):
    op, gates, direction, layout, attrs = RNN_CASES[name]
    assert_same(*rnn_case(op, gates, direction, layout, **attrs))


@pytest.mark.parametrize("op, gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_layout1_is_layout0_transposed(op, gates):
    """ORT's CPU kernels refuse layout=1, so layout 1 is checked against the converter's layout 0."""
    m0, feeds = rnn_case(op, gates, "bidirectional", 0)
    m1, _ = rnn_case(op, gates, "bidirectional", 1)
    for init0, init1 in zip(m0.graph.initializer, m1.graph.initializer):
        init1.CopyFrom(init0)
    with torch.no_grad():
        out0 = to_torch(m0)(*(torch.from_numpy(v) for v in feeds.values()))
        out1 = to_torch(m1)(*(torch.from_numpy(v).transpose(0, 1) for v in feeds.values()))
    torch.testing.assert_close(out1[0], out0[0].permute(2, 0, 1, 3))
    for a, b in zip(out1[1:], out0[1:]):
        torch.testing.assert_close(a, b.transpose(0, 1))


def _resize(opset, attrs, x_shape, scales=None, sizes=None, roi=None):
    if opset == 10:
        node, inits = N("Resize", ["x", "scales"], ["y"], **attrs), [("scales", np.float32(scales))]
    else:
        names = ["x", "roi" if roi is not None or opset < 13 else "", "scales" if scales is not None or opset < 13 else "",
                 "sizes" if sizes is not None else ""]
        inits = [("roi", np.float32(roi if roi is not None else []))] if names[1] else []
        inits += [("scales", np.float32(scales if scales is not None else []))] if names[2] else []
        inits += [("sizes", np.int64(sizes))] if sizes is not None else []
        node = N("Resize", names, ["y"], **attrs)
    return model_of([node], [("x", x_shape)], ["y"], inits, opset)


RESIZE_CASES = {
    "opset10_nearest_up": (10, {"mode": "nearest"}, [1, 2, 3, 4], [1, 1, 2, 1.5]),
    "opset10_linear_down": (10, {"mode": "linear"}, [1, 2, 4, 6], [1, 1, 0.5, 0.5]),
    "opset11_linear_half_pixel": (11, {"mode": "linear"}, [1, 2, 3, 5], [1, 1, 2.5, 1.6]),
    "opset11_cubic_align_corners": (11, {"mode": "cubic", "coordinate_transformation_mode": "align_corners"},
                                    [1, 1, 4, 5], [1, 1, 1.5, 2]),
    "opset11_nearest_tf_half_pixel": (11, {"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn"},
                                      [1, 1, 3, 4], [1, 1, 2, 3]),
    "opset13_pytorch_half_pixel_sizes": (13, {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
                                         [2, 3, 5, 4], None, [2, 3, 1, 7]),
    "opset13_nearest_ceil_asymmetric": (13, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                             "nearest_mode": "ceil"}, [1, 2, 5, 5], [1, 1, 0.7, 1.3]),
    "opset13_crop_and_resize": (13, {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                                     "extrapolation_value": 2.0}, [1, 1, 4, 4], None, [1, 1, 3, 5],
                                [0, 0, -0.2, 0.1, 1, 1, 0.8, 1.3]),
}


@pytest.mark.parametrize("name", sorted(RESIZE_CASES))
def test_resize_matches_ort(name):
    opset, attrs, shape, scales, *rest = RESIZE_CASES[name]
    sizes, roi = (rest + [None, None])[:2]
    assert_same(_resize(opset, attrs, shape, scales, sizes, roi), {"x": w(*shape)})


def test_resize_follows_dynamic_input_shapes():
    model = model_of([N("Resize", ["x", "", "scales"], ["y"], mode="linear")], [("x", ["n", "c", "h", "w"])], ["y"],
                     [("scales", np.float32([1, 1, 2, 0.5]))], 13)
    for shape in ([1, 2, 3, 4], [2, 1, 5, 6]):
        assert_same(model, {"x": w(*shape)})


@pytest.mark.parametrize("opset, mode", [(7, "nearest"), (7, "linear"), (9, "nearest"), (9, "linear")])
def test_upsample_matches_ort(opset, mode):
    scales = [1.0, 1.0, 2.0, 3.0]
    if opset == 7:
        model = model_of([N("Upsample", ["x"], ["y"], mode=mode, scales=scales)], [("x", [1, 2, 3, 3])], ["y"], (), 7)
    else:
        model = model_of([N("Upsample", ["x", "s"], ["y"], mode=mode)], [("x", [1, 2, 3, 3])], ["y"],
                         [("s", np.float32(scales))], 9)
    assert_same(model, {"x": w(1, 2, 3, 3)})


OLD_OPSETS = {
    "clip6": ([N("Clip", ["x"], ["y"], min=-0.3, max=0.4)], 6),
    "clip11_min_only": ([N("Clip", ["x", "lo"], ["y"])], 11, [("lo", np.float32(-0.2))]),
    "pad2_reflect": ([N("Pad", ["x"], ["y"], mode="reflect", pads=[0, 1, 2, 1, 0, 1, 1, 2])], 2),
    "pad2_edge_batch_axis": ([N("Pad", ["x"], ["y"], mode="edge", pads=[1, 0, 0, 2, 2, 0, 1, 0])], 2),
    "pad11_constant_value": ([N("Pad", ["x", "p", "v"], ["y"])], 11,
                             [("p", np.int64([0, 0, 1, -1, 0, 0, 2, 1])), ("v", np.float32(1.5))]),
    "pad19_wrap_axes": ([N("Pad", ["x", "p", "", "ax"], ["y"], mode="wrap")], 19,
                        [("p", np.int64([2, 1, 1, 3])), ("ax", np.int64([-1, 1]))]),
    "hardmax11_coerced_2d": ([N("Hardmax", ["x"], ["y"], axis=2)], 11),
    "split2_attr": ([N("Split", ["x"], ["y", "z"], axis=2, split=[1, 3])], 2),
    "slice1_attrs": ([N("Slice", ["x"], ["y"], starts=[1, -1], ends=[3, 0], axes=[1, 3])], 1),
    "slice13_negative_step": ([N("Slice", ["x", "s", "e", "a", "st"], ["y"])], 13,
                              [("s", np.int64([-1, 3])), ("e", np.int64([-100, 0])), ("a", np.int64([2, 3])),
                               ("st", np.int64([-2, -1]))]),
    "reduce13_axes_attr": ([N("ReduceL2", ["x"], ["a"], axes=[1, 3], keepdims=0), N("ReduceLogSumExp", ["a"], ["y"])], 13),
    "reduce18_axes_input": ([N("ReduceSumSquare", ["x", "ax"], ["y"], keepdims=1)], 18, [("ax", np.int64([-1]))]),
    "convtranspose_same_lower": ([N("ConvTranspose", ["x", "k"], ["y"], auto_pad="SAME_LOWER", strides=[2, 3],
                                    group=2)], 11, [("k", w(2, 2, 3, 4))]),
    "convtranspose_pads_outpad": ([N("ConvTranspose", ["x", "k", "b"], ["y"], strides=[2, 2], pads=[1, 0, 0, 1],
                                     output_padding=[1, 0], dilations=[1, 2])], 11, [("k", w(2, 3, 3, 3)), ("b", w(3))]),
}


@pytest.mark.parametrize("name", sorted(OLD_OPSETS))
def test_op_variants_match_ort(name):
    nodes, opset, *inits = OLD_OPSETS[name]
    model = model_of(nodes, [("x", [2, 2, 4, 5])], [o for o in nodes[-1].output], inits[0] if inits else (), opset)
    assert_same(model, {"x": w(2, 2, 4, 5)})


@pytest.mark.parametrize("shape, kernel, attrs", [
    ([2, 2, 9], [3, 2, 4], {"auto_pad": "SAME_LOWER", "strides": [2]}),
    ([1, 2, 5, 4, 6], [2, 2, 3, 2, 3], {"auto_pad": "SAME_UPPER", "strides": [2, 1, 2]}),
    ([1, 4, 5, 4, 6], [2, 2, 2, 3, 2], {"auto_pad": "VALID", "group": 2, "strides": [1, 2, 2]}),
    ([1, 2, 4, 4, 5], [2, 1, 2, 2, 2], {"pads": [0, 1, 0, 1, 0, 2], "group": 2}),
], ids=["conv1d_same_lower", "conv3d_same_upper", "conv3d_valid_group", "conv3d_asymmetric_pads"])
def test_conv_1d_3d_auto_pad_match_ort(shape, kernel, attrs):
    model = model_of([N("Conv", ["x", "k"], ["y"], **attrs)], [("x", shape)], ["y"], [("k", w(*kernel))], 11)
    assert_same(model, {"x": w(*shape)})
