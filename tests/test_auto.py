"""`onnx-hawq auto` end to end on the digits sample, its size budget, and its exit codes."""

from __future__ import annotations

import json
import types

import pytest

from click.testing import CliRunner

from onnx_hawq.cli.main import cli, main
from onnx_hawq.planning import ilp
from onnx_hawq.planning.limits import parse_limit
from onnx_hawq.pipeline import size_budget
from tests.helpers import ORT_EXACT_RANGE
from tests.vhelpers import CALIB, FLOAT, TEST

# validated in onnxruntime: at the weight range its kernel on this CPU is exact at
BASE = [str(FLOAT), "--calib", str(CALIB), "--data", str(TEST), "--max-iter", "4", "--tol", "0.5", "--threads", "1",
        "--weight-range", ORT_EXACT_RANGE.value]
FILES = ["sensitivity.json", "sensitivity.png", "plan.json", "digits_resnet.quant.onnx", "quantize.json",
         "validation.json", "layers.png", "auto.json"]


def test_size_budget_is_between_smallest_and_w8a8():
    size = ilp.Resource("size", ((10, 20), (5, 9)))  # two layers, choices (4-bit, 8-bit)
    problem = ilp.Problem(((1.0, 0.0), (1.0, 0.0)), (size,), ((0, 1), (0, 1)), ((0,), (1,)))
    inst = types.SimpleNamespace(problem=problem, all8={"size": 29})
    assert size_budget(inst, parse_limit("size", "50%")).to_dict() == {"bytes": 22, "smallest": 15, "all8": 29}
    assert size_budget(inst, parse_limit("size", "100%")).bytes == 29
    assert size_budget(inst, parse_limit("size", "40KB")).bytes == 40_000


@pytest.mark.slow
def test_auto_digits_end_to_end(tmp_path):
    out = tmp_path / "auto"
    result = CliRunner().invoke(cli, ["auto", *BASE, "--labels", "label", "--max-size", "50%", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    summary = json.loads((out / "auto.json").read_text())
    assert summary["passed"] is True and summary["accuracy"]["drop"] <= 1.0
    assert set(summary["seconds"]) == {"sensitivity", "plan", "quantize", "validate"}
    assert summary["config"]["threads"] == 1 and summary["config"]["hessian"]["max_iter"] == 4
    plan = json.loads((out / "plan.json").read_text())
    budget = plan["meta"]["size_budget"]
    assert budget["bytes"] == int(budget["smallest"] + 0.5 * (budget["all8"] - budget["smallest"]))
    assert plan["meta"]["resources"]["size"]["use"] <= budget["bytes"] == summary["size_budget"]["bytes"]
    assert {b["w_bits"] for b in plan["layers"].values()} == {4, 8}  # a real mix
    quant = json.loads((out / "quantize.json").read_text())
    assert quant["totals"]["size_bytes"] == summary["size_bytes"] <= budget["bytes"]
    weights = {"rounding": "gptq", "range": ORT_EXACT_RANGE.value}  # Ω from the calibration data's GPTQ weights
    assert plan["weights"] == quant["weights"] == weights
    for line in ("stage", "sensitivity", "plan", "quantize", "validate", "accuracy: float 99.80%", "gate PASSED"):
        assert line in result.output


@pytest.mark.slow
def test_auto_failing_gate_exits_1_after_writing_everything(tmp_path, capsys):
    out = tmp_path / "auto"
    code = main(["auto", *BASE, "--max-iter", "2", "--max-size", "100%", "--min-sqnr", "80", "--no-layerwise",
                 "-o", str(out), "-q"])
    assert code == 1
    assert "error: validation FAILED (1 of 1 checks: SQNR logits)" in capsys.readouterr().err
    report = json.loads((out / "validation.json").read_text())
    assert report["passed"] is False and report["layers"] == []
    summary = json.loads((out / "auto.json").read_text())
    assert summary["plan"] == {"w8a8": 7}  # 100%: all 8-bit
    assert "layers_png" not in summary["artefacts"] and summary["passed"] is False
    assert not (out / "layers.png").exists()


def test_auto_bad_input_exits_2_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["auto", *BASE, "-o", str(blocker)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["auto", *BASE, "--max-size", "lots", "-o", str(tmp_path / "o")]) == 2
    assert "--max-size 'lots'" in capsys.readouterr().err
    assert main(["auto", *BASE, "--labels", "nolabel", "-o", str(tmp_path / "o")]) == 2
    assert "has no array 'nolabel' for --labels" in capsys.readouterr().err
    assert main(["auto", *BASE, "--calib", str(tmp_path / "none.npz"), "-o", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_auto_loads_and_prepares_the_model_once(tmp_path, monkeypatch):
    import sys

    from onnx_hawq import model_io
    from onnx_hawq.transforms import prepare

    calls = {"load": 0, "prepare": 0}
    real_load, real_any, real_prepare = model_io.load_model, model_io.load_model_any, prepare.prepare_model

    def counted(real):
        def load(path):
            calls["load"] += int(str(path) == str(FLOAT))
            return real(path)
        return load

    loaders = {real_load: counted(real_load), real_any: counted(real_any)}

    def prep(model):
        calls["prepare"] += 1
        return real_prepare(model)

    for mod in [m for name, m in list(sys.modules.items()) if name.startswith("onnx_hawq") and m is not None]:
        for attr in ("load_model", "load_model_any"):
            if getattr(mod, attr, None) in loaders:
                monkeypatch.setattr(mod, attr, loaders[getattr(mod, attr)])
        if getattr(mod, "prepare_model", None) is real_prepare:
            monkeypatch.setattr(mod, "prepare_model", prep)
    code = main(["auto", *BASE, "--max-iter", "2", "--no-layerwise", "-q", "-o", str(tmp_path / "o")])
    assert code == 0
    assert calls == {"load": 1, "prepare": 1}
