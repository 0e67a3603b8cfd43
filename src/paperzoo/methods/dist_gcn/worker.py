"""Real mode: one agent per process over ``torch.distributed`` (gloo), and the launcher that supervises them.

Launch with torchrun (one machine or several, standard ``env://`` rendezvous)::

    torchrun --nproc-per-node 4 -m paperzoo.methods.dist_gcn.worker --run-dir runs/dgcn4 --preset quick
    # several machines: --nnodes 2 --node-rank R --master-addr HOST --master-port PORT

or from Python / ``paperzoo run dist_gcn --nprocs 4`` through :func:`launch`, which starts the
processes on loopback with a free port and returns rank 0's result. Every process runs
:func:`paperzoo.methods.dist_gcn.run.train` with a :class:`DistComm`; rank 0 writes the run folder
(``config.yaml``, ``log.csv``, ``metrics.json``, plots, ``best.pt``), every rank its own
``checkpoints/last-agent<r>.pt``. A peer that dies makes the others fail with
:class:`AgentFailure` within ``comm_timeout`` seconds (exit code 3), never hang.

:func:`launch` supervises its processes (:class:`AgentGroup`), as torchrun's agent does: it polls
every agent, and as soon as one exits with an error, is killed, is stopped (SIGSTOP) for a second,
or goes longer than ``comm_timeout`` without communicating (its heartbeat file stops moving), it
ends every process of the group (SIGTERM, then SIGKILL, to each agent's whole process group) and
raises one :class:`AgentProcessFailure` naming the agent, what happened and its log. The launcher
being interrupted or terminated ends the agents too, and an agent whose launcher dies is killed by
the kernel (``PR_SET_PDEATHSIG`` on Linux).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Self

import yaml

from paperzoo.api import RunResult
from paperzoo.core import config as cfglib
from paperzoo.core import io
from paperzoo.core.runs import RunDir
from paperzoo.methods.dist_gcn.comm import AgentFailure, DistComm
from paperzoo.methods.dist_gcn.config import PRESETS, DistGCNConfig

log = logging.getLogger(__name__)
METHOD = "dist_gcn"
RESULT_FILE = "dist_result.json"
EXIT_AGENT_FAILURE = 3
"""Exit code of an agent that gave up on an unresponsive peer (the peer is the one to blame)."""
HEARTBEAT_ENV = "PAPERZOO_HEARTBEAT"
"""File an agent touches whenever it starts or finishes a communication (set by the launcher)."""
LAUNCHER_ENV = "PAPERZOO_LAUNCHER_PID"
"""Pid of the launcher; the agent asks the kernel to kill it when that process ends."""
TEST_FAULT_ENV = "PAPERZOO_DGCN_TEST_FAULT"
"""TEST HOOK ONLY: ``RANK:ROUND:ACTION`` makes agent RANK ``hang`` (sleep forever) or ``crash``
(raise) when it starts its consensus round ROUND (1-based). Used by the fault-injection tests."""
POLL_SECONDS = 0.1
HANG_SLACK_SECONDS = 2.0
"""An agent is hung after ``comm_timeout`` plus this long without a heartbeat (its peers, waiting at
most ``comm_timeout`` for it, fail first and point at it)."""
STOP_GRACE_SECONDS = 1.0
"""An agent stopped (SIGSTOP / SIGTSTP) for this long fails the group (a debugger's brief stop is
a different state, ``t``, and is not counted)."""
TERM_GRACE_SECONDS = 3.0
"""Time the agents get to exit after SIGTERM before SIGKILL."""


class AgentProcessFailure(AgentFailure):
    """An agent process of a launched group failed (exited with an error, was killed or stopped, or
    made no progress); every process of the group has been ended when this is raised.

    ``rank``, ``pid``, ``cause`` (``exited``, ``killed``, ``stopped``, ``hung``, ``gave up`` or
    ``timeout``) and ``log`` (the agent's log file) name it; ``str()`` is one line.
    """

    def __init__(self, message: str, *, rank: int, pid: int, cause: str, log: Path):
        super().__init__(message)
        self.rank, self.pid, self.cause, self.log = rank, pid, cause, log


class LauncherTerminated(KeyboardInterrupt):
    """The launcher received SIGTERM or SIGHUP; handled like Ctrl-C (the agents are ended, the run
    can be resumed from its checkpoints)."""


# ------------------------------------------------------------------------------------------------
# agent side


class Heartbeat:
    """Agent side of the launcher's progress check: :meth:`beat` touches ``path`` (at most every
    ``interval`` seconds); the launcher reads its modification time. ``path=None``: does nothing."""

    def __init__(self, path: str | os.PathLike | None, interval: float = 0.25):
        self.path = None if path is None else Path(path)
        self.interval = interval
        self._last = -float("inf")

    @classmethod
    def from_env(cls, comm_timeout: float) -> Heartbeat:
        """The heartbeat the launcher asked for (``$PAPERZOO_HEARTBEAT``), if any."""
        return cls(os.environ.get(HEARTBEAT_ENV) or None, interval=min(0.25, comm_timeout / 10))

    def beat(self, force: bool = False) -> None:
        """Record progress now (cheap: one ``utime`` call at most every ``interval`` seconds)."""
        if self.path is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self.path.touch()


def die_with_launcher() -> None:
    """Make the kernel SIGKILL this process when the launcher that started it ends (Linux), and exit
    at once if it has already ended. Does nothing without ``$PAPERZOO_LAUNCHER_PID`` (torchrun)."""
    launcher = os.environ.get(LAUNCHER_ENV)
    if not launcher:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != int(launcher):  # it ended before the request took effect
        os._exit(1)


class _FaultyComm(DistComm):
    """TEST HOOK ONLY (``$PAPERZOO_DGCN_TEST_FAULT``): a DistComm whose agent hangs or crashes when it
    starts a given consensus round, to test the launcher's supervision."""

    def __init__(self, timeout: float, on_progress, round_: int, action: str):
        super().__init__(timeout, on_progress)
        self._round, self._at, self._action = 0, round_, action

    def mix(self, values, weights):
        self._round += 1
        if self._round == self._at:
            log.warning("test hook: agent %d %ss at consensus round %d", self.rank, self._action, self._round)
            if self._action == "hang":
                while True:
                    time.sleep(3600)
            raise RuntimeError(f"test hook: agent {self.rank} crashed at consensus round {self._round}")
        return super().mix(values, weights)


