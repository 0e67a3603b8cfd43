"""The placement optimizer: DP and ILP equal brute force; constraints; the plan table."""
import time
from pathlib import Path

import numpy as np
import pytest

from paperzoo.methods.sky_broker.catalog import Catalog, synthetic_catalog
from paperzoo.methods.sky_broker.optimizer import (
    Block,
    NoFeasiblePlan,
    PlanTimeout,
    alternatives,
    build_problem,
    candidates_for,
    optimize,
    random_problem,
    solve,
    solve_bruteforce,
    solve_dp,
    solve_heuristic,
    solve_ilp,
)
from paperzoo.methods.sky_broker.spec import parse_dag

pytest.importorskip("scipy")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def test_optimizer_equals_bruteforce_on_200_random_dags():
    """Issue 7, item 1: 5 tasks, up to 5 parents and 5 candidates, runtimes <= 1 h, data <= 1000 GB."""
    catalog = synthetic_catalog(3)
    rng = np.random.default_rng(7)
    ilp_seconds = []
    for i in range(200):
        chain = i % 4 == 0
        for objective in ("cost", "time"):
            problem = random_problem(rng, catalog, n_tasks=5, max_parents=5, max_candidates=5, max_runtime_h=1.0,
                                     max_data_gb=1000.0, objective=objective, chain=chain)
            truth = solve_bruteforce(problem)
            start = time.perf_counter()
            ilp = solve_ilp(problem)
            ilp_seconds.append(time.perf_counter() - start)
            assert _close(ilp.value(objective), truth.value(objective)), (i, objective, ilp, truth)
            assert problem.evaluate(ilp.assignment) == pytest.approx((ilp.cost_usd, ilp.time_h))
            if chain:
                dp = solve_dp(problem)
                assert _close(dp.value(objective), truth.value(objective)), (i, objective, dp, truth)
                # both break ties on the other objective the same way as brute force
                assert _close(dp.cost_usd, truth.cost_usd) and _close(dp.time_h, truth.time_h)
    assert np.median(ilp_seconds) < 0.1, f"median ILP solve {np.median(ilp_seconds) * 1e3:.1f} ms"


def test_budget_and_deadline_match_bruteforce():
    catalog = synthetic_catalog(5)
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(30):
        problem = random_problem(rng, catalog, objective="time")
        free = solve_bruteforce(problem)
        # a budget below the fastest plan's cost forces a slower, cheaper plan
        problem.budget_usd = free.cost_usd * 0.9
        try:
            truth = solve_bruteforce(problem)
        except NoFeasiblePlan:
            with pytest.raises(NoFeasiblePlan, match="budget"):
                solve_ilp(problem)
            continue
        ours = solve_ilp(problem)
        assert _close(ours.time_h, truth.time_h) and ours.cost_usd <= problem.budget_usd + 1e-6
        problem.budget_usd, problem.objective, problem.deadline_h = None, "cost", truth.time_h * 1.2
        truth, ours = solve_bruteforce(problem), solve_ilp(problem)
        assert _close(ours.cost_usd, truth.cost_usd) and ours.time_h <= problem.deadline_h + 1e-6
        checked += 1
    assert checked >= 10


def test_hand_computed_two_region_chain(make_offering, network):
    """Data in a:r1; compute is cheaper in a:r2, but 100 GB at 0.05 $/GB = 5 $ of egress outweighs it
    for a 1-hour task and not for a 20-hour one."""
    catalog = Catalog((make_offering("a:r1", "m", 2.0), make_offering("a:r2", "m", 1.5)), network(), "two")

    def dag(hours: float):
        return parse_dag({"tasks": [{"name": "t", "inputs": {"location": "a:r1", "size_gb": 100},
                                     "runtime_h": hours, "resources": {"cpus": 1}}]})

    short = optimize(dag(1.0), catalog)
    assert short.placement("t").candidate.location == "a:r1" and short.cost_usd == pytest.approx(2.0)
    long = optimize(dag(20.0), catalog)
    assert long.placement("t").candidate.location == "a:r2"
    assert long.cost_usd == pytest.approx(1.5 * 20 + 5.0)
    # 100 GB at 1 Gbps = 800 s of transfer before the task starts
    assert long.time_h == pytest.approx(20.0 + 800 / 3600)
    assert long.placement("t").egress_usd == pytest.approx(5.0)


