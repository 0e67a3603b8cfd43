"""The README fault table of issue 20, measured: each fault injected through the real ``paperzoo`` CLI.

For every case the script starts ``paperzoo`` in a new process (its own process group, in a temporary
folder), injects the fault, and measures the wall time from the injection (or, where the fault is in
the input, from the command's start) to the process's exit. It records the exit code and the stderr
line(s) the user sees, and checks that the process exited, that no Python traceback reached stderr
and that no process of the run (its process group, and the groups of the agents / tasks it started)
is left behind. Every case has a hard timeout: a case that runs past it is reported as ``HANGS``.

Prints a Markdown table (fault | what the user sees | exit code | seconds: median and range over the
repeats) and writes the raw results to ``benchmarks/robustness/results/fault_table.json``::

    PAPERZOO_DATA=/work/shared/data .venv/bin/python benchmarks/robustness/fault_table.py [--repeats 3]
        [--cases dgcn_kill,sky_sigterm,...] [--data-root DIR] [--case-timeout 120] [--out FILE]

``--cases`` takes case names or the groups ``dgcn``, ``sky``, ``catalog``, ``input``, ``ckpt``, ``ray``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from paperzoo.core.io import write_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SKYPILOT_CATALOG = REPO / "tests" / "methods" / "sky_broker" / "skypilot_catalog"
DGCN_FAULT_ENV = "PAPERZOO_DGCN_TEST_FAULT"  # test hook of paperzoo.methods.dist_gcn.worker
COMM_TIMEOUT = 3.0  # dist_gcn --set comm_timeout=3 (the robustness tests' value)
GROUP_GRACE_S = 3.0  # a killed process's children may need a moment to be reaped


# ------------------------------------------------------------------------------------------ processes
def paperzoo_argv() -> list[str]:
    """The installed ``paperzoo`` console script next to this interpreter, else ``python -m paperzoo.cli``."""
    script = Path(sys.executable).with_name("paperzoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "paperzoo.cli"]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Hang(Exception):
    """The process under test did not exit before the case's hard timeout."""


class SetupFailed(Exception):
    """The case could not bring the process to the point where the fault is injected."""


@dataclass
class Proc:
    """A ``paperzoo`` process started by a case, in its own process group, output to files."""

    popen: subprocess.Popen
    out: Path
    err: Path
    started: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


@dataclass
class Row:
    """One measured line of the table."""

    fault: str
    timed_from: str
    code: int | None = None
    seconds: float | None = None
    seen: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | HANGS | SETUP FAILED | ERROR
    problems: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)


