"""Quantize time vs onnxruntime's quantize_static, and ORT latency of our W8A8 / mixed models vs fp32.

Run: python benchmarks/quantize_speed.py [--calib-samples 16] [--runs 20]
Prints a table and writes benchmarks/results/quantize_speed.json. Figures are ratios from one run.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.models import resnet  # noqa: E402
from benchmarks.tables import print_rows, write_rows  # noqa: E402
from onnx_hawq.layers import find_layers  # noqa: E402
from onnx_hawq.plans import LayerBits, Plan, uniform_plan  # noqa: E402
from onnx_hawq.planning.profiler import time_model  # noqa: E402
from onnx_hawq.quantization import quantize_model  # noqa: E402
from onnx_hawq.transforms.prepare import prepare_model  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = HERE.parent / "sample_models"


def mixed_plan(model: onnx.ModelProto) -> Plan:
    """4-bit weights for every other layer between the pinned first and last (8-bit)."""
    layers = find_layers(prepare_model(model))
    return Plan(default=LayerBits(8, 8), layers={l.name: LayerBits(4, 8) for l in layers[1:-1:2]})


def ort_quantize_seconds(model: onnx.ModelProto, calib: dict) -> float:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{k: v[i:i + 1] for k, v in calib.items()} for i in range(len(next(iter(calib.values()))))])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = f"{d}/m.onnx", f"{d}/q.onnx"
        onnx.save(model, src)
        t = time.perf_counter()
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QOperator, per_channel=True)
        return time.perf_counter() - t


def latency_ms(model: onnx.ModelProto, feed: dict, runs: int) -> float:
    """Median single-thread onnxruntime latency (the profiler's timer), in milliseconds."""
    return time_model(model, feed, threads=1, warmup=3, runs=runs)


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(name: str, model: onnx.ModelProto, calib: dict, runs: int, repeats: int = 3) -> dict:
    w8 = quantize_model(model, uniform_plan("8"), calib).model  # also warms up imports and caches
    mixed = quantize_model(model, mixed_plan(model), calib).model
    ours, theirs = [], []
    for _ in range(repeats):  # alternate, so a busy machine slows both; report medians
        ours.append(seconds(lambda: quantize_model(model, uniform_plan("8"), calib)))
        theirs.append(ort_quantize_seconds(model, calib))
    ours, theirs = float(np.median(ours)), float(np.median(theirs))
    feed = {k: v[:1] for k, v in calib.items()}
    fp32, l8, lm = (latency_ms(m, feed, runs) for m in (model, w8, mixed))
    return {"model": name, "calib_samples": len(next(iter(calib.values()))), "ours_quantize_s": round(ours, 3),
            "ort_quantize_static_s": round(theirs, 3), "quantize_time_ratio": round(ours / theirs, 3),
            "fp32_ms": round(fp32, 3), "w8a8_ms": round(l8, 3), "mixed_ms": round(lm, 3),
            "w8a8_speedup": round(fp32 / l8, 2), "mixed_speedup": round(fp32 / lm, 2)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    r = np.random.default_rng(0)
    digits = onnx.load(str(SAMPLE / "digits_resnet.onnx"))
    rows = [bench("resnet18-shaped 224px", resnet(), {"input": r.random((args.calib_samples, 3, 224, 224), np.float32)}, args.runs),
            bench("digits sample", digits, {"input": np.load(SAMPLE / "digits_calib.npz")["input"][:args.calib_samples]},
                  args.runs * 10)]
    print_rows(rows)
    write_rows("quantize_speed", rows)


if __name__ == "__main__":
    main()
