"""The reliability battery, outputs: no output may name an input or another output; a failed write
(full or read-only disk, no permission, a device) is one `error:` line and exit 2; Ctrl-C and SIGTERM
exit 130; none of them leaves a partial or hidden temp file."""

import errno
import os
import signal
import tempfile

import numpy as np
import pytest

from onnx_hawq.cli.main import main
from tests.test_reliability_inputs import digit_named_cnn, one_error, save, sensitivity_file


@pytest.fixture
def files(tmp_path):
    """The tiny model, its data, a sensitivity file, a plan and a quantized model, in tmp_path."""
    path, calib = save(tmp_path, *digit_named_cnn())
    sens = sensitivity_file(tmp_path, path)
    plan, q = str(tmp_path / "plan.json"), str(tmp_path / "q.onnx")
    assert main(["plan", path, "--sensitivity", sens, "--max-size", "60%", "-o", plan, "-q"]) == 0
    assert main(["quantize", path, "--calib", calib, "--bits", "8", "-o", q, "-q"]) == 0
    return dict(model=path, calib=calib, sens=sens, plan=plan, q=q, dir=tmp_path)


def snapshot(folder) -> dict:
    return {p.name: p.read_bytes() if p.is_file() else p.stat().st_mode for p in folder.rglob("*")}


def refused(files, capsys, args, message, code=2):
    """Run `args`: exit `code`, one error line with `message`, and no file added, changed or removed."""
    before = snapshot(files["dir"])
    assert main(args) == code, args
    one_error(capsys, message)
    assert snapshot(files["dir"]) == before


SAME_INPUT = "is the input file"
SAME_OUTPUT = "another output of this command"


def test_quantize_outputs_may_not_name_its_inputs_or_each_other(files, capsys):
    f = files
    base = ["quantize", f["model"], "--calib", f["calib"], "-q"]
    refused(f, capsys, [*base, "--bits", "8", "-o", f["calib"]], SAME_INPUT)
    refused(f, capsys, [*base, "--bits-from", f["plan"], "-o", f["plan"]], SAME_INPUT)
    refused(f, capsys, [*base, "--bits", "8", "-o", str(f["dir"] / "n.onnx"), "--report", f["calib"]], SAME_INPUT)
    refused(f, capsys, [*base, "--bits", "8", "-o", f["q"], "--report", f["q"]], SAME_OUTPUT)
    refused(f, capsys, [*base, "--bits", "8", "-o", f["model"]], SAME_INPUT)


def test_sensitivity_plan_profile_outputs_may_not_name_inputs(files, capsys):
    f = files
    sens = ["sensitivity", f["model"], "--data", f["calib"], "--max-iter", "2", "-q"]
    refused(f, capsys, [*sens, "-o", f["calib"]], SAME_INPUT)
    refused(f, capsys, [*sens, "-o", str(f["dir"] / "s.json"), "--plot", str(f["dir"] / "s.json")], SAME_OUTPUT)
    refused(f, capsys, [*sens, "-o", str(f["dir"] / "s.json"), "--plot", f["model"]], SAME_INPUT)
    plan = ["plan", f["model"], "--sensitivity", f["sens"], "--max-size", "60%", "-q"]
    refused(f, capsys, [*plan, "-o", f["sens"]], SAME_INPUT)
    refused(f, capsys, [*plan, "-o", f["model"]], SAME_INPUT)
    refused(f, capsys, [*plan, "--sweep", "2", "-o", f["sens"]], SAME_INPUT)
    refused(f, capsys, ["profile", f["model"], "-o", f["model"], "-q"], SAME_INPUT)
    latency = str(f["dir"] / "lat.json")
    assert main(["profile", f["model"], "--runs", "1", "--warmup", "0", "-o", latency, "-q"]) == 0
    refused(f, capsys, [*plan, "--latency", latency, "-o", latency], SAME_INPUT)


