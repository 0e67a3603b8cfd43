"""Real mode: one agent per process over ``torch.distributed`` (gloo).

Launch with torchrun (one machine or several, standard ``env://`` rendezvous)::

    torchrun --nproc-per-node 4 -m paperzoo.methods.dist_gcn.worker --run-dir runs/dgcn4 --preset quick
    # several machines: --nnodes 2 --node-rank R --master-addr HOST --master-port PORT

or from Python / ``paperzoo run dist_gcn --nprocs 4`` through :func:`launch`, which starts the
processes on loopback with a free port and returns rank 0's result. Every process runs
:func:`paperzoo.methods.dist_gcn.run.train` with a :class:`DistComm`; rank 0 writes the run folder
(``config.yaml``, ``log.csv``, ``metrics.json``, plots, ``best.pt``), every rank its own
``checkpoints/last-agent<r>.pt``. A peer that dies makes the others fail with
:class:`AgentFailure` within ``comm_timeout`` seconds (exit code 3), never hang.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from paperzoo.api import RunResult
from paperzoo.core import config as cfglib
from paperzoo.core import io
from paperzoo.core.runs import RunDir
from paperzoo.methods.dist_gcn.comm import AgentFailure
from paperzoo.methods.dist_gcn.config import PRESETS, DistGCNConfig

log = logging.getLogger(__name__)
METHOD = "dist_gcn"
RESULT_FILE = "dist_result.json"
EXIT_AGENT_FAILURE = 3


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


def spawn(run_dir: Path, nprocs: int, *, threads: int = 1, port: int | None = None,
          data_root: str | None = None) -> list[subprocess.Popen]:
    """Start ``nprocs`` worker processes for the run folder ``run_dir`` (which holds config.yaml)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "paperzoo.methods.dist_gcn.worker", "--run-dir", str(run_dir)]
    if data_root:
        cmd += ["--data-root", data_root]
    logs = run_dir / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(nprocs):
        out = open(logs / f"rank{rank}.log", "w", encoding="utf-8")  # noqa: SIM115 - owned by the process
        procs.append(subprocess.Popen(cmd, env=_worker_env(rank, nprocs, port, threads), stdout=out,
                                      stderr=subprocess.STDOUT))
        out.close()
    return procs


def wait_all(procs: list[subprocess.Popen], deadline: float | None = None) -> list[int]:
    """Wait for every process; once one fails, give the others the rest of ``deadline`` (seconds
    from now, None = unbounded) to fail on their own, then kill them. Returns the exit codes."""
    end = None if deadline is None else time.monotonic() + deadline
    while any(p.poll() is None for p in procs):
        if end is not None and time.monotonic() > end:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.1)
    return [p.wait() for p in procs]


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def launch(cfg: DistGCNConfig, run_dir: RunDir, nprocs: int) -> RunResult:
    """Run ``cfg`` in ``nprocs`` real processes on this machine; return rank 0's result."""
    cfg = dataclasses.replace(cfg, nprocs=nprocs)
    if cfg.algorithm != "centralized" and cfg.num_agents != nprocs:
        raise cfglib.ConfigError(f"DistGCNConfig.nprocs: real mode runs one agent per process, but "
                                 f"num_agents={cfg.num_agents} and nprocs={nprocs}")
    run_dir.config = cfg
    run_dir.save_config()  # the workers read their config from the run folder
    procs = spawn(run_dir.path, nprocs, threads=cfg.num_threads or 1, data_root=run_dir.data_root)
    codes = wait_all(procs)
    if any(codes):
        logs = run_dir.path / "workers"
        detail = "\n".join(f"--- rank {r} (exit {c}):\n{_tail(logs / f'rank{r}.log')}"
                           for r, c in enumerate(codes) if c)
        raise RuntimeError(f"{sum(1 for c in codes if c)} of {nprocs} agent processes failed; logs in {logs}\n{detail}")
    result = json.loads((run_dir.path / RESULT_FILE).read_text(encoding="utf-8"))
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of one agent process."""
    import torch
    import torch.distributed as dist

    from paperzoo.methods.dist_gcn.comm import DistComm
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
    timeout = _dt.timedelta(seconds=cfg.comm_timeout)
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world, timeout=timeout)
    try:
        result = train(cfg, run_dir, DistComm(cfg.comm_timeout), main=rank == 0,
                       checkpoint=f"last-agent{rank}")
    except AgentFailure as exc:
        log.error("%s", exc)
        sys.stderr.flush()
        os._exit(EXIT_AGENT_FAILURE)  # skip gloo teardown, which would wait for the dead peer
    if rank == 0:
        run_dir.write_metrics(result.metrics)
        io.write_json(path / RESULT_FILE, {"metrics": dict(result.metrics), "artifacts": dict(result.artifacts)})
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
