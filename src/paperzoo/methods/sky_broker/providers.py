"""Execution providers behind one interface: ``launch``, ``status``, ``stop``, ``logs``.

- :class:`LocalProvider` runs the task's ``setup`` and ``run`` commands as a detached subprocess on
  this machine (its own session, so it outlives the broker; its handle and, when it ends, its exit
  code land in files, so its status survives a restart of the CLI or the death of the broker).
- :class:`RayProvider` submits them to a Ray cluster through Ray's job submission API.
- :class:`DryRunCloudProvider` (AWS, GCP, Azure) needs no credentials and no network: ``launch``
  returns, and logs, the exact CLI command that would create the nodes.
- :class:`ChaosProvider` wraps another provider and injects capacity/quota errors, hanging
  launches (the first n, or every launch in some regions), hanging ``status()`` calls and spot
  preemptions (for failover tests and demos; ``paperzoo sky launch --chaos JSON``).

A handle is a JSON-serialisable dict stored in the job database; :func:`provider_for_handle`
rebuilds the provider that owns it, so ``status``, ``logs`` and ``down`` work from a new process.
"""
from __future__ import annotations

import enum
import json
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from paperzoo.core import io
from paperzoo.methods.sky_broker.optimizer import Candidate
from paperzoo.methods.sky_broker.state import process_start_time

log = logging.getLogger(__name__)

Handle = dict[str, Any]


class ProvisionError(RuntimeError):
    """The cloud refused the nodes; the broker blocks the resource and fails over."""

    kind = "provision"


class CapacityError(ProvisionError):
    """Not enough capacity of this type in this zone right now."""

    kind = "capacity"


class QuotaError(ProvisionError):
    """The account's quota for this type in this region is exhausted."""

    kind = "quota"


class JobStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    PREEMPTED = "PREEMPTED"
    DRY_RUN = "DRY_RUN"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.PENDING, JobStatus.RUNNING)


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a provider needs to start one attempt of one task."""

    job_id: int
    task: str
    attempt: int
    candidate: Candidate
    setup: str
    run: str
    env: Mapping[str, str]
    workdir: Path
    """The task's folder, shared by its attempts (checkpoints live in ``workdir/checkpoints``)."""
    log_path: Path

    @property
    def name(self) -> str:
        return f"sky-{self.job_id}-{self.task}-{self.attempt}".lower().replace("_", "-")

    def script(self) -> str:
        """The bash script of the task: cd to its folder, setup, run (stops at the first error)."""
        lines = ["set -e", f"cd {shlex.quote(str(self.workdir))}"]
        if self.setup.strip():
            lines.append(self.setup.strip())
        lines.append(self.run.strip() or "true")
        return "\n".join(lines) + "\n"


class Provider(Protocol):
    """What the broker needs from an execution backend."""

    name: str

    def launch(self, request: LaunchRequest) -> Handle:
        """Start the task; raise CapacityError/QuotaError when the resources are not available."""

    def status(self, handle: Handle) -> JobStatus: ...

    def stop(self, handle: Handle) -> None: ...

    def logs(self, handle: Handle) -> str: ...


# ------------------------------------------------------------------------------------- local
def handle_file(attempt_dir: str | os.PathLike, attempt: int) -> Path:
    """Where a provider may leave the handle of ``attempt`` as soon as it exists, before the broker
    records it: a broker killed between the two still finds what it launched."""
    return Path(attempt_dir) / f"attempt-{attempt}.handle.json"


