"""Probe: gradient-tracking iterations to the centralized target for hand-made mixing matrices.

    PAPERZOO_DATA=../shared/data python benchmarks/dist_gcn/topology_probe.py cora 8 [--only a,b]

Runs the ``quick`` preset (dropout 0) with the topology replaced by each candidate of
:func:`candidates` (including alternatives ``build_topology`` does not offer: lazy weights, the
session-5 tree design), and prints the iterations needed to reach the loss the centralized GCN reaches at
iteration 100, the mixing matrix's ``lambda_2`` and ``lambda_n``, and the cut edges on its
links; writes ``runs/dist_gcn/probe/topo_<dataset>_<n>.json``. A research aid for item 3 of the method
README, not an API: it swaps ``trainer.agree_on_topology`` for the duration of each run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from paperzoo.core.runs import RunDir
from paperzoo.methods.dist_gcn import PRESETS, trainer
from paperzoo.methods.dist_gcn import topology as TP
from paperzoo.methods.dist_gcn.comm import SimComm
from paperzoo.methods.dist_gcn.graphs import load_graph
from paperzoo.methods.dist_gcn.partition import cut_matrix, partition
from paperzoo.methods.dist_gcn.run import run

OUT = Path(__file__).resolve().parents[2] / "runs" / "dist_gcn" / "probe"


def losses(cfg, topo: TP.Topology | None = None, key: str = "average_loss") -> list[float]:
    """Training loss ``key`` per iteration of ``cfg`` (with ``topo`` forced in, if given), in a scratch run
    folder: ``average_loss`` (the centralized loss of the agents' average weights) or ``loss`` (the sum of
    the agents' losses at their own weights)."""
    original = trainer.agree_on_topology
    if topo is not None:
        trainer.agree_on_topology = lambda *args, **kwargs: topo
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rd = RunDir.create(Path(tmp) / "run", method="dist_gcn", preset="quick", config=cfg,
                               data_root=os.environ.get("PAPERZOO_DATA"))
            history = run(cfg, rd).history
            return [float(r[key]) for r in history] if key else history
    finally:
        trainer.agree_on_topology = original


def candidates(n: int, cut: np.ndarray, designed: TP.Topology) -> dict[str, TP.Topology]:
    def topo(name, links, w):
        return TP.Topology(name, sorted(links), w, "probe")

    def lazy(w):
        return 0.5 * (np.eye(n) + w)

    budget = TP.default_links(n)
    ring, tree = TP.ring_links(n), TP.max_spanning_tree(cut)
    tree_plus = tree + [max((e for e in TP.complete_links(n) if e not in tree), key=lambda e: cut[e])]
    cut_cycle = TP.cut_cycle_links(cut, budget)
    out = {
        "designed": designed,
        "designed_cut": topo("designed (cut counts)", cut_cycle, TP.metropolis_weights(n, cut_cycle)),
        "tree_plus_fmmc": topo("tree+", tree_plus, TP.fastest_mixing_weights(n, tree_plus)),
        "tree_plus_mh": topo("tree+", tree_plus, TP.metropolis_weights(n, tree_plus)),
        "ring_mh": topo("ring", ring, TP.metropolis_weights(n, ring)),
        "ring_fmmc": topo("ring", ring, TP.fastest_mixing_weights(n, ring)),
        "ring_lazy_fmmc": topo("ring", ring, lazy(TP.fastest_mixing_weights(n, ring))),
        "ring_lazy_mh": topo("ring", ring, lazy(TP.metropolis_weights(n, ring))),
        "star_mh": topo("star", TP.star_links(n, budget), TP.metropolis_weights(n, TP.star_links(n, budget))),
        "complete_mh": topo("complete", TP.complete_links(n), TP.metropolis_weights(n, TP.complete_links(n))),
    }
    for seed in (1, 2, 3):
        links = TP.random_links(n, budget, seed)
        out[f"random{seed}_mh"] = topo("random", links, TP.metropolis_weights(n, links))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default="cora")
    ap.add_argument("agents", nargs="?", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=140)
    ap.add_argument("--only", default=None, help="comma-separated candidate names")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = dataclasses.replace(PRESETS["quick"].config, dataset=args.dataset, num_agents=args.agents, dropout=0.0,
                               iterations=args.iterations, eval_every=args.iterations, num_threads=1,
                               topology="ring")   # replaced by each candidate; skips the design step
    target = losses(dataclasses.replace(base, algorithm="centralized", num_agents=1))[99]
    graph = load_graph(args.dataset, os.environ.get("PAPERZOO_DATA"))
    cut = cut_matrix(graph.edge_index, partition(graph, args.agents, base.partition, base.split_seed), args.agents)
    designed = trainer.build_context(dataclasses.replace(base, topology="designed"), graph,
                                     SimComm(args.agents)).topology   # the library's design
    print(f"target loss {target:.4f}")
    keep = set(args.only.split(",")) if args.only else None
    rows = {}
    for name, topo in candidates(args.agents, cut, designed).items():
        if keep and name not in keep:
            continue
        vals = np.linalg.eigvalsh(topo.weights)
        history = losses(base, topo, key="")
        it = next((k + 1 for k, r in enumerate(history) if r["average_loss"] <= target), None)
        it_own = next((k + 1 for k, r in enumerate(history) if r["loss"] <= target), None)
        on_links = int(sum(cut[e] for e in topo.links))
        rows[name] = {"iterations": it, "iterations_own_weights": it_own, "lambda2": float(vals[-2]), "lambda_n": float(vals[0]),
                      "cut_edges_on_links": on_links, "links": topo.links}
        print(f"{name:22s} iterations={it} (own weights: {it_own}) lambda2={vals[-2]:.3f} lambda_n={vals[0]:.3f} "
              f"cut_on_links={on_links}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"topo_{args.dataset}_{args.agents}.json").write_text(
        json.dumps({"target_loss": target, "rows": rows}, indent=1, default=list))


if __name__ == "__main__":
    main()
