"""The broker's reliability: parallel branches, failure propagation, max_runtime_s, provider call
timeouts, whole-region blocking, reconciliation after the broker died, recover, the database."""
import _thread
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from paperzoo.methods.sky_broker import cli
from paperzoo.methods.sky_broker.broker import (
    NothingToRecover,
    ProviderUnresponsive,
    call_provider,
    descendants,
    placement_dict,
    reconcile,
)
from paperzoo.methods.sky_broker.optimizer import optimize
from paperzoo.methods.sky_broker.providers import ChaosProvider, LocalProvider
from paperzoo.methods.sky_broker.spec import SpecError, parse_dag
from paperzoo.methods.sky_broker.state import JobBusy, JobDB, process_start_time

pytest.importorskip("scipy")


def dag_of(*tasks: dict, name: str = "dag"):
    return parse_dag({"name": name, "tasks": [{"resources": {"cpus": 4}, **t} for t in tasks]})


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_independent_branches_run_in_parallel(cpu_catalog, make_broker, db):
    broker = make_broker(cpu_catalog)
    job = broker.launch(dag_of({"name": "left", "run": "sleep 1"}, {"name": "right", "run": "sleep 1"},
                               {"name": "join", "depends_on": ["left", "right"], "run": "echo joined"}))
    assert db.job(job).status == "SUCCEEDED"
    spans = {a["task"]: (a["started"], a["ended"]) for a in db.attempts(job)}
    assert spans["left"][0] < spans["right"][1] and spans["right"][0] < spans["left"][1]  # they overlapped
    assert spans["join"][0] >= max(spans["left"][1], spans["right"][1])  # the child waited for both
    both = max(spans["left"][1], spans["right"][1]) - min(spans["left"][0], spans["right"][0])
    assert both < 1.9, spans  # two 1-s tasks one after the other would take > 2 s


def test_a_failure_fails_its_dependents_and_stops_other_branches(cpu_catalog, make_broker, db):
    broker = make_broker(cpu_catalog)
    start = time.perf_counter()
    job = broker.launch(dag_of({"name": "bad", "run": "sleep 0.2; echo broken >&2; exit 4"},
                               {"name": "slow", "run": "sleep 60"},
                               {"name": "child", "depends_on": ["bad"], "run": "echo never"},
                               {"name": "grandchild", "depends_on": ["child", "slow"], "run": "echo never"}))
    assert time.perf_counter() - start < 15
    row = db.job(job)
    assert row.status == "FAILED" and row.error.startswith("task 'bad': exited with an error") and "broken" in row.error
    tasks = {t["task"]: t for t in db.tasks(job)}
    assert {n: t["status"] for n, t in tasks.items()} == {"bad": "FAILED", "slow": "CANCELLED", "child": "FAILED",
                                                          "grandchild": "FAILED"}
    assert tasks["child"]["error"] == "upstream task 'bad' failed"
    assert tasks["slow"]["error"] == "stopped: task 'bad' failed"
    assert process_start_time(tasks["slow"]["handle"]["pid"]) is None
    assert descendants(dag_of({"name": "a"}, {"name": "b", "depends_on": ["a"]}), "a") == ["b"]


def test_max_runtime_stops_and_fails_the_task(cpu_catalog, make_broker, db):
    start = time.perf_counter()
    job = make_broker(cpu_catalog).launch(dag_of({"name": "t", "run": "sleep 60", "max_runtime_s": 0.5}))
    assert time.perf_counter() - start < 10
    row = db.job(job)
    assert row.status == "FAILED" and "ran longer than max_runtime_s = 0.5 s" in row.error
    attempt = db.attempts(job)[0]
    assert attempt["outcome"] == "MAX_RUNTIME"
    assert process_start_time(db.tasks(job)[0]["handle"]["pid"]) is None


def test_max_runtime_is_validated_with_its_field_name():
    with pytest.raises(SpecError, match=r"job.yaml: tasks\[0\].max_runtime_s: must be > 0"):
        parse_dag({"tasks": [{"name": "t", "run": "x", "max_runtime_s": -1}]}, "job.yaml")