def read_handle_file(attempt_dir: str | os.PathLike, attempt: int) -> Handle | None:
    """The handle left by :func:`handle_file`'s writer, or None."""
    path = handle_file(attempt_dir, attempt)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class LocalProvider:
    """Runs tasks as detached subprocesses of this machine, each in its own session.

    The task outlives the broker: its handle (pid, process start time, log and exit-file paths) is
    written to ``attempt-N.handle.json`` right after the start, and the wrapper script writes the
    exit code to ``attempt-N.exit`` (atomically) when the task ends, so a new process can tell
    running, succeeded, failed and killed apart; ``stop`` leaves ``attempt-N.exit.stopped``.
    """

    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}

    def launch(self, request: LaunchRequest) -> Handle:
        request.workdir.mkdir(parents=True, exist_ok=True)
        attempt_dir = request.log_path.parent
        script = attempt_dir / f"attempt-{request.attempt}.sh"
        exit_file = attempt_dir / f"attempt-{request.attempt}.exit"
        body = request.script()
        # the user's script runs in a child bash; its exit code is written atomically
        wrapper = (f"bash {shlex.quote(str(script))}.body\nrc=$?\n"
                   f"echo $rc > {shlex.quote(str(exit_file))}.tmp && mv {shlex.quote(str(exit_file))}.tmp "
                   f"{shlex.quote(str(exit_file))}\nexit $rc\n")
        io.write_text(f"{script}.body", body)
        io.write_text(script, wrapper)
        env = {**os.environ, **request.env}
        with open(request.log_path, "ab") as out:
            proc = subprocess.Popen(["bash", str(script)], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=request.workdir, start_new_session=True)
        self._children[proc.pid] = proc
        handle = {"provider": self.name, "pid": proc.pid, "start": process_start_time(proc.pid),
                  "log": str(request.log_path), "exit_file": str(exit_file)}
        io.write_json(handle_file(attempt_dir, request.attempt), handle)
        return handle

    def _alive(self, handle: Handle) -> bool:
        pid = int(handle["pid"])
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        start = handle.get("start")
        return start is not None and process_start_time(pid) == start

    def status(self, handle: Handle) -> JobStatus:
        exit_file = Path(handle["exit_file"])
        if Path(f"{exit_file}.stopped").exists():
            return JobStatus.STOPPED
        if exit_file.exists():
            return JobStatus.SUCCEEDED if exit_file.read_text().strip() == "0" else JobStatus.FAILED
        if self._alive(handle):
            return JobStatus.RUNNING
        if exit_file.exists():  # it ended between the two checks
            return JobStatus.SUCCEEDED if exit_file.read_text().strip() == "0" else JobStatus.FAILED
        return JobStatus.FAILED  # killed before it could write its exit code

    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        """SIGTERM the task's process group, SIGKILL it after ``grace_s``; works on tasks started by
        another (possibly dead) broker process too."""
        io.write_text(f"{handle['exit_file']}.stopped", "stopped\n")
        pid = int(handle["pid"])
        if not self._alive(handle):
            self._children.pop(pid, None)
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        child = self._children.pop(pid, None)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            gone = (child.poll() is not None) if child is not None else not self._alive(handle)
            if gone:
                return
            time.sleep(0.05)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if child is not None:
            child.wait()

    def logs(self, handle: Handle) -> str:
        path = Path(handle["log"])
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


# --------------------------------------------------------------------------------------- ray
def is_busy_answer(error: BaseException) -> bool:
    """Whether a Ray job-submission error is the cluster's "try again later" (HTTP 500/503 while its
    job agent starts or is overloaded) rather than a refusal of the job."""
    text = str(error).lower()
    return "try again later" in text or "no available agent" in text


class RayProvider:
    """Submits each task as a Ray job (``ray.job_submission.JobSubmissionClient``)."""

    name = "ray"

    busy_retry_s: float = 60.0
    """Seconds to keep resubmitting while the cluster answers "try again later"."""

    def __init__(self, address: str):
        if not address.startswith(("http://", "https://")):
            address = f"http://{address}"
        self.address = address
        self._client = None

    @property
    def client(self):
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise RuntimeError("the ray provider needs Ray: pip install 'ray[default]'") from None
            self._client = JobSubmissionClient(self.address)
        return self._client

    def launch(self, request: LaunchRequest) -> Handle:
        """Submit the task as a Ray job. A cluster that answers "try again later" (its job agent is
        still starting, or busy) is asked again with backoff for up to ``busy_retry_s`` seconds: that is
        the cluster warming up, not a failed placement, and must not block the offering."""
        request.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.busy_retry_s
        delay = 0.25
        while True:
            try:
                submission = self.client.submit_job(
                    entrypoint=f"bash -c {shlex.quote(request.script())}",
                    runtime_env={"env_vars": dict(request.env)},
                    metadata={"paperzoo_job": str(request.job_id), "task": request.task,
                              "attempt": str(request.attempt)})
                break
            except RuntimeError as exc:
                if not is_busy_answer(exc) or time.monotonic() + delay > deadline:
                    raise
                log.info("Ray at %s is busy (%s); submitting again in %.2g s", self.address, exc, delay)
                time.sleep(delay)
                delay = min(2 * delay, 5.0)
        return {"provider": self.name, "address": self.address, "submission_id": submission}

    def status(self, handle: Handle) -> JobStatus:
        value = str(self.client.get_job_status(handle["submission_id"])).rsplit(".", 1)[-1]
        return {"PENDING": JobStatus.PENDING, "RUNNING": JobStatus.RUNNING, "SUCCEEDED": JobStatus.SUCCEEDED,
                "FAILED": JobStatus.FAILED, "STOPPED": JobStatus.STOPPED}.get(value, JobStatus.FAILED)

    def stop(self, handle: Handle) -> None:
        self.client.stop_job(handle["submission_id"])

    def logs(self, handle: Handle) -> str:
        return self.client.get_job_logs(handle["submission_id"])


