"""How fast the HAWQ-V3 program solves at scale: 1,000 layers x {2,3,4,8} bits x 3 limits.

Each instance has ResNet-like random layers (log-normal parameter counts, MACs, average traces),
Ω = trace · params · 4^-b (the quantization-noise law) with ±10 % jitter, size in bytes, BOPs at
8-bit activations, and a latency per layer that grows with MACs and bits. Size, BOPs and latency
are all limited at `alpha` of the way from their smallest to their largest value (HAWQ's
notebook uses α ∈ {0.25, 0.5, 0.75}). Every solve must end OPTIMAL (proven).

    python benchmarks/plan_speed.py [--layers 1000] [--seeds 5] [--workers 1]

prints a table and writes benchmarks/results/plan_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from onnx_hawq.config import atomic_write_json
from onnx_hawq.planning import ilp
from onnx_hawq.planning.profiler import cpu_name

BITS = (2, 3, 4, 8)
ALPHAS = (0.25, 0.5, 0.75)
RESULTS = Path(__file__).resolve().parent / "results" / "plan_speed.json"


def random_costs(n: int, seed: int) -> tuple[tuple, dict[str, tuple]]:
    """Ω and the three resource tables of `n` random layers."""
    rng = np.random.default_rng(seed)
    params = rng.lognormal(10, 1.5, n).astype(np.int64) + 16
    macs = params * rng.integers(16, 3136, n)
    trace = rng.lognormal(-3, 2, n)
    bits = np.array(BITS)
    omega = trace[:, None] * params[:, None] * 4.0 ** -bits[None, :] * rng.uniform(0.9, 1.1, (n, len(BITS)))
    size = -(-params[:, None] * bits[None, :] // 8) + 8 * (params[:, None] // 1000 + 1)
    bops = macs[:, None] * bits[None, :] * 8
    latency = (2000 + macs[:, None] * (0.5 + bits[None, :] / 8) / 50 * rng.uniform(0.9, 1.1, (n, len(BITS))))
    table = lambda a: tuple(map(tuple, a.astype(np.int64).tolist()))  # noqa: E731
    return tuple(map(tuple, omega.tolist())), {"size": table(size), "bops": table(bops),
                                                "latency": table(np.ceil(latency))}


def instance(n: int, seed: int, alpha: float) -> ilp.Problem:
    """A problem with every resource limited at `alpha` between its minimum and maximum."""
    omega, costs = random_costs(n, seed)
    resources = []
    for name, table in costs.items():
        low, high = sum(min(r) for r in table), sum(max(r) for r in table)
        resources.append(ilp.Resource(name, table, int(low + alpha * (high - low))))
    return ilp.Problem(omega, tuple(resources), ((0, 1, 2, 3),) * n, ilp.tie_groups(n, []))


def measure(n: int, seed: int, alpha: float, workers: int) -> dict:
    """Solve one instance; return its timings and answer."""
    problem = instance(n, seed, alpha)
    start = time.perf_counter()
    sol = ilp.solve(problem, time_limit=60, workers=workers)
    total = time.perf_counter() - start
    return {"layers": n, "seed": seed, "alpha": alpha, "workers": workers, "status": sol.status,
            "solve_s": round(sol.wall_s, 4), "total_s": round(total, 4), "objective": sol.objective,
            "tolerance": sol.tolerance, "use": dict(zip([r.name for r in problem.resources], sol.use)),
            "limits": {r.name: r.limit for r in problem.resources}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    from ortools.sat.python import cp_model  # noqa: F401  (import time is not solve time)

    rows = [measure(args.layers, seed, alpha, args.workers) for seed in range(args.seeds) for alpha in ALPHAS]
    print(f"{'seed':>4} {'alpha':>5} {'status':>8} {'CP-SAT s':>9} {'total s':>8} {'ΣΩ':>12} {'tolerance':>10}")
    for r in rows:
        print(f"{r['seed']:4d} {r['alpha']:5.2f} {r['status']:>8} {r['solve_s']:9.3f} {r['total_s']:8.3f} "
              f"{r['objective']:12.6g} {r['tolerance']:10.2g}")
    totals = [r["total_s"] for r in rows]
    print(f"median total {statistics.median(totals):.3f} s, max {max(totals):.3f} s "
          f"({args.layers} layers x {len(BITS)} bits x 3 limits, {len(rows)} instances)")
    assert all(r["status"] == "OPTIMAL" for r in rows), "a solve did not prove optimality"
    atomic_write_json(RESULTS, {"machine": {"cpu": cpu_name(),
                                            "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
                                "bits": BITS, "median_total_s": statistics.median(totals),
                                "max_total_s": max(totals), "rows": rows})


if __name__ == "__main__":
    main()