class Case:
    """The context of one repeat of one case: its temp folder, environment, deadline, processes."""

    def __init__(self, name: str, root: Path, data_root: Path, timeout: float, shared: dict):
        self.name, self.data_root, self.shared = name, data_root, shared
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.env = {**os.environ, "PAPERZOO_DATA": str(data_root), "PAPERZOO_SKY_HOME": str(self.tmp / "sky"),
                    "PAPERZOO_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.env.pop(DGCN_FAULT_ENV, None)
        self.procs: list[Proc] = []
        self.rows: list[Row] = []
        self.groups: set[int] = set()  # process groups that must be gone when the case ends
        self.placeholders: list[tuple[str, str]] = [(str(self.tmp), "TMP")]

    def row(self, fault: str, timed_from: str) -> Row:
        """A new row of this case, kept so that a hang or failure later in the case is reported on it."""
        self.rows.append(Row(fault, timed_from))
        return self.rows[-1]

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def start(self, *argv: str, env: dict | None = None, python: bool = False) -> Proc:
        """``paperzoo ARGV`` (or ``python ARGV`` with ``python=True``) in a new process group."""
        n = len(self.procs)
        out, err = self.tmp / f"proc{n}.out", self.tmp / f"proc{n}.err"
        cmd = [sys.executable, *argv] if python else [*paperzoo_argv(), *argv]
        with open(out, "w") as fo, open(err, "w") as fe:
            popen = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env or self.env,
                                     cwd=self.tmp, start_new_session=True)
        proc = Proc(popen, out, err, time.monotonic())
        self.procs.append(proc)
        self.groups.add(proc.pid)
        return proc

    def wait(self, proc: Proc, what: str = "the command") -> float:
        """Wait for ``proc`` to exit (at most until the case's deadline); the monotonic exit time."""
        try:
            proc.popen.wait(timeout=self.remaining())
        except subprocess.TimeoutExpired:
            raise Hang(f"{what} (pid {proc.pid}) still running {self.timeout:g} s into the case") from None
        return time.monotonic()

    def wait_for(self, predicate: Callable[[], bool], what: str, proc: Proc | None = None) -> None:
        """Poll ``predicate`` until true; a setup failure if ``proc`` exits first or the deadline passes."""
        while not predicate():
            if proc is not None and proc.popen.poll() is not None:
                raise SetupFailed(f"exited with {proc.popen.returncode} before {what}: {proc.stderr()[-1500:]}")
            if time.monotonic() > self.deadline:
                raise SetupFailed(f"timed out waiting for {what}")
            time.sleep(0.05)

    def shorten(self, text: str) -> str:
        for path, name in sorted(self.placeholders, key=lambda p: -len(p[0])):
            text = text.replace(path + "/", name + "/").replace(path, name)
        text = text.replace(str(self.data_root), "DATA")
        text = re.sub(r"created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "created DATE", text)
        for pid in self.groups:
            text = re.sub(rf"\b{pid}\b", "PID", text)
        return text

    def seen(self, proc: Proc) -> list[str]:
        """The stderr lines the user reads: those starting with ``paperzoo`` or containing ``error:``."""
        return [self.shorten(ln) for ln in proc.stderr().splitlines()
                if ln.startswith("paperzoo") or "error:" in ln]

    def finish_row(self, row: Row, proc: Proc, t0: float, *, error_lines: int | None = 1,
                   expect_code: int | None = 2) -> Row:
        """Wait for ``proc``, fill ``row`` (code, seconds from ``t0``, the lines seen) and check it."""
        end = self.wait(proc)
        row.code, row.seconds = proc.popen.returncode, end - t0
        row.seen = self.seen(proc)
        err = proc.stderr()
        if "Traceback" in err:
            row.problems.append("traceback on stderr: " + self.shorten(err[err.index("Traceback"):][:1500]))
        if error_lines is not None:
            n = sum("error:" in ln for ln in row.seen)
            if n != error_lines:
                row.problems.append(f"{n} error lines on stderr (expected {error_lines})")
        if expect_code is not None and row.code != expect_code:
            row.problems.append(f"exit code {row.code} (expected {expect_code})")
        return row

    def check_groups(self, rows: list[Row]) -> None:
        """No process of any registered group left (after a short grace); kill and report leftovers."""
        end = time.monotonic() + GROUP_GRACE_S
        left = {g: group_members(g) for g in self.groups}
        while any(left.values()) and time.monotonic() < end:
            time.sleep(0.05)
            left = {g: group_members(g) for g in self.groups}
        left = {g: m for g, m in left.items() if m}
        if left:
            cmdlines = {}
            for members in left.values():
                for pid in members:
                    try:
                        cmdlines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200].decode()
                    except OSError:
                        pass
            for row in rows:
                row.problems.append(f"left running after the exit: {cmdlines or left}")
            for g in left:
                kill_group(g)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                kill_group(proc.pid)
                proc.popen.wait()
        for g in self.groups:
            kill_group(g)