def test_candidates_keep_only_the_cheapest_per_location_and_explain_rejections(cpu_catalog):
    dag = parse_dag({"tasks": [{"name": "t", "resources": {"cpus": 4}}]})
    cands = candidates_for(dag.tasks[0], cpu_catalog)
    assert sorted((c.location, c.offering.zone, c.hourly_usd) for c in cands) == [
        ("a:r1", "r1-z1", 1.0), ("a:r2", "r2-z1", 1.3), ("b:r1", "r1-z1", 1.6)]
    blocked = candidates_for(dag.tasks[0], cpu_catalog, [Block("a", "r1", "r1-z1", "small")])
    assert ("a:r1", 1.1) in {(c.location, c.hourly_usd) for c in blocked}
    need = parse_dag({"tasks": [{"name": "t", "resources": {"cpus": 64, "clouds": ["a"]}}]})
    with pytest.raises(NoFeasiblePlan, match=r"task 't'.*5 checked; rejected: 5 by cpus"):
        candidates_for(need.tasks[0], cpu_catalog)
    gpu = parse_dag({"tasks": [{"name": "t", "resources": {"accelerators": "V100:1"}}]})
    with pytest.raises(NoFeasiblePlan, match="by accelerators"):
        candidates_for(gpu.tasks[0], cpu_catalog)


def test_constraints_allowed_blocked_preferred(cpu_catalog):
    base = {"name": "t", "resources": {"cpus": 4}}
    for resources, expect in (({"clouds": ["b"]}, "b:r1"), ({"regions": ["a:r2"]}, "a:r2"),
                              ({"blocked": ["a:r1"]}, "a:r2"), ({"blocked": ["a"]}, "b:r1")):
        dag = parse_dag({"tasks": [{**base, "resources": {"cpus": 4, **resources}}]})
        assert optimize(dag, cpu_catalog).placement("t").candidate.location == expect, resources
    # a preference makes other locations slower by prefer_penalty: enough to beat a 1.0 vs 1.3 $/h gap
    dag = parse_dag({"prefer_penalty": 0.5, "tasks": [{"name": "t", "resources": {"cpus": 4, "prefer": ["a:r2"]}}]})
    assert optimize(dag, cpu_catalog).placement("t").candidate.location == "a:r2"


def test_plan_table_lists_choice_cost_and_next_best(cpu_catalog):
    dag = parse_dag({"tasks": [{"name": "prep", "resources": {"cpus": 4}, "outputs": {"size_gb": 10}},
                               {"name": "work", "resources": {"cpus": 4}, "depends_on": ["prep"]}]})
    plan = optimize(dag, cpu_catalog, n_alternatives=2)
    assert plan.solver == "dp" and plan.cost_usd == pytest.approx(2.0)
    alts = plan.alternatives["work"]
    assert len(alts) == 2 and alts[0].cost_usd <= alts[1].cost_usd and alts[0].cost_usd > plan.cost_usd
    table = plan.table()
    assert "| prep | a:r1 small |" in table and "next best" in table and alts[0].candidate.label() in table
    assert plan.to_dict()["tasks"][1]["alternatives"][0]["plan_cost_usd"] == pytest.approx(alts[0].cost_usd)


def test_solve_auto_picks_dp_for_chains_and_ilp_for_dags():
    catalog = synthetic_catalog(1)
    rng = np.random.default_rng(2)
    chain = random_problem(rng, catalog, chain=True)
    assert solve(chain).solver == "dp"
    chain.deadline_h = 1e6
    assert solve(chain).solver == "ilp"
    dag = build_problem(parse_dag({"tasks": [{"name": "a"}, {"name": "b"}, {"name": "c", "depends_on": ["a", "b"]}]}),
                        catalog)
    assert not dag.is_chain() and solve(dag).solver == "ilp"
    with pytest.raises(ValueError, match="needs a chain"):
        solve_dp(dag)


