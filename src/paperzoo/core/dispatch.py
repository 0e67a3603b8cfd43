"""Where the runs of a sweep, a tune or a reproduce execute: in this process, one after another, or fanned
out over a Ray cluster.

A :class:`Point` names one run folder and how to create it. :func:`run_point` does that run the way
``paperzoo sweep`` always has: a folder with ``metrics.json`` is finished and skipped, one with only
``config.yaml`` is resumed from its last checkpoint, otherwise the run is created. A backend runs a list of
points and returns the finished folders and the failures, so one failing point never loses the others:

* :class:`LocalBackend` (the default) runs them here, in order;
* :class:`RayBackend` runs each point as a Ray task (``ray.init`` + ``ray.remote`` + ``ray.wait``) that
  calls :func:`run_point` on a worker. The workers write straight into the run folders, so the output
  folder must be on a filesystem every node of the cluster sees (a local Ray instance trivially does).
  Re-running the same command after the driver was killed skips the finished points and resumes the
  rest, exactly as with the local backend.

Open a backend with :func:`open_backend` and use it as a context manager::

    with open_backend("ray", address="auto") as backend:
        done, failures = backend.run(points)
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
DEFAULT_CONNECT_TIMEOUT_S = 30.0
# Ray retries a task whose worker died (node lost, process killed); the retry resumes from the checkpoint.
RAY_MAX_RETRIES = 2

Failure = tuple[str, str]
"""``(run folder, "ErrorClass: message")`` of a point that did not finish."""


class RayConnectError(RuntimeError):
    """The Ray cluster named by ``--ray-address`` cannot be reached (or does not answer in time)."""


class PointTimeout(TimeoutError):
    """A point ran longer than the per-point timeout and was cancelled."""


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its folder, and the method, preset and overrides to create it with."""

    path: Path
    method: str
    preset: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    data_root: str | None = None

    @property
    def finished(self) -> bool:
        return (self.path / "metrics.json").exists()


def run_point(point: Point, *, threads: int | None = None) -> Path:
    """Run ``point`` to completion in this process and return its folder.

    A finished folder (``metrics.json`` present) is left alone; one holding only ``config.yaml`` is resumed
    from its last checkpoint; otherwise the run is created. ``threads``, if given, is torch's intra-op
    thread count for this run (put back afterwards); a method's own ``num_threads`` setting still wins.
    The run's log also goes to ``run.log`` in its folder.
    """
    import torch

    from paperzoo import runner

    if point.finished:
        return point.path
    if (point.path / "config.yaml").exists():
        run = runner.prepare(point.method, resume=point.path, data_root=point.data_root)
    else:
        run = runner.prepare(point.method, point.preset, run_dir=point.path, data_root=point.data_root,
                             overrides=point.overrides)
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        with run.logging_to_file():
            runner.execute(run)
    finally:
        torch.set_num_threads(before)
    return point.path


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"


class Backend:
    """Runs points; see :class:`LocalBackend` and :class:`RayBackend`."""

    name = "backend"

    def run(self, points: Sequence[Point]) -> tuple[list[Path], list[Failure]]:
        """Run every unfinished point; return the finished folders (in the order of ``points``) and the
        ``(folder, error)`` of those that failed."""
        todo = [p for p in points if not p.finished]
        if len(todo) < len(points):
            log.info("%d of %d points already finished, skipping them", len(points) - len(todo), len(points))
        failed = dict(self._run(todo)) if todo else {}
        done = [p.path for p in points if str(p.path) not in failed]
        return done, [(str(p.path), failed[str(p.path)]) for p in points if str(p.path) in failed]

    def _run(self, points: Sequence[Point]) -> list[Failure]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (a Ray connection it opened)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalBackend(Backend):
    """Run the points in this process, one after another."""

    name = "local"

    def __init__(self, *, cpus_per_point: int | None = None):
        self.threads = cpus_per_point

    def _run(self, points: Sequence[Point]) -> list[Failure]:
        failures = []
        for point in points:
            try:
                run_point(point, threads=self.threads)
            except Exception as exc:  # noqa: BLE001 -- one point failing must not lose the others
                log.error("%s failed: %s", point.path, exc)
                failures.append((str(point.path), _describe(exc)))
        return failures


def _ray_task(point: Point, threads: int) -> tuple[str, str | None]:
    """The body of one Ray task: run ``point`` on the worker; return ``(folder, error or None)``."""
    if not logging.getLogger().handlers:  # a fresh worker: show the run's log in the driver's output
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("paperzoo").setLevel(logging.INFO)  # and in the run folder's run.log
    try:
        run_point(point, threads=threads)
        return str(point.path), None
    except Exception as exc:  # noqa: BLE001 -- reported to the driver, which collects failures
        log.error("%s failed: %s", point.path, exc)
        return str(point.path), _describe(exc)