# ----------------------------------------------------------------------------------------- dist_gcn
def _dgcn_start(case: Case, fault: str | None = None) -> tuple[Proc, Path, list[int]]:
    """A never-ending tiny 3-agent run; returns once every agent has checkpointed (training under way)."""
    run = case.tmp / "run"
    case.placeholders.append((str(run), "RUN"))
    env = dict(case.env)
    if fault:
        env[DGCN_FAULT_ENV] = fault
    proc = case.start("run", "dist_gcn", "--preset", "tiny", "--nprocs", "3", "--set", "iterations=1000000",
                      "--set", "eval_every=5", "--set", f"comm_timeout={COMM_TIMEOUT:g}", "--run-dir", str(run),
                      env=env)
    ckpts = [run / "checkpoints" / f"last-agent{r}.pt" for r in range(3)]
    case.wait_for(lambda: all(c.exists() for c in ckpts), "every agent checkpointed", proc)
    pids = [a["pid"] for a in json.loads((run / "workers" / "agents.json").read_text())["agents"]]
    case.groups.update(pids)  # each agent leads its own process group
    return proc, run, pids


def _dgcn_signal(case: Case, sig: signal.Signals, rank: int, fault: str) -> list[Row]:
    proc, run, pids = _dgcn_start(case)
    row = case.row(fault, "the signal")
    t0 = time.monotonic()
    os.kill(pids[rank], sig)
    case.finish_row(row, proc, t0)
    _dgcn_intact(run, row)
    return [row]


def _dgcn_intact(run: Path, row: Row) -> None:
    if not (run / "config.yaml").exists() or not all(
            (run / "checkpoints" / f"last-agent{r}.pt").exists() for r in range(3)):
        row.problems.append("the run folder lost its config or an agent's checkpoint")


def case_dgcn_kill(case: Case) -> list[Row]:
    return _dgcn_signal(case, signal.SIGKILL, 1,
                        f"dist_gcn (3 agents, comm_timeout={COMM_TIMEOUT:g}): agent 1 SIGKILLed mid-run")


def case_dgcn_stop(case: Case) -> list[Row]:
    return _dgcn_signal(case, signal.SIGSTOP, 2,
                        f"dist_gcn (3 agents, comm_timeout={COMM_TIMEOUT:g}): agent 2 SIGSTOPped mid-run")


def case_dgcn_hang(case: Case) -> list[Row]:
    proc, run, _ = _dgcn_start(case, fault="1:12:hang")
    row = case.row(f"dist_gcn (3 agents, comm_timeout={COMM_TIMEOUT:g}): agent 1 hangs at consensus round 12 "
              f"(${DGCN_FAULT_ENV}=1:12:hang)", "the hung agent's last heartbeat")
    case.finish_row(row, proc, time.monotonic())
    exited = time.time()
    row.seconds = exited - (run / "workers" / "rank1.heartbeat").stat().st_mtime
    _dgcn_intact(run, row)
    return [row]


# --------------------------------------------------------------------------------------- sky broker
def _sky_job(case: Case, name: str, text: str) -> Path:
    path = case.tmp / f"{name}.yaml"
    path.write_text(text)
    return path


def _db(case: Case):
    from paperzoo.methods.sky_broker.state import JobDB

    return JobDB(case.tmp / "sky" / "state.db")


def _task_status(case: Case, task: str, job: int = 1) -> str | None:
    if not (case.tmp / "sky" / "state.db").exists():
        return None
    try:
        return {t["task"]: t["status"] for t in _db(case).tasks(job)}.get(task)
    except (KeyError, sqlite3.Error):  # the job is not created yet, or the database is being created
        return None


def _launch(case: Case, job: Path, *extra: str) -> Proc:
    case.placeholders.append((str(case.tmp / "sky"), "SKY_HOME"))
    return case.start("sky", "launch", str(job), "--data-root", str(case.data_root), *extra)


