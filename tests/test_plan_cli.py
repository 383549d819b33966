"""`onnx-hawq plan` end to end on the digits ResNet: limits, pins, ties, errors and the sweep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
from onnx_hawq.cli.main import cli, main
from onnx_hawq.layers import find_layers
from onnx_hawq.plans import Plan, fingerprint
from onnx_hawq.planning.config import PlanConfig, parse_pin
from onnx_hawq.planning.instance import load_prepared
from onnx_hawq.planning.limits import parse_limit
from onnx_hawq.planning.residual import residual_ties

MODEL = str(Path(__file__).resolve().parents[1] / "sample_models" / "digits_resnet.onnx")
DOWNSAMPLE, CONV2 = "layer2.0.downsample.0", "layer2.0.conv2"


@pytest.fixture(scope="module")
def layers():
    return load_prepared(MODEL)[1]


@pytest.fixture()
def sens(tmp_path, layers) -> str:
    path = tmp_path / "sens.json"
    traces = [0.02, 0.5, 0.3, 0.05, 0.4, 0.9, 0.01]
    Sensitivity(model=fingerprint(layers), method="trace",
                layers={l.name: LayerSensitivity(trace=t) for l, t in zip(layers, traces)}).save(path)
    return str(path)


def plan(tmp_path, sens, *args, out="plan.json") -> tuple[object, Path]:
    """Run `plan` through click's runner; return the result and the output path."""
    target = tmp_path / out
    result = CliRunner().invoke(cli, ["plan", MODEL, "--sensitivity", sens, *args, "-o", str(target)])
    return result, target


def error_of(capsys, *argv) -> tuple[int, str]:
    """Exit code and stderr of main() for `argv` (the path a user's shell takes)."""
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def test_size_limit_respected_and_recorded(tmp_path, sens, layers):
    result, out = plan(tmp_path, sens, "--max-size", "70%W8A8", "--bits", "2,4,8")
    assert result.exit_code == 0, result.output
    p = Plan.load(out)
    assert p.model == fingerprint(layers) and set(p.layers) == {l.name for l in layers}
    size = p.meta["resources"]["size"]
    assert size["use"] <= size["limit"] == 70 * size["all8"] // 100
    assert p.meta["solver"]["status"] == "OPTIMAL"
    assert {b.w_bits for b in p.layers.values()} > {8}  # a real mix
    assert "OPTIMAL" in result.output


def test_pins_and_user_ties_hold(tmp_path, sens):
    result, out = plan(tmp_path, sens, "--max-size", "60%", "--bits", "2,4,8", "--pin", "first,last=8",
                       "--pin", "layer1.0.conv1=w4a8", "--tie", "layer1.0.conv2,layer2.0.conv1")
    assert result.exit_code == 0, result.output
    bits = Plan.load(out).layers
    assert bits["conv1"].w_bits == bits["fc"].w_bits == 8
    assert bits["layer1.0.conv1"].w_bits == 4
    assert bits["layer1.0.conv2"] == bits["layer2.0.conv1"]


def test_tie_residual_finds_the_downsample_pair(tmp_path, sens):
    result, out = plan(tmp_path, sens, "--max-size", "60%", "--bits", "2,4,8", "--tie-residual")
    assert result.exit_code == 0, result.output
    p = Plan.load(out)
    assert p.meta["ties"] == [[CONV2, DOWNSAMPLE]]
    assert p.layers[CONV2] == p.layers[DOWNSAMPLE]
    untied, out2 = plan(tmp_path, sens, "--max-size", "60%", "--bits", "2,4,8", out="untied.json")
    assert Plan.load(out2).layers[CONV2] != Plan.load(out2).layers[DOWNSAMPLE]  # the tie mattered


def test_residual_ties_skip_identity_shortcuts():
    # x -> stem -> Relu r -> a ; s1 = a + r (identity shortcut: r also feeds a, so no tie)
    # r -> b -> Relu ; r -> c ; y = relu(b) + c + ... (two single-consumer layer branches: tied)
    eye = np.eye(2, dtype=np.float32).reshape(2, 2, 1, 1)
    w = [numpy_helper.from_array(eye, f"{n}.weight") for n in ("stem", "a", "b", "c")]
    conv = lambda name, src: helper.make_node("Conv", [src, f"{name}.weight"], [name], name=name)  # noqa: E731
    nodes = [conv("stem", "x"), helper.make_node("Relu", ["stem"], ["r"]), conv("a", "r"),
             helper.make_node("Add", ["a", "r"], ["s1"]), conv("b", "s1"), helper.make_node("Relu", ["b"], ["rb"]),
             conv("c", "s1"), helper.make_node("Add", ["rb", "c"], ["y"])]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 4]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "g", vi[:1], vi[1:], w))
    assert residual_ties(model, find_layers(model)) == [("b", "c")]


