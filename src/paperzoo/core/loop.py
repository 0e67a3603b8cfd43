"""The epoch loop every method shares: periodic validation, best checkpoint, early stopping and
exact resume.

A method supplies two closures, ``train_epoch() -> mean loss`` and
``validate() -> (score, row)``; the loop owns everything that must be identical across methods
for a killed run to resume bit for bit: what goes into ``checkpoints/last.pt`` (model,
optimizer, scheduler, every RNG stream and the loop state), when ``checkpoints/best.pt`` is
written, and when training stops.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from paperzoo.core import seed as seedlib
from paperzoo.core.progress import progress
from paperzoo.core.runs import RunDir

log = logging.getLogger(__name__)


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@dataclass(frozen=True)
class Schedule:
    """When to validate and when to stop."""

    epochs: int
    eval_every: int = 1
    patience: int = 0
    """Stop after this many validations without a better score (0 = never)."""
    min_epochs: int = 0
    """Never stop early before this epoch."""


def train(run_dir: RunDir, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          scheduler: Any, generators: Mapping[str, torch.Generator], schedule: Schedule,
          train_epoch: Callable[[], float], validate: Callable[[], tuple[float, dict[str, float]]],
          desc: str = "", track_memory: bool = False) -> dict[str, Any]:
    """Run (or resume) the epoch loop and return its final state.

    ``validate`` returns the selection score (higher is better) and the metrics to log. The
    model with the best score is saved as ``best``; every epoch ends with a ``last`` checkpoint
    and a rewrite of ``log.csv``. The returned state holds ``epoch``, ``history``, ``best``,
    ``best_epoch``, ``train_seconds`` and ``stopped_early``.

    A non-finite training loss or a NaN validation score raises :class:`FloatingPointError` before
    the epoch is checkpointed, so ``last.pt`` keeps the last finite state.
    """
    state: dict[str, Any] = {"epoch": 0, "history": [], "best": -math.inf, "best_epoch": 0,
                             "bad_evals": 0, "train_seconds": 0.0, "stopped_early": False}
    ckpt = run_dir.load_checkpoint("last")
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        seedlib.set_rng_state(ckpt["rng"], dict(generators))
        state.update(ckpt["loop"])
        log.info("resumed from %s at epoch %d", run_dir.checkpoint_path("last"), state["epoch"])

    bar = progress(total=schedule.epochs, initial=state["epoch"], desc=desc, leave=True)
    while state["epoch"] < schedule.epochs and not state["stopped_early"]:
        tic = time.perf_counter()
        loss = train_epoch()
        scheduler.step()
        elapsed = time.perf_counter() - tic
        if not math.isfinite(loss):
            lr = optimizer.param_groups[0]["lr"]
            raise FloatingPointError(f"training loss became {loss} at epoch {state['epoch'] + 1}; "
                                     f"lower the learning rate (now {lr:g})")
        state["epoch"] += 1
        state["train_seconds"] += elapsed
        row: dict[str, float] = {"epoch": state["epoch"], "loss": loss, "seconds": elapsed,
                                 "lr": scheduler.get_last_lr()[0]}
        if track_memory:
            row["rss_mib"] = rss_mib()
        if state["epoch"] % schedule.eval_every == 0 or state["epoch"] == schedule.epochs:
            score, metrics = validate()
            if math.isnan(score):
                raise FloatingPointError(f"validation score became nan at epoch {state['epoch']} (training "
                                         f"loss {loss:.4g}); the model's outputs are not finite")
            row.update(metrics)
            if score > state["best"]:
                state.update(best=score, best_epoch=state["epoch"], bad_evals=0)
                run_dir.save_checkpoint({"method": run_dir.method, "model": model.state_dict(),
                                         "epoch": state["epoch"]}, "best")
            else:
                state["bad_evals"] += 1
                if (schedule.patience and state["bad_evals"] >= schedule.patience
                        and state["epoch"] >= schedule.min_epochs):
                    state["stopped_early"] = True
        state["history"].append(row)
        run_dir.save_checkpoint({"method": run_dir.method, "model": model.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "rng": seedlib.rng_state(dict(generators)), "loop": state}, "last")
        run_dir.write_history(state["history"])
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", best=f"{max(state['best'], 0):.3f}")
    bar.close()
    return state


def summary(state: Mapping[str, Any], model: torch.nn.Module) -> dict[str, float]:
    """The run-level numbers every method reports next to its metrics."""
    epochs = max(state["epoch"], 1)
    return {"epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
            "train_seconds": state["train_seconds"], "seconds_per_epoch": state["train_seconds"] / epochs,
            "num_parameters": sum(p.numel() for p in model.parameters())}
