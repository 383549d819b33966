"""`onnx-hawq sensitivity`: both routes end to end, and one-line errors that write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from onnx_hawq.calibration.sensitivity_file import Sensitivity  # noqa: E402
from onnx_hawq.cli.main import main  # noqa: E402
from onnx_hawq.layers import find_layers  # noqa: E402
from onnx_hawq.plans import fingerprint  # noqa: E402
from onnx_hawq.transforms.prepare import prepare_model  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
MODEL = str(SAMPLES / "digits_resnet.onnx")
FAST = ["--max-iter", "6", "--batches", "1", "--batch-size", "32", "-q"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def digits_layers():
    return find_layers(prepare_model(onnx.load(MODEL)))


def test_onnx_route_with_kl_loss_writes_file_and_plot(tmp_path):
    out, png = tmp_path / "sens.json", tmp_path / "sens.png"
    rc = main(["sensitivity", MODEL, "--data", str(SAMPLES / "digits_calib.npz"), "-o", str(out),
               "--plot", str(png), "--method", "both", "--eigen-iter", "5", *FAST])
    assert rc == 0
    sens = Sensitivity.load(out)
    layers = digits_layers()
    sens.check_model(layers)
    assert sens.model == fingerprint(layers) and sens.source == "onnx" and sens.method == "both"
    assert [s.samples for s in sens.layers.values()] == [6] * len(layers)
    assert all(s.eigenvalue is not None and s.eigenvalue > 0 for s in sens.layers.values())
    assert sens.hvp_count == 6 + sum(s.eigen_iters for s in sens.layers.values())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_onnx_route_with_labels_and_seed(tmp_path):
    args = ["sensitivity", MODEL, "--data", str(SAMPLES / "digits_test.npz"), "--labels", "label", *FAST]
    assert main([*args, "-o", str(tmp_path / "a.json")]) == 0
    assert main([*args, "-o", str(tmp_path / "b.json")]) == 0
    assert main([*args, "--seed", "1", "-o", str(tmp_path / "c.json")]) == 0
    a, b, c = (Sensitivity.load(tmp_path / f"{k}.json") for k in "abc")
    assert a.layers == b.layers and a.layers != c.layers and c.seed == 1


def test_torch_route_with_sample_factory(tmp_path):
    out = tmp_path / "sens.json"
    rc = main(["sensitivity", MODEL, "--torch", f"{SAMPLES / 'digits_resnet.py'}:hawq_factory", "-o", str(out), *FAST])
    assert rc == 0
    sens = Sensitivity.load(out)
    sens.check_model(digits_layers())
    assert sens.source.startswith("torch:") and all(s.trace != 0 for s in sens.layers.values())


def write_factory(tmp_path: Path, body: str) -> str:
    path = tmp_path / "userfactory.py"
    path.write_text("import torch\n\n\ndef make():\n" + body)
    return f"{path}:make"


def test_torch_modules_not_in_onnx_are_listed(tmp_path, capsys):
    spec = write_factory(tmp_path, "    m = torch.nn.Sequential(torch.nn.Linear(4, 2))\n"
                                   "    return m, (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)), "
                                   "torch.nn.functional.cross_entropy\n")
    rc = main(["sensitivity", MODEL, "--torch", spec, "-o", str(tmp_path / "s.json"), *FAST])
    assert rc == 1 and not (tmp_path / "s.json").exists()
    assert "torch module(s) not found as ONNX layers: 0" in capsys.readouterr().err


def test_failing_factory_is_one_line_error(tmp_path, capsys):
    spec = write_factory(tmp_path, "    raise RuntimeError('no checkpoint')\n")
    assert main(["sensitivity", MODEL, "--torch", spec, "-o", str(tmp_path / "s.json"), "-q"]) == 1
    assert capsys.readouterr().err.strip() == f"error: factory {spec} failed: RuntimeError: no checkpoint"


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "bad.npz").write_text("not a zip")
    np.savez(tmp_path / "float_labels.npz", input=np.zeros((4, 1, 8, 8), np.float32), label=np.zeros(4, np.float32))
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["missing.onnx", "--data", "{calib}"], "model file not found"),
    ([MODEL, "--data", "{tmp}/none.npz"], "data file not found"),
    ([MODEL, "--data", "{tmp}/bad.npz"], "is not a readable .npz"),
    ([MODEL, "--data", "{calib}", "--labels", "label"], "has no array 'label' for --labels; it has input"),
    ([MODEL, "--data", "{tmp}/float_labels.npz", "--labels", "label"], "integer class labels"),
    ([MODEL, "--torch", "{factory}:no_such_factory"], "has no function 'no_such_factory'"),
    ([MODEL, "--torch", "no_such_module_xyz:make"], "factory module 'no_such_module_xyz' not found"),
    ([MODEL, "--torch", "{tmp}/none.py:make"], "factory file not found"),
    ([MODEL, "--torch", "nocolon"], "must be MODULE:FUNCTION"),
    ([MODEL], "give exactly one of --torch"),
    ([MODEL, "--data", "{calib}", "--torch", "{factory}:hawq_factory"], "give exactly one of --torch"),
    ([MODEL, "--torch", "{factory}:hawq_factory", "--labels", "label"], "--labels needs --data"),
    ([MODEL, "--data", "{tmp}/float_labels.npz", "--labels", "label", "--loss", "mse"], "--loss applies to"),
])
def test_bad_input_is_exit_2_and_writes_nothing(bad_files, capsys, args, message):
    fill = {"calib": str(SAMPLES / "digits_calib.npz"), "tmp": str(bad_files),
            "factory": str(SAMPLES / "digits_resnet.py")}
    argv = ["sensitivity", *(a.format(**fill) for a in args), "-o", str(bad_files / "out.json"),
            "--plot", str(bad_files / "out.png"), "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("error:") and "\n" not in err
    assert not (bad_files / "out.json").exists() and not (bad_files / "out.png").exists()


def test_help_does_not_import_torch():
    code = ("import sys\nfrom onnx_hawq.cli.main import main\nrc = main(['sensitivity', '--help'])\n"
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--torch MODULE:FACTORY" in proc.stdout and "--method [trace|eigen|both|perturbation]" in proc.stdout
