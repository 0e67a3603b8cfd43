"""The intercloud broker: optimise a DAG's placement, then provision and run it with failover and spot
recovery, recording everything in the job database, so that it survives its own death.

Tasks start as soon as all their parents have succeeded; independent branches run in parallel (one
thread per running task). Before each launch the broker re-optimises the rest of the DAG with the
tasks already done or running pinned to where they are, then launches the task's best placement:

- a capacity error blocks that offering in that zone, a quota error blocks the instance type in the
  whole region; a launch that does not return within ``attempt_timeout_s`` blocks the whole region
  (a hanging region API must not stall failover zone by zone; if the late launch returns after all,
  its nodes are stopped); then the broker re-optimises and tries the next best placement, at most
  ``max_attempts`` failed launches per task;
- a preempted spot task is relaunched (again re-optimised, the reclaimed zone blocked) with
  ``SKY_RESUME=1`` and the same ``SKY_CHECKPOINT_DIR``, so it continues from its last checkpoint;
  paperzoo runs resume with ``paperzoo run --resume``;
- a task that fails on its own (non-zero exit), runs longer than its ``max_runtime_s``, or whose
  provider stops answering ``status()`` (``call_timeout_s`` per call, ``call_tries`` tries) fails,
  and with it its dependents and the job; running tasks of other branches are stopped.

Crash safety: every state transition is one SQLite transaction; a task's handle is stored before
the broker waits on it (and the local provider leaves it in a file even earlier); the job records
the broker's pid and start time. When that process is gone, :func:`reconcile` (run by ``paperzoo
sky status``) settles the job's tasks from their handles and exit files and marks the job
INTERRUPTED; :meth:`Broker.recover` re-attaches to tasks still running, skips finished ones and
continues the DAG, numbering new attempts after the stored ones. :meth:`Broker.request_stop`
(the CLI's SIGTERM/SIGINT handler) stops the job's running tasks and cancels the job.
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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paperzoo.core.config import check
from paperzoo.methods.sky_broker.catalog import Catalog, load_catalog
from paperzoo.methods.sky_broker.optimizer import Block, Candidate, NoFeasiblePlan, optimize
from paperzoo.methods.sky_broker.providers import (
    ChaosProvider,
    DryRunCloudProvider,
    Handle,
    JobStatus,
    LaunchRequest,
    LocalProvider,
    Provider,
    ProvisionError,
    QuotaError,
    RayProvider,
    check_chaos,
    provider_for_handle,
    read_handle_file,
)
from paperzoo.methods.sky_broker.spec import Dag, Task, dag_to_dict, parse_dag
from paperzoo.methods.sky_broker.state import JOB_TERMINAL, JobBusy, JobDB

log = logging.getLogger(__name__)
Router = Callable[[Candidate], Provider]

TASK_ACTIVE = ("PROVISIONING", "RUNNING", "RECOVERING")
"""Task states in which the broker owns cloud resources (or is about to)."""
TASK_DONE = ("SUCCEEDED", "DRY_RUN")
FAILED_LAUNCH = ("CAPACITY_ERROR", "QUOTA_ERROR", "PROVISION_ERROR", "TIMEOUT", "LAUNCH_ERROR")
"""Attempt outcomes of launches that did not start the task (each blocks a resource)."""
DEFAULT_CALL_TIMEOUT_S = 30.0


class LaunchTimeout(TimeoutError):
    """A provider's launch did not return within the per-attempt timeout."""


class LaunchCancelled(RuntimeError):
    """The job halted (a signal, ``down``, a failed sibling) while a launch was still in progress."""


class ProviderUnresponsive(RuntimeError):
    """A provider's ``status()``/``logs()``/``stop()`` did not answer within its timeout, every try."""


