"""The sensitivity command's forward-only and data-parallel routes, end to end on the digits sample."""

import json

import pytest

from onnx_hawq.cli.main import main
from tests.vhelpers import CALIB, FLOAT


def test_perturbation_route_feeds_the_planner(tmp_path):
    sens, plan = tmp_path / "s.json", tmp_path / "p.json"
    assert main(["sensitivity", str(FLOAT), "--data", str(CALIB), "--method", "perturbation", "--batches", "2",
                 "-o", str(sens), "--plot", str(tmp_path / "s.png"), "-q"]) == 0
    layers = json.loads(sens.read_text())["layers"]
    assert all(set(v["delta_loss"]) >= {"w4a8", "w8a8"} for v in layers.values())
    assert main(["plan", str(FLOAT), "--sensitivity", str(sens), "--max-size", "50%", "-o", str(plan), "-q"]) == 0
    chosen = json.loads(plan.read_text())
    assert {b["w_bits"] for b in chosen["layers"].values()} == {4, 8}
    assert chosen["meta"]["objective"] > 0  # Ω is the measured ΔL, not a zero trace


def test_perturbation_refuses_labels(tmp_path, capsys):
    code = main(["sensitivity", str(FLOAT), "--data", str(CALIB), "--labels", "label", "--method", "perturbation",
                 "-o", str(tmp_path / "s.json")])
    assert code == 2 and "--method perturbation needs --data" in capsys.readouterr().err


@pytest.mark.slow
def test_two_workers_equal_one(tmp_path):
    outs = []
    for n in (1, 2):
        out = tmp_path / f"s{n}.json"
        assert main(["sensitivity", str(FLOAT), "--data", str(CALIB), "--nproc", str(n), "--max-iter", "4",
                     "--tol", "1e-9", "--batches", "2", "--batch-size", "32", "-o", str(out), "-q"]) == 0
        outs.append(json.loads(out.read_text())["layers"])
    for name, one in outs[0].items():
        assert outs[1][name]["samples"] == one["samples"]
        assert outs[1][name]["trace"] == pytest.approx(one["trace"], rel=1e-5)
