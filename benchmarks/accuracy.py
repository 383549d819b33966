"""Accuracy of HAWQ plans vs uniform, random and weight-count plans vs onnxruntime's quantize_static.

Digits CNN (the committed sample, real held-out images). Seeded. Prints tables and writes
benchmarks/results/accuracy.json and accuracy.png.   Run: python benchmarks/accuracy.py
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
from benchmarks.quantize_speed import latency_ms  # noqa: E402
from onnx_hawq.layers import find_layers  # noqa: E402
from onnx_hawq.model_io import load_data  # noqa: E402
from onnx_hawq.plans import LayerBits, Plan, fingerprint, uniform_plan  # noqa: E402
from onnx_hawq.planning.costs import bops, size_bytes  # noqa: E402
from onnx_hawq.quantization import quantize_model  # noqa: E402
from onnx_hawq.transforms.prepare import prepare_model  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = HERE.parent / "sample_models"
ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def plan_cost(layers, plan: Plan) -> tuple[int, int]:
    bits = plan.resolve(layers)
    return (sum(size_bytes(l, bits[l.name].w_bits) for l in layers),
            sum(bops(l, bits[l.name].w_bits, bits[l.name].a_bits) for l in layers))


def greedy_plan(layers, order, budget: int) -> Plan:
    """Lower layers to 4 bits in `order` until the size fits `budget`."""
    chosen = {}
    for layer in order:
        if plan_cost(layers, Plan(layers=chosen))[0] <= budget:
            break
        chosen[layer.name] = LayerBits(4, 8)
    return Plan(layers=chosen, model=fingerprint(layers))


def hawq_plan(model_path, sens_path, budget: int, metric: str, bits=(4, 8)) -> Plan:
    from onnx_hawq.planning.config import PlanConfig
    from onnx_hawq.planning.limits import Limit
    from onnx_hawq.planning.planner import make_plan

    with tempfile.TemporaryDirectory() as d:
        cfg = PlanConfig(str(model_path), str(sens_path), f"{d}/plan.json", max_size=Limit("size", budget),
                         metric=metric, bits=bits)
        return make_plan(cfg).plan


def sensitivities(model_path, calib_path, out: pathlib.Path) -> float:
    from onnx_hawq.calibration.hessian import HessianConfig
    from onnx_hawq.calibration.run import SensitivityConfig, run_sensitivity

    t = time.perf_counter()
    run_sensitivity(SensitivityConfig(str(model_path), str(out), data=str(calib_path), labels=None,
                                      hessian=HessianConfig(method="both", max_iter=100, tol=0.03), progress=False))
    return time.perf_counter() - t


def evaluate(name, qmodel, layers, plan, x, y) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(qmodel.SerializeToString(), providers=["CPUExecutionProvider"])
    acc = float((sess.run(None, {"input": x})[0].argmax(1) == y).mean())
    size, ops = plan_cost(layers, plan) if plan is not None else (None, None)
    return {"name": name, "accuracy": round(100 * acc, 2), "size_bytes": size, "bops": ops,
            "latency_ms": round(latency_ms(qmodel, {"input": x[:1]}, 200), 4)}


def ort_baselines(model_path, calib, x, y) -> list[dict]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    rows = []
    for fmt in (QuantFormat.QOperator, QuantFormat.QDQ):
        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter({"input": calib[i:i + 1]} for i in range(len(calib)))

            def get_next(self):
                return next(self.it, None)

        with tempfile.TemporaryDirectory() as d:
            quantize_static(str(model_path), f"{d}/q.onnx", Reader(), quant_format=fmt, per_channel=True)
            q = onnx.load(f"{d}/q.onnx")
            rows.append(evaluate(f"ort quantize_static {fmt.name}", q, None, None, x, y))
            rows[-1]["size_bytes"] = sum(int(np.prod(i.dims)) for i in q.graph.initializer if i.data_type == 3)
    return rows


def digits(args) -> list[dict]:
    model_path = SAMPLE / "digits_resnet.onnx"
    model = onnx.load(str(model_path))
    calib = load_data(SAMPLE / "digits_calib.npz", model)
    test = np.load(SAMPLE / "digits_test.npz")
    x, y = test["input"], test["label"]
    layers = find_layers(prepare_model(model))
    quant = lambda plan: quantize_model(model, plan, calib).model  # noqa: E731
    rows = [evaluate("fp32", model, layers, None, x, y)]
    rows[0]["size_bytes"] = 4 * sum(l.params for l in layers)
    for spec in ("8", "w4a8", "w4a4"):
        plan = uniform_plan(spec)
        rows.append(evaluate(f"uniform {plan.default.label()}", quant(plan), layers, plan, x, y))
    s4, s8 = (plan_cost(layers, uniform_plan(b))[0] for b in ("w4a8", "8"))
    with tempfile.TemporaryDirectory() as d:
        sens = pathlib.Path(d) / "sens.json"
        secs = sensitivities(model_path, SAMPLE / "digits_calib.npz", sens)
        print(f"sensitivity (trace + eigenvalue) took {secs:.1f} s")
        rng = np.random.default_rng(args.seed)
        for alpha in ALPHAS:
            budget = int(s4 + alpha * (s8 - s4))
            for metric in ("trace", "eigen"):
                plan = hawq_plan(model_path, sens, budget, metric)
                rows.append(evaluate(f"hawq-{metric} a={alpha}", quant(plan), layers, plan, x, y))
            plan = greedy_plan(layers, sorted(layers, key=lambda l: -l.params), budget)
            rows.append(evaluate(f"weight-count a={alpha}", quant(plan), layers, plan, x, y))
            for k in range(args.random):
                order = [layers[i] for i in rng.permutation(len(layers))]
                plan = greedy_plan(layers, order, budget)
                rows.append(evaluate(f"random{k} a={alpha}", quant(plan), layers, plan, x, y))
        plan = hawq_plan(model_path, sens, s4, "trace", bits=(2, 3, 4, 8))
        rows.append(evaluate("hawq-trace {2,3,4,8} @ W4A8 size", quant(plan), layers, plan, x, y))
    return rows + ort_baselines(model_path, calib["input"], x, y)


def summarize(rows: list[dict], metric: str = "accuracy", hawq: str = "hawq-trace", alphas=ALPHAS) -> list[str]:
    """Per budget: HAWQ vs the median random plan (the honest check) on `metric`."""
    lines = []
    for alpha in alphas:
        tag = f"a={alpha}"
        rand = [r[metric] for r in rows if r["name"].startswith("random") and r["name"].endswith(tag)]
        value = next(r[metric] for r in rows if r["name"] == f"{hawq} {tag}")
        med = float(np.median(rand)) if rand else float("nan")
        lines.append(f"{tag}: {hawq} {metric} {value:.4g} vs median random {med:.4g} -> "
                     f"{'OK' if value >= med else 'BELOW median'}")
    return lines


def plot(rows: list[dict], path: pathlib.Path, metric: str = "accuracy", ylabel: str = "test accuracy (%)",
         title: str = "digits CNN: accuracy vs size") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = {"hawq-trace": "o-", "hawq-eigen": "s--", "hawq ": "o-", "weight-count": "^:", "random": "x",
              "uniform": "D", "W8A8": "D"}
    for prefix, style in groups.items():
        pts = sorted((r["size_bytes"], r[metric]) for r in rows if r["name"].startswith(prefix) and r["size_bytes"])
        if pts:
            ax.plot(*zip(*pts), style, label=prefix, alpha=0.8)
    ax.set_xlabel("model size (bytes)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=5, help="random plans per budget")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = digits(args)
    print(f"{'plan':<36} {'acc %':>6} {'bytes':>8} {'BOPs':>12} {'ms':>8}")
    for r in rows:
        print(f"{r['name']:<36} {r['accuracy']:>6} {str(r['size_bytes']):>8} {str(r['bops']):>12} {r['latency_ms']:>8}")
    checks = summarize(rows)
    print("\n".join(checks))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps({"digits": rows, "checks": checks}, indent=2))
    plot(rows, out / "accuracy.png")
    print(f"wrote {out / 'accuracy.json'} and accuracy.png")


if __name__ == "__main__":
    main()
