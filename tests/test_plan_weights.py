"""The weight quantizer (rounding, range) from plan to quantize: Ω uses the weights quantize writes,
plan.json records them, quantize follows them and refuses a plan made for other ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from onnx_hawq.arith.quantizer import (FULL_RANGE_FORM, Rounding, WeightQuant, WeightRange, host_weight_range,
                                       weight_error)
from onnx_hawq.calibration import rounding as rounding_mod
from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
from onnx_hawq.cli.main import cli, main
from onnx_hawq.errors import InputError
from onnx_hawq.layers import weights_of
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import LEGACY_WEIGHTS, LayerBits, Plan, fingerprint
from onnx_hawq.planning.costs import candidate_choices, weight_error_table
from onnx_hawq.planning.instance import load_prepared
from onnx_hawq import quantization

SAMPLE = Path(__file__).resolve().parents[1] / "sample_models"
MODEL, CALIB = str(SAMPLE / "digits_resnet.onnx"), str(SAMPLE / "digits_calib.npz")


@pytest.fixture(scope="module")
def prepared():
    return load_prepared(MODEL)


@pytest.fixture()
def sens(tmp_path, prepared) -> str:
    layers = prepared[1]
    path = tmp_path / "sens.json"
    Sensitivity(model=fingerprint(layers), method="trace",
                layers={l.name: LayerSensitivity(trace=0.1 * (i + 1)) for i, l in enumerate(layers)}).save(path)
    return str(path)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_of(capsys, *args) -> tuple[int, str]:
    """Exit code and stderr of main() (the path a user's shell takes)."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def make_plan(tmp_path, sens, *args, name="plan.json"):
    out = tmp_path / name
    result = run("plan", MODEL, "--sensitivity", sens, "--max-size", "50%", *args, "-o", out)
    assert result.exit_code == 0, result.output
    return out


def test_plan_records_weights_and_round_trips(tmp_path, sens):
    nearest = make_plan(tmp_path, sens, "--weight-range", "avx2", name="n.json")
    loaded = Plan.load(nearest)
    assert loaded.weights == WeightQuant(Rounding.NEAREST, WeightRange.AVX2)  # no --calib: nearest
    assert json.loads(nearest.read_text())["weights"] == {"rounding": "nearest", "range": "avx2"}
    assert Plan.from_json(loaded.to_json()) == loaded
    gptq = Plan.load(make_plan(tmp_path, sens, "--calib", CALIB, name="g.json"))
    assert gptq.weights == WeightQuant(Rounding.GPTQ, host_weight_range())  # with --calib: gptq, this host's range


def test_plan_without_calib_refuses_gptq(tmp_path, sens, capsys):
    code, err = error_of(capsys, "plan", MODEL, "--sensitivity", sens, "--max-size", "50%", "--rounding", "gptq",
                         "-o", tmp_path / "p.json")
    assert code == 2 and "--rounding gptq needs --calib" in err and len(err.splitlines()) == 1


def test_gptq_omega_is_trace_times_the_shipped_weights_error(tmp_path, sens, prepared):
    model, layers = prepared
    plan = Plan.load(make_plan(tmp_path, sens, "--calib", CALIB))
    omega = plan.meta["omega"]
    choices = candidate_choices((4, 8), (8,))
    table = weight_error_table(model, layers, choices, plan.weights, load_data(CALIB, model))
    differs = 0
    for i, layer in enumerate(layers):
        bits = plan.layers[layer.name]
        qmax = plan.weights.qmax(bits.w_bits, bits.a_bits)
        assert omega[layer.name] == pytest.approx(0.1 * (i + 1) * table[layer.name][qmax], rel=1e-9)
        differs += table[layer.name][qmax] != pytest.approx(weight_error(weights_of(model, layer), qmax))
    assert differs == len(layers)  # not nearest rounding's error


def test_error_table_collects_statistics_once(monkeypatch, prepared):
    model, layers = prepared
    calls = []
    real = rounding_mod._accumulate
    monkeypatch.setattr(rounding_mod, "_accumulate", lambda *a: calls.append(1) or real(*a))
    full = WeightQuant(range=WeightRange.FULL)
    table = weight_error_table(model, layers, candidate_choices((2, 3, 4, 8), (8,)), full,
                               load_data(CALIB, model))
    assert calls == [1] and all(set(row) == {1, 3, 7, 127} for row in table.values())
    assert all(row[1] > row[3] > row[7] > row[127] for row in table.values())


def quantize(tmp_path, *args, name="q.onnx"):
    out = tmp_path / name
    return run("quantize", MODEL, "--calib", CALIB, *args, "-o", out), out


def test_quantize_follows_the_plan_and_refuses_another_quantizer(tmp_path, sens, capsys):
    plan = make_plan(tmp_path, sens, "--weight-range", "avx2")
    result, out = quantize(tmp_path, "--bits-from", plan)
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["rounding"] == "nearest" and report["weights"] == {"rounding": "nearest", "range": "avx2"}
    assert {r["form"] for r in report["layers"] if r["w_bits"] == 8} == {"u8s8(|w|<=64)"}
    for option in (("--rounding", "gptq"), ("--weight-range", "full")):
        code, err = error_of(capsys, "quantize", MODEL, "--calib", CALIB, "--bits-from", plan, *option,
                             "-o", tmp_path / "r.onnx")
        assert code == 2 and "planned for --rounding nearest --weight-range avx2" in err and len(err.splitlines()) == 1
        assert not (tmp_path / "r.onnx").exists()
    ok, _ = quantize(tmp_path, "--bits-from", plan, "--rounding", "nearest", "--weight-range", "avx2", name="s.onnx")
    assert ok.exit_code == 0, ok.output
    shown = run("inspect", out)
    assert "weights: nearest rounding, 8-bit weights on 8-bit inputs capped at |w_q| <= 64" in shown.output


def test_old_planner_plans_read_as_nearest_avx2_hand_written_as_unconstrained():
    old = Plan(layers={"fc": LayerBits(4, 8)}, meta={"objective": 1.0})
    assert old.weight_quant() == LEGACY_WEIGHTS == WeightQuant(Rounding.NEAREST, WeightRange.AVX2)
    assert Plan(layers={"fc": LayerBits(4, 8)}).weight_quant() is None
    cfg = quantization.QuantizeConfig("m.onnx", "q.onnx", "c.npz", plan="p.json", rounding="gptq")
    assert cfg.rounding_config(Plan()).weights == WeightQuant()
    with pytest.raises(InputError, match="planned for --rounding nearest --weight-range avx2"):
        cfg.rounding_config(old)
    assert quantization.QuantizeConfig("m", "q", "c", plan="p").rounding_config(old).weights == LEGACY_WEIGHTS


def int8_codes(model: onnx.ModelProto) -> dict[str, int]:
    """max |code| of every int8 weight initializer."""
    return {i.name: int(np.abs(numpy_helper.to_array(i).astype(np.int32)).max()) for i in model.graph.initializer
            if i.data_type == onnx.TensorProto.INT8 and len(i.dims) > 1}


@pytest.mark.parametrize("weight_range,bound", [("full", 127), ("avx2", 64)])
def test_uniform_w8a8_uses_the_range(tmp_path, weight_range, bound):
    given = ("--weight-range", weight_range)
    args = ("--bits", "8", "--rounding", "nearest", *given)
    result, out = quantize(tmp_path, *args)
    assert result.exit_code == 0, result.output
    codes = int8_codes(onnx.load(out))
    assert max(codes.values()) == bound  # nearest at max-abs scales reaches the bound in every layer
    meta = {p.key: json.loads(p.value) for p in onnx.load(out).metadata_props if p.key == "hawq.weights"}
    assert meta == {"hawq.weights": {"rounding": "nearest", "range": weight_range}}
    forms = {r["form"] for r in json.loads(out.with_suffix(".report.json").read_text())["layers"]}
    assert forms == ({FULL_RANGE_FORM} if weight_range == "full" else {"u8s8(|w|<=64)"})


@pytest.mark.parametrize("flags,warned", [({"avx2"}, 1), ({"avx2", "avx512_vnni"}, 0), (set(), 0)])
def test_one_warning_without_vnni(monkeypatch, caplog, flags, warned):
    from onnx_hawq.arith import quantizer

    monkeypatch.setattr(quantizer.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(quantizer, "cpu_flags", lambda: flags)
    quantizer.host_weight_range.cache_clear()
    full = {"layers": [{"form": FULL_RANGE_FORM}]}
    try:
        with caplog.at_level(logging.WARNING, logger="onnx_hawq"):
            quantization.warn_full_range(full)
            quantization.warn_full_range({"layers": [{"form": "u8s8(|w|<=64)"}]})  # capped: nothing to warn about
    finally:
        quantizer.host_weight_range.cache_clear()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == warned and all("--weight-range avx2" in l for l in lines)


def test_perturbation_file_sets_the_plan_weights_and_refuses_others(tmp_path, prepared, capsys):
    layers = prepared[1]
    measured = WeightQuant(Rounding.NEAREST, WeightRange.AVX2)
    delta = {"w4a8": 1.0, "w8a8": 0.01}
    path = tmp_path / "pert.json"
    Sensitivity(model=fingerprint(layers), method="perturbation", weights=measured,
                layers={l.name: LayerSensitivity(0.0, delta_loss=delta) for l in layers}).save(path)
    assert Plan.load(make_plan(tmp_path, str(path))).weights == measured  # the quantizer whose ΔL was measured
    code, err = error_of(capsys, "plan", MODEL, "--sensitivity", path, "--max-size", "50%", "--weight-range", "full",
                         "-o", tmp_path / "p2.json")
    assert code == 2 and "measured ΔL for --rounding nearest --weight-range avx2" in err and len(err.splitlines()) == 1


def test_rounding_stages_option_reaches_the_report(tmp_path, capsys):
    result, out = quantize(tmp_path, "--bits", "w4a8", "--rounding-stages", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".report.json").read_text())["rounding_stages"] == 1
    code, err = error_of(capsys, "quantize", MODEL, "--calib", CALIB, "--bits", "8", "--rounding-stages", "0",
                         "-o", tmp_path / "z.onnx")
    assert code == 2 and "--rounding-stages" in err


@pytest.mark.parametrize("machine,flags,expected", [
    ("x86_64", {"avx2"}, WeightRange.AVX2), ("x86_64", {"avx2", "avx512_vnni"}, WeightRange.FULL),
    ("x86_64", {"avx2", "amx_int8"}, WeightRange.FULL), ("x86_64", set(), WeightRange.FULL),
    ("aarch64", {"asimd"}, WeightRange.FULL)])
def test_default_range_is_where_this_hosts_onnxruntime_is_exact(monkeypatch, machine, flags, expected):
    from onnx_hawq.arith import quantizer

    monkeypatch.setattr(quantizer.platform, "machine", lambda: machine)
    monkeypatch.setattr(quantizer, "cpu_flags", lambda: flags)
    quantizer.host_weight_range.cache_clear()
    try:
        assert quantizer.host_weight_range() == expected and WeightQuant().range == expected
    finally:
        quantizer.host_weight_range.cache_clear()
