"""Sensitivity speed on this CPU: shared Hessian-vector products vs a per-layer loop.

For the digits sample (torch route, BN-folded weights) and a ResNet-20-shaped CIFAR model (random
weights and inputs, 3 stages x 3 basic blocks, 16/32/64 channels):

1. runs to the tolerance (every layer's stderr/|trace| < --tol, at most --max-iter vectors) with
   shared HVPs, per-layer HVPs, and per-layer HVPs deflated by a --deflate sketch (Hutch++):
   wall time, Hessian-vector products, relative standard error per layer;
2. the same number of vectors (--vectors) through the shared HVP (one double backward per vector
   for all layers) and through a per-layer loop (one double backward per vector *per layer*),
   timed in the same process: the speedup ratio, and each estimator's worst relative stderr.

3. for real ONNX models (`--onnx rec,cls,det`: PP-OCRv5 from benchmarks/real_models.py, rendered text),
   the ONNX route as `onnx-hawq sensitivity` runs it, to --tol on every layer within --budget seconds:
   shared vs per-layer blocks, batch sizes (HVP cost), single process vs `nproc=2`.

Prints a table and writes JSON to benchmarks/results/sensitivity_speed.json (the entries of the models
run replace those of an earlier run; the others are kept).
Run: ``python benchmarks/sensitivity_speed.py [--tol 0.05] [--vectors 16] [--budget 60] [--threads 1]``
     ``[--models digits,resnet20] [--onnx rec]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onnx_hawq.calibration.hessian import (BlockHessian, HessianConfig, as_batches, layer_sensitivities,
                                           loss_gradients, quantizable_weights, rademacher, relative_stderr)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sensitivity_speed.json"


sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sample_models"))
from digits_resnet import block_class  # noqa: E402  (the sample's residual block, shared)

BasicBlock = block_class()


class ResNet20(nn.Module):
    """CIFAR ResNet-20: stem conv, 3 stages x 3 basic blocks (16/32/64 channels), linear head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            stages.append(nn.Sequential(*(BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                          for i in range(3))))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet20_problem(batch: int, seed: int = 0):
    """(model, [(inputs, labels)], loss) with random weights, CIFAR-shaped random inputs and labels."""
    torch.manual_seed(seed)
    model = ResNet20().eval()
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    return model, [(x, y)], nn.functional.cross_entropy


def digits_problem():
    """The digits sample through its `hawq_factory`, with the ONNX model's per-channel BN scales."""
    import onnx

    from onnx_hawq.calibration.torch_route import channel_scale, match_modules
    from onnx_hawq.layers import find_layers, weights_of
    from onnx_hawq.transforms.prepare import prepare_model

    sys.path.insert(0, str(ROOT / "sample_models"))
    from digits_resnet import hawq_factory

    model, data, loss = hawq_factory()
    onnx_model = prepare_model(onnx.load(ROOT / "sample_models" / "digits_resnet.onnx"))
    layers = find_layers(onnx_model)
    weights = match_modules(model.eval(), layers)
    scales = {l.name: channel_scale(weights[l.name].detach().numpy(), weights_of(onnx_model, l), l.name)
              for l in layers}
    return model, data, loss, weights, scales


def needed_vectors(samples: np.ndarray, tol: float) -> np.ndarray:
    """Vectors each layer needs for stderr/|trace| < tol, extrapolated from `samples` (k, layers)."""
    return np.ceil(relative_stderr(samples) ** 2 * len(samples) / tol ** 2)


def _shared_draw(op: BlockHessian, vs: list) -> list[float]:
    return [float((v * h).sum(dtype=torch.float64)) for v, h in zip(vs, op.matvec(vs))]


def _per_layer_draw(op: BlockHessian, vs: list, seconds: np.ndarray) -> list[float]:
    row = []
    for i, v in enumerate(vs):
        start = time.perf_counter()
        row.append(float((v * op.block_matvec(i, v)).sum(dtype=torch.float64)))
        seconds[i] += time.perf_counter() - start
    return row


def interleaved_samples(op: BlockHessian, draws: list) -> tuple:
    """Each draw through the shared HVP, then through the per-layer loop (alternating, so both see the
    same machine load) -> (shared samples, seconds), (per-layer samples, seconds per layer)."""
    shared, loop, t_shared, t_loop = [], [], 0.0, np.zeros(len(op.weights))
    for vs in draws:
        start = time.perf_counter()
        shared.append(_shared_draw(op, vs))
        t_shared += time.perf_counter() - start
        loop.append(_per_layer_draw(op, vs, t_loop))
    return (np.asarray(shared), t_shared), (np.asarray(loop), t_loop)


def regraph_seconds(model, data, loss, weights: list, vectors: int, seed: int) -> float:
    """PyHessian-style per-layer loop: each layer rebuilds its own loss gradient, then `vectors` HVPs."""
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for w in weights:
        op = BlockHessian(loss_gradients(model, as_batches(data), loss, [w]), [w], [None])
        for _ in range(vectors):
            op.matvec([rademacher(w, gen)])
    return time.perf_counter() - start


