import pytest

from onnx_hawq.errors import InputError
from onnx_hawq.layers import Layer, torchscript_module_path
from onnx_hawq.plans import LayerBits, Plan, fingerprint, uniform_plan


def _layers():
    return [Layer("conv1", "/conv1/Conv", "Conv", "onnx::Conv_1", None, (4, 1, 3, 3), 0, 10),
            Layer("fc", "/fc/Gemm", "Gemm", "fc.weight", "fc.bias", (10, 4), 0, 40)]


def test_json_round_trip_and_resolve_with_aliases():
    plan = Plan(default=LayerBits(8, 8), layers={"fc.weight": LayerBits(4, 8)}, model=fingerprint(_layers()))
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.resolve(_layers()) == {"conv1": LayerBits(8, 8), "fc": LayerBits(4, 8)}


def test_unknown_layer_lists_close_matches():
    with pytest.raises(InputError, match=r"fcc \(did you mean: fc\?\)"):
        Plan(layers={"fcc": LayerBits(4, 8)}).resolve(_layers())


def test_uniform_specs():
    assert uniform_plan("8").default == LayerBits(8, 8)
    assert uniform_plan("w4a8").default == LayerBits(4, 8)
    assert uniform_plan("w4").default == LayerBits(4, 8)
    assert uniform_plan("4").default == LayerBits(4, 4)
    with pytest.raises(InputError):
        uniform_plan("w4a5")


def test_version_and_kind_are_checked():
    with pytest.raises(InputError, match="version"):
        Plan.from_dict({"kind": "onnx-hawq-plan", "version": 99})
    with pytest.raises(InputError, match="not a onnx-hawq-plan"):
        Plan.from_dict({"kind": "other", "version": 1})


def test_torchscript_scope_names_map_to_module_paths():
    assert torchscript_module_path("/layer2/layer2.0/downsample/downsample.0/Conv") == "layer2.0.downsample.0"
    assert torchscript_module_path("/fc/Gemm") == "fc"
    assert torchscript_module_path("node_Conv_3") is None
