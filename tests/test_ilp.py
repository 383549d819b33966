"""The HAWQ-V3 integer program: optimality against brute force, limits, monotonicity, ties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_hawq.planning import ilp

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def instances(draw):
    """Random small problems: 1-5 layers, 2-3 choices, 1-3 resources, pins and ties."""
    n = draw(st.integers(1, 5))
    k = draw(st.integers(2, 3))
    omega = tuple(tuple(draw(st.floats(0, 1e3, allow_nan=False)) for _ in range(k)) for _ in range(n))
    resources = []
    for r in range(draw(st.integers(1, 3))):
        costs = tuple(tuple(draw(st.integers(0, 1000)) for _ in range(k)) for _ in range(n))
        low = sum(min(c) for c in costs)
        high = sum(max(c) for c in costs)
        limit = draw(st.integers(max(low - 50, 0), high))
        resources.append(ilp.Resource(f"r{r}", costs, limit))
    allowed = tuple(tuple(sorted(draw(st.sets(st.integers(0, k - 1), min_size=1)))) if draw(st.booleans())
                    else tuple(range(k)) for _ in range(n))
    ties = draw(st.lists(st.lists(st.integers(0, n - 1), min_size=2, max_size=3), max_size=2))
    return ilp.Problem(omega, tuple(resources), allowed, ilp.tie_groups(n, ties))


def brute_force(p: ilp.Problem) -> float | None:
    """The true optimum by enumeration, or None when no choice meets every limit."""
    best = None
    for choice in itertools.product(*p.allowed):
        if any(len({choice[i] for i in g}) > 1 for g in p.groups):
            continue
        if any(sum(r.costs[i][c] for i, c in enumerate(choice)) > r.limit for r in p.resources):
            continue
        obj = sum(p.omega[i][c] for i, c in enumerate(choice))
        best = obj if best is None else min(best, obj)
    return best


def check_solution(p: ilp.Problem, sol: ilp.Solution) -> None:
    """Limits respected, pins respected, ties hold, reported use and objective are right."""
    for r, use in zip(p.resources, sol.use):
        assert use == sum(r.costs[i][c] for i, c in enumerate(sol.choice))
        assert r.limit is None or use <= r.limit
    assert all(c in p.allowed[i] for i, c in enumerate(sol.choice))
    assert all(len({sol.choice[i] for i in g}) == 1 for g in p.groups)
    assert sol.objective == pytest.approx(sum(p.omega[i][c] for i, c in enumerate(sol.choice)))


@SETTINGS
@given(instances())
def test_optimum_equals_brute_force(p):
    best = brute_force(p)
    if best is None or not all(ilp.group_allowed(p)):
        with pytest.raises(ilp.Infeasible):
            ilp.solve(p)
        return
    sol = ilp.solve(p)
    assert sol.status == "OPTIMAL"
    check_solution(p, sol)
    assert best - 1e-9 <= sol.objective <= best + sol.tolerance + 1e-9


@SETTINGS
@given(instances(), st.integers(0, 400))
def test_objective_never_increases_with_budget(p, extra):
    if not all(ilp.group_allowed(p)):
        return
    r0 = p.resources[0]
    low = ilp.min_use(p, r0)
    objectives = []
    for budget in (low + extra, low + 2 * extra + 1, low + 10 * extra + 5):
        q = ilp.Problem(p.omega, (ilp.Resource(r0.name, r0.costs, budget),) + p.resources[1:], p.allowed, p.groups)
        try:
            sol = ilp.solve(q)
        except ilp.Infeasible:
            assert not objectives, "a larger budget became infeasible"
            continue
        check_solution(q, sol)
        objectives.append((sol.objective, sol.tolerance))
    for (a, tol), (b, _) in zip(objectives, objectives[1:]):
        assert b <= a + tol + 1e-9


def test_infeasible_reports_smallest_achievable():
    costs = ((10, 20), (5, 40))
    p = ilp.Problem(((1.0, 0.0), (1.0, 0.0)), (ilp.Resource("size", costs, 14), ilp.Resource("bops", costs, 100)),
                    ((0, 1), (1,)), ilp.tie_groups(2, []))
    with pytest.raises(ilp.Infeasible) as e:
        ilp.solve(p)
    assert e.value.mins == (("size", 50, 14), ("bops", 50, 100))
    assert not e.value.together


def test_infeasible_together():
    # choice 0 is small in r0 and large in r1, choice 1 the opposite: each limit alone is fine
    p = ilp.Problem(((0.0, 0.0),), (ilp.Resource("a", ((1, 9),), 1), ilp.Resource("b", ((9, 1),), 1)),
                    ((0, 1),), ((0,),))
    with pytest.raises(ilp.Infeasible) as e:
        ilp.solve(p)
    assert e.value.together


def test_tie_groups_merge_overlaps():
    assert ilp.tie_groups(6, [[0, 2], [2, 4], [1, 5]]) == ((0, 2, 4), (1, 5), (3,))


def test_scaling_resolves_tiny_differences():
    # two layers whose Ω differences are 1e-7 of the largest Ω: the solver must still pick right
    omega = ((1e3, 0.0), (1e-4, 0.0), (2e-4, 0.0))
    costs = ((0, 10), (0, 10), (0, 10))
    p = ilp.Problem(omega, (ilp.Resource("size", costs, 10),), ((0, 1),) * 3, ilp.tie_groups(3, []))
    sol = ilp.solve(p)
    assert sol.choice == (1, 0, 0)
    q = ilp.Problem(omega, (ilp.Resource("size", costs, 20),), ((0, 1),) * 3, ilp.tie_groups(3, []))
    assert ilp.solve(q).choice == (1, 0, 1)


def resnet18_instance() -> tuple[ilp.Problem, np.ndarray, np.ndarray, list[str]]:
    """HAWQ's ResNet-18 ILP: 19 layers (the convs of layer1-4 and 3 downsamples), 4/8 bits."""
    names, shapes = [], []
    for stage, (cin, cout) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512)], start=1):
        for block in range(2):
            c_in = cin if block == 0 else cout
            names += [f"layer{stage}.{block}.conv1", f"layer{stage}.{block}.conv2"]
            shapes += [(cout, c_in, 3, 3), (cout, cout, 3, 3)]
            if stage > 1 and block == 0:
                names.append(f"layer{stage}.0.downsample.0")
                shapes.append((cout, cin, 1, 1))
    params = np.array([np.prod(s) for s in shapes])
    rng = np.random.default_rng(18)
    trace = np.exp(-np.linspace(0, 6, len(params))) * rng.uniform(0.5, 2, len(params))
    err = np.stack([params * 4.0 ** -4, params * 4.0 ** -8], axis=1) * rng.uniform(0.8, 1.2, (len(params), 2))
    omega = trace[:, None] * err
    size = np.stack([params * 4 // 8, params * 8 // 8], axis=1)
    ties = [[names.index(f"layer{s}.0.downsample.0"), names.index(f"layer{s}.0.conv2")] for s in (2, 3, 4)]
    limit = int(size[:, 0].sum() + 0.5 * (size[:, 1].sum() - size[:, 0].sum()))
    p = ilp.Problem(tuple(map(tuple, omega.tolist())), (ilp.Resource("size", tuple(map(tuple, size.tolist())), limit),),
                    ((0, 1),) * len(params), ilp.tie_groups(len(params), ties))
    return p, omega, size, names


def test_resnet18_shaped_instance_is_optimal_and_feasible():
    p, omega, size, names = resnet18_instance()
    assert len(names) == 19
    n = len(names)
    codes = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1  # every 4/8 assignment
    tied = np.all([codes[:, a] == codes[:, b] for a, b in (g for g in p.groups if len(g) == 2)], axis=0)
    total_size = (size[np.arange(n), codes]).sum(axis=1)
    total_omega = (omega[np.arange(n), codes]).sum(axis=1)
    ok = tied & (total_size <= p.resources[0].limit)
    best = total_omega[ok].min()
    sol = ilp.solve(p)
    check_solution(p, sol)
    assert sol.status == "OPTIMAL"
    slack = 1e-12 * best  # numpy and Python sum in different orders
    assert best - slack <= sol.objective <= best + sol.tolerance + slack
    assert 0 < sum(sol.choice) < n  # a genuine mix of 4 and 8 bits


def test_subnormal_objective_range_solves():
    """Found by hypothesis: a subnormal Ω span once made the scaling unit 0."""
    p = ilp.Problem(omega=((0.0, 5e-324),), resources=(ilp.Resource(name="r0", costs=((0, 0),), limit=0),),
                    allowed=((0, 1),), groups=((0,),))
    assert ilp.solve(p).choice == (0,)
