"""Time and bytes per iteration of distributed GCN training vs the centralized GCN, in one run.

    PAPERZOO_DATA=../shared/data python benchmarks/dist_gcn/bench.py [--dataset cora] [--iterations 30]

Measures, on one thread per process:

- ``centralized``: one gradient step of the plain GCN (``model.gcn_forward`` on the full sparse
  A_hat, autograd backward, SGD update);
- ``sim-N``: one gradient-tracking iteration of N simulated agents in this process (all N agents'
  forward/backward with boundary exchanges, consensus round, monitoring all-reduces);
- ``procs-4``: the same with 4 real gloo processes (``seconds_per_iteration`` of rank 0, which
  includes waiting for its peers), launched through ``worker.launch``.

Bytes: the exchange bytes per agent per iteration against the lower bound (every boundary row once
per layer, forward and backward) and against naive replication (every agent sending all its rows'
products to every agent it shares an edge with), plus the consensus bytes. Output:
``benchmarks/dist_gcn/results/bench_<dataset>.json`` and a table on stdout.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from paperzoo.core import io
from paperzoo.core.runs import RunDir
from paperzoo.methods.dist_gcn import PRESETS, graphs, trainer
from paperzoo.methods.dist_gcn import model as M
from paperzoo.methods.dist_gcn.comm import SimComm
from paperzoo.methods.dist_gcn.run import exchange_lower_bound, load_graph
from paperzoo.methods.dist_gcn.worker import launch

RESULTS = Path(__file__).resolve().parent / "results"


def time_centralized(cfg, graph, iterations: int) -> list[float]:
    layout = M.ParamLayout(graph.num_features, cfg.hidden, graph.num_classes)
    adj = graphs.normalized_adjacency(graph.edge_index, graph.num_nodes)
    x = M.as_features(graph.x)
    w = layout.init(cfg.seed)
    gen = torch.Generator().manual_seed(0)
    train = graph.splits["train"]
    times = []
    for _ in range(iterations):
        tic = time.perf_counter()
        p = w.detach().requires_grad_()
        logits = M.gcn_forward(adj, x, p, layout, cfg.dropout, gen)
        loss = torch.nn.functional.cross_entropy(logits[train], graph.y[train])
        loss.backward()
        w = w - cfg.lr * (p.grad + cfg.weight_decay * w)
        times.append(time.perf_counter() - tic)
    return times


def time_simulated(cfg, graph, iterations: int) -> tuple[list[float], dict]:
    ctx = trainer.build_context(cfg, graph, SimComm(cfg.agents))
    state = trainer.initial_state(ctx)
    times, rows = [], []
    for _ in range(iterations):
        tic = time.perf_counter()
        rows.append(trainer.step(ctx, state))
        times.append(time.perf_counter() - tic)
    elem = 4
    width = ctx.layout.hidden + ctx.layout.num_classes
    naive = sum(ctx.graphs[a].num_nodes * len(ctx.graphs[a].peers) for a in ctx.comm.agents)
    info = {"exchange_bytes": rows[-1]["bytes_exchange"], "mix_bytes": rows[-1]["bytes_mix"],
            "lower_bound_bytes": exchange_lower_bound(ctx),
            "naive_replication_bytes": 2.0 * naive * width * elem / ctx.num_agents,
            "boundary_rows": ctx.stats["boundary_rows"], "edge_cut": ctx.stats["edge_cut"],
            "links": len(ctx.topology.links), "parameters": ctx.layout.size}
    return times, info


def time_processes(cfg, iterations: int, nprocs: int = 4) -> float:
    cfg = dataclasses.replace(cfg, num_agents=nprocs, nprocs=nprocs, iterations=iterations, eval_every=iterations)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDir.create(Path(tmp) / "run", method="dist_gcn", preset="bench", config=cfg,
                                data_root=os.environ.get("PAPERZOO_DATA"))
        return float(launch(cfg, run_dir, nprocs).metrics["seconds_per_iteration"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="cora", choices=["cora", "citeseer", "sbm"])
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--no-procs", action="store_true", help="skip the real multi-process measurement")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    base = dataclasses.replace(PRESETS["quick"].config, dataset=args.dataset)
    graph = load_graph(base, os.environ.get("PAPERZOO_DATA"))
    cen = time_centralized(base, graph, args.iterations)
    out = {"dataset": args.dataset, "iterations": args.iterations, "threads": 1,
           "centralized": {"seconds_per_iteration": statistics.median(cen)}, "simulated": {}}
    for n in (2, 4, 8):
        times, info = time_simulated(dataclasses.replace(base, num_agents=n), graph, args.iterations)
        sec = statistics.median(times)
        out["simulated"][str(n)] = {"seconds_per_iteration": sec, "vs_centralized": sec / statistics.median(cen),
                                    "exchange_vs_lower_bound": info["exchange_bytes"] / info["lower_bound_bytes"],
                                    "exchange_vs_naive": info["exchange_bytes"] / info["naive_replication_bytes"],
                                    **info}
    if not args.no_procs:
        sec = time_processes(base, args.iterations)
        out["processes"] = {"4": {"seconds_per_iteration": sec, "vs_centralized": sec / statistics.median(cen)}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    io.write_json(RESULTS / f"bench_{args.dataset}.json", out)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
