"""The intercloud broker: optimise a DAG's placement, then provision and run it task by task with
failover and spot recovery, recording everything in the job database.

For each task (in topological order) the broker re-optimises the rest of the DAG with the tasks
already done pinned to where they ran, then launches the task's best placement:

- a capacity error blocks that offering in that zone, a quota error blocks the instance type in the
  whole region; a launch that does not return within ``attempt_timeout_s`` blocks the offering
  too (a hanging region must not stall failover; if the late launch returns after all, its nodes are
  stopped); then the broker re-optimises and tries the next best placement, at most
  ``max_attempts`` times per task;
- a preempted spot task is relaunched (again re-optimised, the reclaimed zone blocked) with
  ``SKY_RESUME=1`` and the same ``SKY_CHECKPOINT_DIR``, so it continues from its last checkpoint;
  paperzoo runs resume with ``paperzoo run --resume``;
- a task that fails on its own (non-zero exit) fails the job: that is not the cloud's fault.
"""
from __future__ import annotations

import functools
import logging
import queue
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from paperzoo.core.config import check
from paperzoo.methods.sky_broker.catalog import Catalog, load_catalog
from paperzoo.methods.sky_broker.optimizer import Block, Candidate, NoFeasiblePlan, optimize
from paperzoo.methods.sky_broker.providers import (
    DryRunCloudProvider,
    JobStatus,
    LaunchRequest,
    LocalProvider,
    Provider,
    ProvisionError,
    QuotaError,
    RayProvider,
    provider_for_handle,
)
from paperzoo.methods.sky_broker.spec import Dag, Task, dag_to_dict, parse_dag
from paperzoo.methods.sky_broker.state import JOB_TERMINAL, JobDB

log = logging.getLogger(__name__)
Router = Callable[[Candidate], Provider]


class LaunchTimeout(TimeoutError):
    """A provider's launch did not return within the per-attempt timeout."""


@dataclass(frozen=True)
class BrokerOptions:
    """How the broker provisions and runs jobs (stored with each job)."""

    backend: str = "local"
    """``local`` (subprocesses here), ``ray`` (a Ray cluster) or ``dryrun`` (print cloud commands)."""
    ray_address: str | None = None
    """Ray dashboard address (``http://127.0.0.1:8265``) for the ``ray`` backend."""
    catalog_dir: str | None = None
    """A catalog folder in SkyPilot's layout; None: the curated sample shipped with paperzoo."""
    data_root: str | None = None
    """Data root holding ``sky/`` (egress prices, throughput); None: ``$PAPERZOO_DATA``."""
    max_attempts: int = 6
    """Launch attempts per task (failover included) before the job fails."""
    attempt_timeout_s: float = 120.0
    """Seconds a provider's launch may take before the broker gives up on it and fails over."""
    poll_s: float = 0.5
    """Seconds between status polls of a running task."""
    max_recoveries: int = 3
    """Spot preemptions a task may recover from."""

    def __post_init__(self) -> None:
        check(self.backend in ("local", "ray", "dryrun"), "BrokerOptions", "backend",
              f"must be local, ray or dryrun, got {self.backend!r}")
        check(self.backend != "ray" or bool(self.ray_address), "BrokerOptions", "ray_address",
              "the ray backend needs the cluster's dashboard address")
        check(self.max_attempts >= 1, "BrokerOptions", "max_attempts", "must be >= 1")
        check(self.attempt_timeout_s > 0, "BrokerOptions", "attempt_timeout_s", "must be > 0")
        check(self.poll_s > 0, "BrokerOptions", "poll_s", "must be > 0")
        check(self.max_recoveries >= 0, "BrokerOptions", "max_recoveries", "must be >= 0")


def make_router(options: BrokerOptions) -> Router:
    """The provider for each placement: one local/Ray provider for all, or a dry-run one per cloud."""
    if options.backend == "local":
        local = LocalProvider()
        return lambda cand: local
    if options.backend == "ray":
        ray = RayProvider(options.ray_address or "")
        return lambda cand: ray
    dry: dict[str, DryRunCloudProvider] = {}
    return lambda cand: dry.setdefault(cand.offering.cloud, DryRunCloudProvider(cand.offering.cloud))


