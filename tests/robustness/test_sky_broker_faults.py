"""Faults of the sky broker as a user meets them through the real CLI, each in its own process:
the broker killed with SIGKILL (then `sky status`, `sky recover`), SIGTERM, a provider whose
status() hangs, a region whose launches hang."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paperzoo.methods.sky_broker.catalog import load_catalog
from paperzoo.methods.sky_broker.optimizer import optimize
from paperzoo.methods.sky_broker.spec import load_dag
from paperzoo.methods.sky_broker.state import JobDB, process_start_time

pytest.importorskip("scipy")


def run_cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``paperzoo sky ARGV`` in a new process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "paperzoo.cli", "sky", *argv], check=False, capture_output=True,
                          text=True, timeout=timeout, env=_env())


def sky(*argv: str, home: Path) -> subprocess.CompletedProcess:
    return run_cli(*argv, "--home", str(home))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch(job: Path, home: Path, data_root: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "paperzoo.cli", "sky", "launch", str(job), "--home", str(home),
                             "--data-root", str(data_root), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def task_status(home: Path, task: str, job: int = 1) -> str | None:
    if not (home / "state.db").exists():
        return None
    try:
        return {t["task"]: t["status"] for t in JobDB(home / "state.db").tasks(job)}.get(task)
    except KeyError:  # the job is not created yet
        return None


def test_broker_killed_during_task_2_of_3_then_recovered_runs_each_task_once(tmp_path, data_root):
    marker, go = tmp_path / "marker", tmp_path / "go"
    job = tmp_path / "three.yaml"
    job.write_text(f"""name: three
tasks:
  - name: a
    run: echo a >> {marker}
  - name: b
    depends_on: [a]
    run: echo b >> {marker}; n=0; while [ ! -f {go} ] && [ $n -lt 6000 ]; do sleep 0.02; n=$((n+1)); done; echo b-done
  - name: c
    depends_on: [b]
    run: echo c >> {marker}
