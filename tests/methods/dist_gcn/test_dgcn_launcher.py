"""The launcher's supervision (AgentGroup) on cheap stand-in agents: plain Python processes that beat,
fall silent, exit or start a grandchild, with real signals sent to them. Each test takes ~1-4 s."""
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from paperzoo.methods.dist_gcn import worker
from paperzoo.methods.dist_gcn.worker import AgentGroup, AgentProcessFailure

# MODE: beat (touch the heartbeat every 0.05 s), silent (touch it once, then sleep), exitN (beat 0.3 s,
# print a line, exit N), done (exit 0), child (start a grandchild `sleep`, record its pid, then beat)
_AGENT = """
import os, subprocess, sys, time
mode, hb = os.environ["MODE"], os.environ.get("PAPERZOO_HEARTBEAT")
def beat():
    if hb:
        open(hb, "a").close(); os.utime(hb)
if mode == "done":
    sys.exit(0)
if mode == "child":
    p = subprocess.Popen(["sleep", "60"])
    open(os.environ["CHILD_PID_FILE"], "w").write(str(p.pid))
beat()
start = time.monotonic()
while os.getppid() == int(os.environ["PAPERZOO_LAUNCHER_PID"]):  # never outlive the test
    if mode != "silent":
        beat()
    if mode.startswith("exit") and time.monotonic() - start > 0.3:
        print("boom: something broke", flush=True)
        sys.exit(int(mode[4:]))
    time.sleep(0.05)
"""


def _start(tmp_path: Path, modes, **kw) -> AgentGroup:
    envs = [{**os.environ, "MODE": m, "CHILD_PID_FILE": str(tmp_path / f"child{r}.pid")}
            for r, m in enumerate(modes)]
    return AgentGroup.start([sys.executable, "-c", _AGENT], envs, tmp_path / "workers", **kw)