class NothingToRecover(RuntimeError):
    """``recover`` was asked for a job that is finished (or was never started)."""


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
    """Failed launch attempts per task (failover included) before the job fails."""
    attempt_timeout_s: float = 120.0
    """Seconds a provider's launch may take before the broker blocks its region and fails over."""
    poll_s: float = 0.5
    """Seconds between status polls of a running task."""
    max_recoveries: int = 3
    """Spot preemptions a task may recover from."""
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    """Seconds one provider ``status()``/``logs()``/``stop()`` call may take."""
    call_tries: int = 3
    """Tries of such a call (timeouts and errors alike) before the task is failed."""
    chaos: dict[str, Any] | None = None
    """Fault injection (:class:`ChaosProvider` settings) around the local or Ray provider."""

    def __post_init__(self) -> None:
        check(self.backend in ("local", "ray", "dryrun"), "BrokerOptions", "backend",
              f"must be local, ray or dryrun, got {self.backend!r}")
        check(self.backend != "ray" or bool(self.ray_address), "BrokerOptions", "ray_address",
              "the ray backend needs the cluster's dashboard address")
        check(self.max_attempts >= 1, "BrokerOptions", "max_attempts", "must be >= 1")
        check(self.attempt_timeout_s > 0, "BrokerOptions", "attempt_timeout_s", "must be > 0")
        check(self.poll_s > 0, "BrokerOptions", "poll_s", "must be > 0")
        check(self.max_recoveries >= 0, "BrokerOptions", "max_recoveries", "must be >= 0")
        check(self.call_timeout_s > 0, "BrokerOptions", "call_timeout_s", "must be > 0")
        check(self.call_tries >= 1, "BrokerOptions", "call_tries", "must be >= 1")
        if self.chaos is not None:
            check(self.backend != "dryrun", "BrokerOptions", "chaos", "fault injection needs the local or ray backend")
            check_chaos(self.chaos, "BrokerOptions.chaos")


def make_router(options: BrokerOptions) -> Router:
    """The provider for each placement: one local/Ray provider for all (wrapped in a ChaosProvider
    when ``options.chaos`` is set), or a dry-run one per cloud."""
    if options.backend in ("local", "ray"):
        inner: Provider = LocalProvider() if options.backend == "local" else RayProvider(options.ray_address or "")
        provider = ChaosProvider(inner, **options.chaos) if options.chaos else inner
        return lambda cand: provider
    dry: dict[str, DryRunCloudProvider] = {}
    return lambda cand: dry.setdefault(cand.offering.cloud, DryRunCloudProvider(cand.offering.cloud))


def call_with_timeout(fn: Callable[[], Any], timeout_s: float,
                      on_late: Callable[[Any], None] | None = None, what: str = "launch",
                      cancel: threading.Event | None = None) -> Any:
    """``fn()`` in a daemon thread; LaunchTimeout after ``timeout_s``, LaunchCancelled as soon as
    ``cancel`` is set. A result that arrives after either is handed to ``on_late`` (to release what
    it launched)."""
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
                    log.exception("could not release a %s that returned after its timeout", what)
            return
        box.put((True, result))

    threading.Thread(target=target, daemon=True, name=f"sky-{what.split()[0]}").start()
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            ok, value = box.get(timeout=max(0.0, min(remaining, 0.1) if cancel is not None else remaining))
            break
        except queue.Empty:
            cancelled = cancel is not None and cancel.is_set()
            if not cancelled and time.monotonic() < deadline:
                continue
            abandoned.set()
            # the result may have landed between the timeout and setting the flag
            try:
                ok, value = box.get_nowait()
                break
            except queue.Empty:
                if cancelled:
                    raise LaunchCancelled(f"{what} abandoned: the job is stopping") from None
                raise LaunchTimeout(f"{what} did not return within {timeout_s:g} s") from None
    if not ok:
        raise value
    return value


def call_provider(fn: Callable[[], Any], what: str, timeout_s: float = DEFAULT_CALL_TIMEOUT_S, tries: int = 3,
                  backoff_s: float = 0.2) -> Any:
    """``fn()`` with a timeout per try and at most ``tries`` tries (exponential backoff between
    them); ProviderUnresponsive naming ``what`` and the last problem when every try fails."""
    problem = ""
    for i in range(tries):
        try:
            return call_with_timeout(fn, timeout_s, what=what)
        except LaunchTimeout:
            problem = f"no answer within {timeout_s:g} s"
        except Exception as exc:  # noqa: BLE001 - e.g. a dropped connection to the Ray dashboard
            problem = f"{type(exc).__name__}: {exc}"
        log.warning("%s: %s (try %d of %d)", what, problem, i + 1, tries)
        if i + 1 < tries:
            time.sleep(min(backoff_s * 2 ** i, 5.0))
    raise ProviderUnresponsive(f"{what}: {problem} ({tries} {'try' if tries == 1 else 'tries'})")


