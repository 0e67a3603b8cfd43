"""Real mode: agents as separate processes over torch.distributed (gloo, loopback)."""
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from paperzoo import runner
from paperzoo.core.runs import RunDir
from paperzoo.methods.dist_gcn import PRESETS, graphs, worker
from paperzoo.methods.dist_gcn import model as M
from paperzoo.methods.dist_gcn.run import run as run_method

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")

# Each process builds the same SBM graph, gets its part, runs one distributed forward/backward.
_EQUALITY = textwrap.dedent("""
    import datetime, os, sys
    import torch, torch.distributed as dist
    from paperzoo.methods.dist_gcn import graphs, model as M, partition as P
    from paperzoo.methods.dist_gcn.comm import DistComm
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    g = graphs.sbm_graph(120, 3, num_features=16, seed=5)
    local = P.build_local_graphs(g, P.partition(g, world, "spectral"), [rank])
    comm = DistComm(30.0)
    plan = M.halo_plan(local)
    adj = M.local_propagation(comm, local, plan)
    layout = M.ParamLayout(g.num_features, 8, g.num_classes)
    params = {rank: layout.init(7).requires_grad_()}
    logits = M.dist_forward(comm, plan, adj, {rank: local[rank].x}, params, layout)
    train = local[rank].splits["train"]
    loss = M.cross_entropy_sum(logits[rank][train], local[rank].y[train]) / g.splits["train"].numel()
    loss.backward()
    torch.save({"nodes": local[rank].nodes, "logits": logits[rank].detach(), "grad": params[rank].grad,
                "loss": loss.detach()}, os.path.join(sys.argv[1], f"rank{rank}.pt"))
    dist.destroy_process_group()
""")


def _env(rank, world, port):
    env = worker._worker_env(rank, world, port, 1)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


@pytest.mark.parametrize("world", [2, 4, pytest.param(8, marks=pytest.mark.slow)])
def test_processes_forward_and_gradient_equal_centralized(tmp_path, world):
    script = tmp_path / "agent.py"
    script.write_text(_EQUALITY)
    port = worker.free_port()
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=_env(r, world, port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(world)]
    codes = worker.wait_all(procs, deadline=120)
    assert codes == [0] * world, [p.stdout.read().decode()[-2000:] for p in procs]

    g = graphs.sbm_graph(120, 3, num_features=16, seed=5)
    layout = M.ParamLayout(g.num_features, 8, g.num_classes)
    w = layout.init(7).requires_grad_()
    ref = M.gcn_forward(graphs.normalized_adjacency(g.edge_index, g.num_nodes), g.x, w, layout)
    train = g.splits["train"]
    ref_loss = torch.nn.functional.cross_entropy(ref[train], g.y[train])
    ref_loss.backward()
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    logits = torch.zeros_like(ref)
    for part in parts:
        logits[part["nodes"]] = part["logits"]
    torch.testing.assert_close(logits, ref.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(sum(p["grad"] for p in parts), w.grad, atol=1e-5, rtol=0)
    assert float(sum(p["loss"] for p in parts)) == pytest.approx(float(ref_loss.detach()), abs=1e-5)


@pytest.mark.slow  # ~15 s: two processes plus a simulated run; item 4 of the README at full size
def test_real_run_matches_simulation(tmp_path):
    overrides = {"num_agents": 2, "iterations": 10, "eval_every": 5}
    sim = runner.run("dist_gcn", "tiny", run_dir=tmp_path / "sim", **overrides) \
        if "dist_gcn" in _registered() else _run_direct(tmp_path / "sim", **overrides)
    real = _run_direct(tmp_path / "real", nprocs=2, **overrides)
    for key in ("test/accuracy", "valid/accuracy", "final/loss", "bytes_per_iteration"):
        assert real.metrics[key] == pytest.approx(sim.metrics[key], abs=1e-5), key
    assert (tmp_path / "real" / "metrics.json").exists() and (tmp_path / "real" / "log.csv").exists()


def _registered():
    from paperzoo import registry

    return registry.names()


def _run_direct(path, **overrides):
    import dataclasses

    cfg = dataclasses.replace(PRESETS["tiny"].config, **overrides)
    run_dir = RunDir.create(path, method="dist_gcn", preset="tiny", config=cfg)
    return run_method(cfg, run_dir)


def test_killing_one_agent_fails_the_others_quickly(tmp_path):
    import dataclasses

    cfg = dataclasses.replace(PRESETS["tiny"].config, num_agents=3, nprocs=3, iterations=1_000_000,
                              eval_every=20, comm_timeout=20.0)
    RunDir.create(tmp_path, method="dist_gcn", preset="tiny", config=cfg)
    procs = worker.spawn(tmp_path, 3)
    deadline = time.monotonic() + 120
    while not (tmp_path / "checkpoints" / "last-agent1.pt").exists():  # training is under way
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "workers did not start"
        time.sleep(0.2)
    procs[1].kill()
    tic = time.monotonic()
    codes = worker.wait_all(procs, deadline=90)
    assert time.monotonic() - tic < 60, "survivors took too long to notice"
    assert codes[0] == worker.EXIT_AGENT_FAILURE and codes[2] == worker.EXIT_AGENT_FAILURE, codes
    for rank in (0, 2):
        text = (tmp_path / "workers" / f"rank{rank}.log").read_text()
        assert "peer process died or stopped responding" in text, text[-2000:]
