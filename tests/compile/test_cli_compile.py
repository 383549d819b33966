"""`onnx-hawq compile`: build + export + --check on the digits sample; one-line errors, exit codes."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from onnx_hawq.cli.main import main
from onnx_hawq.model_io import load_data
from onnx_hawq.plans import uniform_plan
from onnx_hawq.quantization import quantize_model
from tests.compile.qgraphs import U8, f32, typed_model
from tests.helpers import ORT_EXACT, SAMPLE


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err.strip()


@pytest.fixture(scope="module")
def quant(tmp_path_factory):
    """The digits model at W4A8 and 48 test samples, as files."""
    d = tmp_path_factory.mktemp("compile")
    model = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    calib = load_data(SAMPLE / "digits_calib.npz", model)
    q = quantize_model(model, uniform_plan("w4a8"), calib, rounding=ORT_EXACT).model
    onnx.save(q, str(d / "quant.onnx"))
    np.savez(d / "check.npz", input=np.load(SAMPLE / "digits_test.npz")["input"][:48])
    return d


def test_compile_llvm_exports_a_library_equal_to_onnxruntime(capsys, quant):
    pytest.importorskip("tvm")
    lib = quant / "model.so"
    code, out, err = run_cli(capsys, "compile", quant / "quant.onnx", "--target", "llvm", "-o", lib,
                             "--check", quant / "check.npz", "--batch", "32")
    assert code == 0, err
    assert out.splitlines()[-1] == "check PASSED: 0 of 320 output values differ from onnxruntime (bit for bit)"
    assert lib.stat().st_size > 0 and not list(quant.glob(".model.so.*"))


@pytest.mark.parametrize("argv,message", [
    (["--target", "gpu"], "error: --target 'gpu' is not one of: llvm, llvm:amx, llvm:vnni, llvm:avx2, llvm:plain, cuda, cuda:sm_XX (e.g. cuda:sm_90)"),
    (["--check", "missing.npz"], "error: check data file not found: missing.npz"),
])
def test_bad_options_are_one_line_errors(capsys, quant, argv, message):
    code, _, err = run_cli(capsys, "compile", quant / "quant.onnx", "-o", quant / "bad.so", *argv)
    assert (code, err) == (2, message)


def test_check_of_an_isa_this_cpu_lacks_is_refused_before_building(capsys, quant, monkeypatch):
    pytest.importorskip("tvm")
    from onnx_hawq.compiler import vnni

    monkeypatch.setattr(vnni, "host_has", lambda flag, cpuinfo=vnni.CPUINFO: False)  # as on an AVX2-only CPU
    lib = quant / "vnni.so"
    code, _, err = run_cli(capsys, "compile", quant / "quant.onnx", "--target", "llvm:vnni", "-o", lib,
                           "--check", quant / "check.npz")
    assert (code, err) == (2, "error: --check runs the library on this CPU, but --target llvm:vnni uses avx512_vnni, "
                              "which it lacks: build without --check, or check with --target llvm")
    assert not lib.exists()


def test_refuses_to_overwrite_the_input(capsys, quant):
    code, _, err = run_cli(capsys, "compile", quant / "quant.onnx", "-o", quant / "quant.onnx")
    assert code == 2 and err == f"error: output path {quant / 'quant.onnx'} is the input file; choose another -o"


def test_unsupported_op_is_named(capsys, tmp_path):
    pytest.importorskip("tvm")
    inits = {"s": f32(0.1), "z": np.uint8(0)}
    node = helper.make_node("QLinearSigmoid", ["x", "s", "z", "s", "z"], ["y"], name="sig", domain="com.microsoft")
    onnx.save(typed_model([node], [("x", U8, [1, 4])], [("y", U8, [1, 4])], inits), str(tmp_path / "m.onnx"))
    code, _, err = run_cli(capsys, "compile", tmp_path / "m.onnx", "-o", tmp_path / "m.so")
    assert (code, err) == (2, "error: unsupported op for TVM: QLinearSigmoid (node sig)")
    assert not (tmp_path / "m.so").exists()


def test_help_does_not_import_tvm():
    code = ("import sys; from onnx_hawq.cli.main import main; main(['compile', '--help']); "
            "print('tvm loaded' if 'tvm' in sys.modules else 'no tvm')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--target" in out and out.strip().endswith("no tvm")
