"""``paperzoo sky``: plan, launch and manage broker jobs.

Wire it into the main CLI with ``add_parser(subparsers)`` and dispatch ``args.command == "sky"``
to ``main(args)``. It also runs standalone: ``python -m paperzoo.methods.sky_broker.cli sky ...``
(which is how ``launch --detach`` starts its background worker).

Job state lives in ``--home`` (default ``$PAPERZOO_SKY_HOME`` or ``~/.paperzoo/sky``):
``state.db`` (SQLite) and ``jobs/<id>/<task>/`` (logs, checkpoints, paperzoo run folders).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paperzoo.core.config import ConfigError
from paperzoo.data.roots import DataNotFoundError
from paperzoo.methods.sky_broker.broker import (
    Broker,
    BrokerOptions,
    NothingToRecover,
    cancel,
    job_logs,
    reconcile,
)
from paperzoo.methods.sky_broker.catalog import CatalogError, load_catalog
from paperzoo.methods.sky_broker.optimizer import DEFAULT_TIME_LIMIT_S, NoFeasiblePlan, optimize
from paperzoo.methods.sky_broker.providers import check_chaos
from paperzoo.methods.sky_broker.spec import SpecError, load_dag
from paperzoo.methods.sky_broker.state import JOB_TERMINAL, JobBusy, JobDB, JobNotFound, default_home

log = logging.getLogger(__name__)
WORKER = "_worker"
"""The hidden command a detached launch runs in the background: ``python -m ...cli _worker ID``."""

EPILOG = """examples:
  paperzoo sky plan examples/sky/train.yaml                    # the optimizer's plan as a table
  paperzoo sky launch examples/sky/paperzoo_tiny.yaml          # run on this machine
  paperzoo sky launch job.yaml --backend ray --ray-address http://127.0.0.1:8265
  paperzoo sky launch job.yaml --backend dryrun                # print the cloud commands
  paperzoo sky launch job.yaml --detach && paperzoo sky status
  paperzoo sky logs 3 --task train
  paperzoo sky down 3
  paperzoo sky recover 3                                       # continue a job whose broker died
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="broker state folder (default: $PAPERZOO_SKY_HOME or ~/.paperzoo/sky)")


