"""q_gap: its refusal reasons."""

from onnx_hawq.transforms import q_gap
from onnx_hawq.transforms.annotate import Kind
from tests.transforms.rule_ctx import context, qnode, tq


def test_symbolic_spatial_size_is_accepted_while_every_size_keeps_the_ratio_in_range():
    """onnxruntime divides by the size it sees at run time: the ratio must hold from 1 to MAX_POOLED values."""
    qn = qnode("GlobalAveragePool", Kind.GAP, ["x"])
    assert q_gap.check(context({"x": tq(), "y": tq()}), qn) is None
    assert q_gap.check(context({"x": tq(scale=300.0), "y": tq(scale=1.0)}), qn) == \
        "scale ratio outside onnxruntime's supported range"
    assert q_gap.check(context({"x": tq(scale=300.0), "y": tq(scale=1.0)}, spatial={"x": 4}), qn) is None


def test_scale_ratio_out_of_range_is_refused():
    qn = qnode("GlobalAveragePool", Kind.GAP, ["x"])
    ctx = context({"x": tq(scale=1000.0), "y": tq(scale=1e-3)}, spatial={"x": 4})
    assert q_gap.check(ctx, qn) == "scale ratio outside onnxruntime's supported range"
    assert q_gap.check(context({"x": tq(), "y": tq()}, spatial={"x": 4}), qn) is None