# ------------------------------------------------------------------ scale: heuristic, time limit, alternatives
def _layered_dag(n_tasks: int, objective: str, catalog: Catalog, seed: int = 0, candidates: int = 5):
    """Layers of about sqrt(n) CPU tasks, 1-3 parents each in the previous layer, ``candidates``
    allowed locations per task (one candidate per location)."""
    rng = np.random.default_rng(seed)
    locations = catalog.locations
    width = max(2, round(n_tasks ** 0.5))
    tasks, layers = [], []
    for v in range(n_tasks):
        if v % width == 0:
            layers.append([])
        task = {"name": f"t{v}", "runtime_h": float(rng.uniform(0.2, 3.0)),
                "resources": {"cpus": 4, "regions": [str(x) for x in rng.choice(locations, candidates, replace=False)]},
                "outputs": {"size_gb": float(rng.uniform(1, 200))}}
        if len(layers) > 1:
            prev = layers[-2]
            task["depends_on"] = [str(p) for p in rng.choice(prev, int(rng.integers(1, min(3, len(prev)) + 1)),
                                                            replace=False)]
        layers[-1].append(f"t{v}")
        tasks.append(task)
    return parse_dag({"name": f"layered{n_tasks}", "objective": objective, "tasks": tasks})


def test_heuristic_is_feasible_never_below_the_optimum_and_mostly_optimal():
    catalog = synthetic_catalog(3)
    rng = np.random.default_rng(17)
    exact = 0
    for i in range(60):
        objective = "cost" if i % 2 else "time"
        problem = random_problem(rng, catalog, n_tasks=5, max_parents=5, max_candidates=5, objective=objective)
        truth, ours = solve_bruteforce(problem), solve_heuristic(problem)
        assert problem.evaluate(ours.assignment) == pytest.approx((ours.cost_usd, ours.time_h))
        assert ours.value(objective) >= truth.value(objective) - 1e-9
        assert not ours.optimal and ours.gap is None and ours.solver == "heuristic"
        exact += _close(ours.value(objective), truth.value(objective))
    assert exact >= 45, f"heuristic optimal on only {exact} of 60 small DAGs"
    chain = random_problem(rng, catalog, chain=True)
    assert solve_heuristic(chain).solver == "dp"  # exact on an unconstrained chain


def test_ilp_time_limit_returns_a_plan_with_a_valid_gap():
    """With a limit HiGHS cannot meet, the warm start is returned, flagged not optimal, and its gap
    is consistent with the true optimum: value * (1 - gap) <= optimum <= value."""
    catalog = synthetic_catalog(4)
    for objective in ("cost", "time"):
        problem = build_problem(_layered_dag(30, objective, catalog, seed=1), catalog)
        optimum = solve_ilp(problem).value(objective)
        quick = solve_ilp(problem, time_limit_s=1e-3)
        value = quick.value(objective)
        assert not quick.optimal and quick.gap is not None and 0.0 <= quick.gap < 1.0, quick
        assert value >= optimum - 1e-6 and value * (1 - quick.gap) <= optimum + 1e-6, (objective, quick, optimum)
        assert problem.evaluate(quick.assignment) == pytest.approx((quick.cost_usd, quick.time_h))


def test_ilp_without_a_warm_start_times_out_with_one_clear_error(monkeypatch):
    import paperzoo.methods.sky_broker.optimizer as opt

    def no_plan(problem, **kw):
        raise NoFeasiblePlan("none")

    catalog = synthetic_catalog(4)
    problem = build_problem(_layered_dag(30, "time", catalog, seed=1), catalog)
    monkeypatch.setattr(opt, "solve_heuristic", no_plan)
    with pytest.raises(PlanTimeout, match=r"no plan found within the 0.001 s time limit.*--time-limit"):
        solve_ilp(problem, time_limit_s=1e-3)
    assert issubclass(PlanTimeout, NoFeasiblePlan) and issubclass(PlanTimeout, RuntimeError)


def test_alternatives_are_the_best_one_task_moves_with_the_rest_kept():
    catalog = synthetic_catalog(5)
    rng = np.random.default_rng(3)
    for objective in ("cost", "time"):
        problem = random_problem(rng, catalog, n_tasks=8, max_parents=3, max_candidates=5, min_candidates=3,
                                 objective=objective)
        solution = solve_ilp(problem)
        alts = alternatives(problem, solution, k=2)
        for v, name in enumerate(problem.tasks):
            moves = []
            for i in range(problem.sizes[v]):
                if i != solution.assignment[v]:
                    moved = list(solution.assignment)
                    moved[v] = i
                    cost, hours = problem.evaluate(moved)
                    moves.append(((cost, hours) if objective == "cost" else (hours, cost), i))
            expect = sorted(moves)[:2]
            got = [((a.cost_usd, a.time_h) if objective == "cost" else (a.time_h, a.cost_usd), a.candidate)
                   for a in alts[name]]
            assert [g[1] for g in got] == [problem.candidates[v][i] for _, i in expect]
            assert [x for g in got for x in g[0]] == pytest.approx([x for e in expect for x in e[0]])
    assert alternatives(problem, solution, k=0) == {}


