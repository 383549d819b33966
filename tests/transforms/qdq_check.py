"""The QDQ-form assertion shared by the test_qdq_* files: rewrite, check, load, compare with the
QLinear form in onnxruntime, and read which integer kernels onnxruntime's QDQ fusion made."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from onnx_hawq.transforms.to_qdq_form import to_qdq_form
from tests.helpers import op_list, run_ort


def ort_optimized_ops(model: onnx.ModelProto, tmp_path) -> list[str]:
    """The op types onnxruntime runs after its graph optimizations (QDQ fusion included)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return op_list(onnx.load(opts.optimized_model_filepath))


def qdq_outputs(model: onnx.ModelProto, feeds: dict, expected_ops: list[str], int4: str = "cast"):
    """(QDQ model, QLinear outputs, QDQ outputs) after checking the rewrite leaves `model` untouched,
    gives `expected_ops` and passes the full onnx.checker."""
    before = model.SerializeToString()
    out = to_qdq_form(model, int4)
    assert model.SerializeToString() == before
    onnx.checker.check_model(out, full_check=True)
    assert op_list(out) == expected_ops
    return out, run_ort(model, feeds), run_ort(out, feeds)


def assert_bit_equal(want: list, got: list) -> None:
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert int(np.sum(a != b)) == 0, f"{int(np.sum(a != b))} of {a.size} differ"
