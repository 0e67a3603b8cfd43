"""`paperzoo sky plan` time on random layered DAGs (20 and 100 tasks, about 5 candidates per task).

    PAPERZOO_DATA=../shared/data .venv/bin/python benchmarks/sky_broker/bench_plan_time.py --label after

For every (tasks, objective) case it writes a job YAML over the curated catalog and times, each in a
fresh subprocess with a wall-clock cap (``--cap``; a run past it is killed and reported as ``>cap``):

- ``cli``: ``python -m paperzoo.cli sky plan JOB --json`` end to end (imports, catalog, network,
  candidates, solve, alternatives, printing), with the command's defaults;
- ``optimize``: the ``optimize(dag, catalog)`` call alone (defaults), timed inside the child.

Wall and CPU seconds (CPU of the child process: user + system) are the median of ``--repeats`` runs;
when a run exceeds the cap the case is not repeated. The optimality gap and whether the plan is
proven optimal come from the plan's JSON when the code reports them. Writes
``results/plan_time_<label>.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from paperzoo.core import io

RESULTS = Path(__file__).with_name("results")
REPO = Path(__file__).resolve().parents[2]
#: Locations of the curated catalog (every one offers a >= 4-vCPU CPU instance).
LOCATIONS = ("aws:us-east-1", "aws:us-west-2", "aws:eu-west-1", "aws:ap-northeast-1",
             "gcp:us-central1", "gcp:us-west1", "gcp:europe-west4", "gcp:asia-east1",
             "azure:eastus", "azure:westus2", "azure:westeurope", "azure:japaneast")

OPTIMIZE_SNIPPET = """
import json, sys, time
from paperzoo.methods.sky_broker.catalog import load_catalog
from paperzoo.methods.sky_broker.optimizer import optimize
from paperzoo.methods.sky_broker.spec import load_dag
dag, catalog = load_dag(sys.argv[1]), load_catalog()
wall, cpu = time.perf_counter(), time.process_time()
plan = optimize(dag, catalog)
print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                  "plan": plan.to_dict()}))
"""


def random_job(n_tasks: int, objective: str, seed: int, candidates: int = 5) -> dict:
    """A layered DAG: layers of about sqrt(n) tasks, each with 1-3 parents in the previous layer, each
    task CPU-only and allowed ``candidates`` random locations (one candidate per location)."""
    rng = np.random.default_rng([n_tasks, seed])
    width = max(2, round(n_tasks ** 0.5))
    tasks, layers = [], []
    for v in range(n_tasks):
        if v % width == 0:
            layers.append([])
        name = f"t{v}"
        task = {"name": name,
                "resources": {"cpus": "4+", "regions": sorted(rng.choice(LOCATIONS, candidates, replace=False))},
                "runtime_h": round(float(rng.uniform(0.2, 3.0)), 3),
                "outputs": {"size_gb": round(float(rng.uniform(1.0, 200.0)), 1)}}
        if len(layers) > 1:
            prev = layers[-2]
            count = int(rng.integers(1, min(3, len(prev)) + 1))
            task["depends_on"] = sorted(str(p) for p in rng.choice(prev, count, replace=False))
        else:
            task["inputs"] = {"location": str(rng.choice(LOCATIONS)), "size_gb": round(float(rng.uniform(10, 500)), 1)}
        layers[-1].append(name)
        tasks.append(task)
    tasks[-1]["outputs"]["location"] = "aws:us-east-1"
    for t in tasks:
        t["resources"]["regions"] = [str(r) for r in t["resources"]["regions"]]
    return {"name": f"bench-{n_tasks}-{objective}", "objective": objective, "tasks": tasks}


def run_child(cmd: list[str], cap: float, env: dict) -> tuple[float, float, str] | None:
    """(wall s, child CPU s, stdout) of ``cmd``, or None when it ran past ``cap`` seconds (killed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=cap, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return None
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def plan_summary(plan: dict) -> dict:
    return {k: plan.get(k) for k in ("solver", "cost_usd", "time_h", "mip_gap", "optimal")}


def measure(job_path: Path, repeats: int, cap: float, env: dict) -> dict:
    row: dict = {}
    cli_cmd = [sys.executable, "-m", "paperzoo.cli", "sky", "plan", str(job_path), "--json"]
    opt_cmd = [sys.executable, "-c", OPTIMIZE_SNIPPET, str(job_path)]
    for key, cmd in (("cli", cli_cmd), ("optimize", opt_cmd)):
        walls, cpus = [], []
        for _ in range(repeats):
            result = run_child(cmd, cap, env)
            if result is None:
                walls, cpus = [], []
                row[f"{key}_wall_s"] = row[f"{key}_cpu_s"] = f">{cap:g}"
                break
            wall, cpu, stdout = result
            if key == "optimize":
                inner = json.loads(stdout)
                wall, cpu = inner["wall_s"], inner["cpu_s"]
                row["plan"] = plan_summary(inner["plan"])
            else:
                row.setdefault("plan", plan_summary(json.loads(stdout)))
            walls.append(wall)
            cpus.append(cpu)
        if walls:
            row[f"{key}_wall_s"] = statistics.median(walls)
            row[f"{key}_cpu_s"] = statistics.median(cpus)
            row[f"{key}_runs"] = len(walls)
    return row


def fmt(value) -> str:
    return value if isinstance(value, str) else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="results/plan_time_<label>.json")
    parser.add_argument("--tasks", default="20,100")
    parser.add_argument("--objectives", default="cost,time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per run before it is killed")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if "PAPERZOO_DATA" not in env:
        raise SystemExit("set PAPERZOO_DATA to the data root holding sky/")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in map(int, args.tasks.split(",")):
            for objective in args.objectives.split(","):
                job = random_job(n, objective, seed=0)
                path = Path(tmp) / f"job_{n}_{objective}.yaml"
                path.write_text(yaml.safe_dump(job, sort_keys=False))
                row = {"tasks": n, "objective": objective, "edges": sum(len(t.get("depends_on", ())) for t in job["tasks"]),
                       **measure(path, args.repeats, args.cap, env)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    out = RESULTS / f"plan_time_{args.label}.json"
    io.write_json(out, {"label": args.label, "rows": rows, "repeats": args.repeats, "cap_s": args.cap,
                        "python": platform.python_version(), "machine": platform.machine(),
                        "note": "median of repeats; wall and CPU seconds of a fresh subprocess; shared 2-core machine"})
    print("| tasks | objective | CLI wall s | CLI CPU s | optimize() wall s | optimize() CPU s | solver | gap |")
    print("|---:|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        plan = r.get("plan", {})
        gap = plan.get("mip_gap")
        print(f"| {r['tasks']} | {r['objective']} | {fmt(r['cli_wall_s'])} | {fmt(r['cli_cpu_s'])} | "
              f"{fmt(r['optimize_wall_s'])} | {fmt(r['optimize_cpu_s'])} | {plan.get('solver', '-')} | "
              f"{'-' if gap is None else f'{gap:.2%}'} |")
    print(json.dumps({"written": str(out)}))


if __name__ == "__main__":
    main()