def test_hanging_status_fails_the_task_within_timeout_times_tries(cpu_catalog, make_broker, db):
    chaos = ChaosProvider(LocalProvider(), status_hang_first=99, status_hang_s=30)
    broker = make_broker(cpu_catalog, router=lambda c: chaos, call_timeout_s=0.3, call_tries=2)
    start = time.perf_counter()
    try:
        job = broker.launch(dag_of({"name": "t", "run": "sleep 60"}))
    finally:
        chaos.release()
    assert time.perf_counter() - start < 0.3 * 2 + 5
    row = db.job(job)
    assert row.status == "FAILED"
    assert row.error == "task 't': local status(): no answer within 0.3 s (2 tries)"
    assert [a["outcome"] for a in db.attempts(job)] == ["UNREACHABLE"]
    assert chaos.status_calls == 2


def test_call_provider_retries_errors_then_gives_up():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("dropped")
        return "ok"

    assert call_provider(flaky, "x", timeout_s=1, tries=3, backoff_s=0.01) == "ok"
    calls.clear()
    with pytest.raises(ProviderUnresponsive, match=r"x: ConnectionError: dropped \(2 tries\)"):
        call_provider(flaky, "x", timeout_s=1, tries=2, backoff_s=0.01)


def test_a_hanging_region_is_blocked_after_its_first_timeout(cpu_catalog, make_broker, db):
    # a:r1 has two zones (1.0 and 1.1 $/h); zone-by-zone blocking would try r1-z2 next
    chaos = ChaosProvider(LocalProvider(), hang_regions=("a:r1",), hang_s=30)
    try:
        job = make_broker(cpu_catalog, router=lambda c: chaos, attempt_timeout_s=0.3).launch(
            dag_of({"name": "t", "run": "echo ok"}))
    finally:
        chaos.release()
    assert [(a["region"], a["zone"], a["outcome"]) for a in db.attempts(job)] == [
        ("r1", "r1-z1", "TIMEOUT"), ("r2", "r2-z1", "SUCCEEDED")]


# ------------------------------------------------------------------- a broker that died
def orphan(broker, db, dag, launched: dict[str, str]) -> int:
    """The database as a broker killed with SIGKILL leaves it: job RUNNING, claimed by a dead
    process; per task in ``launched``: 'done' (succeeded), 'running' (handle stored), 'launching'
    (launched, handle only in the provider's file) or 'lost' (the broker died inside launch)."""
    job = broker.submit(dag)
    db.claim_job(job, dead_pid())
    db.set_job(job, status="RUNNING")
    plan = optimize(dag, broker.catalog)
    local = LocalProvider()
    for task in dag.tasks:
        kind = launched.get(task.name)
        if kind is None:
            continue
        cand = plan.placement(task.name).candidate
        attempt_id = db.start_attempt(job, task.name, 1, placement_dict(cand), "local")
        db.set_task(job, task.name, status="PROVISIONING", placement=placement_dict(cand), provider="local")
        if kind == "lost":
            continue
        handle = local.launch(broker._request(job, dag, task, 1, cand, False, broker.home / "jobs" / str(job)))
        if kind == "launching":
            continue
        db.end_attempt(attempt_id, "RUNNING", final=False, handle=handle)
        db.set_task(job, task.name, status="RUNNING", handle=handle)
        if kind == "done":
            wait_for(lambda h=handle: local.status(h).terminal)
    return job


def test_reconcile_settles_tasks_from_handles_and_exit_files(cpu_catalog, make_broker, db, tmp_path):
    go = tmp_path / "go"
    broker = make_broker(cpu_catalog)
    dag = dag_of({"name": "ok", "run": "echo fine"}, {"name": "bad", "run": "echo boom; exit 3"},
                 {"name": "live", "run": f"while [ ! -f {go} ]; do sleep 0.02; done"},
                 {"name": "adopt", "run": f"while [ ! -f {go} ]; do sleep 0.02; done"},
                 {"name": "lost", "run": "echo x"}, {"name": "later", "run": "echo x"})
    job = orphan(broker, db, dag, {"ok": "done", "bad": "done", "live": "running", "adopt": "launching",
                                   "lost": "lost"})
    try:
        changes = reconcile(db, job)
        tasks = {t["task"]: t for t in db.tasks(job)}
        assert {n: t["status"] for n, t in tasks.items()} == {
            "ok": "SUCCEEDED", "bad": "FAILED", "live": "RUNNING", "adopt": "RUNNING", "lost": "PENDING",
            "later": "PENDING"}
        assert "boom" in tasks["bad"]["error"]
        assert tasks["adopt"]["handle"]["pid"] > 0  # picked up from attempt-1.handle.json
        outcomes = {a["task"]: a["outcome"] for a in db.attempts(job)}
        assert outcomes == {"ok": "SUCCEEDED", "bad": "FAILED", "live": "RUNNING", "adopt": "RUNNING",
                            "lost": "ABANDONED"}
        row = db.job(job)
        assert row.status == "INTERRUPTED" and row.broker_pid is None and f"sky recover {job}" in row.error
        assert "live: still running (attempt 1)" in changes
        assert reconcile(db, job) == ["live: still running (attempt 1)", "adopt: still running (attempt 1)"]
    finally:
        go.touch()