# ----------------------------------------------------------------------------------- dry run
UBUNTU_AMI_PARAMETER = "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
GCP_ACCELERATOR_TYPES = {"v100": "nvidia-tesla-v100", "t4": "nvidia-tesla-t4", "p100": "nvidia-tesla-p100",
                         "p4": "nvidia-tesla-p4", "k80": "nvidia-tesla-k80"}


def launch_command(cloud: str, request: LaunchRequest, script_path: Path) -> str:
    """The cloud CLI command that would create the nodes of ``request`` and run its script."""
    cand = request.candidate
    off = cand.offering
    q = shlex.quote
    if cloud == "aws":
        parts = ["aws ec2 run-instances", f"--region {off.region}",
                 f"--placement AvailabilityZone={off.zone}", f"--instance-type {off.instance_type}",
                 f"--count {cand.num_nodes}",
                 f"--image-id resolve:ssm:{UBUNTU_AMI_PARAMETER}"]
        if cand.use_spot:
            parts.append("--instance-market-options MarketType=spot")
        parts += [f"--tag-specifications 'ResourceType=instance,Tags=[{{Key=Name,Value={request.name}}}]'",
                  f"--user-data file://{q(str(script_path))}"]
    elif cloud == "gcp":
        names = " ".join(f"{request.name}-{i}" for i in range(cand.num_nodes))
        parts = [f"gcloud compute instances create {names}", f"--zone={off.zone}",
                 f"--machine-type={off.instance_type}"]
        if off.attached_accelerator and off.accelerator:
            acc = GCP_ACCELERATOR_TYPES.get(off.accelerator.lower(), off.accelerator.lower())
            parts.append(f"--accelerator=type={acc},count={off.accelerator_count}")
        if off.accelerator:
            parts.append("--maintenance-policy=TERMINATE")
        if cand.use_spot:
            parts.append("--provisioning-model=SPOT --instance-termination-action=DELETE")
        parts += ["--image-family=ubuntu-2204-lts --image-project=ubuntu-os-cloud",
                  f"--metadata-from-file=startup-script={q(str(script_path))}"]
    elif cloud == "azure":
        parts = [f"az vm create --resource-group paperzoo-sky --name {request.name}",
                 f"--location {off.region}", f"--size {off.instance_type}", f"--count {cand.num_nodes}",
                 "--image Ubuntu2204"]
        if cand.use_spot:
            parts.append("--priority Spot --eviction-policy Delete --max-price -1")
        parts.append(f"--custom-data {q(str(script_path))}")
    else:
        raise ValueError(f"no dry-run launcher for cloud {cloud!r} (known: aws, gcp, azure)")
    return " ".join(parts)


class DryRunCloudProvider:
    """A cloud provider that only says what it would launch (no credentials, no network)."""

    def __init__(self, cloud: str):
        if cloud not in ("aws", "gcp", "azure"):
            raise ValueError(f"no dry-run provider for cloud {cloud!r} (known: aws, gcp, azure)")
        self.cloud = cloud
        self.name = f"dryrun-{cloud}"

    def launch(self, request: LaunchRequest) -> Handle:
        script = request.log_path.parent / f"attempt-{request.attempt}.sh"
        io.write_text(script, "#!/bin/bash\n" + "".join(f"export {k}={shlex.quote(v)}\n"
                                                         for k, v in request.env.items()) + request.script())
        command = launch_command(self.cloud, request, script)
        io.write_text(request.log_path, f"[dry run] would launch:\n{command}\n")
        log.info("[dry run] %s", command)
        return {"provider": self.name, "command": command, "log": str(request.log_path)}

    def status(self, handle: Handle) -> JobStatus:
        return JobStatus.DRY_RUN

    def stop(self, handle: Handle) -> None:
        log.info("[dry run] nothing to stop for %s", handle.get("command", "")[:60])

    def logs(self, handle: Handle) -> str:
        return f"[dry run] would launch:\n{handle['command']}\n"