def case_sky_kill_recover(case: Case) -> list[Row]:
    from paperzoo.methods.sky_broker.state import process_start_time

    marker, go = case.tmp / "marker", case.tmp / "go"
    job = _sky_job(case, "three", f"""name: three
tasks:
  - name: a
    run: echo a >> {marker}
  - name: b
    depends_on: [a]
    run: echo b >> {marker}; while [ ! -f {go} ]; do sleep 0.02; done; echo b-done
  - name: c
    depends_on: [b]
    run: echo c >> {marker}
""")
    broker = _launch(case, job)
    case.wait_for(lambda: _task_status(case, "b") == "RUNNING", "task b to run", broker)
    db = _db(case)
    b_pid = db.tasks(1)[1]["handle"]["pid"]
    case.groups.add(b_pid)  # the task leads its own group: it must outlive the broker, and end after recover
    kill = case.row("sky: broker SIGKILLed while task b of a 3-task DAG runs", "the signal")
    t0 = time.monotonic()
    broker.popen.kill()
    case.finish_row(kill, broker, t0, error_lines=None, expect_code=-signal.SIGKILL)
    if process_start_time(b_pid) is None:
        kill.problems.append("task b did not outlive its broker")
    kill.seen = ["(nothing: the broker is gone; task b keeps running)"]

    status = case.row("... then `paperzoo sky status 1`", "the command's start")
    t0 = time.monotonic()
    proc = case.start("sky", "status", "1")
    case.finish_row(status, proc, t0, error_lines=0, expect_code=0)
    status.seen = [case.shorten(ln.strip()) for ln in proc.stdout().splitlines()
                   if "INTERRUPTED" in ln or "sky recover" in ln] or status.seen
    if "three: INTERRUPTED" not in proc.stdout() or "sky recover 1" not in proc.stdout():
        status.problems.append(f"status does not say INTERRUPTED / sky recover 1: {proc.stdout()[-800:]}")

    recover = case.row("... then `paperzoo sky recover 1` (task b finishes once recover has re-attached)",
                  "the command's start")
    t0 = time.monotonic()
    proc = case.start("sky", "recover", "1")
    case.wait_for(lambda: db.job(1).broker_pid == proc.pid, "recover to claim the job", proc)
    recover.detail["claimed_s"] = time.monotonic() - t0
    go.touch()
    case.finish_row(recover, proc, t0, error_lines=0, expect_code=0)
    recover.seen = ([case.shorten(ln) for ln in proc.stdout().splitlines() if "three:" in ln]
                    + [case.shorten(ln.split(": ", 1)[-1]) for ln in proc.stderr().splitlines()
                       if "re-attached" in ln])
    attempts = {n: [(a["attempt"], a["outcome"]) for a in db.attempts(1, n)] for n in ("a", "b", "c")}
    recover.detail.update(attempts=attempts, marker=marker.read_text().split(), job_status=db.job(1).status)
    if any(v != [(1, "SUCCEEDED")] for v in attempts.values()):
        recover.problems.append(f"not exactly one successful attempt per task: {attempts}")
    if marker.read_text().split() != ["a", "b", "c"]:
        recover.problems.append(f"tasks started {marker.read_text().split()} (expected a b c once each)")
    if db.job(1).status != "SUCCEEDED":
        recover.problems.append(f"job status {db.job(1).status}")
    return [kill, status, recover]


def case_sky_sigterm(case: Case) -> list[Row]:
    job = _sky_job(case, "two", "name: two\ntasks:\n  - name: a\n    run: sleep 60\n"
                               "  - name: b\n    depends_on: [a]\n    run: echo never\n")
    broker = _launch(case, job)
    case.wait_for(lambda: _task_status(case, "a") == "RUNNING", "task a to run", broker)
    case.groups.add(_db(case).tasks(1)[0]["handle"]["pid"])
    row = case.row("sky: broker SIGTERMed while task a (`sleep 60`) runs", "the signal")
    t0 = time.monotonic()
    broker.popen.send_signal(signal.SIGTERM)
    case.finish_row(row, broker, t0, expect_code=128 + signal.SIGTERM)
    db = _db(case)
    row.detail["tasks"] = [t["status"] for t in db.tasks(1)]
    if row.detail["tasks"] != ["CANCELLED", "CANCELLED"]:
        row.problems.append(f"task states {row.detail['tasks']}")
    return [row]