def _wait_for(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    """No live process (zombies waiting for init to reap them are dead) is left in the process group
    ``pid`` led, the leader included."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pid:  # state, ppid, pgrp
            return False
    return True


def _beating(group: AgentGroup) -> bool:
    return all(a.heartbeat.exists() for a in group.agents)


def _fail(group: AgentGroup, timeout: float = 20.0) -> tuple[AgentProcessFailure, float]:
    tic = time.monotonic()
    with pytest.raises(AgentProcessFailure) as info:
        group.wait(timeout)
    return info.value, time.monotonic() - tic


def test_all_agents_finishing_returns_their_codes(tmp_path):
    group = _start(tmp_path, ["done"] * 3)
    assert group.wait(timeout=30) == [0, 0, 0]
    assert [a["pid"] for a in json.loads((tmp_path / "workers" / "agents.json").read_text())["agents"]] \
        == group.pids


def test_killed_agent_ends_the_whole_group_grandchildren_included(tmp_path):
    group = _start(tmp_path, ["child", "beat", "beat"], progress_timeout=30)
    _wait_for(lambda: _beating(group) and (tmp_path / "child0.pid").exists())
    grandchild = int((tmp_path / "child0.pid").read_text())
    os.kill(group.pids[1], signal.SIGKILL)
    failure, seconds = _fail(group)
    assert (failure.rank, failure.pid, failure.cause) == (1, group.pids[1], "killed")
    assert str(failure).startswith(f"agent 1 (pid {group.pids[1]}) was killed by SIGKILL; log: ")
    assert "\n" not in str(failure) and str(failure.log).endswith("rank1.log")
    assert seconds < 5
    assert all(_gone(pid) for pid in group.pids)
    assert not Path(f"/proc/{grandchild}").exists() or Path(f"/proc/{grandchild}/stat").read_text().rsplit(
        ")", 1)[1].split()[0] == "Z"


def test_agent_exiting_with_an_error_is_named_with_its_last_log_line(tmp_path):
    group = _start(tmp_path, ["beat", "exit7", "beat"], progress_timeout=30)
    failure, seconds = _fail(group)
    assert failure.rank == 1 and failure.cause == "exited"
    assert "exited with code 7: boom: something broke" in str(failure)
    assert seconds < 10 and all(_gone(pid) for pid in group.pids)


def test_stopped_agent_fails_the_group(tmp_path):
    group = _start(tmp_path, ["beat"] * 3, progress_timeout=30)
    _wait_for(lambda: _beating(group))
    os.kill(group.pids[2], signal.SIGSTOP)
    failure, seconds = _fail(group)
    assert (failure.rank, failure.cause) == (2, "stopped")
    assert "was stopped (SIGSTOP/SIGTSTP)" in str(failure)
    assert seconds < worker.STOP_GRACE_SECONDS + 5  # not the 30 s progress timeout
    assert all(_gone(pid) for pid in group.pids)


def test_silent_agent_is_hung_after_the_progress_timeout(tmp_path):
    group = _start(tmp_path, ["beat", "silent", "beat"], progress_timeout=1.0)
    _wait_for(lambda: _beating(group))
    failure, seconds = _fail(group)
    assert (failure.rank, failure.cause) == (1, "hung")
    assert "made no progress for" in str(failure) and "(comm_timeout 1 s)" in str(failure)
    assert 1.0 <= seconds < 1.0 + worker.HANG_SLACK_SECONDS + 5
    assert all(_gone(pid) for pid in group.pids)


def test_agent_that_gave_up_points_at_the_silent_peer(tmp_path):
    group = _start(tmp_path, ["beat", "silent", f"exit{worker.EXIT_AGENT_FAILURE}"], progress_timeout=30)
    failure, seconds = _fail(group)
    assert (failure.rank, failure.cause) == (1, "hung")
    assert "(agent 2 gave up waiting for it)" in str(failure)
    assert seconds < 10 and all(_gone(pid) for pid in group.pids)


def test_agent_that_never_joins_fails_after_startup_timeout(tmp_path):
    envs = [{**os.environ, "MODE": "beat"}]  # without a heartbeat file it cannot report progress
    group = AgentGroup.start([sys.executable, "-c", "import time; time.sleep(60)"], envs, tmp_path / "w",
                             progress_timeout=0.5, startup_timeout=1.0)
    failure, seconds = _fail(group)
    assert failure.cause == "hung" and "did not join the group within" in str(failure)
    assert seconds < 10 and _gone(group.pids[0])


def test_time_limit_ends_running_agents(tmp_path):
    group = _start(tmp_path, ["beat", "beat"])
    failure, seconds = _fail(group, timeout=1.0)
    assert failure.cause == "timeout" and "time limit" in str(failure)
    assert seconds < 6 and all(_gone(pid) for pid in group.pids)


def test_agent_ignoring_sigterm_is_killed(tmp_path):
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    group = AgentGroup.start([sys.executable, "-c", script], [dict(os.environ)] * 2, tmp_path / "w")
    time.sleep(0.3)
    tic = time.monotonic()
    codes = group.terminate(grace=0.5)
    assert codes == [-signal.SIGKILL] * 2 and time.monotonic() - tic < 5


def test_interrupt_while_waiting_ends_the_group(tmp_path):
    group = _start(tmp_path, ["beat"] * 2, progress_timeout=30)
    _wait_for(lambda: _beating(group))
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with worker.terminate_as_interrupt(), pytest.raises(worker.LauncherTerminated):
        timer.start()
        group.wait(timeout=20)
    assert all(_gone(pid) for pid in group.pids)


def test_heartbeat_is_rate_limited_and_forced(tmp_path):
    hb = worker.Heartbeat(tmp_path / "hb", interval=60)
    hb.beat()
    first = (tmp_path / "hb").stat().st_mtime_ns
    os.utime(tmp_path / "hb", ns=(first - 10**9, first - 10**9))
    hb.beat()  # within the interval: no write
    assert (tmp_path / "hb").stat().st_mtime_ns == first - 10**9
    hb.beat(force=True)
    assert (tmp_path / "hb").stat().st_mtime_ns > first - 10**9
    worker.Heartbeat(None).beat()  # no launcher: nothing to do


def test_stand_in_agents_never_outlive_a_test(tmp_path):
    # the context manager ends the group even when the block fails
    with pytest.raises(ZeroDivisionError), _start(tmp_path, ["beat"] * 2) as group:
        pids = group.pids
        1 / 0  # noqa: B018
    assert all(_gone(pid) for pid in pids)