def test_validate_compile_auto_outputs_may_not_name_inputs(files, capsys):
    f = files
    val = ["validate", f["model"], f["q"], "--data", f["calib"], "-q"]
    refused(f, capsys, [*val, "--report", f["calib"]], SAME_INPUT)
    refused(f, capsys, [*val, "--report", f["q"]], SAME_INPUT)
    refused(f, capsys, [*val, "--layerwise", "--plot", f["model"]], SAME_INPUT)
    report = str(f["dir"] / "r.json")
    refused(f, capsys, [*val, "--layerwise", "--report", report, "--plot", report], "same file")
    refused(f, capsys, ["compile", f["q"], "-o", f["calib"], "--check", f["calib"], "-q"], SAME_INPUT)
    refused(f, capsys, ["compile", f["q"], "-o", f["q"], "-q"], SAME_INPUT)
    folder = f["dir"] / "auto"
    folder.mkdir()
    data = folder / "validation.json"  # an .npz where auto writes its validation report
    data.write_bytes(open(f["calib"], "rb").read())
    refused(f, capsys, ["auto", f["model"], "--calib", f["calib"], "--data", str(data), "-o", str(folder), "-q"],
            SAME_INPUT)


def _quantize(f, out="n.onnx", *extra):
    return ["quantize", f["model"], "--calib", f["calib"], "--bits", "8", "-o", str(f["dir"] / out), "-q", *extra]


def _writers(f):
    """One command per kind of writer: model + report, plan, latency table, validation report + plot, sweep."""
    d = f["dir"]
    return [_quantize(f),
            ["plan", f["model"], "--sensitivity", f["sens"], "--max-size", "60%", "-o", str(d / "p2.json"), "-q"],
            ["plan", f["model"], "--sensitivity", f["sens"], "--sweep", "2", "-o", str(d / "sweep"), "-q"],
            ["profile", f["model"], "--runs", "1", "--warmup", "0", "-o", str(d / "lat.json"), "-q"],
            ["validate", f["model"], f["q"], "--data", f["calib"], "--layerwise", "--report", str(d / "r.json"),
             "--plot", str(d / "l.png"), "-q"]]


def _full_disk(monkeypatch):
    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(real(fd, mode, *a, **k)))


def _read_only(monkeypatch):
    def replace(src, dst):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(os, "replace", replace)


def _no_permission(monkeypatch):
    def mkstemp(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("fault, reason", [(_full_disk, "No space left on device"),
                                           (_read_only, "Read-only file system"),
                                           (_no_permission, "Permission denied")])
def test_write_failures_are_one_line_exit_2_and_leave_no_file(files, capsys, monkeypatch, fault, reason):
    commands = _writers(files)
    fault(monkeypatch)
    for args in commands:
        refused(files, capsys, args, reason)


def test_devices_and_non_folders_are_refused_before_any_work(files, capsys):
    # a FIFO stands in for /dev/full: run as root, a regression would otherwise replace the real device
    os.mkfifo(files["dir"] / "device")
    refused(files, capsys, _quantize(files, "device"), "device: not a regular file")
    refused(files, capsys, _quantize(files, "device/q.onnx"), "device is not a folder")
    (files["dir"] / "plain").write_text("x")
    refused(files, capsys, _quantize(files, "plain/q.onnx"), "plain is not a folder")


def test_ctrl_c_mid_write_exits_130_and_leaves_no_temp_file(files, capsys, monkeypatch):
    def replace(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", replace)
    before = snapshot(files["dir"])
    assert main(_quantize(files)) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert snapshot(files["dir"]) == before


def test_sigterm_mid_write_exits_130_leaves_no_temp_file_and_restores_the_handler(files, capsys, monkeypatch):
    real = os.fdopen

    def fdopen(fd, mode="r", *a, **k):
        f = real(fd, mode, *a, **k)
        os.kill(os.getpid(), signal.SIGTERM)  # CI cancelling the job while the file is open
        return f
    monkeypatch.setattr(os, "fdopen", fdopen)
    before = snapshot(files["dir"])
    handler = signal.getsignal(signal.SIGTERM)
    assert main(_quantize(files)) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert snapshot(files["dir"]) == before
    assert signal.getsignal(signal.SIGTERM) is handler


def test_ctrl_c_in_validate_is_not_a_failed_gate(files, capsys, monkeypatch):
    from onnx_hawq.validation import run

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(run, "validate_models", interrupted)
    assert main(["validate", files["model"], files["q"], "--data", files["calib"], "-q"]) == 130
    assert "interrupted" in capsys.readouterr().err
