"""Process and machine statistics for benchmarks: resident memory, its peak, CPU load, CPU model.

The head-to-head benchmarks under ``benchmarks/`` (ConvE vs PyKEEN, HGT vs PyG, subnetwork
Laplace vs laplace-torch) measure memory and machine load the same way, so that their numbers
mean the same thing; this module is that one way:

* memory: the process's resident set size (``VmRSS``) and its high-water mark (``VmHWM``), read
  from ``/proc/self/status``. The high-water mark can be reset to the current RSS by writing
  ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0), which gives the peak of one phase of a run;
* load: the share of the machine's CPU time that *other* processes used while something was
  measured (from ``/proc/stat``), since timings are only comparable on a quiet machine;
* the CPU model, for the record.

All of it is Linux-only. Elsewhere the functions degrade gracefully: they return ``None`` (or, for
:func:`peak_rss_mib`, fall back to ``getrusage``; for :func:`cpu_name`, to ``platform``) instead of
raising.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

__all__ = ["OtherLoad", "cpu_name", "cpu_ticks", "peak_rss_mib", "reset_peak_rss", "rss_mib", "run_json_child",
           "status_kib", "wait_until_quiet"]


def status_kib(key: str) -> int | None:
    """The value of ``key`` (e.g. ``"VmRSS"``) in ``/proc/self/status``, in KiB; None when unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    """Current resident set size of this process (``VmRSS``) in MiB; None when unavailable."""
    kib = status_kib("VmRSS")
    return None if kib is None else kib / 1024


def reset_peak_rss() -> bool:
    """Reset Linux's per-process RSS high-water mark (``VmHWM``) to the current RSS (Linux >= 4.0).

    Writes ``5`` to ``/proc/self/clear_refs``. Returns whether that worked; pass the result to
    :func:`peak_rss_mib`.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib(reset_ok: bool = True) -> float | None:
    """Peak resident set size of this process in MiB.

    With ``reset_ok`` (the default; pass what :func:`reset_peak_rss` returned), this is ``VmHWM``:
    the peak since the last successful reset. When ``reset_ok`` is False or ``VmHWM`` cannot be
    read, it is the process's lifetime peak from ``getrusage`` (``ru_maxrss``, read as KiB as on
    Linux), so a value is still reported but does not cover one phase only. None when neither is
    available.
    """
    if reset_ok:
        kib = status_kib("VmHWM")
        if kib is not None:
            return kib / 1024
    if resource is None:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024 if kib else None


def cpu_ticks() -> tuple[int, int]:
    """``(busy, total)`` clock ticks of all CPUs together since boot, from the first line of ``/proc/stat``.

    ``total`` sums user, nice, system, idle, iowait, irq, softirq and steal (guest time is already
    part of user); ``busy`` is ``total`` less idle and iowait. Raises ``OSError`` where there is no
    ``/proc/stat``.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


class OtherLoad:
    """Share of the machine's CPU time used by *other* processes between :meth:`start` and :meth:`stop`.

    Timings are only comparable on a quiet machine; this tells afterwards whether it was quiet.
    Construction calls :meth:`start`. :meth:`stop` returns the busy CPU ticks of the whole machine
    in the interval, less this process's own CPU time (``os.times()``: user and system time of
    the process and of its waited-for children), divided by all CPU ticks of the machine in the
    interval (every core counts, so one other process keeping one of 4 cores busy gives 0.25);
    clipped below at 0. None where ``/proc/stat`` cannot be read (not Linux).
    """

    def __init__(self) -> None:
        try:
            self.hz: int | None = os.sysconf("SC_CLK_TCK")  # the unit of /proc/stat
        except (AttributeError, ValueError, OSError):  # no os.sysconf on Windows
            self.hz = None
        self.start()

    def start(self) -> None:
        """(Re)start the interval."""
        try:
            self._ticks: tuple[int, int] | None = cpu_ticks()
        except (OSError, ValueError, IndexError):
            self._ticks = None
        self._own = sum(os.times()[:4])

    def stop(self) -> float | None:
        """Other processes' share of the CPU time since :meth:`start`, in [0, 1]; None when unknown."""
        if self._ticks is None or self.hz is None:
            return None
        try:
            busy0, total0 = self._ticks
            busy1, total1 = cpu_ticks()
            own = (sum(os.times()[:4]) - self._own) * self.hz
            return max(0.0, (busy1 - busy0 - own) / max(total1 - total0, 1))
        except (OSError, ValueError, IndexError):
            return None


def wait_until_quiet(max_wait: float, threshold: float = 0.05, quiet_seconds: int = 5,
                     interval: float = 1.0) -> float | None:
    """Block until other processes use less than ``threshold`` of the machine's CPU for ``quiet_seconds``
    consecutive probes of ``interval`` seconds, or until ``max_wait`` seconds have passed; return the last
    probe's share (None where the load cannot be read)."""
    deadline = time.monotonic() + max_wait
    quiet = 0
    while True:
        probe = OtherLoad()
        time.sleep(interval)
        share = probe.stop()
        if share is None:
            return None
        quiet = quiet + 1 if share < threshold else 0
        if quiet >= quiet_seconds or time.monotonic() >= deadline:
            return share


def run_json_child(cmd: list[str], threads: int, timeout: float, max_wait: float = 0.0) -> dict:
    """Run one benchmark child process and return its result: the JSON object on its last stdout line,
    merged with how loaded the machine was (``other_cpu`` while it ran, ``other_cpu_before`` after
    :func:`wait_until_quiet` for up to ``max_wait`` seconds, load averages) and ``child_wall_s``. The child
    gets ``threads`` OpenMP/MKL threads. A timeout, a non-zero exit or no output gives ``{"error": ...}``
    (with the stderr tail) instead of raising, so one failed measurement does not lose the others."""
    quiet = wait_until_quiet(max_wait) if max_wait > 0 else None
    load = OtherLoad()
    la0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    info = {"child_wall_s": time.perf_counter() - t0, "other_cpu": load.stop(), "other_cpu_before": quiet,
            "loadavg_start": la0, "loadavg_end": os.getloadavg()[0]}
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        err = res.stderr.strip().splitlines()
        return {**info, "error": err[-1] if err else f"rc {res.returncode}", "stderr_tail": err[-15:]}
    return {**info, **json.loads(lines[-1])}


def cpu_name() -> str:
    """The CPU model (``model name`` in ``/proc/cpuinfo``), else ``platform.processor()``, else ``"unknown"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(*distributions: str) -> dict[str, str | None]:
    """Python's version and the installed version of each distribution (``torch`` always), read from
    package metadata without importing anything; None for one that is not installed. Benchmarks record
    it beside their numbers."""
    import importlib.metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", *distributions):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out
