"""`onnx-hawq plan`: solve the HAWQ-V3 program for the given limits and write plan.json."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from onnx_hawq.errors import HawqError, InputError
from onnx_hawq.model_io import check_output_path
from onnx_hawq.plans import Plan, fingerprint
from onnx_hawq.planning import ilp
from onnx_hawq.planning.config import PlanConfig
from onnx_hawq.planning.instance import Instance, build_instance
from onnx_hawq.planning.limits import OPTIONS, format_amount

UNITS = {"size": "bytes", "bops": "BOPs", "latency": "ns"}


@dataclasses.dataclass(frozen=True)
class PlanOutcome:
    """A solved plan with the solver's answer and the limits it was solved under."""

    plan: Plan
    solution: ilp.Solution
    limits: dict[str, int]

    def summary(self) -> str:
        """A few lines for the terminal: objective, each resource's use, the bit histogram."""
        meta = self.plan.meta
        lines = [f"status {meta['solver']['status']} in {meta['solver']['wall_s']:.3f} s; "
                 f"ΣΩ = {meta['objective']:.6g} (±{meta['objective_tolerance']:.2g})"]
        for name, entry in meta["resources"].items():
            limit = entry["limit"]
            shown = "no limit" if limit is None else f"limit {format_amount(name, limit)}"
            lines.append(f"  {name:8s} {format_amount(name, entry['use'])} ({shown}; "
                         f"W8A8 {format_amount(name, entry['all8'])})")
        lines.append("  layers: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.plan.histogram().items())))
        return "\n".join(lines)


def check_bops_known(inst: Instance) -> None:
    """Refuse a BOPs limit when some layer's MACs are unknown (counted as 0 they would let any plan pass)."""
    unknown = [l.name for l in inst.layers if l.macs == 0]
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise InputError(f"--max-bops needs static shapes: the MACs of layer(s) {shown} are unknown (dynamic "
                         f"spatial dimensions); fix the input shapes first (python -m onnxruntime.tools.make_dynamic_shape_fixed)")


def resolve_limits(cfg: PlanConfig, inst: Instance) -> dict[str, int]:
    """Each given limit in integer base units (percentages resolved against the smallest plan and W8A8)."""
    if cfg.max_bops is not None:
        check_bops_known(inst)
    return {l.resource: l.resolve(inst.all8[l.resource], lowest_use(inst, l.resource)) for l in cfg.limits()}


def lowest_use(inst: Instance, resource: str) -> int:
    """The smallest use of `resource` any plan allowed by the bits, pins and ties can have."""
    res = next(r for r in inst.problem.resources if r.name == resource)
    return ilp.min_use(inst.problem, res)


def with_limits(inst: Instance, limits: dict[str, int]) -> ilp.Problem:
    """The instance's problem with `limits` set on its resources."""
    resources = tuple(dataclasses.replace(r, limit=limits.get(r.name)) for r in inst.problem.resources)
    return dataclasses.replace(inst.problem, resources=resources)


def infeasible_message(err: ilp.Infeasible) -> str:
    """One line naming every limit with its smallest achievable value."""
    parts = [f"{OPTIONS[name]} is {format_amount(name, limit)}, smallest achievable {format_amount(name, low)}"
             for name, low, limit in err.mins]
    head = ("limits can each be met alone but not together" if err.together
            else "limits cannot be met with these bits, pins and ties")
    return f"{head}: " + "; ".join(parts)


def solve_limits(inst: Instance, limits: dict[str, int], cfg: PlanConfig) -> ilp.Solution:
    """Solve under `limits`; infeasibility and time-outs become one-line errors."""
    try:
        return ilp.solve(with_limits(inst, limits), cfg.time_limit, cfg.workers)
    except ilp.Infeasible as e:
        raise InputError(infeasible_message(e)) from None
    except TimeoutError as e:
        raise HawqError(f"{e}; raise --time-limit") from None


def plan_meta(inst: Instance, sol: ilp.Solution, limits: dict[str, int], cfg: PlanConfig) -> dict:
    """The plan's record of how it was made: objective, resource use vs limits, solver status."""
    from ortools import __version__ as ortools_version

    resources = {r.name: {"use": use, "limit": limits.get(r.name), "all8": inst.all8[r.name],
                          "unit": UNITS[r.name]}
                 for r, use in zip(inst.problem.resources, sol.use)}
    return {
        "objective": sol.objective, "objective_tolerance": sol.tolerance, "metric": cfg.metric,
        "solver": {"engine": f"ortools CP-SAT {ortools_version}", "status": sol.status,
                   "wall_s": round(sol.wall_s, 4), "workers": cfg.workers},
        "resources": resources,
        "choices": [c.label() for c in inst.choices],
        "ties": [list(t) for t in inst.ties],
        "pins": [p.to_dict() for p in cfg.pins],
        "omega": {l.name: inst.problem.omega[i][c] for i, (l, c) in enumerate(zip(inst.layers, sol.choice))},
    }


def to_plan(inst: Instance, sol: ilp.Solution, limits: dict[str, int], cfg: PlanConfig) -> Plan:
    """The Plan file content for solution `sol`."""
    layers = {l.name: inst.choices[c] for l, c in zip(inst.layers, sol.choice)}
    return Plan(layers=layers, model=fingerprint(list(inst.layers)), meta=plan_meta(inst, sol, limits, cfg),
                weights=inst.weights)


def check_outputs(cfg: PlanConfig) -> Path:
    """Refuse an output that is an input, or (for a sweep) a file where a folder is needed."""
    out = check_output_path(cfg.output, cfg.model, cfg.sensitivity, cfg.latency, cfg.calib)
    if cfg.sweep and out.exists() and not out.is_dir():
        raise InputError(f"--sweep writes a folder; {out} is a file")
    if not cfg.sweep and out.is_dir():
        raise InputError(f"-o {out} is a folder; give a file name such as plan.json")
    return out


def make_plan(cfg: PlanConfig) -> PlanOutcome:
    """Solve the program for `cfg`'s limits and write the plan to `cfg.output` (atomically)."""
    if not cfg.limits():
        raise InputError("give --max-size, --max-bops or --max-latency (or --sweep N); "
                         "without a limit the plan is simply the highest bits everywhere")
    out = check_outputs(cfg)
    inst = build_instance(cfg)
    limits = resolve_limits(cfg, inst)
    sol = solve_limits(inst, limits, cfg)
    plan = to_plan(inst, sol, limits, cfg)
    plan.save(out)
    return PlanOutcome(plan, sol, limits)
