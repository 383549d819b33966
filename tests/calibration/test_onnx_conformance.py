"""The converter reproduces ONNX's own node conformance cases for every op family it supports."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnx_hawq.calibration.onnx_to_torch import to_torch  # noqa: E402
from tests.calibration import onnx_cases  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = (
    "test_lstm", "test_gru", "test_rnn", "test_simple_rnn", "test_resize", "test_upsample", "test_convtranspose",
    "test_conv_", "test_basic_conv", "test_hardswish", "test_mish", "test_reduce", "test_edge_pad",
    "test_reflect_pad", "test_wrap_pad", "test_constant_pad", "test_depthtospace", "test_spacetodepth",
    "test_instancenorm", "test_group_norm", "test_clip", "test_elu", "test_selu", "test_celu", "test_prelu",
    "test_leakyrelu", "test_thresholdedrelu", "test_softplus", "test_softsign", "test_hardsigmoid", "test_einsum",
    "test_slice", "test_split_", "test_gather", "test_expand", "test_where", "test_argmax", "test_argmin",
    "test_top_k", "test_nonmaxsuppression", "test_nonzero", "test_shape", "test_size", "test_tril", "test_triu", "test_cumsum",
    "test_onehot", "test_scatter", "test_mod", "test_sign", "test_round", "test_isinf", "test_isnan",
    "test_cast_FLOAT_to_DOUBLE", "test_cast_DOUBLE_to_FLOAT", "test_cast_FLOAT16_to_FLOAT", "test_cast_FLOAT_to_FLOAT16",
    "test_castlike_FLOAT_to_DOUBLE", "test_gelu", "test_softmax", "test_layer_normalization", "test_batchnorm",
    "test_maxpool", "test_averagepool", "test_globalaveragepool", "test_swish", "test_shrink", "test_hardmax",
)

# Cases the converter does not cover, with the reason shown in the skip message.
SKIPS = {
    "bfloat16": "bfloat16 tensors have no numpy->torch path (ml_dtypes)",
    "test_mod_uint": "torch has no remainder for uint16/32/64",
    "test_split_to_sequence": "sequence types (SplitToSequence) are not supported",
    "test_top_k_uint64": "torch has no sort for uint64",
    "FLOAT8": "float8 tensors have no numpy->torch path (ml_dtypes)",
    "FLOAT4": "float4 tensors have no numpy->torch path (ml_dtypes)",
    "test_averagepool_2d_dilations": "AveragePool dilations: existing pool op, not covered",
    "test_averagepool_3d_dilations": "AveragePool dilations: existing pool op, not covered",
    "test_maxpool_with_argmax": "MaxPool Indices output: not supported",
    "training_mode": "BatchNormalization training mode (running-stat outputs): not supported",
}


def _skip_reason(name: str) -> str | None:
    return next((why for key, why in SKIPS.items() if key in name), None)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    CASES = onnx_cases.names(FAMILIES)


def test_every_family_has_cases():
    missing = [f for f in FAMILIES if not any(n.startswith(f) for n in CASES)]
    assert missing == []


@pytest.mark.parametrize("name", CASES)
def test_matches_onnx_node_case(name):
    reason = _skip_reason(name)
    if reason:
        pytest.skip(reason)
    model, inputs, expected = onnx_cases.load(name)
    with torch.no_grad():
        out = to_torch(model)(*(torch.from_numpy(np.array(v)) for v in inputs))
    out = out if isinstance(out, tuple) else (out,)
    assert len(out) == len(expected)
    for got, want in zip(out, expected):
        got = got.numpy()
        assert got.shape == want.shape and got.dtype == want.dtype
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        else:
            np.testing.assert_array_equal(got, want)


def test_case_folder_reader_round_trips(tmp_path):
    """The data/node folder layout (model.onnx, test_data_set_0/input_*.pb, output_*.pb) reads back exactly."""
    import onnx
    from onnx import numpy_helper

    model, inputs, outputs = onnx_cases.load("test_lstm_defaults")
    onnx.save(model, tmp_path / "model.onnx")
    (tmp_path / "test_data_set_0").mkdir()
    for kind, arrays in (("input", inputs), ("output", outputs)):
        for i, arr in enumerate(arrays):
            (tmp_path / "test_data_set_0" / f"{kind}_{i}.pb").write_bytes(
                numpy_helper.from_array(arr).SerializeToString())
    model2, inputs2, outputs2 = onnx_cases._from_dir(tmp_path)
    assert model2.graph == model.graph
    for a, b in zip(inputs + outputs, inputs2 + outputs2):
        np.testing.assert_array_equal(a, b)