def placement_dict(cand: Candidate) -> dict[str, Any]:
    o = cand.offering
    return {"key": o.key, "cloud": o.cloud, "region": o.region, "zone": o.zone, "instance_type": o.instance_type,
            "accelerator": o.accelerator, "accelerator_count": o.accelerator_count, "use_spot": cand.use_spot,
            "num_nodes": cand.num_nodes, "runtime_h": cand.runtime_h, "hourly_usd": cand.hourly_usd}


def block_for(error: BaseException, cand: Candidate) -> Block:
    """What a failed launch rules out: the whole region after a timeout (its API hangs), the
    instance type in the region for a quota error, the offering in its zone otherwise."""
    o = cand.offering
    if isinstance(error, LaunchTimeout):
        return Block(o.cloud, o.region)
    if isinstance(error, QuotaError):
        return Block(o.cloud, o.region, None, o.instance_type, o.accelerator)
    return Block(o.cloud, o.region, o.zone, o.instance_type, o.accelerator)


def block_for_attempt(attempt: dict[str, Any]) -> Block | None:
    """The block a stored failed attempt implies (so a recovered job keeps avoiding it), or None."""
    outcome, acc = attempt["outcome"], attempt["accelerator"]
    if outcome == "TIMEOUT":
        return Block(attempt["cloud"], attempt["region"])
    if outcome == "QUOTA_ERROR":
        return Block(attempt["cloud"], attempt["region"], None, attempt["instance_type"], acc)
    if outcome in FAILED_LAUNCH or outcome == "PREEMPTED":
        return Block(attempt["cloud"], attempt["region"], attempt["zone"], attempt["instance_type"], acc)
    return None


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


def descendants(dag: Dag, name: str) -> list[str]:
    """Every task that depends, directly or not, on ``name`` (topological order)."""
    out: set[str] = {name}
    for task in dag.tasks:
        if any(p in out for p in task.depends_on):
            out.add(task.name)
    return [t.name for t in dag.tasks if t.name in out and t.name != name]


@dataclass
class _Attach:
    """A task found running when the broker (re)starts: wait on it instead of launching."""

    attempt_id: int
    attempt: int
    handle: Handle
    candidate: Candidate
    started: float


@dataclass
class _RunState:
    """What the task threads of one ``run`` share (under ``lock``)."""

    fixed: dict[str, Candidate]
    blocked: list[Block]
    halt: threading.Event = field(default_factory=threading.Event)
    """Set when the job must stop: a task failed, the job was cancelled, or the broker got a signal."""
    halt_reason: str = ""
    detached: bool = False
    """Set (before ``halt``) when the broker itself stops abruptly: task threads then leave their
    tasks running and the database as it is, for ``recover``."""
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Detach(Exception):
    """Raised in a task thread when the broker detaches from the job."""


