"""QDQ form vs QLinear form: onnxruntime bit equality (differing outputs, max difference, the float
ops onnxruntime's QDQ fusion leaves), ORT latency of both (1 thread), OpenVINO CPU latency (1 thread)
and cosine vs fp32, on the digits CNN and a ResNet-18-shaped model (random weights and inputs).

Forms: qlinear (the default), qdq (`--format qdq`: INT4 weights widened by Cast, which ORT folds before
fusing), qdq-int4 (`to_qdq_form(int4="direct")`: DequantizeLinear of the INT4 initializer).
Run: python -m benchmarks.qdq_form [--runs 20]  -> benchmarks/results/qdq_form.json + a table.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.models import resnet  # noqa: E402
from benchmarks.tables import print_rows, write_rows  # noqa: E402
from benchmarks.quantize_speed import latency_ms, mixed_plan  # noqa: E402
from onnx_hawq.arith.similarity import sample_cosines  # noqa: E402
from onnx_hawq.calibration.ranges import CalibConfig  # noqa: E402
from onnx_hawq.calibration.rounding import Rounding, RoundingConfig  # noqa: E402
from onnx_hawq.plans import uniform_plan  # noqa: E402
from onnx_hawq.quantization import quantize_to_format  # noqa: E402
from onnx_hawq.transforms.to_qdq_form import to_qdq_form  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = HERE.parent / "sample_models"
FLOAT_LAYER_OPS = {"Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool"}


def ort_outputs(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(output, float ops left after onnxruntime's optimizations) with one thread."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = f"{d}/opt.onnx"
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    return sess.run(None, {"input": x})[0], sorted({o for o in ops if o in FLOAT_LAYER_OPS})


def openvino_run(model: onnx.ModelProto, x: np.ndarray, runs: int) -> tuple[np.ndarray, float] | None:
    """(output, median ms at batch 1, 1 thread) on OpenVINO's CPU plugin; None without openvino."""
    try:
        import openvino
    except ImportError:
        return None
    import time

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_NUM_THREADS": 1})
    out = np.concatenate([compiled(x[i:i + 1])[compiled.output(0)] for i in range(len(x))])
    req, one, times = compiled.create_infer_request(), x[:1], []
    for _ in range(3 + runs):
        t = time.perf_counter()
        req.infer({0: one})
        times.append(time.perf_counter() - t)
    return out, float(np.median(times[3:]) * 1000)


def rows_for(name: str, model: onnx.ModelProto, calib: dict, x: np.ndarray, plans: dict, runs: int,
             rounding: RoundingConfig = RoundingConfig()) -> list[dict]:
    ref = ort_outputs(model, x)[0]
    ov_fp32 = openvino_run(model, x, runs)
    rows = [{"model": name, "plan": "fp32", "form": "fp32", "ort_ms": round(latency_ms(model, {"input": x[:1]}, runs), 3),
             "ov_ms": ov_fp32 and round(ov_fp32[1], 3)}]
    for label, plan in plans.items():
        qlinear, report = quantize_to_format(model, plan, calib, CalibConfig(max_samples=len(calib["input"])),
                                               rounding=rounding)
        lsb = {i.name: onnx.numpy_helper.to_array(i) for i in qlinear.graph.initializer}[f"{model.graph.output[0].name}_scale"]
        forms = {"qlinear": qlinear, "qdq": to_qdq_form(qlinear)}
        if any(r["w_bits"] <= 4 for r in report["layers"]):
            forms["qdq-int4"] = to_qdq_form(qlinear, int4="direct")
        base = ort_outputs(qlinear, x)[0]
        for form, m in forms.items():
            out, unfused = ort_outputs(m, x)
            ov = openvino_run(m, x, runs) if form != "qlinear" else None
            diff = np.abs(out - base)
            rows.append({"model": name, "plan": label, "form": form, "ort_vs_qlinear_differing": int(np.sum(diff > 0)),
                         "outputs": int(out.size), "max_diff_lsb": round(float(diff.max() / lsb), 3),
                         "ort_unfused_ops": unfused, "ort_ms": round(latency_ms(m, {"input": x[:1]}, runs), 3),
                         "ort_cos_fp32": round(float(sample_cosines(ref, out).mean()), 5),
                         "ov_ms": ov and round(ov[1], 3),
                         "ov_cos_fp32": ov and round(float(sample_cosines(ref, ov[0]).mean()), 5),
                         "ov_cos_qlinear_min": ov and round(float(sample_cosines(base, ov[0]).min()), 5)})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--samples", type=int, default=8, help="ResNet inputs (calibration and comparison)")
    args = ap.parse_args(argv)
    digits = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    calib = {"input": np.load(SAMPLE / "digits_calib.npz")["input"][:64]}
    x = np.load(SAMPLE / "digits_test.npz")["input"][:256]
    plans = {"W8A8": uniform_plan("w8a8"), "W4A8": uniform_plan("w4a8"), "mixed": mixed_plan(digits)}
    rows = rows_for("digits CNN", digits, calib, x, plans, args.runs * 10)
    big = resnet()
    r = np.random.default_rng(0)
    xs = r.random((args.samples, 3, 224, 224), np.float32)
    rows += rows_for("resnet18-shaped 224px", big, {"input": xs}, xs,
                     {"W8A8": uniform_plan("w8a8"), "W4A8": uniform_plan("w4a8")}, args.runs,
                     RoundingConfig(Rounding.NEAREST))  # random weights: GPTQ buys nothing, costs minutes
    print_rows(rows)
    write_rows("qdq_form", rows)


if __name__ == "__main__":
    main()
