"""`onnx-hawq quantize` and `inspect` through the CLI: outputs, reports, and clean failures."""

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnx_hawq.cli.main import cli, main
from tests.helpers import SAMPLE

MODEL, CALIB = str(SAMPLE / "digits_resnet.onnx"), str(SAMPLE / "digits_calib.npz")


def _quantize(tmp_path, *extra):
    out = tmp_path / "q.onnx"
    return main(["quantize", MODEL, "--calib", CALIB, "-o", str(out), "-q", *extra]), out


def test_quantize_writes_model_and_report_and_inspect_reads_it(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"kind": "onnx-hawq-plan", "version": 1, "default": {"w_bits": 8, "a_bits": 8},
                                "layers": {"layer1.0.conv1": {"w_bits": 4, "a_bits": 8}}}))
    rc, out = _quantize(tmp_path, "--bits-from", str(plan))
    assert rc == 0
    onnx.checker.check_model(onnx.load(str(out)))
    report = json.loads((tmp_path / "q.report.json").read_text())
    rows = {r["layer"]: r for r in report["layers"]}
    assert rows["layer1.0.conv1"]["w_bits"] == 4 and rows["conv1"]["w_bits"] == 8
    assert report["totals"]["all_exact"] is True
    result = CliRunner().invoke(cli, ["inspect", str(out)])
    assert result.exit_code == 0 and "layer1.0.conv1" in result.output and "QLinearConv" in result.output


def _assert_refused(tmp_path, capsys, args, message):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([l for l in err if l.startswith("error:")]) == 1 and message in err[-1], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bad_inputs_fail_with_one_line_and_exit_2(tmp_path, capsys):
    out = str(tmp_path / "q.onnx")
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes((SAMPLE / "digits_resnet.onnx").read_bytes()[:500])
    notonnx = tmp_path / "x.onnx"
    notonnx.write_text("hello")
    badplan = tmp_path / "plan.json"
    badplan.write_text(json.dumps({"kind": "onnx-hawq-plan", "version": 1, "layers": {"layer1.0.conv": {"w_bits": 4}}}))
    wrongbits = tmp_path / "bits.json"
    wrongbits.write_text(json.dumps({"kind": "onnx-hawq-plan", "version": 1, "default": {"w_bits": 9}}))
    np.savez(tmp_path / "nokey.npz", image=np.zeros((2, 1, 8, 8), np.float32))
    np.savez(tmp_path / "shape.npz", input=np.zeros((2, 1, 7, 8), np.float32))
    np.savez(tmp_path / "dtype.npz", input=np.zeros((2, 1, 8, 8), np.int64))
    base = ["quantize", "-q", "--calib", CALIB, "-o", out]
    cases = [([*base, str(trunc), "--bits", "8"], "not a readable ONNX model"),
             ([*base, str(notonnx), "--bits", "8"], "not a readable ONNX model"),
             ([*base, MODEL, "--bits-from", str(badplan)], "layer1.0.conv (did you mean: layer1.0.conv2, layer1.0.conv1"),
             ([*base, MODEL, "--bits-from", str(wrongbits)], "weight bits 9 unsupported"),
             ([*base, MODEL, "--bits", "w9x"], "not a bit spec"),
             (["quantize", "-q", MODEL, "--bits", "8", "--calib", str(tmp_path / "nokey.npz"), "-o", out], "lacks array"),
             (["quantize", "-q", MODEL, "--bits", "8", "--calib", str(tmp_path / "shape.npz"), "-o", out], "has shape"),
             (["quantize", "-q", MODEL, "--bits", "8", "--calib", str(tmp_path / "dtype.npz"), "-o", out], "dtype")]
    for args, message in cases:
        _assert_refused(tmp_path, capsys, args, message)


def test_output_equal_to_input_is_refused_and_input_untouched(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(MODEL, model)
    original = model.read_bytes()
    _assert_refused(tmp_path, capsys, ["quantize", "-q", str(model), "--bits", "8", "--calib", CALIB,
                                       "-o", str(model)], "is the input file")
    assert model.read_bytes() == original


def test_plan_for_another_model_is_refused(tmp_path, capsys):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"kind": "onnx-hawq-plan", "version": 1, "model": "0123456789abcdef"}))
    _assert_refused(tmp_path, capsys, ["quantize", "-q", MODEL, "--bits-from", str(plan), "--calib", CALIB,
                                       "-o", str(tmp_path / "q.onnx")], "another model")


@pytest.mark.parametrize("cmd", ["quantize", "inspect"])
def test_help_works(cmd):
    assert CliRunner().invoke(cli, [cmd, "--help"]).exit_code == 0


def test_integer_form_keeps_the_layer_table(tmp_path):
    rc, out = _quantize(tmp_path, "--bits", "w4a8", "--format", "integer")
    assert rc == 0
    from onnx_hawq.model_io import load_model
    from onnx_hawq.report import build_report

    report = build_report(load_model(out))
    assert [r["op"] for r in report["layers"]] == ["ConvInteger"] * 6 + ["MatMulInteger"]
    assert report["float_ops"] == [] and report["totals"]["size_bytes"] > 0


def test_qdq_format_writes_plain_onnx_with_the_layer_table(tmp_path):
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(cli, ["quantize", MODEL, "--calib", CALIB, "-o", str(out), "--bits", "w4a8",
                                      "--format", "qdq"])
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops and not any(n.domain for n in model.graph.node)
    assert model.opset_import[0].version == 21  # INT4 weights
    report = json.loads((tmp_path / "q.report.json").read_text())
    assert report["format"] == "qdq" and [r["op"] for r in report["layers"]] == ["Conv"] * 6 + ["Gemm"]
    assert report["totals"]["disk_bytes"] > 0
    result = CliRunner().invoke(cli, ["inspect", str(out)])
    assert result.exit_code == 0 and "layer1.0.conv1" in result.output