def _catalog_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", metavar="DIR",
                   help="catalog folder in SkyPilot's layout, <DIR>/<cloud>/vms.csv (default: the curated sample)")
    p.add_argument("--data-root", metavar="DIR",
                   help="data root holding sky/ (egress prices, throughput); default: $PAPERZOO_DATA")
    p.add_argument("--objective", choices=("cost", "time"), help="override the job's objective")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sky`` command (plan | launch | status | logs | down | recover) to ``subparsers``."""
    sky = subparsers.add_parser(
        "sky", help="intercloud broker: plan and run job DAGs across clouds (sky_broker)",
        description="Plan a job DAG over the cloud catalog, launch it with failover on this machine, a Ray "
                    "cluster or (dry run) AWS/GCP/Azure, and follow it in the job database.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = sky.add_subparsers(dest="sky_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("plan", help="show the optimizer's placement as a table (launches nothing)")
    p.add_argument("job", help="job YAML file")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--alternatives", type=_non_negative_int, default=2, metavar="K",
                   help="next-best placements listed per task, each with the other tasks kept (0: none; default: 2)")
    p.add_argument("--time-limit", type=_positive_float, default=DEFAULT_TIME_LIMIT_S, metavar="S",
                   help="seconds the ILP may run; when it stops early the plan is the best found and reports its "
                        f"optimality gap (default: {DEFAULT_TIME_LIMIT_S:g})")
    _catalog_args(p)

    p = sub.add_parser("launch", help="plan and run a job DAG with failover",
                       description="Plan JOB, then launch its tasks in order, failing over on capacity/quota "
                                   "errors and recovering preempted spot tasks from their checkpoints.")
    p.add_argument("job", help="job YAML file")
    p.add_argument("--backend", choices=("local", "ray", "dryrun"), default="local",
                   help="where tasks run: local subprocesses, a Ray cluster, or dry-run cloud commands "
                        "(default: local)")
    p.add_argument("--ray-address", metavar="URL", help="Ray dashboard address for --backend ray")
    p.add_argument("--max-attempts", type=int, default=6, help="launch attempts per task (default: 6)")
    p.add_argument("--attempt-timeout", type=float, default=120.0, metavar="S",
                   help="seconds before a hanging launch is abandoned and the broker fails over (default: 120)")
    p.add_argument("--call-timeout", type=float, default=30.0, metavar="S",
                   help="seconds one provider status/logs/stop call may take (default: 30)")
    p.add_argument("--call-tries", type=int, default=3, metavar="N",
                   help="tries of such a call before the task is failed (default: 3)")
    p.add_argument("--chaos", metavar="JSON",
                   help="inject faults for testing, e.g. '{\"hang_regions\": [\"aws:us-east-1\"]}' or "
                        "'{\"fail_first\": 2, \"status_hang_first\": 99}' (fields of ChaosProvider)")
    p.add_argument("--detach", action="store_true", help="return at once; a background worker runs the job")
    _catalog_args(p)
    _common(p)

    p = sub.add_parser("status", help="jobs and their tasks, placements and attempts")
    p.add_argument("job_id", nargs="?", type=int, help="one job in detail (default: a table of all jobs)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)

    p = sub.add_parser("logs", help="the logs of a job's tasks")
    p.add_argument("job_id", type=int)
    p.add_argument("--task", help="only this task")
    _common(p)

    p = sub.add_parser("down", help="cancel a job and stop its running tasks")
    p.add_argument("job_id", type=int)
    _common(p)

    p = sub.add_parser("recover", help="continue a job whose broker died (killed, machine rebooted)",
                       description="Reconcile the job from its tasks' handles and exit files, re-attach to tasks "
                                   "still running, skip finished ones and run the rest of the DAG (new attempts "
                                   "are numbered after the stored ones).")
    p.add_argument("job_id", type=int)
    _common(p)

    return sky


def _home(args) -> Path:
    return Path(args.home) if getattr(args, "home", None) else default_home()


def _load(args):
    dag = load_dag(args.job)
    if getattr(args, "objective", None):
        from dataclasses import replace

        dag = replace(dag, objective=args.objective)
    return dag


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def cmd_plan(args) -> int:
    """Print the optimizer's plan: the ILP within ``--time-limit`` s, ``--alternatives`` per task."""
    dag = _load(args)
    catalog = load_catalog(args.catalog, data_root=args.data_root)
    plan = optimize(dag, catalog, n_alternatives=args.alternatives, time_limit_s=args.time_limit)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else plan.table())
    return 0


