"""A model just over 2 GB (external data): load, quantize, write and validate it; peak RSS per step.

Run: python benchmarks/large_model.py [--gb 2.1] [--folder DIR] [--samples 16]
Generates a float MLP of a few huge MatMul weights saved with external data, then runs each step
in a fresh process (so each peak RSS is its own, from resource.getrusage): quantize (load with
external data, W8A8, check, write q.onnx + q.onnx.data atomically) and validate (float vs
quantized in onnxruntime, sessions loaded from paths). Prints a table and writes
benchmarks/results/large_model.json. Needs about 3x the model size in free disk and ~4-5x in RAM.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "large_model.json"
WIDTH = 12_000  # input width; hidden layers alternate WIDTH and HIDDEN


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(folder: pathlib.Path, gb: float, samples: int) -> dict:
    """float.onnx + float.onnx.data: MatMul -> Relu -> ... with enough weights for `gb` GB; data.npz."""
    import onnx
    from onnx import helper

    from onnx_hawq.large_models import write_external

    layers = 3
    hidden = int(gb * 1e9 / 4 / layers / WIDTH) + 1
    shapes = [(WIDTH, hidden), (hidden, WIDTH), (WIDTH, hidden)][:layers]
    r = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for k, (rows, cols) in enumerate(shapes):
        w = r.standard_normal((rows, cols), dtype=np.float32)
        w *= np.float32(1 / np.sqrt(rows))
        t = onnx.TensorProto(name=f"w{k}", data_type=onnx.TensorProto.FLOAT, dims=w.shape, raw_data=w.tobytes())
        del w
        inits.append(t)
        nodes.append(helper.make_node("MatMul", [x, f"w{k}"], [f"h{k}"], name=f"mm{k}"))
        x = f"h{k}"
        if k < layers - 1:
            nodes.append(helper.make_node("Relu", [x], [f"r{k}"], name=f"relu{k}"))
            x = f"r{k}"
    vi = onnx.helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "large", [vi("x", onnx.TensorProto.FLOAT, ["N", WIDTH])],
                              [vi(x, onnx.TensorProto.FLOAT, ["N", shapes[-1][1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    write_external(model, folder, "float.onnx")
    np.savez(folder / "data.npz", x=r.standard_normal((samples, WIDTH), dtype=np.float32))
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    return {"weights_bytes": weights, "shapes": shapes}


def quantize(folder: pathlib.Path) -> dict:
    from onnx_hawq.model_io import check_model_output_path, load_data, load_model_any, save_model_any
    from onnx_hawq.plans import uniform_plan
    from onnx_hawq.quantization import quantize_model

    out = check_model_output_path(folder / "q.onnx", [folder / "float.onnx"], [folder / "data.npz"])
    model = load_model_any(folder / "float.onnx")
    quant = quantize_model(model, uniform_plan("w8a8"), load_data(folder / "data.npz", model)).model
    save_model_any(quant, out)
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name.startswith("q.onnx")}
    return {"written": files}


def validate(folder: pathlib.Path) -> dict:
    from onnx_hawq.validation.config import Thresholds
    from onnx_hawq.validation.run import ValidateConfig, run_validate

    report = run_validate(ValidateConfig(str(folder / "float.onnx"), str(folder / "q.onnx"), str(folder / "data.npz"),
                                         thresholds=Thresholds(min_sqnr=20)))
    return {"checks": [c.line() for c in report.checks], "passed": report.passed}


STEPS = {"generate": generate, "quantize": quantize, "validate": validate}


def child(step: str, folder: pathlib.Path, gb: float, samples: int) -> None:
    """Run one step in this process and print its result (JSON) with seconds and peak RSS."""
    start = time.perf_counter()
    result = STEPS[step](folder, gb, samples) if step == "generate" else STEPS[step](folder)
    result.update(seconds=round(time.perf_counter() - start, 1), peak_rss_mb=round(peak_rss_mb()))
    print(json.dumps(result))


def run_step(step: str, folder: pathlib.Path, gb: float, samples: int) -> dict:
    cmd = [sys.executable, __file__, "--step", step, "--folder", str(folder), "--gb", str(gb),
           "--samples", str(samples)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"failed": proc.returncode, "stderr": proc.stderr.strip().splitlines()[-3:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.1, help="float weights in GB (1e9 bytes)")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--folder", type=pathlib.Path, default=None, help="work folder (default: a temp folder, removed)")
    ap.add_argument("--step", choices=list(STEPS), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        child(args.step, args.folder, args.gb, args.samples)
        return
    folder = args.folder or pathlib.Path(tempfile.mkdtemp(prefix="hawq_large_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        results = {}
        for step in STEPS:
            results[step] = run_step(step, folder, args.gb, args.samples)
            print(f"{step:<9} {json.dumps(results[step])}", flush=True)
            if "failed" in results[step]:
                break
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    weights = results["generate"].get("weights_bytes", 0)
    summary = {"weights_gb": round(weights / 1e9, 3), "steps": results,
               "peak_rss_over_weights": {s: round(r["peak_rss_mb"] * 2**20 / weights, 2)
                                         for s, r in results.items() if "peak_rss_mb" in r and weights}}
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["peak_rss_over_weights"]), f"-> {RESULTS}")


if __name__ == "__main__":
    main()