def case_sky_status_hang(case: Case) -> list[Row]:
    job = _sky_job(case, "one", "name: one\nrun: sleep 60\n")
    chaos = json.dumps({"status_hang_first": 99, "status_hang_s": 120})
    row = case.row("sky: the provider's status() hangs (--chaos status_hang; --call-timeout 0.5 --call-tries 2)",
              "the command's start")
    t0 = time.monotonic()
    proc = _launch(case, job, "--chaos", chaos, "--call-timeout", "0.5", "--call-tries", "2")

    def register_task() -> bool:  # the task's process must be stopped, as it cannot be observed
        try:
            case.groups.add(_db(case).tasks(1)[0]["handle"]["pid"])
            return True
        except (KeyError, IndexError, TypeError, sqlite3.Error):
            return proc.popen.poll() is not None
    case.wait_for(register_task, "the task to start")
    case.finish_row(row, proc, t0, expect_code=1)
    return [row]


def case_sky_region_hang(case: Case) -> list[Row]:
    from paperzoo.methods.sky_broker.catalog import load_catalog
    from paperzoo.methods.sky_broker.optimizer import optimize
    from paperzoo.methods.sky_broker.spec import load_dag

    job = _sky_job(case, "one", "name: one\nresources: {cpus: 2}\nrun: echo ran in $SKY_CLOUD:$SKY_REGION\n")
    best = optimize(load_dag(job), load_catalog(None, data_root=case.data_root)).placement("one").candidate.offering
    region = f"{best.cloud}:{best.region}"
    row = case.row("sky: launches in the cheapest region hang (--chaos hang_regions; --attempt-timeout 0.5)",
              "the command's start")
    t0 = time.monotonic()
    proc = _launch(case, job, "--attempt-timeout", "0.5", "--chaos",
                   json.dumps({"hang_regions": [region], "hang_s": 120}))
    case.finish_row(row, proc, t0, error_lines=0, expect_code=0)
    row.seen = ([case.shorten(ln.split(": ", 1)[-1]) for ln in proc.stderr().splitlines() if "TIMEOUT" in ln]
                + [case.shorten(ln) for ln in proc.stdout().splitlines()
                   if ln.startswith("job 1") and "SUCCEEDED" in ln])
    attempts = [(f"{a['cloud']}:{a['region']}" == region, a["outcome"]) for a in _db(case).attempts(1)]
    row.detail["attempts"] = attempts
    if attempts != [(True, "TIMEOUT"), (False, "SUCCEEDED")]:
        row.problems.append(f"attempts {attempts} (expected one TIMEOUT in the hung region, then success)")
    return [row]


# ------------------------------------------------------------------------------------------ catalog
CATALOG_JOB = """name: fault-job
tasks:
  - name: prep
    resources: {cpus: 4+}
    runtime_h: 1.0
    outputs: {size_gb: 10}
  - name: train
    depends_on: [prep]
    resources: {accelerators: {V100: 1}}
    runtime_h: 2.0
"""


def _catalog(case: Case, fault: str, cloud: str, row_text: str) -> list[Row]:
    catalog = case.tmp / "catalog"
    shutil.copytree(SKYPILOT_CATALOG, catalog)
    case.placeholders.append((str(catalog), "CATALOG"))
    vms = catalog / cloud / "vms.csv"
    vms.write_text(vms.read_text() + row_text + "\n")
    job = _sky_job(case, "job", CATALOG_JOB)
    row = case.row(f"sky plan: {fault} in a SkyPilot catalog ({cloud}/vms.csv)", "the command's start")
    t0 = time.monotonic()
    proc = case.start("sky", "plan", str(job), "--catalog", str(catalog))
    case.finish_row(row, proc, t0)
    return [row]


def case_catalog_short_row(case: Case) -> list[Row]:
    return _catalog(case, "short row (8 of 10 fields)", "aws", "m6i.large,,,2.0,8.0,,0.096,0.04")


def case_catalog_bad_price(case: Case) -> list[Row]:
    return _catalog(case, "non-numeric price", "azure", "Standard_F8s_v2,,,8.0,16,,n/a,0.07,eastus,V2")


def case_catalog_unknown_accelerator(case: Case) -> list[Row]:
    return _catalog(case, "unknown accelerator", "gcp",
                    "n1-standard-4,4.0,15.0,Tesla-V1OO,1,,us-central1,us-central1-a,0.19,0.04")


