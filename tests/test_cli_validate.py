"""`onnx-hawq validate` through click: exit codes 0/1/2, the report, the layer-wise table and plot."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from onnx_hawq.cli.main import cli, main
from tests.vhelpers import BROKEN_LAYER, FLOAT, TEST, write_models

FLOAT, TEST = str(FLOAT), str(TEST)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("validate"))


def validate(*args):
    return CliRunner().invoke(cli, ["validate", *args])


def test_good_model_passes_and_writes_report(paths, tmp_path):
    report = tmp_path / "r.json"
    result = validate(FLOAT, paths[0], "--data", TEST, "--labels", "label", "--min-top1-agreement", "98",
                      "--backends", "ort,reference", "--report", str(report))
    assert result.exit_code == 0, result.output
    out = result.output
    for line in ("PASSED  SQNR logits", "PASSED  top-1 agreement logits", "PASSED  accuracy drop",
                 "PASSED  reference == ort", "validation PASSED (4 checks)", "0 mismatching"):
        assert line in out
    doc = json.loads(report.read_text())
    assert doc["passed"] is True and doc["samples"] == 497 and doc["accuracy"]["drop"] <= 1.0


def test_broken_model_exits_1_and_names_the_layer(paths, tmp_path, capsys):
    plot, report = tmp_path / "layers.png", tmp_path / "r.json"
    code = main(["validate", FLOAT, paths[1], "--data", TEST, "--labels", "label", "--plot", str(plot),
                 "--report", str(report), "--top", "3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED  SQNR logits" in captured.out and "FAILED  accuracy drop" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith("error: validation FAILED (2 of 2 checks")
    table = captured.out[captured.out.index("rank"):].splitlines()
    assert table[1].split()[:2] == ["1", BROKEN_LAYER] and "8 more in the JSON report" in captured.out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(report.read_text())
    assert doc["passed"] is False and doc["layers"][0]["label"] == BROKEN_LAYER


def test_quiet_prints_only_failed_checks(paths, capsys):
    assert main(["validate", FLOAT, paths[1], "--data", TEST, "--min-sqnr", "none", "--min-cosine", "0.99",
                 "-q"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED  cosine logits") and "PASSED" not in out and len(out.splitlines()) == 1


def test_thresholds_can_be_switched_off(paths):
    result = validate(FLOAT, paths[1], "--data", TEST, "--min-sqnr", "none", "--max-accuracy-drop", "none")
    assert result.exit_code == 0 and "no checks" in result.output


@pytest.fixture()
def bad_data(tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, x=np.zeros((2, 1, 8, 8), np.float32))
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["missing.onnx", "{q}", "--data", TEST], "model file not found"),
    ([FLOAT, "{q}", "--data", "{bad}"], "lacks array(s) for model input(s) input"),
    ([FLOAT, "{q}", "--data", TEST, "--labels", "nope"], "has no array 'nope'"),
    ([FLOAT, "{q}", "--data", TEST, "--backends", "ort,gpu"], "unknown backend(s) gpu"),
    ([FLOAT, "{q}", "--data", TEST, "--min-sqnr", "high"], "--min-sqnr 'high' is not a number"),
    ([FLOAT, "{q}", "--data", TEST, "--report", "{q}"], "is the input file"),
    ([FLOAT, "{q}", "--data", TEST, "--plot", "{q}"], "is the input file"),
])
def test_bad_input_exits_2_with_one_line(paths, bad_data, capsys, args, message):
    argv = [a.format(q=paths[0], bad=bad_data) for a in args]
    before = open(paths[0], "rb").read()
    assert main(["validate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert open(paths[0], "rb").read() == before  # an input is never overwritten


def test_usage_errors_exit_2(paths, capsys):
    assert main(["validate", FLOAT, paths[0], "--data", TEST, "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err.splitlines()[-1]
    assert main(["validate", FLOAT, paths[0]]) == 2  # --data missing


def test_identical_models_report_infinite_sqnr_as_json_string(tmp_path, caplog):
    report = tmp_path / "r.json"
    result = validate(FLOAT, FLOAT, "--data", TEST, "--report", str(report))
    assert result.exit_code == 0 and "SQNR inf dB" in result.output
    doc = json.loads(report.read_text())
    assert doc["outputs"]["logits"]["metrics"]["sqnr_db"] == "inf" and doc["layers"] == []
    caplog.set_level(logging.WARNING, logger="onnx_hawq")  # an earlier -q may have raised the level
    result = validate(FLOAT, FLOAT, "--data", TEST, "--layerwise")  # no onnx-hawq nodes to map
    assert result.exit_code == 0 and "layer-wise" not in result.output
    assert "no node of the quantized model maps back" in caplog.text