def call_with_timeout(fn: Callable[[], Any], timeout_s: float,
                      on_late: Callable[[Any], None] | None = None) -> Any:
    """``fn()`` in a daemon thread; LaunchTimeout after ``timeout_s``. A result that arrives after
    the timeout is handed to ``on_late`` (to release what it launched)."""
    box: queue.Queue = queue.Queue(maxsize=1)
    abandoned = threading.Event()

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box.put((False, exc))
            return
        if abandoned.is_set():
            if on_late is not None:
                try:
                    on_late(result)
                except Exception:
                    log.exception("could not release a launch that returned after its timeout")
            return
        box.put((True, result))

    threading.Thread(target=target, daemon=True, name="sky-launch").start()
    try:
        ok, value = box.get(timeout=timeout_s)
    except queue.Empty:
        abandoned.set()
        # the result may have landed between the timeout and setting the flag
        try:
            ok, value = box.get_nowait()
        except queue.Empty:
            raise LaunchTimeout(f"launch did not return within {timeout_s:g} s") from None
    if not ok:
        raise value
    return value


def placement_dict(cand: Candidate) -> dict[str, Any]:
    o = cand.offering
    return {"key": o.key, "cloud": o.cloud, "region": o.region, "zone": o.zone, "instance_type": o.instance_type,
            "accelerator": o.accelerator, "accelerator_count": o.accelerator_count, "use_spot": cand.use_spot,
            "num_nodes": cand.num_nodes, "runtime_h": cand.runtime_h, "hourly_usd": cand.hourly_usd}


def block_for(error: BaseException, cand: Candidate) -> Block:
    """What a failed launch rules out: the instance type in the region for a quota error, the
    offering in its zone otherwise."""
    o = cand.offering
    if isinstance(error, QuotaError):
        return Block(o.cloud, o.region, None, o.instance_type, o.accelerator)
    return Block(o.cloud, o.region, o.zone, o.instance_type, o.accelerator)


def task_command(task: Task) -> str:
    """The task's run command; a paperzoo job becomes ``paperzoo run`` (``--resume`` when its run
    folder already holds a config, i.e. after a preemption)."""
    if task.paperzoo is None:
        return task.run
    py = shlex.quote(sys.executable)
    sets = "".join(f" --set {shlex.quote(f'{k}={v}')}" for k, v in task.paperzoo.overrides.items())
    return (f"if [ -f run/config.yaml ]; then {py} -m paperzoo.cli run --resume run; "
            f"else {py} -m paperzoo.cli run {shlex.quote(task.paperzoo.method)} "
            f"--preset {shlex.quote(task.paperzoo.preset)}{sets} --run-dir run; fi")