# -------------------------------------------------------------------------------------- bad input
MISMATCH = """
import torch
from paperzoo.methods.deep_align import DeepAlign, matching
from paperzoo.methods.deep_align.nets import MLPArch, unbatch
torch.set_num_threads(1)
arch, wider = MLPArch((16, 16, 16, 4)), MLPArch((16, 16, 24, 4))
a = arch.init(1, torch.Generator().manual_seed(0))
b = wider.init(1, torch.Generator().manual_seed(1))
try:
    if {align}:
        torch.manual_seed(0)
        DeepAlign(arch, hidden=4, depth=2, out_dim=8).align(a, b)
    else:
        matching.weight_matching(arch.spec(), unbatch(a, 0), unbatch(b, 0))
except Exception as exc:
    print("is a ValueError:", isinstance(exc, ValueError))
    raise
"""


def _mismatch(case: Case, align: bool) -> list[Row]:
    what = "DeepAlign.align" if align else "deep_align.matching.weight_matching"
    row = case.row(f"{what} on MLPs of different widths (16 vs 24; public API, `python -c`, no CLI path)",
              "the command's start")
    t0 = time.monotonic()
    proc = case.start("-c", MISMATCH.format(align=align), python=True)
    end = case.wait(proc)
    row.code, row.seconds = proc.popen.returncode, end - t0
    lines = proc.stderr().strip().splitlines()
    row.seen = [case.shorten(lines[-1])] if lines else []
    # a library call: the exception (with Python's traceback) is the interface; it must be a ValueError
    # naming the tensor, raised by the check and not by torch deep inside the computation
    row.detail["traceback_expected"] = True
    if "is a ValueError: True" not in proc.stdout() or not (
            lines and re.match(r"[\w.]+: (network b: )?tensor layer1\.weight has shape", lines[-1])):
        row.problems.append(f"not a ValueError naming the tensor: {lines[-1:]}, {proc.stdout()!r}")
    if row.code != 1:
        row.problems.append(f"exit code {row.code} (expected 1: an uncaught exception)")
    return [row]


def case_mismatch_matching(case: Case) -> list[Row]:
    return _mismatch(case, align=False)


def case_mismatch_align(case: Case) -> list[Row]:
    return _mismatch(case, align=True)


def case_kg_bad_line(case: Case) -> list[Row]:
    folder = case.tmp / "kg"
    folder.mkdir()
    (folder / "train.txt").write_bytes(b"a\tr\tb\nb\tr\tc\nc\tr\n")
    (folder / "valid.txt").write_bytes(b"a\tr\tb\n")
    (folder / "test.txt").write_bytes(b"b\tr\tc\n")
    case.placeholders.append((str(folder), "KG"))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    row = case.row("`paperzoo data audit-kg` on a triple file whose line 3 has 2 fields", "the command's start")
    t0 = time.monotonic()
    proc = case.start("data", "audit-kg", str(folder))
    case.finish_row(row, proc, t0)
    if {p.name: p.read_bytes() for p in folder.iterdir()} != before:
        row.problems.append("the folder was changed")
    return [row]


# ------------------------------------------------------------------------------------- checkpoints
def finished_conve_run(case: Case) -> Path:
    """A copy of a finished ``conve`` tiny run (1 epoch: last.pt and best.pt), trained once per script run."""
    src = case.shared.get("conve_run")
    if src is None:
        src = Path(case.shared["root"]) / "finished-conve"
        proc = case.start("run", "conve", "--preset", "tiny", "--set", "epochs=1", "--run-dir", str(src))
        case.wait(proc, "training the conve tiny run the checkpoint cases start from")
        if proc.popen.returncode != 0:
            raise SetupFailed(f"training the conve tiny run failed: {proc.stderr()[-1500:]}")
        case.shared["conve_run"] = src
    run = Path(shutil.copytree(src, case.tmp / "run"))
    case.placeholders.append((str(run), "RUN"))
    return run


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def case_ckpt_eval_truncated(case: Case) -> list[Row]:
    run = finished_conve_run(case)
    _truncate(run / "checkpoints" / "best.pt")
    row = case.row("`paperzoo eval RUN` with best.pt truncated to half", "the command's start")
    t0 = time.monotonic()
    case.finish_row(row, case.start("eval", str(run)), t0)
    return [row]


