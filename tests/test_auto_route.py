"""`auto` picks the sensitivity route: the Hessian where torch converts the graph, else the measured ΔL."""

from __future__ import annotations

import json

import onnx
from onnx import helper

from onnx_hawq import pipeline
from onnx_hawq.cli.main import main
from tests.vhelpers import CALIB, FLOAT, TEST


def with_asinh(path) -> str:
    """The digits model with Asinh (monotonic; no torch converter) on its output."""
    model = onnx.load(str(FLOAT))
    out = model.graph.output[0]
    for node in model.graph.node:
        node.output[:] = [f"{o}_pre" if o == out.name else o for o in node.output]
    model.graph.node.append(helper.make_node("Asinh", [f"{out.name}_pre"], [out.name], name="asinh"))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def test_auto_falls_back_to_perturbation_with_a_notice(tmp_path, capsys, caplog):
    model = with_asinh(tmp_path / "asinh.onnx")
    out = tmp_path / "auto"
    code = main(["auto", model, "--calib", str(CALIB), "--data", str(TEST), "--max-size", "50%",
                 "--no-layerwise", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "unsupported op(s) Asinh; using the forward-only perturbation sensitivity" in caplog.text
    sens = json.loads((out / "sensitivity.json").read_text())
    assert sens["method"] == "perturbation"
    summary = json.loads((out / "auto.json").read_text())
    assert summary["config"]["route"] == "auto" and summary["passed"] is True


def test_auto_method_hessian_refuses_in_one_line(tmp_path, capsys):
    model = with_asinh(tmp_path / "asinh.onnx")
    code = main(["auto", model, "--calib", str(CALIB), "--data", str(TEST), "--method", "hessian",
                 "-q", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "error: --method hessian: cannot convert the model to torch: unsupported op(s) Asinh" in err
    assert not (tmp_path / "o").exists()


def test_route_without_torch_is_perturbation(monkeypatch):
    monkeypatch.setattr(pipeline, "torch_installed", lambda: False)
    prepared = onnx.load(str(FLOAT))
    assert pipeline.hessian_refusal(prepared) == "torch is not installed (the [torch] extra)"
    inp = pipeline.Inputs(prepared, prepared, {}, {}, None)
    cfg = pipeline.AutoConfig(model="m", calib="c", data="d", output="o",
                              max_size=_limit())
    assert pipeline.sensitivity_route(cfg, inp) == "perturbation"
    monkeypatch.setattr(pipeline, "torch_installed", lambda: True)
    assert pipeline.sensitivity_route(cfg, inp) == "hessian"


def _limit():
    from onnx_hawq.planning.limits import parse_limit

    return parse_limit("size", "50%")
