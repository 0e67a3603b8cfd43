"""Optimizer solve time vs DAG size: DP (chains), ILP (chains and DAGs), brute force where feasible.

    PAPERZOO_DATA=../shared/data .venv/bin/python benchmarks/sky_broker/bench_solve_time.py

Writes ``results/solve_time.json`` and prints a Markdown table (median of ``--repeats`` random
problems per cell, synthetic catalog, cost objective unless noted).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy

from paperzoo.core import io
from paperzoo.methods.sky_broker.catalog import synthetic_catalog
from paperzoo.methods.sky_broker.optimizer import random_problem, solve_bruteforce, solve_dp, solve_ilp

RESULTS = Path(__file__).with_name("results")


def timed(fn, problem) -> tuple[float, float]:
    start = time.perf_counter()
    solution = fn(problem)
    return time.perf_counter() - start, solution.value(problem.objective)


def cell(catalog, tasks: int, cands: int, repeats: int, bf_limit: int) -> dict:
    out: dict[str, list[float]] = {"dp_chain": [], "ilp_chain": [], "ilp_dag": [], "ilp_dag_time": [], "bf_dag": []}
    agree = True
    for r in range(repeats):
        rng = np.random.default_rng([tasks, cands, r])
        kw = {"n_tasks": tasks, "max_candidates": cands, "min_candidates": cands, "max_parents": 3}
        chain = random_problem(rng, catalog, chain=True, **kw)
        t_dp, v_dp = timed(solve_dp, chain)
        t_ilp, v_ilp = timed(solve_ilp, chain)
        out["dp_chain"].append(t_dp)
        out["ilp_chain"].append(t_ilp)
        agree &= abs(v_dp - v_ilp) <= 1e-6 * max(1.0, v_dp)
        dag = random_problem(rng, catalog, **kw)
        t, v = timed(solve_ilp, dag)
        out["ilp_dag"].append(t)
        dag_time = random_problem(rng, catalog, objective="time", **kw)
        out["ilp_dag_time"].append(timed(solve_ilp, dag_time)[0])
        if cands ** tasks <= bf_limit:
            t_bf, v_bf = timed(solve_bruteforce, dag)
            out["bf_dag"].append(t_bf)
            agree &= abs(v - v_bf) <= 1e-6 * max(1.0, v_bf)
    row = {"tasks": tasks, "candidates": cands, "combinations": float(cands) ** tasks, "agree": agree}
    row.update({f"{k}_ms": statistics.median(v) * 1e3 for k, v in out.items() if v})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="5,10,20,50,100")
    parser.add_argument("--candidates", default="2,5,10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf-limit", type=int, default=200_000, help="largest brute-force search")
    args = parser.parse_args()
    catalog = synthetic_catalog(0)
    rows = [cell(catalog, t, c, args.repeats, args.bf_limit)
            for t in map(int, args.tasks.split(",")) for c in map(int, args.candidates.split(","))]
    io.write_json(RESULTS / "solve_time.json", {
        "rows": rows, "repeats": args.repeats, "python": platform.python_version(), "scipy": scipy.__version__,
        "machine": platform.machine(), "note": "median wall time per problem, shared 2-core machine"})
    cols = ["dp_chain_ms", "ilp_chain_ms", "ilp_dag_ms", "ilp_dag_time_ms", "bf_dag_ms"]
    print("| tasks | candidates | " + " | ".join(c[:-3] + " ms" for c in cols) + " | agree |")
    print("|---:|---:|" + "---:|" * len(cols) + "---|")
    for r in rows:
        cells = " | ".join(f"{r[c]:.1f}" if c in r else "-" for c in cols)
        print(f"| {r['tasks']} | {r['candidates']} | {cells} | {r['agree']} |")
    print(json.dumps({"written": str(RESULTS / "solve_time.json")}))


if __name__ == "__main__":
    main()