def case_ckpt_resume_truncated(case: Case) -> list[Row]:
    run = finished_conve_run(case)
    (run / "metrics.json").unlink()
    _truncate(run / "checkpoints" / "last.pt")
    row = case.row("`paperzoo run --resume RUN` with last.pt truncated to half", "the command's start")
    t0 = time.monotonic()
    case.finish_row(row, case.start("run", "--resume", str(run)), t0)
    return [row]


def case_ckpt_nan(case: Case) -> list[Row]:
    import torch

    run = finished_conve_run(case)
    best = run / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    state["model"]["conv.weight"].view(-1)[3] = float("nan")
    torch.save(state, best)
    row = case.row("`paperzoo eval RUN` with one NaN in best.pt's conv.weight", "the command's start")
    t0 = time.monotonic()
    case.finish_row(row, case.start("eval", str(run)), t0)
    return [row]


# --------------------------------------------------------------------------------------------- ray
def case_ray_unreachable(case: Case) -> list[Row]:
    out = case.tmp / "sw"
    row = case.row("`paperzoo sweep conve --preset tiny --grid model=conve --ray-address 127.0.0.1:1` (nothing "
              "listens; default --ray-connect-timeout 30)", "the command's start")
    t0 = time.monotonic()
    proc = case.start("sweep", "conve", "--preset", "tiny", "--grid", "model=conve", "--ray-address",
                      "127.0.0.1:1", "--out", str(out))
    case.finish_row(row, proc, t0)
    if out.exists():
        row.problems.append("the sweep folder was created")
    return [row]