def test_plan_of_100_tasks_returns_within_its_time_limit_and_reports_its_status():
    """Issue 20: a 100-task DAG with 5 candidates per task plans in seconds in both objectives."""
    catalog = synthetic_catalog(6, regions_per_cloud=4)
    for objective in ("cost", "time"):
        dag = _layered_dag(100, objective, catalog, seed=2)
        start = time.perf_counter()
        plan = optimize(dag, catalog, time_limit_s=1.0, n_alternatives=2)
        wall = time.perf_counter() - start
        assert wall < 1.0 + 15.0, f"{objective}: {wall:.1f} s"
        assert len(plan.placements) == 100 and all(len(plan.alternatives[t.name]) == 2 for t in dag.tasks)
        data = plan.to_dict()
        assert data["optimal"] == plan.optimal and data["time_limit_s"] == 1.0
        if plan.optimal:
            assert plan.mip_gap == 0.0 and "optimal" in plan.table().splitlines()[0]
        else:
            assert 0.0 <= plan.mip_gap < 1.0
            assert "not proven optimal: gap" in plan.table().splitlines()[0]


def test_plan_table_says_when_the_plan_is_not_proven_optimal(cpu_catalog):
    dag = parse_dag({"tasks": [{"name": "a", "resources": {"cpus": 4}, "outputs": {"size_gb": 10}},
                               {"name": "b", "resources": {"cpus": 4}, "outputs": {"size_gb": 10}},
                               {"name": "c", "resources": {"cpus": 4}, "depends_on": ["a", "b"]}]})
    plan = optimize(dag, cpu_catalog, method="heuristic")
    assert not plan.optimal and plan.mip_gap is None
    assert "not proven optimal: gap unknown, stopped at the 5 s time limit" in plan.table()
    exact = optimize(dag, cpu_catalog)
    assert exact.optimal and exact.mip_gap == 0.0 and ", optimal)" in exact.table().splitlines()[0]


def test_cli_plan_passes_alternatives_and_time_limit(data_root, capsys):
    import json

    from paperzoo.methods.sky_broker.cli import main, standalone_parser

    job = Path(__file__).resolve().parents[3] / "examples" / "sky" / "train.yaml"
    argv = ["sky", "plan", str(job), "--json", "--data-root", str(data_root)]
    assert main(standalone_parser().parse_args([*argv, "--alternatives", "0", "--time-limit", "2.5"])) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["time_limit_s"] == 2.5 and data["optimal"] is True
    assert all(t["alternatives"] == [] for t in data["tasks"])
    assert main(standalone_parser().parse_args([*argv, "--alternatives", "1"])) == 0
    assert all(len(t["alternatives"]) == 1 for t in json.loads(capsys.readouterr().out)["tasks"])
    for bad in (["--alternatives", "-1"], ["--time-limit", "0"], ["--time-limit", "soon"]):
        with pytest.raises(SystemExit) as exit_:
            standalone_parser().parse_args([*argv, *bad])
        assert exit_.value.code == 2


def test_polish_reaches_a_local_optimum_and_keeps_the_bound():
    """What the ILP does with its leftover time when HiGHS stops early: local search from the best
    plan found; the bound behind the gap (value * (1 - gap)) is unchanged."""
    from paperzoo.methods.sky_broker.optimizer import Solution, _polish

    catalog = synthetic_catalog(4)
    problem = build_problem(_layered_dag(30, "cost", catalog, seed=3), catalog)
    start = solve_heuristic(problem, descend=False)
    rough = Solution(start.assignment, start.cost_usd, start.time_h, "heuristic", optimal=False, gap=0.5)
    polished = _polish(problem, rough, time.perf_counter() + 30)
    assert polished.cost_usd < rough.cost_usd
    assert polished.cost_usd * (1 - polished.gap) == pytest.approx(rough.cost_usd * (1 - rough.gap))
    for v in range(len(problem.tasks)):  # no single-task move improves it
        for i in range(problem.sizes[v]):
            moved = list(polished.assignment)
            moved[v] = i
            assert problem.evaluate(moved)[0] >= polished.cost_usd - 1e-9
