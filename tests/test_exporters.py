"""Both torch exporters give the same layer names, and both exports quantize exactly."""

import sys

import numpy as np
import onnx
import pytest

from onnx_hawq.layers import find_layers
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import fingerprint, uniform_plan
from onnx_hawq.quantization import quantize_model
from onnx_hawq.transforms.prepare import prepare_model
from tests.helpers import SAMPLE
from tests.qhelpers import assert_ort_equals_reference

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def dynamo_export(tmp_path_factory):
    sys.path.insert(0, str(SAMPLE))
    import digits_resnet

    model = digits_resnet.build_model()
    model.load_state_dict(torch.load(SAMPLE / "digits_resnet.pt"))
    model.eval()
    path = tmp_path_factory.mktemp("dyn") / "dyn.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["input"], dynamo=True, verbose=False)
    return onnx.load(str(path))


def test_dynamo_and_torchscript_exports_share_layer_names(dynamo_export):
    ts = find_layers(prepare_model(onnx.load(str(SAMPLE / "digits_resnet.onnx"))))
    dyn = find_layers(prepare_model(dynamo_export))
    assert [l.name for l in dyn] == [l.name for l in ts]
    assert fingerprint(dyn) == fingerprint(ts)


def test_dynamo_export_quantizes_exactly(dynamo_export):
    calib = load_data(SAMPLE / "digits_calib.npz", dynamo_export)
    q = quantize_model(dynamo_export, uniform_plan("w4a8"), calib).model
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QLinearConv") == 6 and "QLinearGlobalAveragePool" in ops and "QGemm" in ops
    x = np.load(SAMPLE / "digits_test.npz")["input"][:1]
    assert_ort_equals_reference(q, {"input": x})