def test_recover_reattaches_skips_finished_and_numbers_new_attempts_after_stored(cpu_catalog, make_broker, db,
                                                                                  tmp_path):
    marker, go = tmp_path / "marker", tmp_path / "go"
    broker = make_broker(cpu_catalog)
    dag = dag_of({"name": "a", "run": f"echo a >> {marker}"},
                 {"name": "b", "depends_on": ["a"],
                  "run": f"echo b >> {marker}; while [ ! -f {go} ]; do sleep 0.02; done"},
                 {"name": "c", "depends_on": ["a"], "run": f"echo c >> {marker}"},
                 {"name": "d", "depends_on": ["b", "c"], "run": f"echo d >> {marker}"})
    job = orphan(broker, db, dag, {"a": "done", "b": "running", "c": "lost"})
    b_pid = db.tasks(job)[1]["handle"]["pid"]
    # d's first launch had failed for lack of capacity before the broker died
    cheapest = placement_dict(optimize(dag, broker.catalog).placement("d").candidate)
    db.end_attempt(db.start_attempt(job, "d", 1, cheapest, "local"), "CAPACITY_ERROR", "injected")
    go.touch()
    assert make_broker(cpu_catalog).recover(job) == "SUCCEEDED"
    assert sorted(marker.read_text().split()) == ["a", "b", "c", "d"]  # each ran exactly once
    attempts = [(a["task"], a["attempt"], a["outcome"]) for a in db.attempts(job)]
    assert attempts == [("a", 1, "SUCCEEDED"), ("b", 1, "SUCCEEDED"), ("c", 1, "ABANDONED"),
                        ("d", 1, "CAPACITY_ERROR"), ("c", 2, "SUCCEEDED"), ("d", 2, "SUCCEEDED")]
    assert db.tasks(job)[1]["handle"]["pid"] == b_pid  # b was re-attached, not relaunched
    # the stored capacity error still blocks its zone after the restart
    d = db.attempts(job, "d")
    assert d[0]["zone"] == cheapest["zone"] and d[1]["zone"] != cheapest["zone"]
    assert db.job(job).broker_pid is None
    with pytest.raises(NothingToRecover, match="is SUCCEEDED"):
        make_broker(cpu_catalog).recover(job)


def test_recover_refuses_a_job_a_live_broker_runs(cpu_catalog, make_broker, db, tmp_path, capsys):
    broker = make_broker(cpu_catalog)
    job = broker.submit(dag_of({"name": "t", "run": "echo x"}))
    db.claim_job(job)  # this (live) process
    with pytest.raises(JobBusy):
        broker.recover(job)
    with pytest.raises(JobBusy):
        db.claim_job(job)
    code = cli.main(cli.standalone_parser().parse_args(["sky", "recover", str(job), "--home", str(db.path.parent)]))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"paperzoo sky: error: job {job} is being run by broker process")


def test_old_databases_gain_the_new_columns(tmp_path):
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript("""CREATE TABLE jobs (job_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
        status TEXT NOT NULL, spec TEXT NOT NULL, plan TEXT, options TEXT NOT NULL, workdir TEXT NOT NULL,
        error TEXT, created REAL NOT NULL, updated REAL NOT NULL);
        INSERT INTO jobs (name, status, spec, options, workdir, created, updated)
        VALUES ('old', 'SUCCEEDED', '{}', '{}', '/x', 1, 1);""")
    conn.commit()
    conn.close()
    db = JobDB(path)
    row = db.job(1)
    assert row.name == "old" and row.broker_pid is None and not row.broker_alive
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert "error" in {r[1] for r in conn.execute("PRAGMA table_info(tasks)")}
        assert "handle" in {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}


