"""Issue 7, item 4: a DAG of three paperzoo ``tiny`` runs executed by the broker on the local
provider and on a local Ray cluster (a head started here on 127.0.0.1, 1 CPU, shut down at the end).

    PAPERZOO_DATA=../shared/data .venv/bin/python benchmarks/sky_broker/real_run.py

Writes ``results/real_run.json``: per backend the job status, each task's placement, provider,
status, wall time, the headline metric of its run folder and the last lines of its log.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

from paperzoo.core import io
from paperzoo.methods.sky_broker.broker import Broker, BrokerOptions, job_logs
from paperzoo.methods.sky_broker.catalog import load_catalog
from paperzoo.methods.sky_broker.spec import load_dag
from paperzoo.methods.sky_broker.state import JobDB

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).with_name("results")


def run_backend(backend: str, home: Path, address: str | None) -> dict:
    dag = load_dag(ROOT / "examples" / "sky" / "paperzoo_tiny.yaml")
    db = JobDB(home / "state.db")
    options = BrokerOptions(backend=backend, ray_address=address, data_root=os.environ.get("PAPERZOO_DATA"),
                            poll_s=1.0, attempt_timeout_s=60)
    broker = Broker(load_catalog(data_root=options.data_root), db, options, home)
    start = time.perf_counter()
    job = broker.launch(dag)
    seconds = time.perf_counter() - start
    row = db.job(job)
    tasks = []
    for t in db.tasks(job):
        metrics_path = Path(row.workdir) / t["task"] / "run" / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        attempts = db.attempts(job, t["task"])
        tasks.append({"task": t["task"], "status": t["status"], "provider": t["provider"],
                      "placement": f"{t['placement']['cloud']}:{t['placement']['region']} "
                                   f"{t['placement']['instance_type']}",
                      "seconds": (attempts[-1]["ended"] or 0) - attempts[-1]["started"],
                      "metrics_keys": len(metrics),
                      "log_tail": job_logs(db, job, t["task"]).strip().splitlines()[-3:]})
    return {"backend": backend, "job_id": job, "status": row.status, "seconds": seconds, "tasks": tasks}


def main() -> None:
    import ray

    home = Path(tempfile.mkdtemp(prefix="sky-real-run-"))
    out = [run_backend("local", home / "local", None)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = ray.init(num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                       _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    try:
        out.append(run_backend("ray", home / "ray", f"http://{context.dashboard_url}"))
    finally:
        ray.shutdown()
    io.write_json(RESULTS / "real_run.json", {"runs": out, "ray": ray.__version__})
    for run in out:
        print(f"{run['backend']}: job {run['job_id']} {run['status']} in {run['seconds']:.0f} s")
        for t in run["tasks"]:
            print(f"  {t['task']:<7} {t['status']:<10} {t['provider']:<6} {t['seconds']:6.1f} s  {t['log_tail'][-1]}")


if __name__ == "__main__":
    main()