def test_infeasible_limit_is_one_line_with_smallest_value(tmp_path, sens, capsys):
    out = tmp_path / "p.json"
    code, err = error_of(capsys, "plan", MODEL, "--sensitivity", sens, "--max-size", "5KB", "--max-bops", "50%W8A8",
                         "-o", str(out))
    assert code == 2 and not out.exists()
    assert err.startswith("error: limits cannot be met") and len(err.splitlines()) == 1
    assert "--max-size is 5 KB, smallest achievable 11.09 KB" in err
    assert "--max-bops is 17.08 MBOPs, smallest achievable 17.08 MBOPs" in err


@pytest.mark.parametrize("args,message", [
    (["--max-size", "12 parsecs"], "not a size limit"),
    (["--max-size", "60%", "--pin", "frist=8"], "no layer named 'frist' (did you mean: first?)"),
    (["--max-size", "60%", "--tie", "layer2.0.conv,fc"], "did you mean: layer2.0.conv2, layer2.0.conv1"),
    (["--max-size", "60%", "--tie", "fc"], "two or more"),
    (["--max-size", "60%", "--pin", "fc=9"], "is not LAYER"),
    (["--max-size", "60%", "--bits", "4,x"], "comma-separated list of integers"),
    (["--max-size", "60%", "--pin", "fc=4", "--pin", "last=8"], "pinned twice"),
    (["--max-size", "60%", "--pin", "conv1=4", "--pin", "fc=8", "--tie", "conv1,fc"], "no bits in common"),
    (["--max-latency", "1ms"], "--max-latency needs --latency"),
    (["--max-size", "60%", "--metric", "eigen"], "no eigenvalue"),
    ([], "give --max-size"),
])
def test_bad_options_are_one_line_errors(tmp_path, sens, capsys, args, message):
    out = tmp_path / "p.json"
    code, err = error_of(capsys, "plan", MODEL, "--sensitivity", sens, *args, "-o", str(out))
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_sensitivity_files(tmp_path, sens, capsys):
    out = tmp_path / "p.json"
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    other = tmp_path / "other.json"
    data = json.loads(Path(sens).read_text())
    data["model"] = "0123456789abcdef"
    other.write_text(json.dumps(data))
    for path, message in [(tmp_path / "missing.json", "cannot read sensitivity file"),
                          (corrupt, "not valid JSON"), (other, "computed for another model")]:
        code, err = error_of(capsys, "plan", MODEL, "--sensitivity", str(path), "--max-size", "60%", "-o", str(out))
        assert code == 2 and message in err, err
    assert not out.exists()


def test_sweep_writes_plans_table_and_plot(tmp_path, sens):
    result, folder = plan(tmp_path, sens, "--sweep", "5", "--bits", "2,4,8", "--pin", "first=8", out="sweep")
    assert result.exit_code == 0, result.output
    table = json.loads((folder / "sweep.json").read_text())
    rows = table["rows"]
    assert table["resource"] == "size" and len(rows) == 5
    assert rows[-1]["budget"] == table["all8"]["size"]
    objectives = [r["objective"] for r in rows]
    assert all(b <= a + r["tolerance"] for a, b, r in zip(objectives, objectives[1:], rows))
    for r in rows:
        assert r["use"]["size"] <= r["budget"]
        assert Plan.load(folder / r["plan"]).layers["conv1"].w_bits == 8
    assert (folder / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "size budget" in result.output


def test_sweep_over_bops_when_only_bops_given(tmp_path, sens):
    result, folder = plan(tmp_path, sens, "--sweep", "3", "--max-bops", "50%", out="sweepb")
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "sweep.json").read_text())["resource"] == "bops"


def test_plan_config_round_trips():
    cfg = PlanConfig(model="m.onnx", sensitivity="s.json", output="p.json", max_size=parse_limit("size", "50%"),
                     ties=(("a", "b"),), pins=(parse_pin("first,last=8"), parse_pin("x=w4a8")), sweep=3)
    assert PlanConfig.from_json(cfg.to_json()) == cfg