def test_a_transaction_commits_all_or_nothing(db):
    job = db.create_job("j", {}, {}, db.path.parent / "jobs", ["t"])
    with pytest.raises(RuntimeError), db.transaction() as tx:
        db.set_job(job, status="RUNNING", tx=tx)
        db.set_task(job, "t", status="RUNNING", tx=tx)
        raise RuntimeError("killed half-way")
    assert db.job(job).status == "PENDING" and db.tasks(job)[0]["status"] == "PENDING"


def test_recover_after_a_failure_while_the_broker_was_gone_fails_the_job_and_stops_the_rest(
        cpu_catalog, make_broker, db):
    dag = dag_of({"name": "bad", "run": "echo boom; exit 3"}, {"name": "live", "run": "sleep 60"},
                 {"name": "after", "depends_on": ["bad"], "run": "echo never"})
    job = orphan(make_broker(cpu_catalog), db, dag, {"bad": "done", "live": "running"})
    live_pid = db.tasks(job)[1]["handle"]["pid"]
    assert make_broker(cpu_catalog).recover(job) == "FAILED"
    tasks = {t["task"]: t for t in db.tasks(job)}
    assert {n: t["status"] for n, t in tasks.items()} == {"bad": "FAILED", "live": "CANCELLED", "after": "FAILED"}
    assert db.job(job).error.startswith("task 'bad': exited with an error")
    wait_for(lambda: process_start_time(live_pid) is None)


def _status_or_none(db, job):
    """The first task's status, or None while the database is busy (the broker is writing)."""
    try:
        return db.tasks(job)[0]["status"]
    except sqlite3.OperationalError:
        return None


def test_an_abrupt_broker_stop_leaves_the_tasks_running_for_recover(cpu_catalog, make_broker, db, tmp_path):
    marker, go = tmp_path / "marker", tmp_path / "go"
    broker = make_broker(cpu_catalog)
    job = broker.submit(dag_of({"name": "t", "run": f"echo t >> {marker}; while [ ! -f {go} ]; do sleep 0.02; done"}))

    def interrupt_when_running():
        try:
            wait_for(lambda: _status_or_none(db, job) == "RUNNING", timeout=60)
        except BaseException:
            go.touch()  # never leave broker.run waiting for the task: the test fails instead of hanging
            raise
        _thread.interrupt_main()  # Ctrl-C in the broker's (main) thread, no handler installed

    # interrupt_main() does nothing unless SIGINT has Python's handler; a test session started in the
    # background by a shell without job control inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_when_running, daemon=True).start()
    start = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            broker.run(job)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - start < 10
    row = db.job(job)
    assert row.status == "INTERRUPTED" and row.broker_pid is None and f"sky recover {job}" in row.error
    task = db.tasks(job)[0]
    assert task["status"] == "RUNNING" and process_start_time(task["handle"]["pid"]) is not None
    go.touch()
    assert make_broker(cpu_catalog).recover(job) == "SUCCEEDED"
    assert marker.read_text().split() == ["t"]
    assert [(a["attempt"], a["outcome"]) for a in db.attempts(job)] == [(1, "SUCCEEDED")]


def test_bad_chaos_settings_are_one_line_errors_naming_the_field(tmp_path, capsys, data_root):
    job = tmp_path / "job.yaml"
    job.write_text("name: one\nrun: echo x\n")
    args = ["sky", "launch", str(job), "--home", str(tmp_path / "home"), "--data-root", str(data_root)]
    assert cli.main(cli.standalone_parser().parse_args([*args, "--chaos", '{"hang_first": -1}'])) == 2
    assert capsys.readouterr().err == "paperzoo sky: error: --chaos.hang_first: expected a number >= 0, got -1\n"
    assert cli.main(cli.standalone_parser().parse_args([*args, "--chaos", "{nope"])) == 2
    assert capsys.readouterr().err.startswith("paperzoo sky: error: --chaos: not valid JSON")
    assert not (tmp_path / "home" / "state.db").exists()  # nothing was submitted
