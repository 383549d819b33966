"""On-disk size of fp32, W8A8, W4A8 and mixed 4/8 models: weights (as the report reads them from the
file) vs the planner's size model, whole file, and ORT latency of the packed models.

Run: python benchmarks/model_size.py [--calib-samples 8] [--runs 20]
Prints a table and writes benchmarks/results/model_size.json (one run; ratios within it).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.models import resnet  # noqa: E402
from benchmarks.quantize_speed import latency_ms, mixed_plan  # noqa: E402
from onnx_hawq.calibration.ranges import CalibConfig  # noqa: E402
from onnx_hawq.plans import uniform_plan  # noqa: E402
from onnx_hawq.quantization import quantize_to_format  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = HERE.parent / "sample_models"


def fp32_weight_bytes(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) * 4 for t in model.graph.initializer if len(t.dims) >= 2)


def rows_for(name: str, model: onnx.ModelProto, calib: dict, runs: int) -> list[dict]:
    feed = {k: v[:1] for k, v in calib.items()}
    rows = [{"model": name, "plan": "fp32", "weight_bytes": fp32_weight_bytes(model), "planned_bytes": None,
             "file_bytes": model.ByteSize(), "ms": round(latency_ms(model, feed, runs), 3)}]
    plans = {"W8A8": uniform_plan("w8a8"), "W4A8": uniform_plan("w4a8"), "mixed (every other layer 4-bit)": mixed_plan(model)}
    for label, plan in plans.items():
        quant, report = quantize_to_format(model, plan, calib, CalibConfig(max_samples=len(next(iter(calib.values())))))
        t = report["totals"]
        rows.append({"model": name, "plan": label, "weight_bytes": t["disk_bytes"], "planned_bytes": t["size_bytes"],
                     "file_bytes": quant.ByteSize(), "ms": round(latency_ms(quant, feed, runs), 3)})
    w8 = next(r for r in rows if r["plan"] == "W8A8")
    for r in rows:
        r["weights_vs_w8a8"] = round(r["weight_bytes"] / w8["weight_bytes"], 3)
        r["disk_vs_plan"] = None if r["planned_bytes"] is None else round(r["weight_bytes"] / r["planned_bytes"], 4)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib-samples", type=int, default=8)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    r = np.random.default_rng(0)
    digits = {"input": np.load(SAMPLE / "digits_calib.npz")["input"][:64]}
    rows = rows_for("digits CNN", onnx.load(str(SAMPLE / "digits_resnet.onnx")), digits, args.runs * 10)
    rows += rows_for("digits transformer", onnx.load(str(SAMPLE / "digits_transformer.onnx")), digits, args.runs * 10)
    rows += rows_for("resnet18-shaped 224px", resnet(),
                     {"input": r.random((args.calib_samples, 3, 224, 224), np.float32)}, args.runs)
    cols = list(rows[0])
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    out = HERE / "results" / "model_size.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"threads": 1, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
