"""Reliability battery, batches and outputs: fixed-batch models with a sample count that is not a
multiple of the batch (validate, calibration, compile --check), classifier detection and per-sample
cosine, the layer-wise report's skipped nodes, and unsupported-op exit codes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnx_hawq.cli.main import main
from onnx_hawq.errors import InputError
from onnx_hawq.validation.comparator import Comparator
from onnx_hawq.validation.config import CompareOptions
from onnx_hawq.validation.metrics import sample_cosines
from tests.helpers import make_model, rng, run_ort
from tests.qhelpers import quantize_tiny

BATCH, SAMPLES, CLASSES = 4, 10, 5  # 10 samples: two full batches of 4 and a padded one of 2


def conv_net(batch, concat: bool = False) -> onnx.ModelProto:
    """Conv -> Relu [-> Concat with a second Conv] -> Reshape -> Gemm, input [batch, 3, 6, 6]."""
    r = rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1")]
    inits = {"w1": r.normal(size=(4, 3, 3, 3)), "b1": np.zeros(4)}
    feat = "r1"
    if concat:
        nodes += [helper.make_node("Conv", ["x", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
                  helper.make_node("Concat", ["r1", "r2"], ["cat"], name="cat", axis=1)]
        inits.update(w2=r.normal(size=(4, 3, 3, 3)), b2=np.zeros(4))
        feat = "cat"
    width = (8 if concat else 4) * 36
    nodes += [helper.make_node("Reshape", [feat, "shape"], ["flat"], name="reshape"),
              helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1)]
    inits.update(shape=np.array([-1, width], np.int64), wf=r.normal(size=(CLASSES, width)) * 0.1, bf=np.zeros(CLASSES))
    inits = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in inits.items()}
    return make_model(nodes, [("x", [batch, 3, 6, 6])], [("y", [batch, CLASSES])], inits)


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def samples(n=SAMPLES) -> dict:
    return {"x": rng(1).normal(size=(n, 3, 6, 6)).astype(np.float32)}


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """A fixed-batch (4) float model, its W8A8 quantization (calibrated on 10 samples), the data."""
    d = tmp_path_factory.mktemp("fixed")
    model = conv_net(BATCH)
    quant = quantize_tiny(model, samples())  # calibration runs 3 batches of 4, the last one padded
    onnx.save(model, str(d / "float.onnx"))
    onnx.save(quant, str(d / "quant.onnx"))
    np.savez(d / "data.npz", x=samples()["x"], label=np.arange(SAMPLES) % CLASSES)
    return d


def test_calibration_of_a_fixed_batch_model_ignores_the_padded_rows():
    from onnx_hawq.calibration.ranges import CalibConfig, collect_ranges

    data = samples(6)  # one full batch of 4 and one padded with two copies of the last sample
    got = collect_ranges(conv_net(BATCH), ["c1", "y"], data, CalibConfig(method="percentile"), {})
    want = collect_ranges(conv_net("N"), ["c1", "y"], data, CalibConfig(method="percentile"), {})
    assert got == want


def test_validate_pads_the_last_batch_of_a_fixed_batch_model(fixed, capsys):
    code = cli("validate", fixed / "float.onnx", fixed / "quant.onnx", "--data", fixed / "data.npz",
               "--labels", "label", "--max-accuracy-drop", "none", "--report", fixed / "r.json")
    assert code == 0, capsys.readouterr().err
    report = json.loads((fixed / "r.json").read_text())
    assert report["samples"] == SAMPLES
    assert report["outputs"]["y"]["metrics"]["elements"] == SAMPLES * CLASSES  # padded rows dropped
    got = Comparator(onnx.load(str(fixed / "float.onnx")), onnx.load(str(fixed / "quant.onnx"))).run(samples())
    sym = Comparator(conv_net("N"), _symbolic(onnx.load(str(fixed / "quant.onnx")))).run(samples())
    assert dataclasses.asdict(got.outputs["y"].metrics) == pytest.approx(dataclasses.asdict(sym.outputs["y"].metrics))
    assert got.outputs["y"].top1_agreement == sym.outputs["y"].top1_agreement


def _symbolic(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its batch dimensions made symbolic."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in list(out.graph.input) + list(out.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    return out


def test_compile_check_batches_a_fixed_batch_model_and_keeps_the_library_on_errors(fixed, capsys, monkeypatch):
    pytest.importorskip("tvm")
    lib = fixed / "q.so"
    code = cli(*["compile", fixed / "quant.onnx", "-o", lib, "--check", fixed / "data.npz"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[-1] == (f"check PASSED: 0 of {SAMPLES * CLASSES} output values differ from onnxruntime "
                                    "(bit for bit)")
    from onnx_hawq.compiler import build

    def broken(*args):
        raise RuntimeError("device lost")

    monkeypatch.setattr(build, "run_vm", broken)
    lib2 = fixed / "q2.so"
    assert cli(*["compile", fixed / "quant.onnx", "-o", lib2, "--check", fixed / "data.npz"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: the TVM library failed on the check data: RuntimeError: device lost (the check did not "
                   f"finish; {lib2} was built and is kept)")
    assert lib2.stat().st_size > 0


def test_check_results_merge_over_batches():
    from onnx_hawq.compiler.check import compare, merge

    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", 3])], [("y", ["N", 3])], {})
    a = np.ones((2, 3), np.float32)
    b = a.copy()
    b[0, 0] = 5
    total = merge(compare(model, [a], [a], 0.99), compare(model, [b], [a], 0.99))
    assert total.mismatches == {"y": 1} and total.sizes == {"y": 12} and total.max_abs == {"y": 4.0}
    assert total.min_cosine["y"] == pytest.approx(float(sample_cosines(a, b).min()))


def dense_model(shape, weight, name="m") -> onnx.ModelProto:
    """x [N, ..., D] @ weight [D, K] -> y [N, ..., K]."""
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name=name)
    return make_model([node], [("x", ["N", *shape])], [("y", ["N", *shape[:-1], weight.shape[1]])],
                      {"w": weight.astype(np.float32)})


def _compare(shape, k, options=CompareOptions()):
    w = rng(2).normal(size=(shape[-1], k))
    noisy = w + rng(3).normal(size=w.shape) * 0.3
    data = {"x": rng(4).normal(size=(6, *shape)).astype(np.float32)}
    return Comparator(dense_model(shape, w), dense_model(shape, noisy), options).run(data), data, w, noisy


def test_top1_only_on_2d_outputs_or_a_declared_classes_axis():
    ocr, data, w, noisy = _compare((7, 3), 11)  # OCR recognizer: [N, T=7, C=11]
    assert ocr.outputs["y"].top1_agreement is None
    detector, *_ = _compare((9, 3), 6)  # detector: [N, anchors=9, 4 box + 2 scores]
    assert detector.outputs["y"].top1_agreement is None
    classifier, *_ = _compare((3,), 4)
    assert classifier.outputs["y"].top1_agreement is not None
    declared, *_ = _compare((7, 3), 11, CompareOptions(classes_axis=-1))
    ref, test = data["x"] @ w.astype(np.float32), data["x"] @ noisy.astype(np.float32)
    want = 100.0 * np.mean(ref.argmax(-1) == test.argmax(-1))  # over every sample and time step
    assert declared.outputs["y"].top1_agreement == pytest.approx(want)
    with pytest.raises(InputError, match="--classes-axis 0 is the sample axis"):
        CompareOptions(classes_axis=0)


def test_cosine_per_sample_min_and_mean_are_reported():
    comp, data, w, noisy = _compare((7, 3), 11)
    ref = (data["x"] @ w.astype(np.float32)).astype(np.float64)
    test = (data["x"] @ noisy.astype(np.float32)).astype(np.float64)
    cos = sample_cosines(ref, test)
    m = comp.outputs["y"].metrics
    assert m.min_cosine == pytest.approx(cos.min()) and m.cosine == pytest.approx(cos.mean())
    assert m.min_cosine < m.cosine


def test_classes_axis_option_on_validate(tmp_path, capsys):
    w = rng(2).normal(size=(3, 11))
    onnx.save(dense_model((7, 3), w), str(tmp_path / "f.onnx"))
    onnx.save(dense_model((7, 3), w + 0.01), str(tmp_path / "q.onnx"))
    np.savez(tmp_path / "d.npz", x=rng(4).normal(size=(6, 7, 3)).astype(np.float32))
    argv = ["validate", tmp_path / "f.onnx", tmp_path / "q.onnx", "--data", tmp_path / "d.npz", "--min-sqnr", "none",
            "--min-top1-agreement", "50"]
    assert cli(*argv) == 2
    assert "needs an output with class scores" in capsys.readouterr().err
    assert cli(*[*argv, "--classes-axis", "-1"]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement" in out and "min per sample" in out


def test_layerwise_lists_the_nodes_it_cannot_match(tmp_path, capsys):
    model = conv_net("N", concat=True)
    quant = quantize_tiny(model, samples(8))
    onnx.save(model, str(tmp_path / "f.onnx"))
    onnx.save(quant, str(tmp_path / "q.onnx"))
    np.savez(tmp_path / "d.npz", **samples(8))
    code = cli(*["validate", tmp_path / "f.onnx", tmp_path / "q.onnx", "--data", tmp_path / "d.npz", "--layerwise",
                 "--min-sqnr", "none", "--report", tmp_path / "r.json"])
    assert code == 0
    out = capsys.readouterr().out
    assert "layer-wise: 1 integer node(s) not mapped back to the float graph" in out
    assert "  cat_quant (Concat, cat): no cat_scale, cat_zero_point in the quantized model" in out
    skipped = json.loads((tmp_path / "r.json").read_text())["skipped_layers"]
    assert skipped == [{"node": "cat_quant", "op": "Concat", "tensor": "cat",
                        "reason": "no cat_scale, cat_zero_point in the quantized model"}]


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER"])
def test_reference_conv_implements_auto_pad_same(mode):
    from onnx_hawq.reference import _conv_int

    r = rng(5)
    x = r.integers(-3, 4, size=(2, 2, 7, 8)).astype(np.int64)
    w = r.integers(-3, 4, size=(3, 2, 4, 3)).astype(np.int64)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=mode, strides=[2, 3])
    model = make_model([conv], [("x", [2, 2, 7, 8])], [("y", None)], {"w": w.astype(np.float32)})
    (want,) = run_ort(model, {"x": x.astype(np.float32)})
    got = _conv_int(x, w, {"auto_pad": mode.encode(), "strides": [2, 3]})
    assert got.shape == want.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_reference_backend_unsupported_attribute_is_bad_input():
    from onnx_hawq.validation.backends import reference_backend

    s, z = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(0), "z")
    wq = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.int8), "w")
    wz = numpy_helper.from_array(np.zeros(1, np.int8), "wz")
    node = helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "wz", "s", "z"], ["y"], auto_pad="SAME_MIDDLE")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, None)], [s, z, wq, wz])
    run = reference_backend(helper.make_model(graph), ["y"])
    with pytest.raises(InputError, match="reference interpreter: Conv auto_pad 'SAME_MIDDLE' is not"):
        run({"x": np.zeros((1, 1, 2, 2), np.uint8)})


def test_tvm_import_failure_is_bad_input(monkeypatch):
    pytest.importorskip("tvm")
    import tvm.relax.frontend.onnx as tvm_onnx

    from onnx_hawq.compiler.frontend import import_onnx

    def refuse(*args, **kwargs):
        raise ValueError("Unsupported auto_pad mode")

    monkeypatch.setattr(tvm_onnx, "from_onnx", refuse)
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 3])], [("y", [1, 3])], {})
    with pytest.raises(InputError, match="TVM cannot import the model: ValueError: Unsupported auto_pad mode") as e:
        import_onnx(model)
    assert e.value.exit_code == 2