class Broker:
    """Submits DAGs to the job database and runs them."""

    def __init__(self, catalog: Catalog, db: JobDB, options: BrokerOptions, home: str | Path,
                 router: Router | None = None):
        self.catalog = catalog
        self.db = db
        self.options = options
        self.home = Path(home)
        self.router = router or make_router(options)

    @classmethod
    def for_job(cls, db: JobDB, job_id: int, home: str | Path) -> Broker:
        """A broker configured as job ``job_id`` was submitted (for a detached worker)."""
        options = BrokerOptions(**db.job(job_id).options)
        catalog = load_catalog(options.catalog_dir, data_root=options.data_root)
        return cls(catalog, db, options, home)

    # ------------------------------------------------------------------------------ API
    def submit(self, dag: Dag) -> int:
        """Optimise ``dag`` and record it as a PENDING job; returns the job id."""
        plan = optimize(dag, self.catalog)
        job_id = self.db.create_job(dag.name, dag_to_dict(dag), asdict(self.options), self.home / "jobs",
                                    dag.names)
        self.db.set_job(job_id, plan=plan.to_dict())
        log.info("job %d (%s) submitted:\n%s", job_id, dag.name, plan.table())
        return job_id

    def launch(self, dag: Dag) -> int:
        """Submit and run ``dag`` to completion; returns the job id."""
        job_id = self.submit(dag)
        self.run(job_id)
        return job_id

    def run(self, job_id: int) -> str:
        """Run (or continue) job ``job_id``; returns its final status."""
        row = self.db.job(job_id)
        if row.status in JOB_TERMINAL:
            return row.status
        dag = parse_dag(row.spec, f"job {job_id}")
        workdir = Path(row.workdir)
        self.db.set_job(job_id, status="RUNNING")
        fixed: dict[str, Candidate] = {}
        for done in self.db.tasks(job_id):
            if done["status"] in ("SUCCEEDED", "DRY_RUN") and done["placement"]:
                fixed[done["task"]] = self._candidate(done["placement"])
        blocked: list[Block] = []
        outcome = "SUCCEEDED"
        for task in dag.tasks:
            if task.name in fixed:
                continue
            if self.db.job(job_id).status == "CANCELLED":
                return "CANCELLED"
            status, error = self._run_task(job_id, dag, task, fixed, blocked, workdir)
            if status == "DRY_RUN":
                outcome = "DRY_RUN"
            elif status != "SUCCEEDED":
                final = "CANCELLED" if status == "CANCELLED" else "FAILED"
                self.db.set_job(job_id, status=final, error=error)
                return final
        self.db.set_job(job_id, status=outcome)
        return outcome

    # ------------------------------------------------------------------------ internals
    def _candidate(self, placement: dict[str, Any]) -> Candidate:
        for off in self.catalog.offerings:
            if off.key == placement["key"]:
                return Candidate(off, placement["use_spot"], placement["num_nodes"], placement["runtime_h"])
        raise NoFeasiblePlan(f"offering {placement['key']} of a finished task is not in catalog {self.catalog.name}")

    def _request(self, job_id: int, dag: Dag, task: Task, attempt: int, cand: Candidate, resume: bool,
                 workdir: Path) -> LaunchRequest:
        task_dir = workdir / task.name
        (task_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        o = cand.offering
        env = {"SKY_JOB_ID": str(job_id), "SKY_TASK": task.name, "SKY_ATTEMPT": str(attempt),
               "SKY_CLOUD": o.cloud, "SKY_REGION": o.region, "SKY_ZONE": o.zone,
               "SKY_INSTANCE_TYPE": o.instance_type, "SKY_ACCELERATOR": o.accelerator or "",
               "SKY_USE_SPOT": "1" if cand.use_spot else "0", "SKY_NUM_NODES": str(cand.num_nodes),
               "SKY_TASK_DIR": str(task_dir), "SKY_CHECKPOINT_DIR": str(task_dir / "checkpoints"),
               "SKY_RESUME": "1" if resume else "0",
               "SKY_PARENT_DIRS": ":".join(str(workdir / p) for p in task.depends_on), **task.env}
        return LaunchRequest(job_id, task.name, attempt, cand, task.setup, task_command(task), env, task_dir,
                             task_dir / f"attempt-{attempt}.log")

    def _run_task(self, job_id: int, dag: Dag, task: Task, fixed: dict[str, Candidate], blocked: list[Block],
                  workdir: Path) -> tuple[str, str | None]:
        """Place, launch and wait for one task; returns (status, error message)."""
        failures = recoveries = attempt = 0
        resume = False
        while True:
            attempt += 1
            try:
                plan = optimize(dag, self.catalog, blocked=blocked, fixed=fixed, n_alternatives=0)
            except NoFeasiblePlan as exc:
                return self._fail(job_id, task, f"no placement left after {failures} failed launch(es): {exc}")
            cand = plan.placement(task.name).candidate
            provider = self.router(cand)
            request = self._request(job_id, dag, task, attempt, cand, resume, workdir)
            where = placement_dict(cand)
            attempt_id = self.db.start_attempt(job_id, task.name, attempt, where, provider.name)
            self.db.set_task(job_id, task.name, status="PROVISIONING", placement=where, provider=provider.name)
            log.info("job %d task %s attempt %d: %s via %s", job_id, task.name, attempt, cand.label(), provider.name)
            try:
                handle = call_with_timeout(functools.partial(provider.launch, request), self.options.attempt_timeout_s,
                                           on_late=provider.stop)
            except (ProvisionError, LaunchTimeout, OSError, RuntimeError) as exc:
                outcome = (f"{exc.kind.upper()}_ERROR" if isinstance(exc, ProvisionError)
                           else "TIMEOUT" if isinstance(exc, LaunchTimeout) else "LAUNCH_ERROR")
                self.db.end_attempt(attempt_id, outcome, str(exc))
                blocked.append(block_for(exc, cand))
                failures += 1
                log.warning("job %d task %s: %s on %s (%s); failing over", job_id, task.name, outcome,
                            cand.label(), exc)
                if failures >= self.options.max_attempts:
                    return self._fail(job_id, task, f"gave up after {failures} failed launches (last: {exc})")
                continue
            self.db.end_attempt(attempt_id, "RUNNING", final=False)
            self.db.set_task(job_id, task.name, status="RUNNING", handle=handle)
            status = self._wait(job_id, provider, handle)
            if status in (JobStatus.SUCCEEDED, JobStatus.DRY_RUN):
                self.db.end_attempt(attempt_id, status.value)
                self.db.set_task(job_id, task.name, status=status.value,
                                 cost_usd=plan.placement(task.name).cost_usd, recoveries=recoveries)
                fixed[task.name] = cand
                return status.value, None
            if status == JobStatus.PREEMPTED:
                self.db.end_attempt(attempt_id, "PREEMPTED", "spot capacity reclaimed")
                recoveries += 1
                self.db.set_task(job_id, task.name, status="RECOVERING", recoveries=recoveries)
                if recoveries > self.options.max_recoveries:
                    return self._fail(job_id, task, f"preempted {recoveries} times (max_recoveries "
                                                    f"{self.options.max_recoveries})")
                blocked.append(block_for(ProvisionError("preempted"), cand))
                resume = True
                continue
            if status == JobStatus.STOPPED:
                self.db.end_attempt(attempt_id, "CANCELLED")
                self.db.set_task(job_id, task.name, status="CANCELLED")
                return "CANCELLED", "cancelled"
            tail = provider.logs(handle)[-2000:]
            self.db.end_attempt(attempt_id, "FAILED", tail)
            return self._fail(job_id, task, f"task {task.name!r} exited with an error; log tail:\n{tail}")

    def _fail(self, job_id: int, task: Task, message: str) -> tuple[str, str]:
        self.db.set_task(job_id, task.name, status="FAILED")
        log.error("job %d task %s failed: %s", job_id, task.name, message)
        return "FAILED", message

    def _wait(self, job_id: int, provider: Provider, handle: dict[str, Any]) -> JobStatus:
        """Poll until the task ends; stop it if the job was cancelled meanwhile."""
        while True:
            status = provider.status(handle)
            if status.terminal:
                return status
            if self.db.job(job_id).status == "CANCELLED":
                provider.stop(handle)
                return JobStatus.STOPPED
            time.sleep(self.options.poll_s)


def cancel(db: JobDB, job_id: int) -> list[str]:
    """Mark the job cancelled and stop its running tasks; returns the tasks stopped."""
    row = db.job(job_id)
    stopped = []
    if row.status not in JOB_TERMINAL:
        db.set_job(job_id, status="CANCELLED")
    for task in db.tasks(job_id):
        if task["status"] in ("PROVISIONING", "RUNNING", "RECOVERING") and task["handle"]:
            provider_for_handle(task["handle"]).stop(task["handle"])
            stopped.append(task["task"])
        if task["status"] not in ("SUCCEEDED", "FAILED", "DRY_RUN"):
            db.set_task(job_id, task["task"], status="CANCELLED")
    return stopped


def job_logs(db: JobDB, job_id: int, task: str | None = None) -> str:
    """Every attempt's log of the job (or of one task), newest attempt last."""
    row = db.job(job_id)
    names = [t["task"] for t in db.tasks(job_id)]
    if task is not None and task not in names:
        raise KeyError(f"job {job_id} has no task {task!r}; tasks: {', '.join(names)}")
    parts = []
    for t in db.tasks(job_id):
        if task is not None and t["task"] != task:
            continue
        handle = t["handle"]
        header = f"===== {row.name} / {t['task']} [{t['status']}]"
        if not handle:
            parts.append(f"{header}: not launched")
            continue
        try:
            text = provider_for_handle(handle).logs(handle)
        except Exception as exc:  # noqa: BLE001 - e.g. the Ray cluster is gone
            text = f"(logs unavailable: {exc})"
        parts.append(f"{header} via {t['provider']}\n{text.rstrip()}")
    return "\n".join(parts) + "\n"


__all__ = ["Broker", "BrokerOptions", "LaunchTimeout", "block_for", "call_with_timeout",
           "cancel", "job_logs", "make_router", "placement_dict", "task_command"]