def shared_vs_per_layer(op: BlockHessian, vectors: int, tol: float, seed: int) -> dict:
    """The same `vectors` through the shared HVP and the per-layer loop: time, error, time to `tol`."""
    gen = torch.Generator().manual_seed(seed)
    draws = [[rademacher(w, gen) for w in op.weights] for _ in range(vectors)]
    interleaved_samples(op, draws[:1])  # warm-up
    (shared, t_shared), (loop, t_loop) = interleaved_samples(op, draws)
    per_vector_shared, per_vector_loop = t_shared / vectors, t_loop / vectors
    return {"vectors": vectors, "layers": len(op.weights),
            "shared_seconds": float(t_shared), "shared_hvps": vectors,
            "per_layer_seconds": float(t_loop.sum()), "per_layer_hvps": vectors * len(op.weights),
            "speedup": float(t_loop.sum() / t_shared),
            "shared_worst_rel_stderr": float(relative_stderr(shared).max()),
            "per_layer_worst_rel_stderr": float(relative_stderr(loop).max()),
            "est_shared_seconds_to_tol": float(needed_vectors(shared, tol).max() * per_vector_shared),
            "est_per_layer_seconds_to_tol": float((needed_vectors(loop, tol) * per_vector_loop).sum())}


def to_tolerance(model, data, loss, weights, scales, blocks: str, args, deflate: int = 0) -> dict:
    """Run the estimator until every layer's stderr/|trace| < tol, max_iter, or the time budget."""
    cfg = HessianConfig(max_iter=args.max_iter, tol=args.tol, seed=args.seed, blocks=blocks,
                        max_seconds=args.budget, deflate=deflate)
    res = layer_sensitivities(model, data, loss, weights, cfg, scales, progress=args.progress)
    rel = {n: s.stderr / abs(s.trace) if s.trace else float("inf") for n, s in res.layers.items()}
    return {"blocks": blocks + (f"+deflate{deflate}" if deflate else ""), "tol": args.tol, "budget_seconds": args.budget, "seconds": res.seconds,
            "hvps": res.hvp_count, "vectors": {n: s.samples for n, s in res.layers.items()},
            "worst_rel_stderr": max(rel.values()), "all_below_tol": max(rel.values()) < args.tol,
            "rel_stderr": rel, "trace": {n: s.trace for n, s in res.layers.items()}}


def benchmark(name: str, model, data, loss, weights, scales, args) -> dict:
    """One model: runs to tolerance (shared and per-layer blocks) and the equal-vectors comparison."""
    names, ws = list(weights), list(weights.values())
    inv = [None if scales.get(n) is None else 1.0 / torch.as_tensor(scales[n]).to(w) for n, w in zip(names, ws)]
    op = BlockHessian(loss_gradients(model, as_batches(data), loss, ws), ws, inv)
    comparison = shared_vs_per_layer(op, args.vectors, args.tol, args.seed)
    comparison["per_layer_regraph_seconds"] = regraph_seconds(model, data, loss, ws, args.vectors, args.seed)
    return {"model": name, "layers": len(ws), "params": sum(w.numel() for w in ws),
            "samples_per_hvp": sum(len(x[0]) for x, _ in as_batches(data)),
            "to_tolerance": [to_tolerance(model, data, loss, weights, scales, b, args, k)
                             for b, k in (("shared", 0), ("layer", 0), ("layer", args.deflate))],
            "comparison": comparison}


ONNX_VARIANTS = (("shared", 8, 1), ("shared", 2, 1), ("shared", 8, 2))  # (blocks, batch, nproc)


def onnx_run(path, calib: Path, blocks: str, batch: int, nproc: int, args) -> dict:
    """`onnx-hawq sensitivity` (ONNX route, one batch) to --tol or --budget: wall time, HVPs, worst layer."""
    from onnx_hawq.calibration.run import SensitivityConfig, sensitivity

    loss = "kl" if Path(path).stem == "cls" else "mse"
    cfg = SensitivityConfig(str(path), "unused.json", data=str(calib), loss=loss, batch_size=batch, batches=1,
                            progress=args.progress,
                            hessian=HessianConfig(max_iter=args.max_iter, tol=args.tol, seed=args.seed, blocks=blocks,
                                                  max_seconds=args.budget, nproc=nproc))
    start = time.perf_counter()
    try:
        sens = sensitivity(cfg)
    except Exception as e:  # noqa: BLE001  (a refused model is a result of this benchmark)
        return {"blocks": blocks, "batch": batch, "nproc": nproc, "error": f"{type(e).__name__}: {e}"[:300]}
    secs = time.perf_counter() - start
    rel = {n: s.stderr / abs(s.trace) if s.trace else float("inf") for n, s in sens.layers.items()}
    worst = max(rel, key=rel.get)
    return {"blocks": blocks, "batch": batch, "nproc": nproc, "seconds": round(secs, 1), "hvps": sens.hvp_count,
            "seconds_per_hvp": round(secs / max(1, sens.hvp_count), 3), "worst_layer": worst,
            "worst_rel_stderr": round(rel[worst], 4), "above_tol": sum(r >= args.tol for r in rel.values()),
            "all_below_tol": rel[worst] < args.tol, "vectors": [s.samples for s in sens.layers.values()]}


