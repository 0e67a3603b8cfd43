"""The experiments behind dist_gcn's README ("what it must show", items 2-4).

    PAPERZOO_DATA=../shared/data python benchmarks/dist_gcn/experiments.py [accuracy|topology|real|all]
        [--agents 8,32] [--datasets cora,citeseer]

Every run is an ordinary run folder under ``runs/dist_gcn/`` (restartable: finished runs are
reused); the summaries go to ``benchmarks/dist_gcn/results/*.json`` and the topology plots to
``benchmarks/dist_gcn/results/topology_<dataset>_<agents>.png``. Nothing here is tuned on test numbers: presets use
lr 0.5 (picked on Cora *validation* accuracy of the centralized GCN), dropout 0.5, 300 iterations.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from paperzoo.core import io
from paperzoo.core.runs import RunDir
from paperzoo.methods.dist_gcn import PRESETS
from paperzoo.methods.dist_gcn.run import run

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "dist_gcn"
RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("dist_gcn.experiments")


def run_point(name: str, **overrides) -> tuple[dict, list]:
    """Run (or reuse) ``runs/dist_gcn/<name>`` with the quick preset plus ``overrides``."""
    path = RUNS / name
    if (path / "metrics.json").exists():
        run_dir = RunDir(path, method="dist_gcn", preset="quick", config=None)
        return run_dir.read_metrics(), run_dir.read_history()
    cfg = dataclasses.replace(PRESETS["quick"].config, **overrides)
    if (path / "config.yaml").exists():  # unfinished: resume from its checkpoint
        run_dir = RunDir(path, method="dist_gcn", preset="quick", config=cfg,
                         data_root=os.environ.get("PAPERZOO_DATA"))
    else:
        run_dir = RunDir.create(path, method="dist_gcn", preset="quick", config=cfg,
                                data_root=os.environ.get("PAPERZOO_DATA"))
    log.info("running %s", name)
    result = run(cfg, run_dir)
    run_dir.write_metrics(result.metrics)
    return dict(result.metrics), list(result.history)


KEYS = ("test/accuracy", "valid/accuracy", "best_iteration", "final/loss", "final/consensus_error",
        "final/test_accuracy", "bytes_per_iteration", "bytes_exchange_per_iteration", "bytes_mix_per_iteration",
        "exchange_lower_bound_bytes", "seconds_per_iteration", "edge_cut", "boundary_rows",
        "topology/spectral_gap", "topology/links")


def accuracy() -> dict:
    """Item 2: gradient tracking vs DGD vs centralized, Cora and CiteSeer, 4 and 8 agents."""
    out = {}
    for ds in ("cora", "citeseer"):
        out[f"{ds}/centralized"] = run_point(f"acc-{ds}-centralized", dataset=ds, algorithm="centralized")[0]
        for n in (4, 8):
            for algo in ("gt", "dgd"):
                out[f"{ds}/{algo}/{n}"] = run_point(f"acc-{ds}-{algo}-{n}", dataset=ds, algorithm=algo, num_agents=n)[0]
    # consensus without dropout noise (exact local gradients): GT -> 0, DGD keeps an O(lr) floor
    for algo in ("gt", "dgd"):
        out[f"cora/{algo}/8/no_dropout"] = run_point(f"acc-cora-{algo}-8-nodropout", dataset="cora", algorithm=algo,
                                                     num_agents=8, dropout=0.0)[0]
    out["cora/centralized/no_dropout"] = run_point("acc-cora-centralized-nodropout", dataset="cora",
                                                   algorithm="centralized", dropout=0.0)[0]
    summary = {k: {m: v[m] for m in KEYS if m in v} for k, v in out.items()}
    io.write_json(RESULTS / "accuracy.json", summary)
    return summary


def _first_below(history: list, target: float, key: str = "average_loss") -> int | None:
    for row in history:
        if float(row[key]) <= target:
            return int(row["epoch"])
    return None


def topology(num_agents: int = 8, dataset: str = "cora", iterations: int = 300) -> dict:
    """Item 3: designed topology vs ring / star / random with the same link count (dropout off, so
    that the loss curves are deterministic), gradient tracking. Convergence is read off
    ``average_loss``, the centralized training loss of the agents' average weights (the sum of the
    agents' losses at their own weights rewards disagreement; it is reported alongside)."""
    base = {"dataset": dataset, "algorithm": "gt", "num_agents": num_agents, "dropout": 0.0,
            "iterations": iterations}
    _cent, cent_hist = run_point(f"topo-{dataset}-centralized", dataset=dataset, algorithm="centralized", dropout=0.0)
    # target: the training loss the centralized GCN reaches after 100 of its 300 iterations
    target = float(cent_hist[99]["average_loss"])
    points = {"designed (metropolis)": {"topology": "designed", "mixing": "metropolis"},
              "designed (fmmc)": {"topology": "designed", "mixing": "fmmc"},
              "ring (metropolis)": {"topology": "ring", "mixing": "metropolis"},
              "ring (fmmc)": {"topology": "ring", "mixing": "fmmc"},
              "star (metropolis)": {"topology": "star", "mixing": "metropolis"},
              **{f"random s{s} (metropolis)": {"topology": "random", "mixing": "metropolis", "split_seed": s}
                 for s in (1, 2, 3)},
              "random s1 (fmmc)": {"topology": "random", "mixing": "fmmc", "split_seed": 1}}
    if num_agents > 8:   # FMMC's subgradient steps grow with the agents; it lost at 8 agents already
        points = {k: v for k, v in points.items() if "fmmc" not in k}
    rows, curves = {}, {}
    for label, extra in points.items():
        # a split seed other than 0 changes only the random topology here: the spectral partition
        # and the Planetoid split do not depend on it
        name = "topo-{}-{}-{}".format(dataset, num_agents, label.replace(" ", "_").replace("(", "").replace(")", ""))
        if iterations != 300:
            name += f"-it{iterations}"
        metrics, hist = run_point(name, **base, **extra)
        it = _first_below(hist, target)
        per_it = metrics["bytes_per_iteration"]
        rows[label] = {
            "links": metrics["topology/links"], "spectral_gap": metrics["topology/spectral_gap"],
            "iterations_to_target": it, "MiB_per_agent_to_target": None if it is None else it * per_it / 2**20,
            "iterations_to_target_own_weights": _first_below(hist, target, "loss"),
            "routed_exchange_factor": metrics["topology/link_bytes_factor"],
            "final_consensus_error": metrics["final/consensus_error"],
            "final_average_loss": float(hist[-1]["average_loss"]), "test_accuracy": metrics["test/accuracy"]}
        curves[label] = [(int(r["epoch"]), float(r["average_loss"]), float(r["consensus_error"])) for r in hist]
    summary = {"dataset": dataset, "num_agents": num_agents, "target_loss": target,
               "centralized_iterations_to_target": 100, "rows": rows}
    io.write_json(RESULTS / f"topology_{dataset}_{num_agents}.json", summary)
    _plot_topology(curves, target, RESULTS / f"topology_{dataset}_{num_agents}.png", cent_hist)
    return summary


