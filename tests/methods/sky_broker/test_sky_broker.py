"""Provisioning with failover, spot recovery, the job database and the CLI (local + dry run)."""
import json
import threading
import time
from dataclasses import replace

import pytest

from paperzoo.methods.sky_broker import cli
from paperzoo.methods.sky_broker.broker import LaunchTimeout, call_with_timeout, cancel, job_logs
from paperzoo.methods.sky_broker.catalog import Catalog
from paperzoo.methods.sky_broker.providers import ChaosProvider, LocalProvider
from paperzoo.methods.sky_broker.spec import parse_dag
from paperzoo.methods.sky_broker.state import JobDB

pytest.importorskip("scipy")


def one_task(run: str = "echo ok", **resources):
    return parse_dag({"name": "job", "tasks": [{"name": "t", "run": run, "resources": {"cpus": 4, **resources}}]})


@pytest.mark.parametrize("k", [0, 1, 3])
def test_capacity_errors_land_on_the_kth_next_best_offering(cpu_catalog, make_broker, db, k):
    """Offerings by price: a:r1/z1 1.0, a:r1/z2 1.1, a:r2 1.3, b:r1 1.6; each failure blocks one."""
    chaos = ChaosProvider(LocalProvider(), fail_first=k)
    job = make_broker(cpu_catalog, router=lambda c: chaos).launch(one_task())
    assert db.job(job).status == "SUCCEEDED"
    expected = [("a", "r1", "r1-z1"), ("a", "r1", "r1-z2"), ("a", "r2", "r2-z1"), ("b", "r1", "r1-z1")]
    attempts = db.attempts(job)
    assert [(a["cloud"], a["region"], a["zone"]) for a in attempts] == expected[:k + 1]
    assert [a["outcome"] for a in attempts] == ["CAPACITY_ERROR"] * k + ["SUCCEEDED"]
    assert db.tasks(job)[0]["placement"]["zone"] == expected[k][2]


def test_quota_error_blocks_the_whole_region(cpu_catalog, make_broker, db):
    chaos = ChaosProvider(LocalProvider(), fail_first=1, error="quota")
    job = make_broker(cpu_catalog, router=lambda c: chaos).launch(one_task())
    assert [(a["region"], a["zone"], a["outcome"]) for a in db.attempts(job)] == [
        ("r1", "r1-z1", "QUOTA_ERROR"), ("r2", "r2-z1", "SUCCEEDED")]


def test_hanging_provider_times_out_and_fails_over(cpu_catalog, make_broker, db):
    chaos = ChaosProvider(LocalProvider(), hang_first=1, hang_s=30)
    broker = make_broker(cpu_catalog, router=lambda c: chaos, attempt_timeout_s=0.5)
    start = time.perf_counter()
    try:
        job = broker.launch(one_task())
    finally:
        chaos.release()
    assert time.perf_counter() - start < 15
    attempts = db.attempts(job)
    assert [a["outcome"] for a in attempts] == ["TIMEOUT", "SUCCEEDED"]
    assert attempts[0]["ended"] is not None and "0.5 s" in attempts[0]["error"]
    # a timeout blocks the whole region (a:r1), not only its zone: r1-z2 is skipped
    assert [(a["region"], a["zone"]) for a in attempts] == [("r1", "r1-z1"), ("r2", "r2-z1")]
    assert db.job(job).status == "SUCCEEDED"


def test_retries_are_bounded(cpu_catalog, make_broker, db):
    chaos = ChaosProvider(LocalProvider(), fail_first=100)
    job = make_broker(cpu_catalog, router=lambda c: chaos, max_attempts=2).launch(one_task())
    row = db.job(job)
    assert row.status == "FAILED" and "gave up after 2 failed launches" in row.error
    assert len(db.attempts(job)) == 2


