"""`paperzoo run dist_gcn --nprocs 3` as a user runs it, with real faults injected into one agent (or the
launcher): it must exit with one error line naming the agent, within comm_timeout + 10 s, leaving no
process of the group behind and the run folder (config, checkpoints) intact.

Each test starts 4 Python processes that import torch (~10 s on a busy 2-core machine)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from paperzoo.methods.dist_gcn import worker

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not sys.platform.startswith("linux"),
                                reason="needs torch.distributed and Linux /proc")

COMM_TIMEOUT = 3.0
GRACE = 10.0


def _alive(pid: int) -> bool:
    """Whether any live (non-zombie) process is in the process group ``pid`` led."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pid:
            return True
    return False


class Run:
    """The CLI launching a never-ending tiny run in ``tmp_path/run``."""

    def __init__(self, tmp_path: Path, fault: str | None = None):
        self.path = tmp_path / "run"
        env = dict(os.environ, PAPERZOO_PROGRESS="0", OMP_NUM_THREADS="1")
        env.pop(worker.TEST_FAULT_ENV, None)
        if fault:
            env[worker.TEST_FAULT_ENV] = fault
        cmd = [sys.executable, "-m", "paperzoo.cli", "run", "dist_gcn", "--preset", "tiny", "--nprocs", "3",
               "--set", "iterations=1000000", "--set", "eval_every=5", "--set", f"comm_timeout={COMM_TIMEOUT}",
               "--run-dir", str(self.path)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pids: list[int] = []

    def training(self, timeout: float = 150.0) -> list[int]:
        """Wait until every agent has checkpointed (training under way); the agents' pids."""
        end = time.monotonic() + timeout
        ckpts = [self.path / "checkpoints" / f"last-agent{r}.pt" for r in range(3)]
        while not all(c.exists() for c in ckpts):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.proc.kill()
                pytest.fail(f"the run did not start training: {self.proc.communicate()[1][-3000:]}")
            time.sleep(0.1)
        self.pids = [a["pid"] for a in json.loads((self.path / "workers" / "agents.json").read_text())["agents"]]
        return self.pids

    def finish(self, timeout: float = COMM_TIMEOUT + GRACE) -> tuple[int, str, float]:
        """(exit code, stderr, seconds from now to the launcher's exit); fails if it runs past ``timeout``."""
        tic = time.monotonic()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"the launcher was still running {timeout:g} s after the fault")
        return self.proc.returncode, err, time.monotonic() - tic

    def check_clean(self, err: str) -> None:
        """No process of the group left (grandchildren included); nothing saved was lost."""
        pids = self.pids or [a["pid"] for a in
                             json.loads((self.path / "workers" / "agents.json").read_text())["agents"]]
        deadline = time.monotonic() + 2  # zombies of killed grandchildren are reaped by init
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], f"left running: {pids}"
        assert (self.path / "config.yaml").exists()
        assert all((self.path / "checkpoints" / f"last-agent{r}.pt").exists() for r in range(3)), err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.fixture
def run(tmp_path):
    runs = []

    def start(fault=None):
        runs.append(Run(tmp_path, fault))
        return runs[-1]

    yield start
    for r in runs:  # whatever a failing test left behind
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()
        for pid in r.pids:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


def test_agent_killed(run):
    r = run()
    pids = r.training()
    beats = [r.path / "workers" / f"rank{i}.heartbeat" for i in range(3)]
    before = [b.stat().st_mtime_ns for b in beats]
    end = time.monotonic() + 10  # healthy agents beat (every communication, at most every 0.25 s) while training
    while not all(b.stat().st_mtime_ns > t for b, t in zip(beats, before)):
        assert time.monotonic() < end, "the heartbeats stopped moving while training"
        time.sleep(0.1)
    os.kill(pids[1], signal.SIGKILL)
    code, err, seconds = r.finish()
    line = _error_line(err)
    assert code == 2, err[-3000:]
    assert line.startswith(f"paperzoo run: error: agent 1 (pid {pids[1]}) was killed by SIGKILL; log: "), line
    assert line.endswith("workers/rank1.log")
    r.check_clean(err)
    print(f"\nFAULT agent SIGKILL -> {line} -> {seconds:.1f} s")


def test_agent_stopped(run):
    r = run()
    pids = r.training()
    os.kill(pids[2], signal.SIGSTOP)
    code, err, seconds = r.finish()
    line = _error_line(err)
    assert code == 2, err[-3000:]
    assert line.startswith(f"paperzoo run: error: agent 2 (pid {pids[2]}) was stopped (SIGSTOP/SIGTSTP)"), line
    r.check_clean(err)
    print(f"\nFAULT agent SIGSTOP -> {line} -> {seconds:.1f} s")


def test_agent_hung(run):
    r = run(fault="1:12:hang")  # test hook: agent 1 sleeps forever at its 12th consensus round
    pids = r.training()
    code, err, _ = r.finish(timeout=150)
    exited = time.time()
    hung_at = (r.path / "workers" / "rank1.heartbeat").stat().st_mtime  # its last sign of life
    after_fault = exited - hung_at
    line = _error_line(err)
    assert code == 2, err[-3000:]
    assert line.startswith(f"paperzoo run: error: agent 1 (pid {pids[1]}) made no progress for "), line
    assert after_fault < COMM_TIMEOUT + GRACE, after_fault
    r.check_clean(err)
    print(f"\nFAULT agent hung -> {line} -> {after_fault:.1f} s after its last heartbeat")


@pytest.mark.slow  # ~15 s; an agent's error exit is also tested on stand-in agents in test_dgcn_launcher.py
def test_agent_crashed(run):
    r = run(fault="1:12:crash")  # test hook: agent 1 raises at its 12th consensus round
    pids = r.training()
    code, err, _ = r.finish(timeout=150)
    exited = time.time()
    after_fault = exited - (r.path / "workers" / "rank1.heartbeat").stat().st_mtime
    line = _error_line(err)
    assert code == 2, err[-3000:]
    assert line.startswith(f"paperzoo run: error: agent 1 (pid {pids[1]}) exited with code 1: RuntimeError: "
                           f"test hook: agent 1 crashed at consensus round 12; log: "), line
    r.check_clean(err)
    print(f"\nFAULT agent crashed -> {line} -> {after_fault:.1f} s after its last heartbeat")


@pytest.mark.slow  # ~20 s; the handler is also tested on stand-in agents in test_dgcn_launcher.py
def test_launcher_terminated_ends_its_agents(run):
    r = run()
    r.training()
    r.proc.send_signal(signal.SIGTERM)
    code, err, seconds = r.finish()
    assert code == 130 and "interrupted" in err.splitlines()[-1], err[-3000:]
    r.check_clean(err)
    print(f"\nFAULT launcher SIGTERM -> {err.splitlines()[-1]} -> {seconds:.1f} s")


@pytest.mark.slow  # ~15 s
def test_launcher_killed_takes_its_agents_along(run):
    r = run()
    pids = r.training()
    r.proc.kill()  # no chance to clean up: the kernel ends the agents (PR_SET_PDEATHSIG)
    tic = time.monotonic()
    r.proc.wait()
    while any(_alive(p) for p in pids) and time.monotonic() - tic < GRACE:
        time.sleep(0.05)
    r.check_clean("")
    print(f"\nFAULT launcher SIGKILL -> agents gone after {time.monotonic() - tic:.1f} s")