def _plot_topology(curves: dict, target: float, path: Path, cent_hist: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].plot([int(r["epoch"]) for r in cent_hist], [float(r["average_loss"]) for r in cent_hist], "k--",
                 label="centralized")
    for label, rows in curves.items():
        axes[0].plot([r[0] for r in rows], [r[1] for r in rows], label=label)
        axes[1].plot([r[0] for r in rows], [max(r[2], 1e-16) for r in rows], label=label)
    axes[0].axhline(target, color="grey", lw=0.8)
    axes[0].set(xlabel="iteration", ylabel="training loss of the average weights", yscale="log",
                title="loss (grey: target)")
    axes[1].set(xlabel="iteration", ylabel="consensus error", yscale="log", title="consensus error")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def real() -> dict:
    """Item 4: Cora, 4 agents, as 4 gloo processes vs the in-process simulation (same config)."""
    sim = run_point("real-cora-4-sim", dataset="cora", num_agents=4)[0]
    proc = run_point("real-cora-4-procs", dataset="cora", num_agents=4, nprocs=4)[0]
    summary = {"simulation": {m: sim[m] for m in KEYS if m in sim}, "processes": {m: proc[m] for m in KEYS if m in proc}}
    io.write_json(RESULTS / "real_vs_sim.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", nargs="?", default="all", choices=["accuracy", "topology", "real", "all"])
    p.add_argument("--agents", default="8,32", help="topology: comma-separated agent counts")
    p.add_argument("--datasets", default="cora,citeseer", help="topology: comma-separated data sets")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    todo = ["accuracy", "topology", "real"] if args.what == "all" else [args.what]
    for what in todo:
        if what == "topology":   # item 3 on both graphs
            summaries = [topology(int(n), ds) for n in args.agents.split(",") for ds in args.datasets.split(",")]
        else:
            summaries = [{"accuracy": accuracy, "real": real}[what]()]
        for summary in summaries:
            print(json.dumps(summary, indent=1, default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
