"""Reliability battery, models and options: `auto` refuses bad options and labels before any work,
`plan --max-bops` refuses layers of unknown MACs, and models with external data (> 2 GB) load,
quantize and validate."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
from onnx_hawq.cli.main import cli, main
from onnx_hawq.layers import find_layers
from onnx_hawq.plans import fingerprint
from tests.helpers import make_model, rng
from tests.vhelpers import CALIB, FLOAT, TEST

BASE = [str(FLOAT), "--calib", str(CALIB), "--data", str(TEST), "--max-iter", "2", "--threads", "1"]


@pytest.fixture()
def no_hessian(monkeypatch):
    """Fail the test if auto reaches the sensitivity stage."""
    from onnx_hawq import pipeline

    def forbidden(*args):
        raise AssertionError("the Hessian stage ran")

    monkeypatch.setattr(pipeline, "sensitivity_stage", forbidden)


def refused(capsys, *argv) -> str:
    """main()'s stderr for `argv`, which must exit 2 (bad input) with one line."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def labels_file(tmp_path, label_value: int):
    data = dict(np.load(TEST))
    data["label"] = np.full(len(data["input"]), label_value, np.int64)
    np.savez(tmp_path / "bad_labels.npz", **data)
    return str(tmp_path / "bad_labels.npz")


@pytest.mark.parametrize("args,message", [
    (["--pin", "nosuch=8"], "error: --pin: no layer named 'nosuch'"),
    (["--bits", "4,9"], "error: weight bits 9 unsupported (use 2..8)"),
    (["--act-bits", "6"], "error: activation bits 6 unsupported (use 4 or 8)"),
    (["--max-size", "1KB"], "error: limits cannot be met with these bits, pins and ties: --max-size is 1 KB, "
                            "smallest achievable"),
    (["--labels", "label", "--classes-axis", "-1", "--max-size", "50%"], None),
])
def test_auto_refuses_bad_options_before_the_hessian(tmp_path, capsys, no_hessian, args, message):
    if message is None:  # labels out of range for the 10 digit classes
        args = ["--data", labels_file(tmp_path, 12), *args]
        message = "error: --labels: label 12 is out of range for 10 classes (output logits)"
    out = tmp_path / "out"
    assert refused(capsys, "auto", *BASE, *args, "-o", out).startswith(message)
    assert not out.exists()


def test_auto_refuses_labels_for_an_output_that_is_no_classifier(tmp_path, capsys, no_hessian):
    x = rng(0).normal(size=(8, 4, 3)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")], [("x", ["N", 4, 3])],
                       [("y", ["N", 4, 5])], {"w": rng(1).normal(size=(3, 5)).astype(np.float32)})
    onnx.save(model, str(tmp_path / "ocr.onnx"))
    np.savez(tmp_path / "d.npz", x=x, label=np.zeros(8, np.int64))
    err = refused(capsys, "auto", tmp_path / "ocr.onnx", "--calib", tmp_path / "d.npz", "--data", tmp_path / "d.npz",
                  "--labels", "label", "-o", tmp_path / "out")
    assert err == "error: --labels needs output y to hold class scores for each label ([N, C]); it has shape (1, 4, 5)"
    assert not (tmp_path / "out").exists()


def dynamic_spatial_model() -> onnx.ModelProto:
    """Conv over an [N, 3, H, W] input (MACs unknown) -> GlobalAveragePool -> Flatten -> Gemm (known)."""
    r = rng(2)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    inits = {"w": r.normal(size=(4, 3, 3, 3)), "b": np.zeros(4), "fw": r.normal(size=(2, 4)), "fb": np.zeros(2)}
    return make_model(nodes, [("x", ["N", 3, "H", "W"])], [("y", ["N", 2])],
                      {k: v.astype(np.float32) for k, v in inits.items()})


def test_plan_refuses_max_bops_when_macs_are_unknown(tmp_path, capsys):
    from onnx_hawq.planning.instance import load_prepared

    onnx.save(dynamic_spatial_model(), str(tmp_path / "m.onnx"))
    _, layers = load_prepared(str(tmp_path / "m.onnx"))
    assert [(l.name, l.macs > 0) for l in layers] == [("w", False), ("fw", True)]
    Sensitivity(fingerprint(layers), "trace", {l.name: LayerSensitivity(1.0) for l in layers}).save(tmp_path / "s.json")
    argv = ["plan", str(tmp_path / "m.onnx"), "--sensitivity", str(tmp_path / "s.json"), "-o", str(tmp_path / "p.json")]
    assert refused(capsys, *argv, "--max-bops", "50%").startswith(
        "error: --max-bops needs static shapes: the MACs of layer(s) w are unknown (dynamic spatial dimensions)")
    assert not (tmp_path / "p.json").exists()
    assert CliRunner().invoke(cli, [*argv, "--max-size", "50%"]).exit_code == 0


def test_find_layers_counts_macs_of_static_shapes():
    model = dynamic_spatial_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 5
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 6
    assert [l.macs for l in find_layers(model)] == [4 * 5 * 6 * 27, 2 * 4]