def _make_comm(rank: int, timeout: float, heartbeat: Heartbeat) -> DistComm:
    fault = os.environ.get(TEST_FAULT_ENV)
    if fault:
        try:
            r, k, action = fault.split(":")
            if action not in ("hang", "crash"):
                raise ValueError(action)
            r, k = int(r), int(k)
        except ValueError:
            raise ValueError(f"${TEST_FAULT_ENV}={fault!r}: expected RANK:ROUND:hang|crash") from None
        if r == rank:
            return _FaultyComm(timeout, heartbeat.beat, k, action)
    return DistComm(timeout, heartbeat.beat)


# ------------------------------------------------------------------------------------------------
# launcher side


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_config(run_dir: Path) -> tuple[str, DistGCNConfig, str | None]:
    """``(preset, config, data_root)`` of an existing run folder, validated."""
    path = run_dir / "config.yaml"
    saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(saved, dict) or saved.get("method") != METHOD:
        raise cfglib.ConfigError(f"{path}: not a {METHOD} run folder")
    try:
        return saved.get("preset", "custom"), cfglib.from_dict(DistGCNConfig, saved["config"]), saved.get("data_root")
    except cfglib.ConfigError as exc:
        raise cfglib.ConfigError(f"{path}: {exc}") from None


def _worker_env(rank: int, world: int, port: int, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": str(threads or 1)})
    if rank:
        env["PAPERZOO_PROGRESS"] = "0"
    return env


def _proc_state(pid: int) -> str | None:
    """The one-letter state in ``/proc/<pid>/stat`` (``T``: stopped), None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:][:1].decode()


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (an agent and anything it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    # torch.distributed prefixes an uncaught exception's lines with "[rank<r>]: "
    return re.sub(r"^\[rank\d+\]:\s*", "", lines[-1])[:300] if lines else ""


def _describe_exit(code: int) -> tuple[str, str]:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "killed", f"was killed by {name}"
    return "exited", f"exited with code {code}"


@dataclasses.dataclass
class AgentProcess:
    """One supervised process: its rank, ``Popen``, log file and heartbeat file (None: unchecked)."""

    rank: int
    proc: subprocess.Popen
    log: Path
    heartbeat: Path | None = None
    stopped_since: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


class AgentGroup:
    """The supervised processes of one distributed run (torchrun's elastic agent, for one machine).

    :meth:`wait` polls every process every 0.1 s and fails the whole group (ends every process, then
    raises :class:`AgentProcessFailure`) as soon as one agent

    * exits with a code other than 0 or :data:`EXIT_AGENT_FAILURE`, or is killed by a signal;
    * is stopped (state ``T``: SIGSTOP, SIGTSTP) for :data:`STOP_GRACE_SECONDS`;
    * with ``progress_timeout`` set: has not touched its heartbeat file for ``progress_timeout`` +
      :data:`HANG_SLACK_SECONDS` seconds, or has not created it ``startup_timeout`` seconds after
      the start;
    * exits with :data:`EXIT_AGENT_FAILURE` (it gave up waiting for a peer): then the agent to blame
      is the one still running that has been silent longest (else the one that gave up);
    * or is still running when :meth:`wait`'s ``timeout`` runs out.

    Each agent runs in its own session (a terminal's Ctrl-C reaches only the launcher, which ends
    the agents) and is ended with its whole process group. Use as a context manager, so the group
    is ended whatever happens in the block.
    """

    def __init__(self, agents: Sequence[AgentProcess], *, progress_timeout: float | None = None,
                 startup_timeout: float = 120.0):
        self.agents = list(agents)
        self.progress_timeout = progress_timeout
        self.startup_timeout = startup_timeout
        self.started = time.monotonic()
        self._gave_up_since: float | None = None

    @classmethod
    def start(cls, cmd: Sequence[str], envs: Sequence[Mapping[str, str]], log_dir: str | os.PathLike, *,
              progress_timeout: float | None = None, startup_timeout: float = 120.0) -> AgentGroup:
        """Start one process per entry of ``envs`` (rank = index), running ``cmd`` with that
        environment, output to ``log_dir/rank<r>.log``. With ``progress_timeout``, agent r must touch
        ``$PAPERZOO_HEARTBEAT`` (``log_dir/rank<r>.heartbeat``) at least that often (see
        :class:`Heartbeat`). Writes ``log_dir/agents.json`` (rank, pid, log of every agent)."""
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        group = cls([], progress_timeout=progress_timeout, startup_timeout=startup_timeout)
        try:
            for rank, base in enumerate(envs):
                env = dict(base)
                env[LAUNCHER_ENV] = str(os.getpid())
                heartbeat = None
                if progress_timeout is not None:
                    heartbeat = log_dir / f"rank{rank}.heartbeat"
                    heartbeat.unlink(missing_ok=True)  # a previous attempt's
                    env[HEARTBEAT_ENV] = str(heartbeat)
                path = log_dir / f"rank{rank}.log"
                with open(path, "w", encoding="utf-8") as out:
                    proc = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
                group.agents.append(AgentProcess(rank, proc, path, heartbeat))
            io.write_json(log_dir / "agents.json", {
                "launcher": os.getpid(),
                "agents": [{"rank": a.rank, "pid": a.pid, "log": str(a.log)} for a in group.agents]})
        except BaseException:
            group.terminate()
            raise
        group.started = time.monotonic()
        log.info("started %d agent processes (pids %s); logs in %s", len(group.agents),
                 ", ".join(str(a.pid) for a in group.agents), log_dir)
        return group

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if any(a.proc.poll() is None for a in self.agents):
            self.terminate()

    @property
    def pids(self) -> list[int]:
        """Process ids, by rank."""
        return [a.pid for a in self.agents]

    def _silence(self, agent: AgentProcess, now: float) -> tuple[float, float]:
        """(seconds without a heartbeat, the limit that applies)."""
        assert self.progress_timeout is not None
        limit = self.progress_timeout + HANG_SLACK_SECONDS
        if agent.heartbeat is not None:
            try:
                return time.time() - agent.heartbeat.stat().st_mtime, limit
            except FileNotFoundError:
                pass
        return now - self.started, max(self.startup_timeout, limit)  # not joined yet

    def _blame(self, agent: AgentProcess, cause: str, what: str) -> AgentProcessFailure:
        return AgentProcessFailure(f"agent {agent.rank} (pid {agent.pid}) {what}; log: {agent.log}",
                                   rank=agent.rank, pid=agent.pid, cause=cause, log=agent.log)

    def check(self, deadline: float | None = None) -> AgentProcessFailure | None:
        """Look at every agent once; the failure to report, or None while the group is healthy or
        done. ``deadline``: ``time.monotonic()`` value after which a running agent is a failure."""
        now = time.monotonic()
        codes = [a.proc.poll() for a in self.agents]
        found: list[tuple[int, AgentProcess, str, str]] = []  # (priority, agent, cause, text)
        alive = []
        for agent, code in zip(self.agents, codes):
            if code is not None:
                if code not in (0, EXIT_AGENT_FAILURE):
                    cause, what = _describe_exit(code)
                    if cause == "exited" and (line := _last_line(agent.log)):
                        what += f": {line}"
                    found.append((0, agent, cause, what))
                continue
            alive.append(agent)
            if _proc_state(agent.pid) == "T":
                agent.stopped_since = agent.stopped_since or now
                if now - agent.stopped_since >= STOP_GRACE_SECONDS:
                    stopped = now - agent.stopped_since
                    found.append((1, agent, "stopped", f"was stopped (SIGSTOP/SIGTSTP) for {stopped:.1f} s"))
                continue
            agent.stopped_since = None
            if self.progress_timeout is not None:
                silent, limit = self._silence(agent, now)
                if silent > limit:
                    found.append((2, agent, "hung", self._hung_text(agent, silent)))
        if found:
            _, agent, cause, what = min(found, key=lambda f: (f[0], f[1].rank))
            return self._blame(agent, cause, what)
        gave_up = [a for a, c in zip(self.agents, codes) if c == EXIT_AGENT_FAILURE]
        if gave_up:
            # give a peer that died at the same moment time to be reaped and blamed instead
            self._gave_up_since = self._gave_up_since or now
            if now - self._gave_up_since < 0.5 and alive:
                return None
            waiters = ("agent " if len(gave_up) == 1 else "agents ") + ", ".join(str(a.rank) for a in gave_up)
            if alive:
                if self.progress_timeout is not None:
                    agent = max(alive, key=lambda a: self._silence(a, now)[0])
                    what = self._hung_text(agent, self._silence(agent, now)[0])
                else:
                    agent, what = alive[0], "stopped responding"
                if agent.stopped_since is not None:
                    what = "was stopped (SIGSTOP/SIGTSTP)"
                return self._blame(agent, "hung", f"{what} ({waiters} gave up waiting for it)")
            agent = gave_up[0]
            return self._blame(agent, "gave up", f"gave up on its peers: {_last_line(agent.log)}")
        if deadline is not None and now > deadline and alive:
            return self._blame(alive[0], "timeout", f"was still running at the time limit, "
                                                    f"{now - self.started:.0f} s after the start")
        return None

    def _hung_text(self, agent: AgentProcess, silent: float) -> str:
        started = agent.heartbeat is not None and agent.heartbeat.exists()
        if not started:
            return f"did not join the group within {silent:.1f} s (startup_timeout {self.startup_timeout:g} s)"
        return f"made no progress for {silent:.1f} s (comm_timeout {self.progress_timeout:g} s)"

    def wait(self, timeout: float | None = None) -> list[int]:
        """Block until every agent has exited with 0 (returns the exit codes, all 0), or fail: end
        every process of the group and raise :class:`AgentProcessFailure`. ``timeout``: seconds from
        now after which still-running agents are a failure. The group is ended on any exception
        (KeyboardInterrupt included)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                failure = self.check(deadline)
                if failure is not None:
                    others = [a.rank for a in self.agents if a.proc.poll() is None and a.rank != failure.rank]
                    self.terminate()
                    if others:
                        log.debug("ended agents %s", others)
                    raise failure
                codes = [a.proc.poll() for a in self.agents]
                if all(c == 0 for c in codes):
                    return codes
                time.sleep(POLL_SECONDS)
        finally:
            self.__exit__()

    def terminate(self, grace: float = TERM_GRACE_SECONDS) -> list[int]:
        """End every agent and its process group: SIGTERM (plus SIGCONT, so a stopped agent gets
        it), SIGKILL to whatever is left after ``grace`` seconds; reap them. Returns the exit codes."""
        for agent in self.agents:
            if agent.proc.poll() is None:
                _signal_group(agent.pid, signal.SIGTERM)
                _signal_group(agent.pid, signal.SIGCONT)
        end = time.monotonic() + grace
        while any(a.proc.poll() is None for a in self.agents) and time.monotonic() < end:
            time.sleep(0.02)
        for agent in self.agents:  # the leaders, and anything they started that outlived them
            _signal_group(agent.pid, signal.SIGKILL)
            if agent.proc.poll() is None:  # not a group leader after all (it cannot be, but never hang)
                agent.proc.kill()
        return [a.proc.wait() for a in self.agents]


def spawn(run_dir: Path, nprocs: int, *, threads: int = 1, port: int | None = None,
          data_root: str | None = None) -> AgentGroup:
    """Start ``nprocs`` supervised worker processes for the run folder ``run_dir`` (which holds
    config.yaml: its ``comm_timeout`` and ``startup_timeout`` bound their silence); logs, heartbeats
    and ``agents.json`` go to ``run_dir/workers``."""
    run_dir = Path(run_dir)
    _, cfg, _ = read_config(run_dir)
    port = port or free_port()
    cmd = [sys.executable, "-m", "paperzoo.methods.dist_gcn.worker", "--run-dir", str(run_dir)]
    if data_root:
        cmd += ["--data-root", data_root]
    envs = [_worker_env(rank, nprocs, port, threads) for rank in range(nprocs)]
    return AgentGroup.start(cmd, envs, run_dir / "workers", progress_timeout=cfg.comm_timeout,
                            startup_timeout=cfg.startup_timeout)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`LauncherTerminated` (a KeyboardInterrupt)
    in the main thread, so ``finally`` blocks and context managers end the agents. No-op outside
    the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise LauncherTerminated(f"received {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def launch(cfg: DistGCNConfig, run_dir: RunDir, nprocs: int) -> RunResult:
    """Run ``cfg`` in ``nprocs`` supervised processes on this machine; return rank 0's result.

    Raises :class:`AgentProcessFailure` (one line: the agent, what happened, its log) within about
    ``comm_timeout`` + 5 s of an agent dying, being stopped or hanging, after ending every process."""
    cfg = dataclasses.replace(cfg, nprocs=nprocs)
    if cfg.algorithm != "centralized" and cfg.num_agents != nprocs:
        raise cfglib.ConfigError(f"DistGCNConfig.nprocs: real mode runs one agent per process, but "
                                 f"num_agents={cfg.num_agents} and nprocs={nprocs}")
    run_dir.config = cfg
    run_dir.save_config()  # the workers read their config from the run folder
    result_path = run_dir.path / RESULT_FILE
    result_path.unlink(missing_ok=True)
    with terminate_as_interrupt(), \
            spawn(run_dir.path, nprocs, threads=cfg.num_threads or 1, data_root=run_dir.data_root) as group:
        group.wait()
    if not result_path.exists():
        raise RuntimeError(f"all {nprocs} agent processes exited normally but rank 0 wrote no {result_path}; "
                           f"logs in {run_dir.path / 'workers'}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    return RunResult(metrics=result["metrics"], history=run_dir.read_history(), artifacts=result["artifacts"])


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m paperzoo.methods.dist_gcn.worker",
                                description="One dist_gcn agent process (RANK/WORLD_SIZE/MASTER_ADDR/"
                                            "MASTER_PORT from the environment, as torchrun sets them).")
    p.add_argument("--run-dir", required=True, help="run folder (created by rank 0 with --preset)")
    p.add_argument("--preset", help="start a new run from this preset (else the run folder's config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-root", default=None)
    return p.parse_args(argv)


def _give_up(exc: BaseException) -> None:
    """Report a lost peer and exit with :data:`EXIT_AGENT_FAILURE`, skipping gloo's teardown (which
    would wait for the dead peer)."""
    log.error("%s", exc)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(EXIT_AGENT_FAILURE)


def main(argv: list[str] | None = None) -> int:
    """Entry point of one agent process."""
    die_with_launcher()
    import torch
    import torch.distributed as dist

    from paperzoo.methods.dist_gcn.run import train

    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{os.environ.get('RANK', '?')} %(message)s")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    path = Path(args.run_dir)
    if args.preset:
        preset = args.preset
        cfg = cfglib.from_dict(DistGCNConfig, cfglib.parse_overrides(args.overrides), base=PRESETS[preset].config)
        cfg = dataclasses.replace(cfg, nprocs=world, num_agents=world if cfg.algorithm != "centralized" else 1)
        data_root = args.data_root
    else:
        preset, cfg, data_root = read_config(path)
        data_root = args.data_root or data_root
    if cfg.agents != world:
        raise SystemExit(f"rank {rank}: config needs {cfg.agents} agents but WORLD_SIZE={world}")
    if rank == 0 and args.preset and not (path / "config.yaml").exists():
        run_dir = RunDir.create(path, method=METHOD, preset=preset, config=cfg, data_root=data_root)
    else:
        run_dir = RunDir(path, method=METHOD, preset=preset, config=cfg, data_root=data_root)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    heartbeat = Heartbeat.from_env(cfg.comm_timeout)
    # joining may wait for slower peers to start; every later wait is bounded by comm_timeout (DistComm)
    timeout = _dt.timedelta(seconds=max(cfg.comm_timeout, cfg.startup_timeout))
    try:
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world, timeout=timeout)
    except (RuntimeError, ValueError) as exc:  # DistStoreError (a RuntimeError): a peer never joined
        _give_up(AgentFailure(f"agent {rank}: could not join the group of {world} within "
                              f"{timeout.total_seconds():g} s ({str(exc).splitlines()[0] if str(exc) else exc})"))
    heartbeat.beat(force=True)
    comm = _make_comm(rank, cfg.comm_timeout, heartbeat)
    try:
        result = train(cfg, run_dir, comm, main=rank == 0, checkpoint=f"last-agent{rank}")
        if rank == 0:
            run_dir.write_metrics(result.metrics)
            io.write_json(path / RESULT_FILE, {"metrics": dict(result.metrics), "artifacts": dict(result.artifacts)})
        comm.barrier()
    except AgentFailure as exc:
        _give_up(exc)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
