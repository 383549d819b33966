"""The HAWQ-V3 integer program: one bit choice per tie group, minimise ΣΩ under resource limits.

Layers tied together must take the same choice, so each tie group becomes one decision with
summed costs and the intersection of its members' allowed choices; ties hold by construction.

CP-SAT needs integer coefficients. Resource costs are integers already (bytes, BOPs, and
latency in nanoseconds rounded up with the limit rounded down, so a plan never exceeds the real
limit). Ω is scaled: per group the smallest allowed Ω is subtracted (a constant: it moves no
optimum), then the rest is mapped so that Σ_g max_c Ω'_g,c = OBJECTIVE_RANGE = 10^12 (far inside
int64 and inside a double's exact integers) and each coefficient is rounded to the nearest
integer. One integer unit is u = Σ_g max_c Ω'_g,c / 10^12 and each coefficient is off by at most
u/2, so the plan returned has a true ΣΩ within n_groups · u of the true optimum
(`Solution.tolerance`, recorded in the plan as `objective_tolerance`): plans whose ΣΩ differ by
less than that are ties to the solver. For 1,000 layers that is 10^-9 of the objective's range,
far below the statistical error of any Hutchinson trace. If the time limit stops the search
first (status FEASIBLE), the remaining gap to CP-SAT's bound is added to the tolerance.

Speed (measured with benchmarks/plan_speed.py on the 2-core dev machine, 1,000 layers): CP-SAT's
set-packing inclusion presolve spent over a second on the exactly-one rows and buys nothing here,
so its work limit is 0; its LP cut generation (cut_level 1) tripled the time to prove
optimality, so cut_level is 0 (the exactly-one rows already make the LP tight); one worker was
faster than 2, 4 or 8 on that machine.
"""

from __future__ import annotations

import dataclasses
import time

OBJECTIVE_RANGE = 10**12


@dataclasses.dataclass(frozen=True)
class Resource:
    """A limited resource: its integer cost per layer and choice, and the limit (None: free)."""

    name: str
    costs: tuple[tuple[int, ...], ...]
    limit: int | None = None


@dataclasses.dataclass(frozen=True)
class Problem:
    """Ω per layer and choice, resources, allowed choices per layer, and tie groups (a partition)."""

    omega: tuple[tuple[float, ...], ...]
    resources: tuple[Resource, ...]
    allowed: tuple[tuple[int, ...], ...]
    groups: tuple[tuple[int, ...], ...]


@dataclasses.dataclass(frozen=True)
class Solution:
    """A choice per layer, its true ΣΩ, the optimality tolerance and each resource's use."""

    choice: tuple[int, ...]
    objective: float
    tolerance: float
    status: str
    wall_s: float
    use: tuple[int, ...]


class Infeasible(Exception):
    """No choice meets every limit; `mins` holds (name, smallest achievable, limit) per limit."""

    def __init__(self, mins: tuple[tuple[str, int, int], ...], together: bool):
        super().__init__("limits are infeasible")
        self.mins = mins
        self.together = together


def tie_groups(n: int, ties) -> tuple[tuple[int, ...], ...]:
    """Union-find: merge overlapping tie lists of layer indices into a partition of range(n)."""
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for tie in ties:
        for other in tie[1:]:
            parent[find(other)] = find(tie[0])
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return tuple(tuple(g) for g in sorted(groups.values()))


def group_allowed(problem: Problem) -> tuple[tuple[int, ...], ...]:
    """Choices every member of each group allows (empty tuple: the group's pins conflict)."""
    out = []
    for g in problem.groups:
        common = set(problem.allowed[g[0]]).intersection(*(problem.allowed[i] for i in g[1:]))
        out.append(tuple(sorted(common)))
    return tuple(out)


def group_sum(table, groups) -> list[list]:
    """Sum a [layer][choice] table over each group's members."""
    return [[sum(table[i][c] for i in g) for c in range(len(table[g[0]]))] for g in groups]