def test_late_launch_after_timeout_is_released():
    released = []

    def slow():
        time.sleep(0.3)
        return "handle"

    with pytest.raises(LaunchTimeout):
        call_with_timeout(slow, 0.05, on_late=released.append)
    time.sleep(0.6)
    assert released == ["handle"]


def test_spot_preemption_resumes_from_the_last_checkpoint(cpu_catalog, make_broker, db):
    # counts to 6, one step per 0.2 s, checkpointing each step; a reclaim after 0.5 s kills it
    script = ('n=0; [ "$SKY_RESUME" = 1 ] && n=$(cat "$SKY_CHECKPOINT_DIR/step"); '
              'echo "start at $n"; while [ "$n" -lt 6 ]; do n=$((n+1)); echo $n > "$SKY_CHECKPOINT_DIR/step"; '
              'sleep 0.2; done; echo done $n')
    spot = Catalog(tuple(replace(o, spot_price=o.price / 3) for o in cpu_catalog.offerings), cpu_catalog.network)
    chaos = ChaosProvider(LocalProvider(), preempt_first=1, preempt_after_s=0.5)
    job = make_broker(spot, router=lambda c: chaos).launch(
        parse_dag({"tasks": [{"name": "t", "run": script, "resources": {"cpus": 4, "use_spot": True}}]}))
    assert db.job(job).status == "SUCCEEDED"
    attempts = db.attempts(job)
    assert [a["outcome"] for a in attempts] == ["PREEMPTED", "SUCCEEDED"]
    assert attempts[0]["zone"] != attempts[1]["zone"]  # the reclaimed zone is avoided
    assert db.tasks(job)[0]["recoveries"] == 1
    log = job_logs(db, job, "t")
    resumed_at = int(log.split("start at ")[1].split()[0])
    assert resumed_at >= 1 and "done 6" in log  # continued from the checkpoint, not from 0


def test_failing_task_fails_the_job_without_failover(cpu_catalog, make_broker, db):
    job = make_broker(cpu_catalog).launch(one_task(run="echo boom >&2; exit 3"))
    row = db.job(job)
    assert row.status == "FAILED" and "boom" in row.error
    assert [a["outcome"] for a in db.attempts(job)] == ["FAILED"]


def test_dag_runs_in_order_with_parent_dirs_and_state_survives_reopen(cpu_catalog, make_broker, db, tmp_path):
    dag = parse_dag({"name": "dag", "tasks": [
        {"name": "a", "run": "echo from-a > out.txt", "outputs": {"size_gb": 1}},
        {"name": "b", "run": "echo from-b > out.txt"},
        {"name": "c", "depends_on": ["a", "b"],
         "run": 'for d in ${SKY_PARENT_DIRS//:/ }; do cat $d/out.txt; done'}]})
    job = make_broker(cpu_catalog).launch(dag)
    again = JobDB(db.path)  # a new CLI process sees the same state
    assert again.job(job).status == "SUCCEEDED"
    assert [t["status"] for t in again.tasks(job)] == ["SUCCEEDED"] * 3
    assert "from-a\nfrom-b" in job_logs(again, job, "c")


def test_down_stops_a_running_job(cpu_catalog, make_broker, db):
    broker = make_broker(cpu_catalog)
    job = broker.submit(one_task(run="sleep 30"))
    runner = threading.Thread(target=broker.run, args=(job,))
    runner.start()
    deadline = time.time() + 10
    while db.tasks(job)[0]["status"] != "RUNNING" and time.time() < deadline:
        time.sleep(0.05)
    assert cancel(db, job) == ["t"]
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert db.job(job).status == "CANCELLED" and db.tasks(job)[0]["status"] == "CANCELLED"


def _cli(*argv) -> int:
    return cli.main(cli.standalone_parser().parse_args(["sky", *argv]))


