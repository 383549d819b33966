"""The reliability battery, inputs: any valid ONNX model in gives a valid model out, and bad input
gives one `error:` line and exit 2 (unnamed nodes, int64 ids, float16, numeric layer names, .npy
data, binary JSON, too-new models, refused plan options, click's usage errors)."""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_hawq.cli.main import main
from tests.helpers import ORT_EXACT_RANGE

R = np.random.default_rng(0)


def build(nodes, inputs, outputs, inits: dict, opset: int = 17) -> onnx.ModelProto:
    """A model of `nodes` with (name, shape, type) inputs/outputs and {name: array} initializers, IR 10."""
    vi = lambda n, s, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, s)
    graph = helper.make_graph(nodes, "t", [vi(*i) for i in inputs], [vi(*o) for o in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def f32(*shape):
    return R.normal(size=shape).astype(np.float32)


def unnamed_cnn():
    """Conv-Relu-Conv-Relu-Flatten-Gemm-Relu-Gemm, no node names; and 32 samples."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["g"], transB=1),
             helper.make_node("Relu", ["g"], ["h"]),
             helper.make_node("Gemm", ["h", "w4", "b4"], ["y"], transB=1)]
    inits = dict(w1=f32(4, 1, 3, 3), b1=f32(4), w2=f32(4, 4, 3, 3) * 0.5, b2=f32(4),
                 w3=f32(8, 4 * 6 * 6) * 0.2, b3=f32(8), w4=f32(5, 8), b4=f32(5))
    model = build(nodes, [("x", ["N", 1, 6, 6])], [("y", ["N", 5])], inits)
    return model, {"x": f32(32, 1, 6, 6)}


def id_model():
    """Embedding Gather by int64 ids, then MatMul-Relu-MatMul, no node names."""
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"]),
             helper.make_node("MatMul", ["e", "w1"], ["m1"]),
             helper.make_node("Relu", ["m1"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    inits = dict(emb=f32(10, 8), w1=f32(8, 8), w2=f32(8, 3))
    model = build(nodes, [("ids", ["N", 4], TensorProto.INT64)], [("y", ["N", 4, 3])], inits)
    return model, {"ids": R.integers(0, 10, (32, 4)).astype(np.int64)}


def digit_named_cnn():
    """unnamed_cnn with PyTorch-style numeric initializer and node names ("391")."""
    model, data = unnamed_cnn()
    rename = {i.name: str(391 + k) for k, i in enumerate(model.graph.initializer)}
    for init in model.graph.initializer:
        init.name = rename[init.name]
    for k, node in enumerate(model.graph.node):
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.name = str(100 + k)
    return model, data


def save(tmp_path, model, data, name="m"):
    onnx.save(model, str(tmp_path / f"{name}.onnx"))
    np.savez(tmp_path / f"{name}.npz", **data)
    return str(tmp_path / f"{name}.onnx"), str(tmp_path / f"{name}.npz")


def run(model: onnx.ModelProto, data: dict) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, data)[0]


def one_error(capsys, message: str) -> None:
    err = [l for l in capsys.readouterr().err.strip().splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.parametrize("builder, layers", [(unnamed_cnn, 4), (id_model, 2)])
@pytest.mark.parametrize("fmt", ["qlinear", "integer"])
def test_unnamed_nodes_and_int64_ids_quantize_every_layer_into_a_valid_model(tmp_path, builder, layers, fmt):
    model, data = builder()
    path, calib = save(tmp_path, model, data)
    out = tmp_path / "q.onnx"
    assert main(["quantize", path, "--calib", calib, "--bits", "8", "-o", str(out), "--format", fmt, "-q",
                 "--weight-range", ORT_EXACT_RANGE.value]) == 0  # run in onnxruntime on this CPU
    q = onnx.load(str(out))
    onnx.checker.check_model(q)
    assert q.ir_version <= 10 and all(o.version <= 21 for o in q.opset_import if o.domain == "")  # ORT reads these
    names = [n.name for n in q.graph.node]
    assert all(names) and len(set(names)) == len(names), names
    report = json.loads((tmp_path / "q.report.json").read_text())
    assert report["refused"] == [] and len(report["layers"]) == layers
    ref, got = run(model, data), run(q, data)
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel < 0.05, rel


def test_unnamed_layers_are_named_after_their_outputs_when_weights_are_anonymous():
    from onnx_hawq.layers import find_layers, name_nodes, node_labels

    model, _ = unnamed_cnn()
    for init in model.graph.initializer:
        init.name = f"onnx::{init.name}"
    for node in model.graph.node:
        node.input[:] = [f"onnx::{i}" if i.startswith(("w", "b")) else i for i in node.input]
    before = [(l.name, l.node_name) for l in find_layers(model)]
    assert before == [("c1", "c1"), ("c2", "c2"), ("g", "g"), ("y", "y")]
    name_nodes(model)  # what quantize does: the same labels become the node names
    assert [(l.name, l.node_name) for l in find_layers(model)] == before
    assert node_labels(model) == [n.name for n in model.graph.node]


def test_float16_model_is_refused_in_one_line(tmp_path, capsys):
    model, data = unnamed_cnn()
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for v in list(model.graph.input) + list(model.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    path, calib = save(tmp_path, model, {"x": data["x"].astype(np.float16)})
    out = tmp_path / "q.onnx"
    assert main(["quantize", path, "--calib", calib, "--bits", "8", "-o", str(out), "-q"]) == 2
    one_error(capsys, "float16")
    assert not out.exists()


def test_numeric_layer_names_quantize_and_inspect(tmp_path, capsys):
    path, calib = save(tmp_path, *digit_named_cnn())
    out = str(tmp_path / "q.onnx")
    assert main(["quantize", path, "--calib", calib, "--bits", "w4a8", "-o", out]) == 0
    assert "391" in capsys.readouterr().out
    assert main(["inspect", out]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in ("391", "393", "395", "397"))
    assert main(["inspect", out, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["layers"]
    assert [r["layer"] for r in rows] == ["391", "393", "395", "397"]


@pytest.fixture
def tiny(tmp_path):
    return save(tmp_path, *unnamed_cnn())


def test_npy_and_non_zip_data_are_refused_in_one_line(tmp_path, tiny, capsys):
    path, calib = tiny
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 6, 6), np.float32))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file" * 8)
    out = str(tmp_path / "q.onnx")
    for bad, message in ((tmp_path / "x.npy", "np.savez"), (tmp_path / "junk.npz", "not a zip file")):
        assert main(["quantize", path, "--calib", str(bad), "--bits", "8", "-o", out, "-q"]) == 2
        one_error(capsys, message)
        assert main(["validate", path, path, "--data", str(bad), "-q"]) == 2
        one_error(capsys, message)


def test_binary_json_plans_sensitivities_and_latency_tables_are_refused(tmp_path, tiny, capsys):
    path, calib = tiny
    binary = tmp_path / "bin.json"
    binary.write_bytes(bytes(range(256)))
    utf16 = tmp_path / "u16.json"
    utf16.write_text("{}", encoding="utf-16")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000)
    out = str(tmp_path / "q.onnx")
    for bad in (binary, utf16, deep):
        assert main(["quantize", path, "--calib", calib, "--bits-from", str(bad), "-o", out, "-q"]) == 2
        one_error(capsys, str(bad))
        assert main(["plan", path, "--sensitivity", str(bad), "--max-size", "50%", "-o", str(tmp_path / "p.json"),
                     "-q"]) == 2
        one_error(capsys, str(bad))
    sens = sensitivity_file(tmp_path, path)
    assert main(["plan", path, "--sensitivity", sens, "--latency", str(binary), "--max-size", "50%",
                 "-o", str(tmp_path / "p.json"), "-q"]) == 2
    one_error(capsys, "not UTF-8")
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("change, message", [(lambda m: setattr(m, "ir_version", 14), "IR version 14"),
                                             (lambda m: setattr(m.opset_import[0], "version", 99), "opset 99")])
def test_models_too_new_for_onnxruntime_are_refused_in_one_line(tmp_path, tiny, capsys, change, message):
    path, calib = tiny
    model = onnx.load(path)
    change(model)
    new = str(tmp_path / "new.onnx")
    onnx.save(model, new)
    q = str(tmp_path / "q.onnx")
    assert main(["quantize", new, "--calib", calib, "--bits", "8", "-o", q, "-q"]) == 2
    one_error(capsys, message)
    assert main(["quantize", path, "--calib", calib, "--bits", "8", "-o", q, "-q"]) == 0
    assert onnx.load(q).ir_version <= 10
    assert main(["validate", new, q, "--data", calib, "-q"]) == 2
    one_error(capsys, "too new for the installed onnxruntime")
    assert main(["auto", new, "--calib", calib, "--data", calib, "-o", str(tmp_path / "auto"), "-q"]) == 2
    one_error(capsys, message)
    assert main(["compile", new, "-o", str(tmp_path / "q.so"), "-q"]) == 2
    one_error(capsys, message)


def sensitivity_file(tmp_path, path: str, extra: str | None = None) -> str:
    """A sensitivity file for the model at `path` (traces 1.0), with an `extra` layer if given."""
    from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
    from onnx_hawq.planning.instance import load_prepared
    from onnx_hawq.plans import fingerprint

    _, layers = load_prepared(path)
    rows = {l.name: LayerSensitivity(1.0, params=l.params) for l in layers}
    if extra:
        rows[extra] = LayerSensitivity(1.0, params=1)
    out = tmp_path / ("sens_extra.json" if extra else "sens.json")
    Sensitivity(fingerprint(layers), "trace", rows, source="onnx").save(out)
    return str(out)


def test_plan_refuses_empty_bits_entries_unknown_widths_and_foreign_sensitivity_layers(tmp_path, tiny, capsys):
    path, _ = tiny
    sens, plan = sensitivity_file(tmp_path, path), str(tmp_path / "plan.json")
    base = ["plan", path, "--sensitivity", sens, "--max-size", "60%", "-o", plan, "-q"]
    cases = [(["--bits", "8,,4"], "empty entry"), (["--bits", "4,8,"], "empty entry"),
             (["--bits", "4,8", "--pin", "c1=9"], "weight bits 9 unsupported"),
             (["--bits", "4,8", "--pin", "c1=1"], "weight bits 1 unsupported"),
             (["--pin", "c1=w4a6"], "activation bits 6 unsupported")]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        one_error(capsys, message)
    foreign = sensitivity_file(tmp_path, path, extra="conv99")
    assert main(["plan", path, "--sensitivity", foreign, "--max-size", "60%", "-o", plan, "-q"]) == 2
    one_error(capsys, "conv99")
    assert not os.path.exists(plan)
    # a pin outside --bits is a choice of its own as long as a kernel exists for it
    assert main([*base, "--bits", "4,8", "--pin", "c1=2"]) == 0
    assert json.loads(open(plan).read())["layers"]["w1"]["w_bits"] == 2  # c1 is w1's node


def test_click_usage_errors_are_one_error_line(tmp_path, tiny, capsys):
    path, calib = tiny
    (tmp_path / "file").write_text("x")
    sens = sensitivity_file(tmp_path, path)
    cases = [(["inspect", str(tmp_path)], "is a directory"),
             (["plan", path, "--sensitivity", sens, "--sweep", "0", "-o", str(tmp_path / "sw")], "--sweep"),
             (["validate", path, path, "--data", calib, "--top", "0"], "--top"),
             (["auto", path, "--calib", calib, "--data", calib, "-o", str(tmp_path / "file")], "is a file"),
             (["quantize", path, "--no-such-option"], "--no-such-option"),
             (["quantize"], "Missing argument")]
    for args, message in cases:
        assert main(args) == 2, args
        one_error(capsys, message)
