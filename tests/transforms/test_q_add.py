"""q_add: its refusal reason."""

from onnx_hawq.transforms import q_add
from onnx_hawq.transforms.annotate import Kind
from tests.transforms.rule_ctx import context, qnode, tq


def test_fused_relu_with_nonzero_output_zero_point_is_refused():
    qn = qnode("Add", Kind.ADD, ["a", "b"], fused=True)
    ctx = context({"a": tq(), "b": tq(), qn.out: tq(zp=12)})
    assert q_add.check(ctx, qn) == "fused Relu needs a zero-point-0 output"
    assert q_add.check(context({"a": tq(), "b": tq(), qn.out: tq(zp=0)}), qn) is None