def min_use(problem: Problem, resource: Resource) -> int:
    """Smallest achievable total of `resource` given pins and ties (other limits ignored)."""
    costs = group_sum(resource.costs, problem.groups)
    return sum(min(costs[k][c] for c in allowed) for k, allowed in enumerate(group_allowed(problem)))


def scale_objective(omega_g, allowed_g) -> tuple[list[dict[int, int]], float]:
    """Integer objective coefficients per group and choice, and the unit u (see module doc)."""
    shifted = [{c: om[c] - min(om[a] for a in allowed) for c in allowed} for om, allowed in zip(omega_g, allowed_g)]
    total = sum(max(d.values()) for d in shifted)
    unit = total / OBJECTIVE_RANGE if total > 0 else 1.0
    unit = unit if unit > 0 else total or 1.0  # a subnormal total underflows; one unit then suffices
    return [{c: int(round(v / unit)) for c, v in d.items()} for d in shifted], unit


def check_feasible(problem: Problem) -> None:
    """Raise Infeasible when a group has no allowed choice or a limit is below its smallest value."""
    if not all(group_allowed(problem)):
        raise Infeasible((), together=False)
    mins = tuple((r.name, min_use(problem, r), r.limit) for r in problem.resources if r.limit is not None)
    if any(m > limit for _, m, limit in mins):
        raise Infeasible(mins, together=False)


def solve(problem: Problem, time_limit: float = 30.0, workers: int = 1) -> Solution:
    """Solve with CP-SAT to proven optimality (or the best found within `time_limit`)."""
    from ortools.sat.python import cp_model

    check_feasible(problem)
    model, x, unit = _build_model(problem)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = workers
    solver.parameters.presolve_inclusion_work_limit = 0
    solver.parameters.cut_level = 0
    start = time.perf_counter()
    status = solver.solve(model)
    wall = time.perf_counter() - start
    if status == cp_model.INFEASIBLE:
        raise Infeasible(tuple((r.name, min_use(problem, r), r.limit) for r in problem.resources
                               if r.limit is not None), together=True)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise TimeoutError(f"CP-SAT found no plan within {time_limit:g} s (status {solver.status_name(status)})")
    picked = [next(c for c, v in xs.items() if solver.boolean_value(v)) for xs in x]
    gap = max(0.0, solver.objective_value - solver.best_objective_bound)  # 0 when OPTIMAL
    return _expand(problem, picked, (len(problem.groups) + gap) * unit, solver.status_name(status), wall)


def _build_model(problem: Problem):
    """The CP-SAT model over tie groups: its Boolean x[group][choice] and the objective unit."""
    from ortools.sat.python import cp_model

    allowed = group_allowed(problem)
    coeffs, unit = scale_objective(group_sum(problem.omega, problem.groups), allowed)
    model = cp_model.CpModel()
    x = [{c: model.new_bool_var(f"x{k}_{c}") for c in allowed[k]} for k in range(len(allowed))]
    for xs in x:
        model.add_exactly_one(xs.values())
    for r in problem.resources:
        if r.limit is not None:
            costs = group_sum(r.costs, problem.groups)
            model.add(_weighted(x, costs) <= r.limit)
    model.minimize(_weighted(x, coeffs))
    return model, x, unit


def _weighted(x, table):
    """Σ table[k][c] · x[k][c] as one CP-SAT linear expression."""
    from ortools.sat.python import cp_model

    pairs = [(v, table[k][c]) for k, xs in enumerate(x) for c, v in xs.items()]
    return cp_model.LinearExpr.weighted_sum([v for v, _ in pairs], [w for _, w in pairs])


def _expand(problem: Problem, picked, tolerance: float, status: str, wall: float) -> Solution:
    """Per-layer choices from per-group picks, with true ΣΩ and resource use."""
    choice = [0] * len(problem.omega)
    for g, c in zip(problem.groups, picked):
        for i in g:
            choice[i] = c
    objective = sum(problem.omega[i][c] for i, c in enumerate(choice))
    use = tuple(sum(r.costs[i][c] for i, c in enumerate(choice)) for r in problem.resources)
    return Solution(tuple(choice), objective, tolerance, status, wall, use)
