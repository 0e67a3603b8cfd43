"""Train and evaluate: ``run(cfg, run_dir)`` for both execution modes, ``evaluate(run_dir)``.

``cfg.nprocs == 0``: all agents are simulated in this process (:class:`SimComm`). ``cfg.nprocs = N``:
N processes are launched on loopback (:func:`paperzoo.methods.dist_gcn.worker.launch`), each running
:func:`train` with a :class:`DistComm`; rank 0 writes the run folder. The same :func:`train` runs in
both cases. The launcher supervises the processes: one that dies, is stopped or hangs ends the run
within about ``comm_timeout`` seconds, with one error naming it (see the worker module).

Run folder: ``config.yaml``, ``log.csv`` (one row per iteration: loss, train accuracy, consensus
error, norm of the average gradient, bytes sent per agent; valid/test metrics every ``eval_every``),
``curves.png``, ``checkpoints/last.pt`` (``last-agent<r>.pt`` per process in real mode) and
``checkpoints/best.pt`` (every agent's weights at the best validation accuracy, plus the partition).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from paperzoo.api import RunResult
from paperzoo.core.progress import progress
from paperzoo.core.runs import RunDir
from paperzoo.data.planetoid import NodeGraph
from paperzoo.methods.dist_gcn import graphs, trainer
from paperzoo.methods.dist_gcn.comm import Comm, SimComm
from paperzoo.methods.dist_gcn.config import DistGCNConfig

log = logging.getLogger(__name__)
METHOD = "dist_gcn"


def load_graph(cfg: DistGCNConfig, data_root: str | None = None) -> NodeGraph:
    return graphs.load_graph(cfg.dataset, data_root, sbm_nodes=cfg.sbm_nodes, sbm_blocks=cfg.sbm_blocks,
                             seed=cfg.split_seed, normalize_features=cfg.normalize_features)


def run(cfg: DistGCNConfig, run_dir: RunDir) -> RunResult:
    """Train ``cfg`` (simulated, or in ``cfg.nprocs`` real processes) and return the final metrics."""
    if cfg.nprocs > 0:
        from paperzoo.methods.dist_gcn.worker import launch

        return launch(cfg, run_dir, cfg.nprocs)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    return train(cfg, run_dir, SimComm(cfg.agents))


def train(cfg: DistGCNConfig, run_dir: RunDir, comm: Comm, *, main: bool = True,
          checkpoint: str = "last") -> RunResult:
    """The shared training procedure of every process (``main``: the one that writes the run folder)."""
    graph = load_graph(cfg, run_dir.data_root)
    ctx = trainer.build_context(cfg, graph, comm)
    if main:
        log.info("%s | %s", graph.summary(), ", ".join(f"{k}={_fmt(v)}" for k, v in ctx.stats.items()))
    state = trainer.initial_state(ctx)
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {}
    saved = run_dir.load_checkpoint(checkpoint)
    if saved is not None:
        state.load_state_dict(saved["agents"])
        history, best = list(saved["history"]), dict(saved["best"])
        log.info("resumed from %s at iteration %d", run_dir.checkpoint_path(checkpoint), state.iteration)
    if len({int(t) for t in comm.gather({a: torch.tensor(state.iteration) for a in comm.agents})}) > 1:
        raise RuntimeError(f"the agents' checkpoints are at different iterations; delete "
                           f"{run_dir.checkpoint_dir}/last*.pt to restart the run")

    def on_eval(row: Mapping[str, float]) -> None:
        if main and best.get("iteration") == state.iteration:
            run_dir.save_checkpoint({"method": METHOD, "weights": best["weights"], "iteration": state.iteration,
                                     "assignment": torch.from_numpy(ctx.assignment)}, "best")
        run_dir.save_checkpoint({"method": METHOD, "agents": state.state_dict(), "history": history,
                                 "best": {k: v for k, v in best.items() if k != "weights"}}, checkpoint)
        if main:
            run_dir.write_history(history)

    bar = progress(total=cfg.iterations, initial=state.iteration, desc=f"{cfg.algorithm} x{comm.num_agents}",
                   leave=True, disable=None if main else True)
    trainer.run_loop(ctx, state, history, best, on_eval, bar)
    bar.close()
    metrics = summarize(ctx, history, best)
    artifacts = {"best": "checkpoints/best.pt", "log": "log.csv"}
    if main:
        artifacts["curves"] = plot_curves(history, run_dir.path / "curves.png",
                                          title=f"{cfg.dataset}: {cfg.algorithm}, {comm.num_agents} agents")
    return RunResult(metrics=metrics, history=history, artifacts=artifacts)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def exchange_lower_bound(ctx: trainer.Context) -> float:
    """Bytes per agent per iteration that boundary rows need at least: every (agent, foreign
    neighbour) row once per layer, forward and backward, at its width (hidden, then classes)."""
    elem = torch.tensor([], dtype=ctx.dtype).element_size()
    width = ctx.layout.hidden + ctx.layout.num_classes
    return 2.0 * ctx.stats["boundary_rows"] * width * elem / ctx.num_agents


def summarize(ctx: trainer.Context, history: list[Mapping[str, float]], best: Mapping[str, Any]) -> dict[str, float]:
    """Final metrics: the best-validation evaluation, the last iteration, bytes and run statistics."""
    last = history[-1]
    evals = [r for r in history if "test/accuracy" in r]
    iters = len(history)
    metrics: dict[str, float] = {k: float(v) for k, v in best.items() if k.startswith(("valid/", "test/"))}
    train_seconds = sum(r["seconds"] for r in history)
    metrics.update({
        "best_iteration": best["iteration"], "iterations": iters, "num_agents": ctx.num_agents,
        "final/loss": last["loss"], "final/train_accuracy": last["train_accuracy"],
        "final/consensus_error": last["consensus_error"], "final/grad_norm": last["grad_norm"],
        "final/test_accuracy": evals[-1]["test/accuracy"], "final/valid_accuracy": evals[-1]["valid/accuracy"],
        "bytes_exchange_per_iteration": sum(r["bytes_exchange"] for r in history) / iters,
        "bytes_mix_per_iteration": sum(r["bytes_mix"] for r in history) / iters,
        "exchange_lower_bound_bytes": exchange_lower_bound(ctx),
        "num_parameters": ctx.layout.size, "train_seconds": train_seconds,
        "seconds_per_iteration": train_seconds / iters,
    })
    metrics["bytes_per_iteration"] = metrics["bytes_exchange_per_iteration"] + metrics["bytes_mix_per_iteration"]
    metrics.update({k: float(v) for k, v in ctx.stats.items()})
    return metrics


def plot_curves(history: list[Mapping[str, float]], path: Path, title: str = "") -> str:
    """Loss, consensus error, accuracy and cumulative bytes against iterations (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paperzoo.core.io import atomic_path

    it = [r["epoch"] for r in history]
    evals = [r for r in history if "test/accuracy" in r]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    axes[0].plot(it, [r["loss"] for r in history])
    axes[0].set(title="training loss", xlabel="iteration", yscale="log")
    axes[1].plot(it, [max(r["consensus_error"], 1e-16) for r in history])
    axes[1].set(title="consensus error", xlabel="iteration", yscale="log")
    for split in ("valid", "test"):
        axes[2].plot([r["epoch"] for r in evals], [r[f"{split}/accuracy"] for r in evals], label=split)
    axes[2].plot(it, [r["train_accuracy"] for r in history], label="train (dropout)", alpha=0.5)
    axes[2].set(title="accuracy", xlabel="iteration")
    axes[2].legend()
    cum, total = [], 0.0
    for r in history:
        total += r["bytes_exchange"] + r["bytes_mix"]
        cum.append(total / 2**20)
    axes[3].plot(it, cum)
    axes[3].set(title="MiB sent per agent (cumulative)", xlabel="iteration")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path.name


def evaluate(run_dir: RunDir) -> dict[str, float]:
    """Re-score the best checkpoint: distributed inference, simulated, with the saved partition."""
    cfg = run_dir.config
    best = run_dir.load_checkpoint("best")
    if best is None:
        raise FileNotFoundError(f"{run_dir.checkpoint_path('best')} is missing: the run never evaluated")
    graph = load_graph(cfg, run_dir.data_root)
    comm = SimComm(cfg.agents)
    ctx = trainer.build_context(cfg, graph, comm, assignment=best["assignment"].numpy())
    weights = best["weights"]
    if weights.shape != (cfg.agents, ctx.layout.size):
        raise ValueError(f"{run_dir.checkpoint_path('best')}: weights of shape {tuple(weights.shape)}, expected "
                         f"({cfg.agents}, {ctx.layout.size})")
    return trainer.evaluate_splits(ctx, {a: weights[a] for a in comm.agents})