def onnx_benchmark(name: str, args) -> dict:
    """One real ONNX model through every variant of ONNX_VARIANTS."""
    import tempfile

    from benchmarks.real_models import build

    with tempfile.TemporaryDirectory() as d:
        task = build(name, 16, 1, args.seed, Path(d))
        calib = Path(d) / "calib.npz"
        np.savez(calib, **task.calib)
        from onnx_hawq.layers import find_layers
        from onnx_hawq.transforms.prepare import prepare_model
        import onnx

        layers = len(find_layers(prepare_model(onnx.load(str(task.model_path)))))
        runs = []
        for blocks, batch, nproc in ONNX_VARIANTS:
            runs.append(onnx_run(task.model_path, calib, blocks, batch, nproc, args))
            print(name, runs[-1] if "error" in runs[-1] else {k: v for k, v in runs[-1].items() if k != "vectors"},
                  flush=True)
            if "error" in runs[-1]:
                break
    return {"model": name, "layers": layers, "route": "onnx", "budget_seconds": args.budget, "tol": args.tol,
            "runs": runs}


def onnx_table(results: list[dict]) -> str:
    rows = [f"{'model':<7}{'layers':>7}{'blocks':>8}{'batch':>6}{'nproc':>6}{'seconds':>9}{'HVPs':>6}{'s/HVP':>7}"
            f"{'worst rel.err':>14}{'>tol':>5}  worst layer"]
    for r in results:
        for t in r["runs"]:
            if "error" in t:
                rows.append(f"{r['model']:<7}{r['layers']:>7}  FAILED: {t['error'][:120]}")
                continue
            rows.append(f"{r['model']:<7}{r['layers']:>7}{t['blocks']:>8}{t['batch']:>6}{t['nproc']:>6}"
                        f"{t['seconds']:>9.1f}{t['hvps']:>6}{t['seconds_per_hvp']:>7.2f}{t['worst_rel_stderr']:>14.3f}"
                        f"{t['above_tol']:>5}  {t['worst_layer']}")
    return "\n".join(rows)


def table(results: list[dict]) -> str:
    """The figures as two plain-text tables."""
    rows = [f"{'model':<9}{'blocks':>16}{'layers':>7}{'vectors/layer':>15}{'HVPs':>7}{'seconds':>9}"
            f"{'worst rel.err':>14}{'all<tol':>8}"]
    for r in results:
        for t in r["to_tolerance"]:
            v = list(t["vectors"].values())
            rows.append(f"{r['model']:<9}{t['blocks']:>16}{r['layers']:>7}{f'{min(v)}-{max(v)}':>15}{t['hvps']:>7}"
                        f"{t['seconds']:>9.1f}{t['worst_rel_stderr']:>14.3f}{str(t['all_below_tol']):>8}")
    rows.append("")
    rows.append(f"{'model':<9}{'K':>4}{'shared s':>9}{'per-layer s':>12}{'regraph s':>10}{'speedup':>8}"
                f"{'rel.err shared/per-layer':>26}{'est. s to tol shared/per-layer':>32}")
    for r in results:
        c = r["comparison"]
        rows.append(f"{r['model']:<9}{c['vectors']:>4}{c['shared_seconds']:>9.2f}{c['per_layer_seconds']:>12.2f}"
                    f"{c['per_layer_regraph_seconds']:>10.2f}{c['speedup']:>8.1f}"
                    f"{c['shared_worst_rel_stderr']:>16.3f} / {c['per_layer_worst_rel_stderr']:<7.3f}"
                    f"{c['est_shared_seconds_to_tol']:>20.1f} / {c['est_per_layer_seconds_to_tol']:.1f}")
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tol", type=float, default=0.05)
    parser.add_argument("--max-iter", type=int, default=10000)
    parser.add_argument("--vectors", type=int, default=16, help="vectors for the shared-vs-per-layer timing")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per run to tolerance")
    parser.add_argument("--resnet-batch", type=int, default=32)
    parser.add_argument("--deflate", type=int, default=8, help="Hutch++ sketch size of the third run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: steady timings on a shared 2-core machine)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--models", default="digits,resnet20", help="torch-route models ('' for none)")
    parser.add_argument("--onnx", default="", help="real ONNX models: rec,cls,det (PP-OCRv5)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    results, onnx_results = [], [onnx_benchmark(n, args) for n in args.onnx.split(",") if n]
    if "digits" in args.models:
        model, data, loss, weights, scales = digits_problem()
        results.append(benchmark("digits", model, data, loss, weights, scales, args))
    if "resnet20" in args.models:
        model, data, loss = resnet20_problem(args.resnet_batch, args.seed)
        results.append(benchmark("resnet20", model, data, loss, quantizable_weights(model), {}, args))
    print(table(results) if results else "")
    print(onnx_table(onnx_results))
    meta = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "load_average_at_start": load}
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    keep = lambda key, new: [r for r in old.get(key, []) if r["model"] not in {n["model"] for n in new}] + new  # noqa: E731
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": keep("results", results),
                                    "onnx_results": keep("onnx_results", onnx_results)}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
