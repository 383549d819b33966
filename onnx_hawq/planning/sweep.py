"""`onnx-hawq plan --sweep N`: the Pareto curve of budget vs ΣΩ.

The swept resource is BOPs when only --max-bops is given, else size. N budgets are spread
evenly from the smallest achievable value (every layer at its lowest allowed bits, pins and ties
respected) to the W8A8 model's value; a limit given for the swept resource is replaced by the
budgets, any other limit given stays in force (budgets it makes infeasible show as INFEASIBLE
rows). `-o` names a folder
that receives plan_00.json ... plan_{N-1}.json, sweep.json (the table) and sweep.png (the plot).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Optional

from onnx_hawq.config import JsonConfig, atomic_write_bytes
from onnx_hawq.errors import InputError
from onnx_hawq.planning import ilp
from onnx_hawq.planning.config import PlanConfig
from onnx_hawq.planning.instance import Instance, build_instance
from onnx_hawq.planning.limits import format_amount, interpolate
from onnx_hawq.planning.planner import check_outputs, lowest_use, resolve_limits, to_plan, with_limits


@dataclasses.dataclass(frozen=True)
class SweepRow(JsonConfig):
    """One budget's result; `plan` is the plan file name, None when the budget was infeasible."""

    budget: int
    status: str
    objective: Optional[float] = None
    tolerance: Optional[float] = None
    use: dict[str, int] = dataclasses.field(default_factory=dict)
    mean_w_bits: Optional[float] = None
    plan: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SweepResult(JsonConfig):
    """The sweep table: the swept resource, the W8A8 reference and one row per budget."""

    KIND = "onnx-hawq-sweep"
    VERSION = 1

    resource: str
    all8: dict[str, int]
    limits: dict[str, int]
    rows: tuple[SweepRow, ...]

    def summary(self) -> str:
        """The table as aligned text."""
        head = f"{'#':>3} {self.resource + ' budget':>28} {'ΣΩ':>12} {'mean w':>7}  " + "  ".join(
            f"{k:>26}" for k in self.all8)
        lines = [head]
        for k, row in enumerate(self.rows):
            obj = f"{row.objective:12.5g}" if row.objective is not None else f"{row.status:>12}"
            mean = f"{row.mean_w_bits:7.3f}" if row.mean_w_bits is not None else " " * 7
            uses = "  ".join(f"{format_amount(n, row.use[n]) if n in row.use else '-':>26}" for n in self.all8)
            lines.append(f"{k:3d} {format_amount(self.resource, row.budget):>28} {obj} {mean}  {uses}")
        return "\n".join(lines)


def swept_resource(cfg: PlanConfig) -> str:
    """BOPs when only --max-bops is given, else size."""
    return "bops" if cfg.max_bops is not None and cfg.max_size is None else "size"


def budgets(inst: Instance, resource: str, n: int) -> list[int]:
    """`n` integer budgets evenly from the smallest achievable value to the W8A8 value."""
    low, high = lowest_use(inst, resource), inst.all8[resource]
    if n == 1:
        return [int(interpolate(low, high, 1.0))]
    return [int(interpolate(low, high, k / (n - 1))) for k in range(n)]


def sweep_row(inst: Instance, limits: dict, cfg: PlanConfig, budget: int, name: str, folder: Path) -> SweepRow:
    """Solve one budget, write its plan into `folder`, and return its table row."""
    try:
        sol = ilp.solve(with_limits(inst, limits), cfg.time_limit, cfg.workers)
    except ilp.Infeasible:
        return SweepRow(budget, "INFEASIBLE")
    except TimeoutError:
        return SweepRow(budget, "TIMEOUT")
    to_plan(inst, sol, limits, cfg).save(folder / name)
    use = {r.name: u for r, u in zip(inst.problem.resources, sol.use)}
    mean = sum(inst.choices[c].w_bits * inst.layers[i].params for i, c in enumerate(sol.choice)) / sum(
        l.params for l in inst.layers)
    return SweepRow(budget, sol.status, sol.objective, sol.tolerance, use, mean, name)


def plot_png(result: SweepResult) -> bytes:
    """The Pareto curve (swept resource vs ΣΩ) as PNG bytes, drawn with matplotlib's Agg."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = [r for r in result.rows if r.objective is not None]
    scale, unit = (1e3, "KB") if result.resource == "size" else (1e6, "MBOPs")
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    ax.plot([r.use[result.resource] / scale for r in rows], [r.objective for r in rows], "o-")
    ax.axvline(result.all8[result.resource] / scale, color="grey", ls="--", label="W8A8")
    if rows and min(r.objective for r in rows) > 0:
        ax.set_yscale("log")
    ax.set_xlabel(f"{result.resource} ({unit})")
    ax.set_ylabel("ΣΩ (Hessian-weighted perturbation)")
    ax.set_title("HAWQ-V3 Pareto curve")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def run_sweep(cfg: PlanConfig) -> SweepResult:
    """Solve `cfg.sweep` budgets and write plans, sweep.json and sweep.png into `cfg.output`."""
    if cfg.sweep < 1:
        raise InputError("--sweep needs a positive number of budgets")
    folder = check_outputs(cfg)
    inst = build_instance(cfg)
    resource = swept_resource(cfg)
    fixed = {k: v for k, v in resolve_limits(cfg, inst).items() if k != resource}
    rows = tuple(sweep_row(inst, {**fixed, resource: b}, cfg, b, f"plan_{k:02d}.json", folder)
                 for k, b in enumerate(budgets(inst, resource, cfg.sweep)))
    result = SweepResult(resource, inst.all8, fixed, rows)
    result.save(folder / "sweep.json")
    atomic_write_bytes(folder / "sweep.png", plot_png(result))
    return result
