"""Real mode: agents as separate processes over torch.distributed (gloo, loopback)."""
import os
import sys
import textwrap

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
    group = worker.AgentGroup.start([sys.executable, str(script), str(tmp_path)],
                                    [_env(r, world, port) for r in range(world)], tmp_path / "logs")
    assert group.wait(timeout=120) == [0] * world  # else AgentProcessFailure names the agent and its log

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


# Rank 1 leaves right after joining; rank 0's consensus round with it must fail within the timeout.
_DESERTED = textwrap.dedent("""
    import datetime, os, sys
    import torch, torch.distributed as dist
    from paperzoo.methods.dist_gcn.comm import AgentFailure, DistComm
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    if rank == 1:
        os._exit(0)
    try:
        DistComm(2.0).mix({0: torch.ones(3)}, torch.full((2, 2), 0.5))
    except AgentFailure as exc:
        print(exc, flush=True)
        os._exit(3)
""")


def test_agent_whose_peer_left_gives_up_within_the_timeout(tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(_DESERTED)
    port = worker.free_port()
    group = worker.AgentGroup.start([sys.executable, str(script)], [_env(r, 2, port) for r in range(2)],
                                    tmp_path / "logs")
    with pytest.raises(worker.AgentProcessFailure) as info:
        group.wait(timeout=120)
    failure = info.value
    assert (failure.rank, failure.cause) == (0, "gave up"), str(failure)
    assert "agent 0: consensus round with agents [1] failed after at most 2 s: a peer process died or " \
           "stopped responding" in str(failure)


# A killed, stopped or hung agent under the launcher: tests/robustness/test_dist_gcn_faults.py.