class Broker:
    """Submits DAGs to the job database and runs them."""

    def __init__(self, catalog: Catalog, db: JobDB, options: BrokerOptions, home: str | Path,
                 router: Router | None = None):
        self.catalog = catalog
        self.db = db
        self.options = options
        self.home = Path(home)
        self.router = router or make_router(options)
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        """Why :meth:`request_stop` was called (e.g. ``SIGTERM``); None if it was not."""

    @classmethod
    def for_job(cls, db: JobDB, job_id: int, home: str | Path) -> Broker:
        """A broker configured as job ``job_id`` was submitted (for a detached worker or ``recover``)."""
        stored = db.job(job_id).options
        known = BrokerOptions.__dataclass_fields__
        options = BrokerOptions(**{k: v for k, v in stored.items() if k in known})
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

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop the running job from another thread or a signal handler: its running tasks are
        stopped, the tasks and the job marked CANCELLED, and :meth:`run` returns ``CANCELLED``."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def recover(self, job_id: int) -> str:
        """Continue job ``job_id`` after its broker died: reconcile it, re-attach to its running
        tasks, skip finished ones and run the rest; returns the final status. NothingToRecover
        for a finished job, JobBusy while another broker runs it."""
        row = self.db.job(job_id)
        if row.status in JOB_TERMINAL:
            raise NothingToRecover(f"job {job_id} is {row.status}; only an unfinished job can be recovered")
        if row.broker_alive:
            raise JobBusy(f"job {job_id} is being run by broker process {row.broker_pid}; nothing to recover")
        return self.run(job_id)

    def run(self, job_id: int) -> str:
        """Run (or continue) job ``job_id``; returns its final status."""
        row = self.db.job(job_id)
        if row.status in JOB_TERMINAL:
            return row.status
        reconcile(self.db, job_id, self.options.call_timeout_s, self.options.call_tries)
        self.db.claim_job(job_id)
        try:
            return self._run(job_id)
        except BaseException as exc:
            # the broker itself broke (a bug, Ctrl-C without a handler): the tasks keep their state
            # and handles, the job can be recovered
            self.db.set_job(job_id, status="INTERRUPTED", release=True,
                            error=f"the broker stopped: {type(exc).__name__}: {exc}; "
                                  f"continue with `paperzoo sky recover {job_id}`")
            raise

    # ------------------------------------------------------------------------ internals
    def _run(self, job_id: int) -> str:
        row = self.db.job(job_id)
        dag = parse_dag(row.spec, f"job {job_id}")
        workdir = Path(row.workdir)
        self.db.set_job(job_id, status="RUNNING")
        tasks = {t["task"]: t for t in self.db.tasks(job_id)}
        attempts = self.db.attempts(job_id)
        state = _RunState(fixed={}, blocked=[b for b in map(block_for_attempt, attempts) if b is not None])
        done: set[str] = set()
        outcome = "SUCCEEDED"
        failure: tuple[str, str] | None = None
        attach: dict[str, _Attach] = {}
        for name, t in tasks.items():
            if t["status"] in TASK_DONE and t["placement"]:
                state.fixed[name] = self._candidate(t["placement"])
                done.add(name)
                outcome = "DRY_RUN" if t["status"] == "DRY_RUN" else outcome
            elif t["status"] == "FAILED":
                failure = failure or (name, t["error"] or f"task {name!r} failed")
            elif t["status"] == "RUNNING":
                last = [a for a in attempts if a["task"] == name][-1:]
                if last and last[0]["outcome"] == "RUNNING" and last[0]["handle"] and t["placement"]:
                    cand = self._candidate(t["placement"])
                    attach[name] = _Attach(last[0]["attempt_id"], last[0]["attempt"], last[0]["handle"], cand,
                                           last[0]["started"])
                    state.fixed[name] = cand
        if failure:  # settled while the broker was gone: the job fails, running branches are stopped
            state.halt_reason = f"task {failure[0]!r} failed"
            state.halt.set()
        started: set[str] = set()
        futures: dict[Future, str] = {}
        cancelled = False
        pool = ThreadPoolExecutor(max_workers=len(dag.tasks), thread_name_prefix=f"sky-job{job_id}")
        try:
            while True:
                if not state.halt.is_set():
                    if self._stop.is_set():
                        state.halt_reason = f"the broker got {self.stop_reason}"
                        state.halt.set()
                    elif self.db.job(job_id).status == "CANCELLED":
                        state.halt_reason = "the job was cancelled"
                        state.halt.set()
                for task in dag.tasks:
                    if task.name in done or task.name in started:
                        continue
                    # a task found running is always attached (and stopped at once if the job halts)
                    if task.name in attach or (not state.halt.is_set() and set(task.depends_on) <= done):
                        started.add(task.name)
                        fut = pool.submit(self._run_task, job_id, dag, task, workdir, state, attach.get(task.name),
                                          tasks[task.name]["recoveries"])
                        futures[fut] = task.name
                if not futures:
                    break
                finished, _ = wait(list(futures), timeout=self.options.poll_s, return_when=FIRST_COMPLETED)
                for fut in finished:
                    name = futures.pop(fut)
                    try:
                        status, error = fut.result()
                    except Exception as exc:  # a bug or a database error in the task's thread
                        log.exception("job %d task %s: the broker failed", job_id, name)
                        status, error = "FAILED", f"broker error: {type(exc).__name__}: {exc}"
                        self.db.set_task(job_id, name, status="FAILED", error=error)
                    if status in TASK_DONE:
                        done.add(name)
                        outcome = "DRY_RUN" if status == "DRY_RUN" else outcome
                    elif status == "CANCELLED":
                        cancelled = cancelled or not failure
                    else:
                        failure = failure or (name, error or "failed")
                        if not state.halt.is_set():
                            state.halt_reason = f"task {name!r} failed"
                            state.halt.set()
        except BaseException:
            # the broker is going down abruptly (a second Ctrl-C, a bug): leave the tasks running
            state.detached = True
            state.halt.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return self._finish(job_id, dag, done, failure, cancelled or self._stop.is_set(), outcome, state)

    def _finish(self, job_id: int, dag: Dag, done: set[str], failure: tuple[str, str] | None, cancelled: bool,
                outcome: str, state: _RunState) -> str:
        """Settle the tasks that never ran and the job, in one transaction."""
        rows = {t["task"]: t for t in self.db.tasks(job_id)}
        job_status = self.db.job(job_id).status
        if failure:
            final, error = "FAILED", f"task {failure[0]!r}: {failure[1]}"
        elif cancelled or job_status == "CANCELLED":
            final, error = "CANCELLED", f"cancelled: {state.halt_reason or 'the job was cancelled'}"
        else:
            final, error = outcome, None
        downstream = set(descendants(dag, failure[0])) if failure else set()
        with self.db.transaction() as tx:
            for name, t in rows.items():
                if t["status"] in ("PENDING", "RECOVERING", "PROVISIONING"):
                    if name in downstream:
                        self.db.set_task(job_id, name, status="FAILED", error=f"upstream task {failure[0]!r} failed",
                                         tx=tx)
                    elif final != "SUCCEEDED" and final != "DRY_RUN":
                        self.db.set_task(job_id, name, status="CANCELLED", error=f"not run: {error}", tx=tx)
            if job_status == "CANCELLED" and final == "CANCELLED":
                self.db.set_job(job_id, release=True, tx=tx)  # keep the canceller's status and message
            else:
                self.db.set_job(job_id, status=final, error=error, release=True, tx=tx)
        log.info("job %d: %s%s", job_id, final, f" ({error.splitlines()[0]})" if error else "")
        return final

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

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        return call_provider(fn, what, self.options.call_timeout_s, self.options.call_tries)

    def _stop_quietly(self, provider: Provider, handle: Handle, what: str) -> None:
        try:
            self._call(functools.partial(provider.stop, handle), f"{what}: stop()")
        except ProviderUnresponsive as exc:
            log.error("%s; its resources may still run", exc)

    def _run_task(self, job_id: int, dag: Dag, task: Task, workdir: Path, state: _RunState,
                  attach: _Attach | None, recoveries: int) -> tuple[str, str | None]:
        """Place, launch (or re-attach to) and wait for one task; returns (status, error message)."""
        stored = self.db.attempts(job_id, task.name)
        attempt = max((a["attempt"] for a in stored), default=0)
        failures = sum(a["outcome"] in FAILED_LAUNCH for a in stored)
        resume = recoveries > 0
        what = f"job {job_id} task {task.name}"
        while True:
            if attach is not None:
                attempt_id, handle, cand, started = attach.attempt_id, attach.handle, attach.candidate, attach.started
                provider = provider_for_handle(handle)
                attach = None
                log.info("%s: re-attached to attempt %d (%s)", what, attempt, handle.get("pid", handle))
            else:
                if state.halt.is_set():
                    return ("DETACHED", None) if state.detached else self._cancel_task(job_id, task, None, state)
                attempt += 1
                with state.lock:
                    blocked, fixed = list(state.blocked), dict(state.fixed)
                fixed.pop(task.name, None)
                try:
                    plan = optimize(dag, self.catalog, blocked=blocked, fixed=fixed, n_alternatives=0)
                except NoFeasiblePlan as exc:
                    return self._fail(job_id, task, f"no placement left after {failures} failed launch(es): {exc}")
                cand = plan.placement(task.name).candidate
                provider = self.router(cand)
                request = self._request(job_id, dag, task, attempt, cand, resume, workdir)
                where = placement_dict(cand)
                with self.db.transaction() as tx:
                    attempt_id = self.db.start_attempt(job_id, task.name, attempt, where, provider.name, tx=tx)
                    self.db.set_task(job_id, task.name, status="PROVISIONING", placement=where,
                                     provider=provider.name, tx=tx)
                log.info("%s attempt %d: %s via %s", what, attempt, cand.label(), provider.name)
                try:
                    handle = call_with_timeout(functools.partial(provider.launch, request),
                                               self.options.attempt_timeout_s, on_late=provider.stop,
                                               cancel=state.halt)
                except LaunchCancelled:
                    if state.detached:  # the attempt stays LAUNCHING: reconcile looks for its handle file
                        return "DETACHED", None
                    return self._cancel_task(job_id, task, attempt_id, state)
                except (ProvisionError, LaunchTimeout, OSError, RuntimeError) as exc:
                    outcome = (f"{exc.kind.upper()}_ERROR" if isinstance(exc, ProvisionError)
                               else "TIMEOUT" if isinstance(exc, LaunchTimeout) else "LAUNCH_ERROR")
                    block = block_for(exc, cand)
                    self.db.end_attempt(attempt_id, outcome, str(exc))
                    with state.lock:
                        state.blocked.append(block)
                    failures += 1
                    log.warning("%s: %s on %s (%s); blocked %s, failing over", what, outcome, cand.label(), exc,
                                block)
                    if failures >= self.options.max_attempts:
                        return self._fail(job_id, task, f"gave up after {failures} failed launches (last: {exc})")
                    continue
                started = time.time()
                with self.db.transaction() as tx:
                    self.db.end_attempt(attempt_id, "RUNNING", final=False, handle=handle, tx=tx)
                    self.db.set_task(job_id, task.name, status="RUNNING", handle=handle,
                                     cost_usd=plan.placement(task.name).cost_usd, tx=tx)
                with state.lock:
                    state.fixed[task.name] = cand  # siblings re-optimise around where this one runs
            try:
                status, reason = self._wait(job_id, provider, handle, task, started, state)
            except _Detach:
                return "DETACHED", None
            except ProviderUnresponsive as exc:
                self._stop_quietly(provider, handle, what)
                self.db.end_attempt(attempt_id, "UNREACHABLE", str(exc))
                return self._fail(job_id, task, str(exc))
            if status in (JobStatus.SUCCEEDED, JobStatus.DRY_RUN):
                with self.db.transaction() as tx:
                    self.db.end_attempt(attempt_id, status.value, tx=tx)
                    self.db.set_task(job_id, task.name, status=status.value, recoveries=recoveries, tx=tx)
                return status.value, None
            if reason is not None:  # ran past max_runtime_s; already stopped
                self.db.end_attempt(attempt_id, "MAX_RUNTIME", reason)
                return self._fail(job_id, task, reason)
            if status == JobStatus.PREEMPTED:
                self.db.end_attempt(attempt_id, "PREEMPTED", "spot capacity reclaimed")
                recoveries += 1
                self.db.set_task(job_id, task.name, status="RECOVERING", recoveries=recoveries)
                with state.lock:
                    state.fixed.pop(task.name, None)
                    state.blocked.append(block_for(ProvisionError("preempted"), cand))
                if recoveries > self.options.max_recoveries:
                    return self._fail(job_id, task, f"preempted {recoveries} times (max_recoveries "
                                                    f"{self.options.max_recoveries})")
                resume = True
                continue
            if status == JobStatus.STOPPED:
                return self._cancel_task(job_id, task, attempt_id, state)
            try:
                tail = self._call(functools.partial(provider.logs, handle), f"{what}: logs()")[-2000:]
            except ProviderUnresponsive as exc:
                tail = f"(logs unavailable: {exc})"
            self.db.end_attempt(attempt_id, "FAILED", tail)
            return self._fail(job_id, task, f"exited with an error; log tail:\n{tail}")

    def _cancel_task(self, job_id: int, task: Task, attempt_id: int | None, state: _RunState) -> tuple[str, str]:
        reason = f"stopped: {state.halt_reason or 'the job was cancelled'}"
        with self.db.transaction() as tx:
            if attempt_id is not None:
                self.db.end_attempt(attempt_id, "CANCELLED", reason, tx=tx)
            self.db.set_task(job_id, task.name, status="CANCELLED", error=reason, tx=tx)
        return "CANCELLED", reason

    def _fail(self, job_id: int, task: Task, message: str) -> tuple[str, str]:
        self.db.set_task(job_id, task.name, status="FAILED", error=message)
        log.error("job %d task %s failed: %s", job_id, task.name, message)
        return "FAILED", message

    def _wait(self, job_id: int, provider: Provider, handle: Handle, task: Task, started: float,
              state: _RunState) -> tuple[JobStatus, str | None]:
        """Poll until the task ends. It is stopped (STOPPED) when the job halts, and stopped with a
        reason (the second value) when it runs past its ``max_runtime_s``."""
        what = f"job {job_id} task {task.name}"
        while True:
            status = self._call(functools.partial(provider.status, handle), f"{provider.name} status()")
            if status.terminal:
                return status, None
            ran = time.time() - started
            if task.max_runtime_s is not None and ran > task.max_runtime_s:
                self._stop_quietly(provider, handle, what)
                return JobStatus.STOPPED, (f"ran longer than max_runtime_s = {task.max_runtime_s:g} s "
                                           f"({ran:.1f} s); stopped")
            if not state.halt.is_set() and self.db.job(job_id).status == "CANCELLED":
                state.halt_reason = state.halt_reason or "the job was cancelled"
                state.halt.set()
            if state.detached:
                raise _Detach
            if state.halt.is_set() or self._stop.is_set():
                self._stop_quietly(provider, handle, what)
                return JobStatus.STOPPED, None
            wake = self.options.poll_s
            if task.max_runtime_s is not None:
                wake = min(wake, max(0.01, task.max_runtime_s - ran + 0.01))
            state.halt.wait(wake)