# ------------------------------------------------------------------------------------- chaos
@dataclass
class ChaosProvider:
    """Wraps a provider and injects failures, in launch order.

    The first ``fail_first`` launches raise ``error`` (capacity or quota); then the next
    ``hang_first`` launches hang for ``hang_s`` seconds before delegating; every launch in a
    ``hang_regions`` location (``cloud:region``) hangs for ``hang_s`` too (a region whose API does
    not answer); the first ``preempt_first`` successful launches report PREEMPTED after
    ``preempt_after_s`` (the inner job is stopped, as a spot reclaim would); the first
    ``status_hang_first`` ``status()`` calls hang for ``status_hang_s`` (an unresponsive control
    plane). :meth:`release` wakes every hanging call.
    """

    inner: Any
    fail_first: int = 0
    error: str = "capacity"
    hang_first: int = 0
    hang_s: float = 3600.0
    preempt_first: int = 0
    preempt_after_s: float = 1.0
    hang_regions: tuple[str, ...] = ()
    status_hang_first: int = 0
    status_hang_s: float = 3600.0
    launches: int = 0
    status_calls: int = 0
    _released: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.error not in ("capacity", "quota"):
            raise ValueError(f"ChaosProvider.error must be 'capacity' or 'quota', got {self.error!r}")
        self.name = getattr(self.inner, "name", "chaos")
        self.hang_regions = tuple(str(r).lower() for r in self.hang_regions)
        self._preempted = 0
        self._reclaimed: set[str] = set()

    def release(self) -> None:
        """Wake every hanging launch now (tests call this on teardown)."""
        self._released.set()

    def launch(self, request: LaunchRequest) -> Handle:
        with self._lock:
            self.launches += 1
            n = self.launches
        if n <= self.fail_first:
            cls = CapacityError if self.error == "capacity" else QuotaError
            raise cls(f"injected {self.error} error #{n} for {request.candidate.label()}")
        off = request.candidate.offering
        if n <= self.fail_first + self.hang_first or f"{off.cloud}:{off.region}".lower() in self.hang_regions:
            self._released.wait(self.hang_s)
        handle = self.inner.launch(request)
        with self._lock:
            if self._preempted < self.preempt_first:
                self._preempted += 1
                handle = {**handle, "preempt_at": time.time() + self.preempt_after_s}
        return handle

    def status(self, handle: Handle) -> JobStatus:
        with self._lock:
            self.status_calls += 1
            hang = self.status_calls <= self.status_hang_first
        if hang:
            self._released.wait(self.status_hang_s)
        key = repr(sorted(handle.items()))
        if key in self._reclaimed:
            return JobStatus.PREEMPTED
        status = self.inner.status(handle)
        if "preempt_at" in handle and not status.terminal and time.time() >= handle["preempt_at"]:
            self.inner.stop(handle)  # the node is reclaimed: the job dies mid-run
            self._reclaimed.add(key)
            return JobStatus.PREEMPTED
        return status

    def stop(self, handle: Handle) -> None:
        self.inner.stop(handle)

    def logs(self, handle: Handle) -> str:
        return self.inner.logs(handle)


CHAOS_FIELDS = ("fail_first", "error", "hang_first", "hang_s", "hang_regions", "preempt_first", "preempt_after_s",
                "status_hang_first", "status_hang_s")
"""The fault-injection settings a user may give (``--chaos '{"hang_regions": ["aws:us-east-1"]}'``)."""


def check_chaos(chaos: Mapping[str, Any], where: str = "chaos") -> None:
    """ValueError naming the field when ``chaos`` is not a valid set of :class:`ChaosProvider` settings."""
    if not isinstance(chaos, Mapping):
        raise ValueError(f"{where}: expected a JSON object of fault settings, got {chaos!r}")  # noqa: TRY004
    for key, value in chaos.items():
        if key not in CHAOS_FIELDS:
            raise ValueError(f"{where}.{key}: unknown field; known fields: {', '.join(CHAOS_FIELDS)}")
        if key == "error":
            if value not in ("capacity", "quota"):
                raise ValueError(f"{where}.error: must be 'capacity' or 'quota', got {value!r}")
        elif key == "hang_regions":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and ":" in v for v in value):
                raise ValueError(f"{where}.hang_regions: expected a list of 'cloud:region', got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{where}.{key}: expected a number >= 0, got {value!r}")


def provider_for_handle(handle: Handle) -> Provider:
    """The provider that owns a stored handle (a fresh instance, e.g. in a new CLI process)."""
    name = handle.get("provider", "")
    if name == "local":
        return LocalProvider()
    if name == "ray":
        return RayProvider(handle["address"])
    if name.startswith("dryrun-"):
        return DryRunCloudProvider(name.split("-", 1)[1])
    raise ValueError(f"unknown provider {name!r} in handle {handle}")
