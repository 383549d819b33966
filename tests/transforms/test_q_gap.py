"""q_gap: its refusal reasons."""

from onnx_hawq.transforms import q_gap
from onnx_hawq.transforms.annotate import Kind
from tests.transforms.rule_ctx import context, qnode, tq


def test_unknown_spatial_size_is_refused():
    qn = qnode("GlobalAveragePool", Kind.GAP, ["x"])
    assert q_gap.check(context({"x": tq(), "y": tq()}), qn) == "input spatial size is unknown"


def test_scale_ratio_out_of_range_is_refused():
    qn = qnode("GlobalAveragePool", Kind.GAP, ["x"])
    ctx = context({"x": tq(scale=1000.0), "y": tq(scale=1e-3)}, spatial={"x": 4})
    assert q_gap.check(ctx, qn) == "scale ratio outside onnxruntime's supported range"
    assert q_gap.check(context({"x": tq(), "y": tq()}, spatial={"x": 4}), qn) is None
