"""Targets and the run_tvm / tvm_backend entry points."""

import numpy as np
import onnx
import pytest

from onnx_hawq.ort import expose
from onnx_hawq.errors import InputError
from tests.compile.qgraphs import EXACT, U8, layer_inits, typed_model
from tests.helpers import ORT_EXACT, rng, run_ort

tvm = pytest.importorskip("tvm")
from onnx_hawq.compiler.build import parse_target, run_tvm, tvm_backend  # noqa: E402


@pytest.mark.parametrize("spec,kind,arch", [("llvm", "llvm", ""), ("cuda:sm_90", "cuda", "sm_90"),
                                            ("cuda:sm_80", "cuda", "sm_80")])
def test_targets_are_json_dicts(spec, kind, arch):
    target = parse_target(spec)
    assert target.kind.name == kind and str(target.attrs.get("arch", "")) == arch


@pytest.mark.parametrize("spec,mcpu,isa", [("llvm:amx", "sapphirerapids", "amx"), ("llvm:vnni", "icelake-server", "vnni"),
                                           ("llvm:avx2", "haswell", "avx2"),
                                           ("llvm:plain", None, None)])
def test_llvm_isa_targets(spec, mcpu, isa):
    from onnx_hawq.compiler.build import cpu_isa
    from onnx_hawq.compiler.vnni import host_isa, ISAS

    target = parse_target(spec)
    if isa and host_isa() is ISAS[isa]:
        mcpu = __import__("tvm").target.codegen.llvm_get_system_cpu()
    assert target.attrs.get("mcpu") == mcpu and getattr(cpu_isa(target), "name", None) == isa


def test_plain_llvm_picks_the_host_isa():
    from onnx_hawq.compiler.build import cpu_isa
    from onnx_hawq.compiler.vnni import host_isa

    assert cpu_isa(parse_target("llvm")) == host_isa()


@pytest.mark.parametrize("spec", ["llvm:sm_90", "cuda:90", "cuda:vnni", "rocm", ""])
def test_bad_targets_are_input_errors(spec):
    with pytest.raises(InputError, match="is not one of: llvm, llvm:amx, llvm:vnni, llvm:avx2, llvm:plain, cuda, cuda:sm_XX"):
        parse_target(spec)


def _qlinearmatmul():
    from onnx import helper

    r = rng(13)
    inits = layer_inits(r, EXACT, r.integers(-8, 9, (8, 16)).astype(np.int8), 5, 128)
    inits["w"] = np.ascontiguousarray(inits["w"].T)
    del inits["b"]
    nodes = [helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["h"]),
             helper.make_node("Max", ["h", "yz"], ["y"])]
    return typed_model(nodes, [("x", U8, ["n", 16])], [("y", U8, ["n", 8])], inits), r


def test_backend_builds_once_and_exposes_intermediate_tensors():
    model, r = _qlinearmatmul()
    run = tvm_backend(model, ["h", "y"])
    for n in (3, 5):  # a symbolic batch: one build serves every batch size
        x = {"x": r.integers(0, 256, (n, 16)).astype(np.uint8)}
        got, want = run(x), run_ort(expose(model, ["h"]), x, ["h", "y"])
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
    np.testing.assert_array_equal(run_tvm(model, x)[0], want[1])


def test_shape_values_come_back_as_int64_arrays():
    """Shape computations return TVM shape tuples or ints; the backend hands them out as numpy."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i"], ["n"], axis=0),
             helper.make_node("Relu", ["x"], ["y"])]
    model = typed_model(nodes, [("x", TensorProto.FLOAT, ["b", 3])], [("y", TensorProto.FLOAT, ["b", 3])],
                        {"i": np.int64(0)})
    x = {"x": np.ones((4, 3), np.float32)}
    got = tvm_backend(model, ["s", "n", "y"])(x)
    want = run_ort(expose(model, ["s", "n"]), x, ["s", "n", "y"])
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)


def test_packed_int4_weights_import_and_match_onnxruntime(tmp_path):
    """TVM's importer cannot read INT4 initializers; the import shim unpacks them (bit for bit)."""
    import numpy as np

    from onnx_hawq.compiler import build as tb
    from onnx_hawq.compiler.frontend import import_onnx
    from onnx_hawq.model_io import load_data, load_model
    from onnx_hawq.ort import session
    from onnx_hawq.plans import uniform_plan
    from onnx_hawq.quantization import quantize_to_format
    from onnx_hawq.calibration.ranges import CalibConfig
    from tests.helpers import SAMPLE

    model = load_model(SAMPLE / "digits_resnet.onnx")
    data = {k: v[:8] for k, v in load_data(SAMPLE / "digits_calib.npz", model).items()}
    quant, _ = quantize_to_format(model, uniform_plan("w4a8"), data, CalibConfig(), rounding=ORT_EXACT)
    assert any(t.data_type == onnx.TensorProto.INT4 for t in quant.graph.initializer)
    target = tb.parse_target("llvm")
    tb.export(tb.build(import_onnx(quant), target), tmp_path / "q.so")
    vm = tb.load(tmp_path / "q.so", target)
    got = tb.run_vm(vm, quant, data, tb.device_of(target))
    want = session(quant).run(None, data)
    np.testing.assert_array_equal(got[0], want[0])