def parse_address(address: str | None) -> tuple[str, tuple[str, int] | None]:
    """Classify a ``--ray-address``: ``("local", None)`` for none/``local`` (start a Ray instance here),
    ``("auto", None)`` for ``auto`` (the cluster this machine belongs to), ``(address, (host, port))``
    for ``host:port`` (a cluster's GCS) or ``ray://host:port`` (Ray Client)."""
    if address is None or address.strip() in ("", "local"):
        return "local", None
    address = address.strip()
    if address == "auto":
        return "auto", None
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in hostport or not 0 < int(port) < 65536:
        raise ValueError(f"--ray-address {address!r}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    return address, (host.strip("[]"), int(port))


def probe(host: str, port: int, timeout_s: float) -> None:
    """Raise :class:`RayConnectError` unless a TCP connection to ``host:port`` opens within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise RayConnectError(f"cannot reach the Ray cluster at {host}:{port} ({reason} after at most "
                              f"{timeout_s:g} s); start one with `ray start --head --port {port}` there, or "
                              f"fix --ray-address") from None


def _not_main_thread_notice(record: logging.LogRecord) -> bool:
    """Drop Ray's notice that a driver connecting from a helper thread sets no SIGTERM handler: the CLI
    keeps Python's own handling of SIGTERM, so the notice would only be noise."""
    return "SIGTERM handler is not set" not in record.getMessage()


def _auth_hint() -> str:
    """Ray clusters started by Ray >= 2.52 require a token by default; a driver only sends one when
    ``RAY_AUTH_MODE=token`` is set, and otherwise retries as if the cluster did not answer."""
    if os.environ.get("RAY_AUTH_MODE"):
        return ""
    return ("; a cluster with token authentication also needs RAY_AUTH_MODE=token and its token in "
            "$RAY_AUTH_TOKEN or ~/.ray/auth_token")


def _init_with_timeout(timeout_s: float, what: str, *, wait_s: float | None = None, **kwargs: Any) -> None:
    """``ray.init(**kwargs)`` joining a running cluster, giving up after ``wait_s`` (default: ``timeout_s``,
    the limit the error names): Ray itself retries an address that does not answer for minutes, so the
    call runs in a helper thread that is abandoned on time-out. (Never use this to start Ray: the processes it starts die with the thread that started them.)"""
    import ray

    box: dict[str, BaseException] = {}

    def init() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
            box["error"] = exc

    ray_log = logging.getLogger("ray._private.worker")
    ray_log.addFilter(_not_main_thread_notice)
    thread = threading.Thread(target=init, name="paperzoo-ray-init", daemon=True)
    thread.start()
    thread.join(timeout_s if wait_s is None else wait_s)
    ray_log.removeFilter(_not_main_thread_notice)
    if thread.is_alive():
        raise RayConnectError(f"the Ray cluster at {what} did not answer within {timeout_s:g} s "
                              f"(is it a Ray head's GCS port? raise --ray-connect-timeout on a busy cluster)"
                              f"{_auth_hint()}")
    if "error" in box:
        exc = box["error"]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        refused = "failed to connect" in first.lower() or "auth" in first.lower()
        raise RayConnectError(f"cannot connect to the Ray cluster at {what}: {first}"
                              f"{_auth_hint() if refused else ''}") from None


class RayBackend(Backend):
    """Fan the points out over a Ray cluster, one Ray task per point.

    ``address``: ``None``/``"local"`` starts a Ray instance on this machine (or reuses the one this process
    is already connected to), ``"auto"`` joins the cluster this machine is part of, ``"host:port"`` a
    cluster's GCS and ``"ray://host:port"`` a Ray Client server. Connecting gives up with
    :class:`RayConnectError` after ``connect_timeout_s``.

    Each task reserves ``cpus_per_point`` CPUs and runs torch with as many threads. At most as many points
    are in flight as the cluster had CPUs for when connecting (at least one), so a point starts soon after
    it is submitted; ``point_timeout_s`` (measured from submission) cancels a point that runs longer, which
    is then reported as failed and resumes from its last checkpoint on the next run. Workers write into the
    run folders themselves: the folders must be on storage that every node shares.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_point: int | None = None,
                 point_timeout_s: float | None = None, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S):
        try:
            import ray
        except ImportError:
            raise RuntimeError("--backend ray needs Ray: pip install 'ray[default]>=2.40'") from None
        if cpus_per_point is not None and cpus_per_point < 1:
            raise ValueError(f"--cpus-per-point must be >= 1, got {cpus_per_point}")
        if point_timeout_s is not None and point_timeout_s <= 0:
            raise ValueError(f"--point-timeout must be > 0, got {point_timeout_s}")
        if connect_timeout_s <= 0:
            raise ValueError(f"--ray-connect-timeout must be > 0, got {connect_timeout_s}")
        self.cpus = cpus_per_point or 1
        self.point_timeout_s = point_timeout_s
        kind, hostport = parse_address(address)
        self.owns_connection = False
        if ray.is_initialized():
            log.info("using the Ray instance this process is already connected to")
        else:
            common = {"log_to_driver": True, "configure_logging": False}
            if kind == "local":  # in this thread: Ray ties the processes it starts to the starting thread
                ray.init(address="local", include_dashboard=False, **common)  # never a `ray start` cluster
            else:
                deadline = time.monotonic() + connect_timeout_s
                if hostport:
                    probe(*hostport, timeout_s=connect_timeout_s)
                _init_with_timeout(connect_timeout_s, address, wait_s=max(1.0, deadline - time.monotonic()),
                                   address=address, **common)
            self.owns_connection = True
        cpus = ray.cluster_resources().get("CPU", 0.0)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        largest = max((n.get("Resources", {}).get("CPU", 0.0) for n in nodes), default=0.0)
        if largest < self.cpus:
            log.warning("no node of the Ray cluster has %d free CPUs (largest: %g); points wait until one "
                        "joins%s", self.cpus, largest, "" if point_timeout_s else " (no --point-timeout set)")
        self.max_in_flight = max(1, int(cpus // self.cpus))
        log.info("Ray cluster: %g CPUs on %d node(s); %d CPU(s) per point, up to %d points at once",
                 cpus, len(nodes), self.cpus, self.max_in_flight)
        self._task = ray.remote(_ray_task).options(num_cpus=self.cpus, max_retries=RAY_MAX_RETRIES,
                                                   retry_exceptions=False)

    def _run(self, points: Sequence[Point]) -> list[Failure]:
        import ray

        queue = list(points)
        running: dict[Any, tuple[Point, float]] = {}
        failures: list[Failure] = []
        try:
            while queue or running:
                while queue and len(running) < self.max_in_flight:
                    point = queue.pop(0)
                    running[self._task.remote(point, self.cpus)] = (point, time.monotonic())
                ready, _ = ray.wait(list(running), num_returns=1, timeout=self._wait_s(running))
                for ref in ready:
                    point, _started = running.pop(ref)
                    try:
                        _path, error = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # worker crashed, task cancelled, out of memory
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        error = f"{exc.__class__.__name__}: {first}"
                    if error:
                        log.error("%s failed: %s", point.path, error)
                        failures.append((str(point.path), error))
                    else:
                        log.info("finished %s", point.path)
                if self.point_timeout_s is not None:
                    now = time.monotonic()
                    for ref, (point, started) in list(running.items()):
                        if now - started > self.point_timeout_s:
                            ray.cancel(ref, force=True)
                            del running[ref]
                            error = _describe(PointTimeout(
                                f"ran over --point-timeout {self.point_timeout_s:g} s and was cancelled; "
                                f"re-run to resume it from its last checkpoint"))
                            log.error("%s failed: %s", point.path, error)
                            failures.append((str(point.path), error))
        finally:
            for ref in running:  # interrupted: do not leave tasks writing into the folders
                ray.cancel(ref, force=True)
        return failures

    def _wait_s(self, running: Mapping[Any, tuple[Point, float]]) -> float:
        """How long to wait for a task: until the oldest point's timeout, at most a second (so that Ctrl-C
        is acted on at once whatever Ray does with signals while it waits)."""
        if self.point_timeout_s is None:
            return 1.0
        oldest = min(started for _, started in running.values())
        return min(1.0, max(0.05, oldest + self.point_timeout_s - time.monotonic()))

    def close(self) -> None:
        if self.owns_connection:
            import ray

            ray.shutdown()
            self.owns_connection = False


def open_backend(name: str = "local", *, address: str | None = None, cpus_per_point: int | None = None,
                 point_timeout_s: float | None = None,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> Backend:
    """The backend ``name`` (``local`` or ``ray``); see :class:`RayBackend` for the Ray options.

    ``address`` without a name implies ``ray``. The local backend runs points in this process and has no
    per-point timeout (stop it with Ctrl-C; re-running resumes).
    """
    if name not in BACKENDS:
        raise ValueError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")
    if name == "local":
        if address:
            raise ValueError(f"--ray-address {address!r} needs --backend ray")
        if point_timeout_s is not None:
            raise ValueError("--point-timeout needs --backend ray (the local backend runs points in this "
                             "process and cannot stop one)")
        if cpus_per_point is not None and cpus_per_point < 1:
            raise ValueError(f"--cpus-per-point must be >= 1, got {cpus_per_point}")
        return LocalBackend(cpus_per_point=cpus_per_point)
    return RayBackend(address, cpus_per_point=cpus_per_point, point_timeout_s=point_timeout_s,
                      connect_timeout_s=connect_timeout_s)


def run_points(points: Sequence[Point], backend: Backend | None = None) -> tuple[list[Path], list[Failure]]:
    """Run ``points`` on ``backend`` (default: a :class:`LocalBackend`)."""
    return (backend or LocalBackend()).run(points)

