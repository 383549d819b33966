"""Digits models for the validation tests: float, a W8A8 quantization, and a deliberately broken copy."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnx_hawq.model_io import load_data, load_model, save_model
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_model
from tests.helpers import ORT_EXACT, SAMPLE

FLOAT = SAMPLE / "digits_resnet.onnx"
CALIB = SAMPLE / "digits_calib.npz"
TEST = SAMPLE / "digits_test.npz"
BROKEN_LAYER = "layer1.0.conv1"


def quantized(bits: str = "8") -> onnx.ModelProto:
    """The digits model quantized with uniform `bits`, calibrated on the calibration set."""
    model = load_model(FLOAT)
    return quantize_model(model, uniform_plan(bits), load_data(CALIB, model), rounding=ORT_EXACT).model


def break_layer(model: onnx.ModelProto, layer: str = BROKEN_LAYER, factor: float = 10.0) -> onnx.ModelProto:
    """A copy of `model` whose `layer` has its weight scale (w_scale) multiplied by `factor`."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    node = next(n for n in out.graph.node
                if any(p.key == "hawq.layer" and p.value.strip('"') == layer for p in n.metadata_props))
    init = next(i for i in out.graph.initializer if i.name == node.input[4])
    init.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(init) * factor).astype(np.float32), init.name))
    return out


def held_out() -> tuple[dict[str, np.ndarray], np.ndarray]:
    with np.load(TEST) as npz:
        return {"input": npz["input"]}, npz["label"]


def write_models(folder) -> tuple[str, str]:
    """Save the W8A8 model and its broken copy into `folder`; return their paths."""
    good = quantized("8")
    paths = str(folder / "w8a8.onnx"), str(folder / "broken.onnx")
    save_model(good, paths[0])
    save_model(break_layer(good), paths[1])
    return paths
