"""q_conv: its refusal reason (the QLinearConv rewrite itself is covered by test_q_rules)."""

import numpy as np

from onnx_hawq.transforms import q_conv
from onnx_hawq.transforms.annotate import Kind
from tests.transforms.rule_ctx import context, conv_layer, qnode, tq


def test_conv1d_is_refused_with_reason():
    w = np.ones((4, 2, 3), np.float32)
    qn = qnode("Conv", Kind.CONV, ["x", "w"], layer=conv_layer(w))
    assert q_conv.check(context({"x": tq(), "y": tq()}, {"w": w}), qn) == "only 2-D convolutions have a QLinearConv kernel"


def test_conv2d_passes_the_check():
    w = np.ones((4, 2, 3, 3), np.float32)
    qn = qnode("Conv", Kind.CONV, ["x", "w"], layer=conv_layer(w))
    assert q_conv.check(context({"x": tq(), "y": tq()}, {"w": w}), qn) is None