def reconcile(db: JobDB, job_id: int, call_timeout_s: float = 10.0, call_tries: int = 1) -> list[str]:
    """Bring job ``job_id`` up to date when its broker process is gone (``sky status --refresh``,
    in effect); returns what changed, one line each. A no-op while a live broker runs the job.

    Tasks that were RUNNING are settled from their stored handles (the local provider's exit
    files): SUCCEEDED, FAILED, CANCELLED, or left RUNNING when still running. A task the broker was
    launching gets the handle the provider left in a file, or goes back to PENDING. The job becomes
    INTERRUPTED (``paperzoo sky recover`` continues it)."""
    row = db.job(job_id)
    if row.status in JOB_TERMINAL or row.broker_alive:
        return []
    if row.broker_pid is None and row.status != "INTERRUPTED":
        return []  # submitted, never started (a detached worker may be about to start)
    changes: list[str] = []
    for t in db.tasks(job_id):
        if t["status"] not in ("PROVISIONING", "RUNNING"):
            continue
        name = t["task"]
        last = db.attempts(job_id, name)[-1:]
        if not last:
            db.set_task(job_id, name, status="PENDING")
            continue
        attempt = last[0]
        handle = attempt["handle"]
        if attempt["outcome"] == "LAUNCHING":
            handle = read_handle_file(Path(row.workdir) / name, attempt["attempt"])
            with db.transaction() as tx:
                if handle is None:
                    if db.end_attempt(attempt["attempt_id"], "ABANDONED", "the broker died while launching",
                                      expect="LAUNCHING", tx=tx):
                        db.set_task(job_id, name, status="PENDING", tx=tx)
                        changes.append(f"{name}: launch abandoned by the dead broker; will be relaunched")
                    continue
                if db.end_attempt(attempt["attempt_id"], "RUNNING", final=False, handle=handle,
                                  expect="LAUNCHING", tx=tx):
                    db.set_task(job_id, name, status="RUNNING", handle=handle, tx=tx)
            attempt = {**attempt, "outcome": "RUNNING"}
        if attempt["outcome"] != "RUNNING" or not handle:
            continue
        what = f"job {job_id} task {name}"
        try:
            provider = provider_for_handle(handle)
            status = call_provider(functools.partial(provider.status, handle), f"{what}: status()",
                                   call_timeout_s, call_tries)
        except (ProviderUnresponsive, ValueError) as exc:
            changes.append(f"{name}: state unknown ({exc})")
            continue
        if not status.terminal:
            changes.append(f"{name}: still running (attempt {attempt['attempt']})")
            continue
        error = None
        if status == JobStatus.FAILED:
            try:
                tail = call_provider(functools.partial(provider.logs, handle), f"{what}: logs()", call_timeout_s,
                                     call_tries)[-2000:]
            except ProviderUnresponsive as exc:
                tail = f"(logs unavailable: {exc})"
            error = f"exited with an error; log tail:\n{tail}"
        task_status = {JobStatus.SUCCEEDED: "SUCCEEDED", JobStatus.DRY_RUN: "DRY_RUN", JobStatus.FAILED: "FAILED",
                       JobStatus.STOPPED: "CANCELLED", JobStatus.PREEMPTED: "RECOVERING"}[status]
        outcome = "CANCELLED" if status == JobStatus.STOPPED else status.value
        with db.transaction() as tx:
            if db.end_attempt(attempt["attempt_id"], outcome, error, expect="RUNNING", tx=tx):
                recoveries = t["recoveries"] + 1 if status == JobStatus.PREEMPTED else None
                db.set_task(job_id, name, status=task_status, error=error, recoveries=recoveries, tx=tx)
                changes.append(f"{name}: {task_status} while the broker was gone (attempt {attempt['attempt']})")
    if row.status != "INTERRUPTED" or changes:
        who = f"process {row.broker_pid}" if row.broker_pid is not None else "process"
        db.set_job(job_id, status="INTERRUPTED", release=True,
                   error=f"the broker ({who}) died; continue with `paperzoo sky recover {job_id}`")
    for line in changes:
        log.info("job %d reconciled: %s", job_id, line)
    return changes