def _chaos(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--chaos: not valid JSON ({exc})") from None
    check_chaos(value, "--chaos")
    return value


@contextmanager
def _stop_on_signals(broker: Broker) -> Iterator[None]:
    """SIGTERM and SIGINT make the broker stop the job's running tasks and cancel the job (instead of
    dying half-way); a second one gives up at once (KeyboardInterrupt: the job is left INTERRUPTED,
    its tasks running). The previous handlers come back afterwards. SIGKILL cannot be caught:
    ``paperzoo sky recover`` continues such a job."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        if broker.stop_reason is not None:
            raise KeyboardInterrupt
        broker.request_stop(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _outcome(db: JobDB, job_id: int, status: str, broker: Broker) -> int:
    """Exit code of a launch/recover; one line on stderr unless the job succeeded."""
    if broker.stop_reason is not None:
        stopped = [t["task"] for t in db.tasks(job_id) if (t["error"] or "").startswith("stopped:")]
        print(f"paperzoo sky: error: job {job_id} cancelled on {broker.stop_reason}; stopped its running tasks: "
              f"{', '.join(stopped) or 'none'}", file=sys.stderr)
        return 128 + int(getattr(signal.Signals, broker.stop_reason, signal.SIGTERM))
    if status in ("SUCCEEDED", "DRY_RUN"):
        return 0
    error = (db.job(job_id).error or "").splitlines()
    print(f"paperzoo sky: error: job {job_id} {status}: {error[0] if error else 'see paperzoo sky status'}",
          file=sys.stderr)
    return 1


def cmd_launch(args) -> int:
    dag = _load(args)
    home = _home(args)
    options = BrokerOptions(backend=args.backend, ray_address=args.ray_address,
                            catalog_dir=str(Path(args.catalog).resolve()) if args.catalog else None,
                            data_root=args.data_root, max_attempts=args.max_attempts,
                            attempt_timeout_s=args.attempt_timeout, call_timeout_s=args.call_timeout,
                            call_tries=args.call_tries, chaos=_chaos(args.chaos))
    db = JobDB(home / "state.db")
    broker = Broker(load_catalog(options.catalog_dir, data_root=options.data_root), db, options, home)
    job_id = broker.submit(dag)
    print(f"job {job_id} ({dag.name}) submitted\n\n{_plan_table(db, job_id)}\n")
    if args.detach:
        (home / "jobs" / str(job_id)).mkdir(parents=True, exist_ok=True)
        with open(home / "jobs" / str(job_id) / "broker.log", "ab") as out:
            subprocess.Popen([sys.executable, "-m", "paperzoo.methods.sky_broker.cli", WORKER, str(job_id),
                              "--home", str(home)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        print(f"running in the background: paperzoo sky status {job_id}")
        return 0
    with _stop_on_signals(broker):
        status = broker.run(job_id)
    print(_job_detail(db, job_id))
    if args.backend == "dryrun":
        print(job_logs(db, job_id))
    return _outcome(db, job_id, status, broker)


def _plan_table(db: JobDB, job_id: int) -> str:
    plan = db.job(job_id).plan or {}
    rows = [f"  {t['task']}: {t['cloud']}:{t['region']} {t['instance_type']}"
            f"{' ' + str(t['accelerator']) + ':' + str(t['accelerator_count']) if t['accelerator'] else ''}"
            f"{' spot' if t['use_spot'] else ''}  ${t['cost_usd']:.2f}" for t in plan.get("tasks", [])]
    return (f"plan ({plan.get('solver')}): ${plan.get('cost_usd', 0):.2f}, {plan.get('time_h', 0):.2f} h\n"
            + "\n".join(rows))


def _time(stamp: float | None) -> str:
    return _dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def _job_detail(db: JobDB, job_id: int) -> str:
    row = db.job(job_id)
    lines = [(f"job {row.job_id} {row.name}: {row.status} (backend {row.options.get('backend')}, "
              f"created {_time(row.created)}, folder {row.workdir})")]
    if row.error:
        lines.append(f"  error: {row.error.splitlines()[0]}")
    lines.append("  task        status        placement                                   recoveries")
    for t in db.tasks(job_id):
        p = t["placement"] or {}
        where = (f"{p.get('cloud')}:{p.get('region')}/{p.get('zone')} {p.get('instance_type')}"
                 f"{' spot' if p.get('use_spot') else ''}") if p else "-"
        err = f"  ({t['error'].splitlines()[0][:70]})" if t.get("error") else ""
        lines.append(f"  {t['task']:<11} {t['status']:<13} {where:<43} {t['recoveries']}{err}")
    lines.append("  attempts:")
    for a in db.attempts(job_id):
        err = f"  ({a['error'].splitlines()[0][:70]})" if a["error"] else ""
        lines.append(f"    {a['task']} #{a['attempt']}: {a['cloud']}:{a['region']}/{a['zone']} "
                     f"{a['instance_type']} via {a['provider']} -> {a['outcome']}{err}")
    return "\n".join(lines)


def cmd_status(args) -> int:
    db = JobDB(_home(args) / "state.db")
    # settle the jobs whose broker died from their tasks' handles (SkyPilot: sky status --refresh)
    for job in [db.job(args.job_id)] if args.job_id is not None else db.jobs():
        if job.status not in JOB_TERMINAL:
            reconcile(db, job.job_id)
    if args.job_id is not None:
        if args.json:
            row = db.job(args.job_id)
            print(json.dumps({"job_id": row.job_id, "name": row.name, "status": row.status, "error": row.error,
                              "plan": row.plan, "tasks": db.tasks(args.job_id),
                              "attempts": db.attempts(args.job_id)}, indent=2, default=str))
        else:
            print(_job_detail(db, args.job_id))
        return 0
    jobs = db.jobs()
    if args.json:
        print(json.dumps([{"job_id": j.job_id, "name": j.name, "status": j.status} for j in jobs], indent=2))
        return 0
    print(f"{'id':>4}  {'name':<20} {'status':<10} {'backend':<8} {'cost $':>8}  created")
    for j in jobs:
        cost = (j.plan or {}).get("cost_usd", float("nan"))
        print(f"{j.job_id:>4}  {j.name:<20} {j.status:<10} {j.options.get('backend', ''):<8} {cost:>8.2f}  "
              f"{_time(j.created)}")
    if not jobs:
        print(f"(no jobs in {db.path})")
    return 0


def cmd_logs(args) -> int:
    db = JobDB(_home(args) / "state.db")
    print(job_logs(db, args.job_id, args.task), end="")
    return 0


def cmd_down(args) -> int:
    db = JobDB(_home(args) / "state.db")
    stopped = cancel(db, args.job_id)
    print(f"job {args.job_id}: {db.job(args.job_id).status}; stopped: {', '.join(stopped) or 'nothing running'}")
    return 0


def cmd_recover(args) -> int:
    home = _home(args)
    db = JobDB(home / "state.db")
    row = db.job(args.job_id)
    if row.status in ("SUCCEEDED", "DRY_RUN"):
        print(f"job {args.job_id} already {row.status}; nothing to recover")
        return 0
    broker = Broker.for_job(db, args.job_id, home)
    for line in reconcile(db, args.job_id, broker.options.call_timeout_s, broker.options.call_tries):
        print(f"  {line}")
    print(f"recovering job {args.job_id} ({row.name})")
    with _stop_on_signals(broker):
        status = broker.recover(args.job_id)
    print(_job_detail(db, args.job_id))
    return _outcome(db, args.job_id, status, broker)


def cmd_worker(args) -> int:
    home = _home(args)
    db = JobDB(home / "state.db")
    broker = Broker.for_job(db, args.job_id, home)
    with _stop_on_signals(broker):
        status = broker.run(args.job_id)
    return _outcome(db, args.job_id, status, broker)


COMMANDS = {"plan": cmd_plan, "launch": cmd_launch, "status": cmd_status, "logs": cmd_logs, "down": cmd_down,
            "recover": cmd_recover, WORKER: cmd_worker}


def main(args) -> int:
    """Run a parsed ``sky`` command; user errors print one line to stderr and return 2."""
    try:
        return COMMANDS[args.sky_command](args)
    except KeyboardInterrupt:
        print("paperzoo sky: interrupted; the job's state is kept (paperzoo sky status, paperzoo sky recover JOB)",
              file=sys.stderr)
        return 130
    except (SpecError, CatalogError, NoFeasiblePlan, DataNotFoundError, JobNotFound, JobBusy, NothingToRecover,
            ConfigError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"paperzoo sky: error: {message}", file=sys.stderr)
        return 2


def standalone_parser() -> argparse.ArgumentParser:
    """``paperzoo sky ...`` without the rest of the paperzoo CLI (tests, ``python -m``)."""
    parser = argparse.ArgumentParser(prog="paperzoo")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def worker_parser() -> argparse.ArgumentParser:
    """The background worker of ``launch --detach``: runs one submitted job to its end."""
    parser = argparse.ArgumentParser(prog=f"python -m paperzoo.methods.sky_broker.cli {WORKER}")
    parser.add_argument("job_id", type=int)
    parser.add_argument("--home", metavar="DIR")
    parser.set_defaults(sky_command=WORKER, verbose=False)
    return parser


if __name__ == "__main__":  # pragma: no cover - exercised through `launch --detach`
    argv = sys.argv[1:]
    parsed = worker_parser().parse_args(argv[1:]) if argv[:1] == [WORKER] else standalone_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if parsed.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main(parsed))