""")
    home = tmp_path / "home"
    try:
        _killed_then_recovered(job, home, data_root, marker, go)
    finally:
        go.touch()  # a failing test must not leave task b waiting (it also gives up after 2 minutes)


def _killed_then_recovered(job, home, data_root, marker, go):
    broker = launch(job, home, data_root)
    try:
        wait_for(lambda: task_status(home, "b") == "RUNNING", "task b to run")
    finally:
        broker.kill()  # SIGKILL: no handler runs, nothing is cleaned up
        broker.communicate(timeout=30)
    db = JobDB(home / "state.db")
    b_pid = db.tasks(1)[1]["handle"]["pid"]
    assert process_start_time(b_pid) is not None  # task b outlives its broker

    status = sky("status", "1", home=home)
    assert status.returncode == 0, status.stderr
    assert "three: INTERRUPTED" in status.stdout and "sky recover 1" in status.stdout
    assert [t["status"] for t in db.tasks(1)] == ["SUCCEEDED", "RUNNING", "PENDING"]
    assert db.job(1).broker_pid is None

    recover = subprocess.Popen([sys.executable, "-m", "paperzoo.cli", "sky", "recover", "1", "--home", str(home)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        wait_for(lambda: db.job(1).broker_pid == recover.pid, "recover to claim the job")
        go.touch()  # b finishes only now, while the recovering broker is attached to it
        out, err = recover.communicate(timeout=60)
    finally:
        recover.kill()
    assert recover.returncode == 0, err
    assert "three: SUCCEEDED" in out and "re-attached to attempt 1" in err

    assert marker.read_text().split() == ["a", "b", "c"]  # every task started exactly once
    assert db.job(1).status == "SUCCEEDED"
    for name in ("a", "b", "c"):
        assert [(a["attempt"], a["outcome"]) for a in db.attempts(1, name)] == [(1, "SUCCEEDED")], name
    assert db.tasks(1)[1]["handle"]["pid"] == b_pid
    assert "b-done" in sky("logs", "1", "--task", "b", home=home).stdout


def test_sigterm_stops_the_running_task_and_cancels_the_job(tmp_path, data_root):
    job = tmp_path / "two.yaml"
    job.write_text("name: two\ntasks:\n  - name: a\n    run: sleep 60\n"
                   "  - name: b\n    depends_on: [a]\n    run: echo never\n")
    home = tmp_path / "home"
    broker = launch(job, home, data_root)
    try:
        wait_for(lambda: task_status(home, "a") == "RUNNING", "task a to run")
        pid = JobDB(home / "state.db").tasks(1)[0]["handle"]["pid"]
        start = time.monotonic()
        broker.send_signal(signal.SIGTERM)
        _, err = broker.communicate(timeout=30)
        seconds = time.monotonic() - start
    finally:
        broker.kill()
    assert broker.returncode == 128 + signal.SIGTERM
    lines = err.strip().splitlines()
    assert lines[-1] == "paperzoo sky: error: job 1 cancelled on SIGTERM; stopped its running tasks: a"
    assert not any(line.startswith("Traceback") for line in lines)
    assert seconds < 10
    db = JobDB(home / "state.db")
    assert db.job(1).status == "CANCELLED" and "SIGTERM" in db.job(1).error
    assert [t["status"] for t in db.tasks(1)] == ["CANCELLED", "CANCELLED"]
    assert [a["outcome"] for a in db.attempts(1)] == ["CANCELLED"]
    wait_for(lambda: process_start_time(pid) is None, "the task's process to end", timeout=10)
    assert db.job(1).broker_pid is None


def test_sigterm_during_a_hanging_launch_exits_at_once(tmp_path, data_root):
    job = tmp_path / "one.yaml"
    job.write_text("name: one\nrun: echo never\n")
    home = tmp_path / "home"
    broker = launch(job, home, data_root, "--attempt-timeout", "300", "--chaos", '{"hang_first": 1, "hang_s": 300}')
    try:
        wait_for(lambda: task_status(home, "one") == "PROVISIONING", "the launch to start")
        start = time.monotonic()
        broker.send_signal(signal.SIGTERM)
        _, err = broker.communicate(timeout=30)
        seconds = time.monotonic() - start
    finally:
        broker.kill()
    assert broker.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1] == "paperzoo sky: error: job 1 cancelled on SIGTERM; stopped its running tasks: one"
    assert seconds < 10  # not the 300 s attempt timeout
    db = JobDB(home / "state.db")
    assert db.job(1).status == "CANCELLED" and [a["outcome"] for a in db.attempts(1)] == ["CANCELLED"]


def test_provider_status_hang_gives_one_line_error_in_bounded_time(tmp_path, data_root):
    job = tmp_path / "one.yaml"
    job.write_text("name: one\nrun: sleep 60\n")
    home = tmp_path / "home"
    chaos = json.dumps({"status_hang_first": 99, "status_hang_s": 120})
    start = time.monotonic()
    proc = run_cli("launch", str(job), "--home", str(home), "--data-root", str(data_root), "--chaos", chaos,
                   "--call-timeout", "0.5", "--call-tries", "2")
    seconds = time.monotonic() - start
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "paperzoo sky: error: job 1 FAILED: task 'one': local status(): no answer within 0.5 s (2 tries)"
    assert seconds < 0.5 * 2 + 10
    db = JobDB(home / "state.db")
    assert [a["outcome"] for a in db.attempts(1)] == ["UNREACHABLE"]
    pid = db.tasks(1)[0]["handle"]["pid"]
    wait_for(lambda: process_start_time(pid) is None, "the unobservable task to be stopped", timeout=10)


def test_hanging_region_is_blocked_as_a_whole_after_its_first_timeout(tmp_path, data_root):
    job = tmp_path / "one.yaml"
    job.write_text("name: one\nresources: {cpus: 2}\nrun: echo ran in $SKY_CLOUD:$SKY_REGION\n")
    home = tmp_path / "home"
    best = optimize(load_dag(job), load_catalog(None, data_root=data_root)).placement("one").candidate.offering
    region = f"{best.cloud}:{best.region}"
    start = time.monotonic()
    proc = run_cli("launch", str(job), "--home", str(home), "--data-root", str(data_root), "--attempt-timeout", "0.5",
                   "--chaos", json.dumps({"hang_regions": [region], "hang_s": 120}))
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    attempts = JobDB(home / "state.db").attempts(1)
    assert [(f"{a['cloud']}:{a['region']}" == region, a["outcome"]) for a in attempts] == [
        (True, "TIMEOUT"), (False, "SUCCEEDED")]
    assert seconds < 0.5 + 10