def cancel(db: JobDB, job_id: int, call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S) -> list[str]:
    """Mark the job cancelled and stop its running tasks; returns the tasks stopped."""
    row = db.job(job_id)
    stopped = []
    if row.status not in JOB_TERMINAL:
        db.set_job(job_id, status="CANCELLED", error="cancelled by `paperzoo sky down`")
    for task in db.tasks(job_id):
        if task["status"] in TASK_ACTIVE and task["handle"]:
            handle = task["handle"]
            try:
                provider = provider_for_handle(handle)
                call_provider(functools.partial(provider.stop, handle), f"job {job_id} task {task['task']}: stop()",
                              call_timeout_s, 1)
                stopped.append(task["task"])
            except ProviderUnresponsive as exc:
                log.error("%s; its resources may still run", exc)
        if task["status"] not in ("SUCCEEDED", "FAILED", "DRY_RUN", "CANCELLED"):
            db.set_task(job_id, task["task"], status="CANCELLED", error="cancelled by `paperzoo sky down`")
    return stopped


def job_logs(db: JobDB, job_id: int, task: str | None = None, call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S) -> str:
    """Every task's log of the job (or of one task): the latest attempt's."""
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
            provider = provider_for_handle(handle)
            text = call_provider(functools.partial(provider.logs, handle), f"{t['task']}: logs()", call_timeout_s, 1)
        except Exception as exc:  # noqa: BLE001 - e.g. the Ray cluster is gone
            text = f"(logs unavailable: {exc})"
        parts.append(f"{header} via {t['provider']}\n{text.rstrip()}")
    return "\n".join(parts) + "\n"


__all__ = ["Broker", "BrokerOptions", "LaunchTimeout", "NothingToRecover", "ProviderUnresponsive", "block_for",
           "call_provider", "call_with_timeout", "cancel", "descendants", "job_logs", "make_router",
           "placement_dict", "reconcile", "task_command"]