def test_cli_plan_launch_status_logs_down(tmp_path, capsys, data_root):
    job = tmp_path / "job.yaml"
    job.write_text("name: demo\ntasks:\n  - name: prep\n    resources: {cpus: 4+}\n    run: echo prepared\n"
                   "    outputs: {size_gb: 10}\n  - name: train\n    depends_on: [prep]\n"
                   "    resources: {accelerators: V100:1}\n    run: echo trained\n")
    home = ["--home", str(tmp_path / "home"), "--data-root", str(data_root)]
    assert _cli("plan", str(job), "--data-root", str(data_root)) == 0
    assert "| prep |" in capsys.readouterr().out
    assert _cli("launch", str(job), "--backend", "dryrun", *home) == 0
    out = capsys.readouterr().out
    assert "DRY_RUN" in out and ("aws ec2 run-instances" in out or "gcloud compute" in out or "az vm create" in out)
    assert _cli("launch", str(job), *home) == 0
    capsys.readouterr()
    assert _cli("status", "--home", str(tmp_path / "home")) == 0
    table = capsys.readouterr().out
    assert "demo" in table and "DRY_RUN" in table and "SUCCEEDED" in table
    assert _cli("status", "2", "--json", "--home", str(tmp_path / "home")) == 0
    assert [t["status"] for t in json.loads(capsys.readouterr().out)["tasks"]] == ["SUCCEEDED"] * 2
    assert _cli("logs", "2", "--task", "train", "--home", str(tmp_path / "home")) == 0
    assert "trained" in capsys.readouterr().out
    assert _cli("down", "2", "--home", str(tmp_path / "home")) == 0
    assert "nothing running" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - name: a\n    resources: {cpu: 4}\n")
    assert _cli("plan", str(bad)) == 2
    err = capsys.readouterr().err
    assert err.startswith("paperzoo sky: error:") and "tasks[0].resources.cpu: unknown field" in err
    assert _cli("status", "99", "--home", str(tmp_path)) == 2
    assert "no job 99" in capsys.readouterr().err


class _BusyThenReadyClient:
    """A stand-in for Ray's JobSubmissionClient whose job agent answers "try again later" at first."""

    def __init__(self, busy: int, error: str = "Request failed with status code 500: No available agent to "
                                               "submit job, please try again later."):
        self.busy, self.error, self.calls = busy, error, 0

    def submit_job(self, **kwargs):
        self.calls += 1
        if self.calls <= self.busy:
            raise RuntimeError(self.error)
        return "raysubmit_test"


def _ray_request(tmp_path, cpu_catalog):
    from paperzoo.methods.sky_broker.optimizer import Candidate
    from paperzoo.methods.sky_broker.providers import LaunchRequest

    cand = Candidate(cpu_catalog.offerings[0], False, 1, 1.0)
    return LaunchRequest(1, "t", 1, cand, "", "true", {}, tmp_path / "t", tmp_path / "t" / "log")


def test_ray_launch_waits_out_a_busy_job_agent_but_not_a_refusal(tmp_path, cpu_catalog, monkeypatch):
    from paperzoo.methods.sky_broker.providers import RayProvider

    monkeypatch.setattr(time, "sleep", lambda s: None)
    provider = RayProvider("127.0.0.1:1")
    provider._client = _BusyThenReadyClient(busy=3)
    assert provider.launch(_ray_request(tmp_path, cpu_catalog))["submission_id"] == "raysubmit_test"
    assert provider._client.calls == 4
    provider._client = _BusyThenReadyClient(busy=1, error="Request failed with status code 400: bad runtime_env")
    with pytest.raises(RuntimeError, match="400"):
        provider.launch(_ray_request(tmp_path, cpu_catalog))
    assert provider._client.calls == 1
    provider.busy_retry_s = 0.0  # still busy at the deadline: the error reaches the broker (failover)
    provider._client = _BusyThenReadyClient(busy=10)
    with pytest.raises(RuntimeError, match="try again later"):
        provider.launch(_ray_request(tmp_path, cpu_catalog))
