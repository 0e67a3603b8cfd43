"""Sweeps, tune and reproduce on a Ray cluster, driven through the CLI as a user would: the same run folders
and metrics as the local backend, a killed driver resumed by re-running, and an unreachable address
reported in one line. One Ray head on loopback (2 CPUs) serves the whole module."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paperzoo import cli

ray = pytest.importorskip("ray", reason="the ray backend needs `pip install 'ray[default]'` (extra: test)")

GRID = ["--grid", "model=conve,distmult", "--seeds", "0-1", "--set", "epochs=2"]
RUN_TIMEOUT_S = 240  # one CLI call on a busy 2-core machine, Ray worker start-up included


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def no_real_data(tmp_path_factory, monkeypatch):
    """The tiny preset trains on synthetic data; an empty data root keeps the report's dataset audit instant."""
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path_factory.mktemp("no_data")))


def _env() -> dict[str, str]:
    return {**os.environ, "PAPERZOO_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


def _cli(*argv: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paperzoo.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=_env(), check=False)


def _metrics(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/metrics.json"))}


@pytest.fixture(scope="module")
def ray_head() -> str:
    """The GCS address (127.0.0.1:PORT) of a Ray head started, and stopped, by this module."""
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                       configure_logging=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def test_killed_ray_sweep_resumes_to_the_same_run_folders_and_metrics_as_local(ray_head, tmp_path):
    """A Ray sweep whose driver is killed after its first point finished, then re-run: the finished points
    are not run again, the others finish (the interrupted ones from their checkpoints), and every run
    folder holds the metrics of the same sweep run locally."""
    local, out = tmp_path / "local", tmp_path / "ray"
    assert cli.main(["sweep", "conve", "--preset", "tiny", *GRID, "--cpus-per-point", "1",
                     "--out", str(local)]) == 0
    argv = [sys.executable, "-m", "paperzoo.cli", "sweep", "conve", "--preset", "tiny", *GRID,
            "--backend", "ray", "--ray-address", ray_head, "--out", str(out)]
    driver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                              start_new_session=True)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not list(out.glob("*/metrics.json")):
            assert driver.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no point finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")}
    assert 1 <= len(finished) < 4
    proc = _cli(*argv[3:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished points were not run again
    skipped = re.search(r"(\d) of 4 points already finished", proc.stderr)
    assert skipped and int(skipped.group(1)) >= len(finished)
    ours, theirs = _metrics(local), _metrics(out)
    assert sorted(theirs) == ["model=conve-seed=0", "model=conve-seed=1", "model=distmult-seed=0",
                              "model=distmult-seed=1"]
    assert sorted(ours) == sorted(theirs)
    for name, metrics in ours.items():
        assert metrics.keys() == theirs[name].keys()
        for key, value in metrics.items():
            if "seconds" not in key:  # wall-clock timings differ; everything learned must not
                assert theirs[name][key] == pytest.approx(value, abs=1e-6), (name, key)
    for name in theirs:  # each worker logged into its run folder
        assert "running conve" in (out / name / "run.log").read_text()
    assert (out / "report" / "report.md").read_text().count("\n") == \
        (local / "report" / "report.md").read_text().count("\n")


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so Python installs its Ctrl-C handler. A test
    session started in the background by a shell without job control inherits SIGINT ignored, and so
    would the driver."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_cancels_the_running_points_and_exits_130(ray_head, tmp_path):
    out, log = tmp_path / "sw", tmp_path / "stderr.txt"
    with log.open("w") as stderr:  # a file, not a pipe: the workers' forwarded logs could fill a pipe
        driver = subprocess.Popen([sys.executable, "-m", "paperzoo.cli", "sweep", "conve", "--preset", "tiny",
                                   "--grid", "model=conve,distmult", "--seeds", "0-1", "--set", "epochs=40",
                                   "--ray-address", ray_head, "--out", str(out)], stdout=subprocess.DEVNULL,
                                  stderr=stderr, env=_env(), preexec_fn=_default_sigint)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not list(out.glob("*/checkpoints/last.pt")):  # a point is running
        assert driver.poll() is None and time.monotonic() < deadline, "no point started in time"
        time.sleep(0.05)
    start = time.monotonic()
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=60)
    assert driver.returncode == 130
    assert time.monotonic() - start < 10
    assert log.read_text().strip().splitlines()[-1] == "interrupted; run the same command again to continue"
    unfinished = [p for p in out.glob("*/config.yaml") if not (p.parent / "metrics.json").exists()]
    assert unfinished
    time.sleep(3)  # cancelled tasks do not go on writing
    assert all(not (p.parent / "metrics.json").exists() for p in unfinished)


def test_tune_and_reproduce_fan_out_over_ray(ray_head, tmp_path, capsys):
    # In this process, which is connected to the head already: the backend reuses that connection.
    out = tmp_path / "tune"
    assert cli.main(["tune", "conve", "--preset", "tiny", "--per", "model=conve,distmult", "--grid",
                     "lr=0.003,0.01", "--select", "valid/mrr", "--search-seeds", "7", "--seeds", "0", "--set",
                     "epochs=1", "--ray-address", ray_head, "--out", str(out)]) == 0
    assert len(list((out / "search").glob("*/metrics.json"))) == 4
    for choice in json.loads((out / "selected.json").read_text())["choices"]:
        name = f"model={choice['group']['model']}-lr={choice['settings']['lr']}-seed=0"
        assert (out / "final" / name / "metrics.json").exists()
    assert len(list((out / "final").glob("*/metrics.json"))) == 2
    assert cli.main(["reproduce", "conve", "--preset", "tiny", "--set", "epochs=1", "--backend", "ray",
                     "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "runs" / "conve-tiny" / "metrics.json").exists()
    assert (tmp_path / "rep" / "report.md").exists()
    assert ray.is_initialized()  # a connection the backend did not open is left open


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_ray_address_fails_in_one_line(tmp_path, scheme):
    port = _free_port()  # nothing listens there
    start = time.monotonic()
    proc = _cli("sweep", "conve", "--preset", "tiny", "--grid", "model=conve", "--ray-address",
                f"{scheme}127.0.0.1:{port}", "--ray-connect-timeout", "5", "--out", str(tmp_path / "sw"),
                timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (f"paperzoo sweep: error: cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused after at "
         f"most 5 s); start one with `ray start --head --port {port}` there, or fix --ray-address")]
    assert time.monotonic() - start < 5 + 10
    assert not (tmp_path / "sw").exists()


def test_silent_ray_address_gives_up_after_the_connect_timeout(tmp_path):
    with socket.socket() as server:  # accepts connections but never speaks Ray's protocol
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        start = time.monotonic()
        proc = _cli("sweep", "conve", "--preset", "tiny", "--grid", "model=conve", "--ray-address",
                    f"127.0.0.1:{port}", "--ray-connect-timeout", "3", "--out", str(tmp_path / "sw"), timeout=60)
        elapsed = time.monotonic() - start
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors[-1].startswith(f"paperzoo sweep: error: the Ray cluster at 127.0.0.1:{port} did not answer "
                                 f"within 3 s (is it a Ray head's GCS port? raise --ray-connect-timeout on a busy "
                                 f"cluster)")
    assert elapsed < 3 + 10
    assert not (tmp_path / "sw").exists()


def test_token_cluster_without_auth_mode_names_the_fix(ray_head, tmp_path):
    if os.environ.get("RAY_AUTH_MODE") != "token":
        pytest.skip("the test head runs without token authentication (RAY_AUTH_MODE set otherwise)")
    env = {k: v for k, v in _env().items() if k != "RAY_AUTH_MODE"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "paperzoo.cli", "sweep", "conve", "--preset", "tiny", "--grid",
                           "model=conve", "--ray-address", ray_head, "--ray-connect-timeout", "5", "--out",
                           str(tmp_path / "sw")], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("paperzoo sweep: error:")]
    assert len(errors) == 1 and errors[0].endswith(
        "; a cluster with token authentication also needs RAY_AUTH_MODE=token and its token in $RAY_AUTH_TOKEN "
        "or ~/.ray/auth_token"), proc.stderr[-2000:]
    assert time.monotonic() - start < 5 + 10
    assert not (tmp_path / "sw").exists()


def test_point_timeout_cancels_a_point_and_reports_it(ray_head, tmp_path):
    from paperzoo.core.dispatch import Point, RayBackend, run_points

    assert RayBackend(cpus_per_point=2).max_in_flight == 1 and RayBackend().max_in_flight == 2
    slow = Point(tmp_path / "slow", "conve", "tiny", {"epochs": 500})
    start = time.monotonic()
    done, failures = run_points([slow], RayBackend(point_timeout_s=2))
    assert done == []
    expected = "PointTimeout: ran over --point-timeout 2 s and was cancelled; re-run to resume it from its last checkpoint"
    assert failures == [(str(slow.path), expected)]
    assert time.monotonic() - start < 2 + 10
