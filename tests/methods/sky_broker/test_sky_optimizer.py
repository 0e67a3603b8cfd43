"""The placement optimizer: DP and ILP equal brute force; constraints; the plan table."""
import time

import numpy as np
import pytest

from paperzoo.methods.sky_broker.catalog import Catalog, synthetic_catalog
from paperzoo.methods.sky_broker.optimizer import (
    Block,
    NoFeasiblePlan,
    build_problem,
    candidates_for,
    optimize,
    random_problem,
    solve,
    solve_bruteforce,
    solve_dp,
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
