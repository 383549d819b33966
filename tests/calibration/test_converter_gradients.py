"""The converted ops are differentiable (gradcheck in float64) and twice differentiable (gradgradcheck),
as Hutchinson's Hessian-vector products need."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch.autograd import gradcheck, gradgradcheck  # noqa: E402

from onnx_hawq.calibration.torch_ops import OPS, Attrs  # noqa: E402
from onnx_hawq.calibration.onnx_to_torch import to_torch  # noqa: F401,E402  (registers every op file)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).requires_grad_()


def node(op_type: str, opset: int = 18, n_outputs: int = 1, **attrs):
    """The registered function of `op_type` with attributes bound: f(*inputs)."""
    a = Attrs(attrs, opset, op_type, n_outputs)
    return lambda *xs: OPS[op_type](a, *xs)


def lstm_fn(**attrs):
    f = node("LSTM", 14, 3, hidden_size=2, **attrs)
    lens = torch.tensor([3, 2], dtype=torch.int32)
    return lambda x, w, r, b, h0, c0, p: f(x, w, r, b, lens, h0, c0, p)


def lstm_inputs(dirs=2):
    return (rand(3, 2, 2), rand(dirs, 8, 2), rand(dirs, 8, 2), rand(dirs, 16), rand(dirs, 2, 2), rand(dirs, 2, 2),
            rand(dirs, 6))


CASES = {
    "lstm_bidirectional_lens": (lstm_fn(direction="bidirectional"), lstm_inputs()),
    "lstm_clip_input_forget": (lstm_fn(clip=3.0, input_forget=1), lstm_inputs(1)),
    "gru_lbr0": (node("GRU", 14, 2, hidden_size=2, direction="reverse"),
                 (rand(3, 2, 2), rand(1, 6, 2), rand(1, 6, 2), rand(1, 12))),
    "gru_lbr1_layout1": (node("GRU", 14, 2, hidden_size=2, linear_before_reset=1, layout=1),
                         (rand(2, 3, 2), rand(1, 6, 2), rand(1, 6, 2), rand(1, 12))),
    "rnn": (node("RNN", 14, 2, hidden_size=2), (rand(3, 2, 2), rand(1, 2, 2), rand(1, 2, 2), rand(1, 4))),
    "resize_linear": (lambda x: node("Resize", 13, mode="linear")(x, None, torch.tensor([1, 1, 1.5, 2.0])),
                      (rand(1, 2, 3, 3),)),
    "resize_cubic_sizes": (lambda x: node("Resize", 13, mode="cubic", coordinate_transformation_mode="align_corners")(
        x, None, None, torch.tensor([1, 1, 2, 5])), (rand(1, 1, 3, 3),)),
    "conv_transpose": (node("ConvTranspose", 11, strides=[2, 1], pads=[1, 0, 0, 1], output_padding=[1, 0], group=2),
                       (rand(1, 2, 3, 3), rand(2, 1, 2, 3), rand(2))),
    "conv_transpose_1d_output_shape": (node("ConvTranspose", 11, strides=[2], output_shape=[8]),
                                       (rand(1, 2, 3), rand(2, 1, 3))),
    "hardswish": (node("HardSwish"), (rand(2, 5) * 4,)),
    "mish_softplus_softsign": (lambda x: node("Mish")(x) + node("Softplus")(x) * node("Softsign")(x), (rand(2, 5),)),
    "elu_selu_celu_prelu": (lambda x, s: node("Elu")(x) + node("Selu")(x) + node("Celu", alpha=0.7)(x)
                            + node("PRelu")(x, s), (rand(2, 3), rand(3))),
    "group_norm": (node("GroupNormalization", 21, num_groups=2), (rand(2, 4, 3), rand(4), rand(4))),
    "instance_norm": (node("InstanceNormalization"), (rand(2, 3, 4), rand(3), rand(3))),
    "pad_reflect_wrap": (lambda x: node("Pad", 19, mode="reflect")(x, torch.tensor([1, 2, 0, 1]), None,
                                                                     torch.tensor([1, 2]))
                         + node("Pad", 19, mode="wrap")(x, torch.tensor([1, 2, 0, 1]), None, torch.tensor([1, 2])),
                         (rand(1, 3, 4),)),
    "reduce_l2_logsumexp": (lambda x: node("ReduceL2", keepdims=0)(x, torch.tensor([1]))
                            + node("ReduceLogSumExp", keepdims=0)(x, torch.tensor([1])), (rand(2, 3, 2),)),
    "depth_to_space_crd": (node("DepthToSpace", blocksize=2, mode="CRD"), (rand(1, 8, 2, 2),)),
    "einsum": (node("Einsum", equation="bij,bjk->bik"), (rand(2, 2, 3), rand(2, 3, 2))),
}


def _summed(fn):
    """fn's outputs (tuple or tensor, Nones dropped) -> a tuple of float tensors gradcheck can compare."""
    def run(*xs):
        out = fn(*xs)
        return tuple(o for o in (out if isinstance(out, tuple) else (out,)) if o is not None)
    return run


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    fn, inputs = CASES[name]
    inputs = tuple(t.detach().requires_grad_() for t in inputs)
    assert gradcheck(_summed(fn), inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm_bidirectional_lens", "conv_transpose", "gru_lbr0", "resize_linear"])
def test_gradgradcheck(name):
    fn, inputs = CASES[name]
    inputs = tuple(t.detach().requires_grad_() for t in inputs)
    assert gradgradcheck(_summed(fn), inputs, eps=1e-6, atol=1e-5)


def test_lstm_hessian_vector_product_matches_finite_difference():
    """v^T H v of a loss w.r.t. the LSTM weight W via double backward equals a central second difference."""
    fn, inputs = CASES["lstm_bidirectional_lens"]
    x, w, *rest = (t.detach() for t in inputs)
    loss = lambda w: sum((o ** 2).sum() for o in _summed(fn)(x, w, *rest))
    v = torch.randn(w.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    wp = w.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss(wp), wp, create_graph=True)
    (hv,) = torch.autograd.grad(g, wp, grad_outputs=v)
    h = 1e-4
    fd = (loss(w + h * v) - 2 * loss(w) + loss(w - h * v)) / h ** 2
    assert abs(float((v * hv).sum()) - float(fd)) < 1e-4 * max(1.0, abs(float(fd)))
