"""Models exported by torch.onnx (a conv + bidirectional LSTM + GRU recognizer, an FPN-like detector with
Resize and ConvTranspose) convert, match onnxruntime, and give finite Hutchinson traces per layer."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from onnx_hawq.calibration.hessian import HessianConfig  # noqa: E402
from onnx_hawq.calibration.onnx_route import onnx_sensitivities  # noqa: E402
from onnx_hawq.calibration.onnx_to_torch import to_torch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Recognizer(nn.Module):
    """Conv -> HardSwish -> height mean -> bidirectional LSTM -> GRU -> Linear, per column."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.lstm = nn.LSTM(4, 5, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(10, 3)
        self.fc = nn.Linear(3, 6)

    def forward(self, x):
        y = nn.functional.hardswish(self.conv(x)).mean(2).transpose(1, 2)
        y, _ = self.lstm(y)
        y, _ = self.gru(y)
        return self.fc(y).transpose(1, 2)


class Detector(nn.Module):
    """Strided conv, bilinear and nearest Resize back up, a ConvTranspose branch, a 1x1 head."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        a = self.down(x)
        u = nn.functional.interpolate(a, scale_factor=2, mode="bilinear", align_corners=False)
        n = nn.functional.interpolate(a, size=(x.shape[2], x.shape[3]), mode="nearest")
        return self.head(u + n + self.up(a))


def export(module: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    torch.manual_seed(0)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), buf, dynamo=False, opset_version=17, input_names=["input"],
                          dynamic_axes={"input": {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("kind, shape", [("recognizer", (4, 1, 4, 6)), ("detector", (4, 2, 8, 8))])
def test_exported_model_matches_ort_and_has_traces(kind, shape):
    torch.manual_seed(0)
    module = Recognizer() if kind == "recognizer" else Detector()
    x = torch.randn(*shape)
    model = export(module, x)
    ops = {n.op_type for n in model.graph.node}
    assert ({"LSTM", "GRU"} if kind == "recognizer" else {"Resize", "ConvTranspose"}) <= ops
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    with torch.no_grad():
        out = to_torch(model)(x)
    np.testing.assert_allclose(out.numpy(), ref[0], rtol=1e-4, atol=1e-5)
    config = HessianConfig(max_iter=6, min_iter=3, tol=1.0)
    result = onnx_sensitivities(model, {"input": x.numpy()}, None, config, 2, None, False)
    assert len(result.layers) >= 2 and result.hvp_count > 0
    for layer in result.layers.values():  # KL at the model's own output: a Gauss-Newton block, PSD
        assert np.isfinite(layer.trace) and layer.trace > 0 and layer.samples >= 3