CASES: dict[str, Callable[[Case], list[Row]]] = {
    name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_") and callable(fn)}
GROUPS = {"dgcn": [c for c in CASES if c.startswith("dgcn")], "sky": [c for c in CASES if c.startswith("sky")],
          "catalog": [c for c in CASES if c.startswith("catalog")],
          "input": ["mismatch_matching", "mismatch_align", "kg_bad_line"],
          "ckpt": [c for c in CASES if c.startswith("ckpt")], "ray": ["ray_unreachable"]}


# ------------------------------------------------------------------------------------------ driver
def failed(case: Case, name: str, status: str, problem: str) -> list[Row]:
    """The case's rows so far, the last one (the step that failed) marked with ``status``."""
    rows = case.rows or [Row(name, "")]
    rows[-1].status = status
    rows[-1].problems.append(problem)
    return rows


def run_case(name: str, root: Path, data_root: Path, timeout: float, shared: dict) -> list[Row]:
    case = Case(name, root, data_root, timeout, shared)
    rows: list[Row] = []
    try:
        rows = CASES[name](case)
    except Hang as exc:
        rows = failed(case, name, "HANGS", str(exc))
        for proc in case.procs:
            if proc.popen.poll() is None:
                rows[-1].problems.append("stderr tail: " + case.shorten(proc.stderr()[-600:]))
    except SetupFailed as exc:
        rows = failed(case, name, "SETUP FAILED", case.shorten(str(exc)))
    except Exception as exc:  # noqa: BLE001 - a bug of this script or an unexpected state: reported, not hidden
        rows = failed(case, name, "ERROR", f"{type(exc).__name__}: {case.shorten(str(exc))}")
    finally:
        case.check_groups(rows or [Row(name, "")])
        case.cleanup()
    return rows


def summarize(name: str, repeats: list[list[Row]]) -> list[dict]:
    """One table entry per row of the case, over the repeats."""
    entries = []
    for i in range(max(len(r) for r in repeats)):
        rows = [r[i] for r in repeats if i < len(r)]
        first = rows[0]
        secs = [r.seconds for r in rows if r.seconds is not None and r.status == "ok"]
        statuses = sorted({r.status for r in rows})
        entries.append({
            "case": name, "fault": first.fault, "timed_from": first.timed_from,
            "seen": first.seen, "seen_varies": len({tuple(r.seen) for r in rows}) > 1,
            "codes": [r.code for r in rows], "status": "ok" if statuses == ["ok"] else "/".join(statuses),
            "seconds": [r.seconds for r in rows],
            "median_s": statistics.median(secs) if secs else None,
            "min_s": min(secs) if secs else None, "max_s": max(secs) if secs else None,
            "problems": sorted({p for r in rows for p in r.problems}),
            "detail": [r.detail for r in rows]})
    return entries


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def code_span(text: str) -> str:
    """``text`` as inline code, also when it holds backticks itself."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table(entries: list[dict]) -> str:
    lines = ["| fault | what the user sees | exit code | seconds (median, range) | timed from |",
             "|---|---|---|---|---|"]
    for e in entries:
        seen = " / ".join(code_span(cell(s)) for s in e["seen"]) or "(nothing on stderr)"
        codes = "/".join(sorted({str(c) for c in e["codes"]}))
        if e["status"] != "ok":
            secs = e["status"]
        elif len(e["seconds"]) > 1:
            secs = f"{e['median_s']:.1f} ({e['min_s']:.1f}-{e['max_s']:.1f})"
        else:
            secs = f"{e['median_s']:.1f}"
        lines.append(f"| {cell(e['fault'])} | {seen} | {codes} | {secs} | {e['timed_from']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", help=f"comma-separated cases or groups (default: all). Cases: "
                                        f"{', '.join(CASES)}; groups: {', '.join(GROUPS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case (default: 3)")
    parser.add_argument("--data-root", help="shared data folder (default: $PAPERZOO_DATA)")
    parser.add_argument("--case-timeout", type=float, default=120.0, help="hard limit per case run (s)")
    parser.add_argument("--out", default=str(HERE / "results" / "fault_table.json"), help="raw results (JSON)")
    args = parser.parse_args(argv)
    data_root = args.data_root or os.environ.get("PAPERZOO_DATA")
    if not data_root or not Path(data_root).is_dir():
        parser.error("set PAPERZOO_DATA or --data-root to the shared data folder")
    names: list[str] = []
    for item in (args.cases.split(",") if args.cases else list(CASES)):
        item = item.strip()
        if item not in CASES and item not in GROUPS:
            parser.error(f"unknown case {item!r}; known: {', '.join(CASES)}; groups: {', '.join(GROUPS)}")
        names.extend(n for n in GROUPS.get(item, [item]) if n not in names)

    started = time.monotonic()
    entries = []
    with tempfile.TemporaryDirectory(prefix="paperzoo-faults-") as root:
        shared = {"root": root}
        for name in names:
            repeats = []
            for k in range(args.repeats):
                rows = run_case(name, Path(root), Path(data_root), args.case_timeout, shared)
                repeats.append(rows)
                for r in rows:
                    secs = f"{r.seconds:.1f} s" if r.seconds is not None else r.status
                    print(f"[{name} {k + 1}/{args.repeats}] {r.status} code={r.code} {secs}"
                          + (f" PROBLEMS: {r.problems}" if r.problems else ""), file=sys.stderr, flush=True)
            entries.extend(summarize(name, repeats))
    total = time.monotonic() - started
    write_json(args.out, {"command": " ".join(["fault_table.py", *(argv if argv is not None else sys.argv[1:])]),
                          "repeats": args.repeats, "case_timeout_s": args.case_timeout, "total_s": total,
                          "python": sys.version.split()[0], "entries": entries})
    print(table(entries))
    problems = [(e["fault"], e["status"], e["problems"]) for e in entries if e["problems"] or e["status"] != "ok"]
    print(f"\n{len(entries)} rows, {args.repeats} repeat(s), {total:.0f} s in all; raw results: {args.out}")
    for fault, status, probs in problems:
        print(f"PROBLEM [{status}] {fault}: {probs}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
