"""Training (1-N scoring, BCE, early stopping, resumable) and filtered evaluation for ConvE/DistMult."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from paperzoo.api import RunResult
from paperzoo.core import loop
from paperzoo.core import seed as seedlib
from paperzoo.core.metrics.ranking import both_sides, filtered_ranks
from paperzoo.core.progress import progress
from paperzoo.core.runs import RunDir
from paperzoo.data import kg
from paperzoo.data.synthetic import planted_kg
from paperzoo.methods.conve.config import ConvEConfig
from paperzoo.methods.conve.model import ConvE, DistMult, one_to_n_bce

log = logging.getLogger(__name__)


def load_dataset(cfg: ConvEConfig, data_root: str | None = None) -> kg.KGSplits:
    if cfg.dataset == "synthetic":
        return planted_kg(seed=cfg.seed)
    return kg.load(cfg.dataset, data_root, unseen=cfg.unseen)


def build_model(cfg: ConvEConfig, num_entities: int, num_relations: int) -> torch.nn.Module:
    """The scoring model; ``num_relations`` counts base relations (reciprocals are added here)."""
    if cfg.model == "conve":
        return ConvE(num_entities, 2 * num_relations, cfg.embedding_dim, cfg.embedding_height,
                     cfg.conv_channels, cfg.kernel_size, cfg.input_dropout, cfg.feature_dropout,
                     cfg.hidden_dropout, cfg.conv_bias)
    return DistMult(num_entities, 2 * num_relations, cfg.embedding_dim, cfg.input_dropout)


@dataclass
class Evaluator:
    """Filtered ranking in both directions; head prediction is tail prediction with ``r + R``."""

    data: kg.KGSplits
    batch_size: int = 512

    def __post_init__(self) -> None:
        self.filter = kg.QueryIndex(kg.with_reciprocals(self.data.all_triples(), self.data.num_relations),
                                    2 * self.data.num_relations)

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, split: str, prefix: str = "") -> dict[str, float]:
        triples = self.data.split(split)
        if len(triples) == 0:
            return {}
        R = self.data.num_relations
        queries = torch.cat([triples, torch.stack([triples[:, 2], triples[:, 1] + R, triples[:, 0]], 1)])
        was_training = model.training
        model.eval()
        ranks = torch.empty(len(queries), dtype=torch.float64)
        for start in progress(range(0, len(queries), self.batch_size), desc=f"eval {split}"):
            q = queries[start:start + self.batch_size]
            scores = model(q[:, 0], q[:, 1]).float()
            rows, cols = self.filter.lookup(q[:, 0], q[:, 1])
            ranks[start:start + len(q)] = filtered_ranks(scores, q[:, 2], rows, cols)
        model.train(was_training)
        n = len(triples)
        return both_sides(head_ranks=ranks[n:], tail_ranks=ranks[:n], prefix=prefix)


def train_epoch(model, optimizer, cfg: ConvEConfig, index: kg.QueryIndex, queries: torch.Tensor,
                generator: torch.Generator) -> float:
    """One pass over all distinct (head, relation) queries in random order; returns the mean loss."""
    model.train()
    order = torch.randperm(len(queries), generator=generator)
    total, batches = 0.0, 0
    for start in progress(range(0, len(order), cfg.batch_size), desc="batches", unit="batch"):
        batch = order[start:start + cfg.batch_size]
        rows, cols = index.coordinates(batch)  # the known tails of each query: the 1-N targets
        logits = model(queries[batch, 0], queries[batch, 1])
        loss = one_to_n_bce(logits, rows, cols, cfg.label_smoothing, cfg.label_smoothing_form)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
        batches += 1
    return total / max(batches, 1)


def run(cfg: ConvEConfig, run_dir: RunDir) -> RunResult:
    """Train with early stopping on validation MRR, then evaluate the best model on valid and test.

    Resumes from ``run_dir``'s last checkpoint when there is one: model, optimizer, scheduler,
    every RNG stream, history and early-stopping state are restored, so the resumed run ends
    with the same metrics as an uninterrupted one.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    generator = seedlib.seed_everything(cfg.seed)
    data = load_dataset(cfg, run_dir.data_root)
    log.info("%s", data.summary())
    model = build_model(cfg, data.num_entities, data.num_relations)
    # fused=True: one kernel for all parameters instead of ~10 per tensor (same Adam update)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    train_index = kg.QueryIndex(kg.with_reciprocals(data.train, data.num_relations), 2 * data.num_relations)
    queries = train_index.queries
    evaluator = Evaluator(data, cfg.eval_batch_size)

    def validate() -> tuple[float, dict[str, float]]:
        valid = evaluator(model, "valid")
        return valid["mrr"], {f"valid/{k}": valid[k] for k in ("mrr", "hits@1", "hits@10")}

    state = loop.train(
        run_dir, model=model, optimizer=optimizer, scheduler=scheduler,
        generators={"order": generator},
        schedule=loop.Schedule(cfg.epochs, cfg.eval_every, cfg.patience),
        train_epoch=lambda: train_epoch(model, optimizer, cfg, train_index, queries, generator),
        validate=validate, desc=f"{cfg.model} {data.name}")
    metrics = evaluate_model(run_dir, data, cfg, evaluator)
    metrics.update(loop.summary(state, model))
    return RunResult(metrics=metrics, history=state["history"],
                     artifacts={"best": "checkpoints/best.pt", "log": "log.csv"})


def evaluate_model(run_dir: RunDir, data: kg.KGSplits, cfg: ConvEConfig,
                   evaluator: Evaluator | None = None) -> dict[str, float]:
    """Valid and test metrics of the best checkpoint of ``run_dir``."""
    best = run_dir.load_checkpoint("best")
    if best is None:
        raise FileNotFoundError(f"{run_dir.checkpoint_path('best')} is missing: the run never evaluated")
    model = build_model(cfg, data.num_entities, data.num_relations)
    model.load_state_dict(best["model"])
    evaluator = evaluator or Evaluator(data, cfg.eval_batch_size)
    metrics = {}
    metrics.update(evaluator(model, "valid", prefix="valid/"))
    metrics.update(evaluator(model, "test", prefix="test/"))
    return metrics


def evaluate(run_dir: RunDir) -> dict[str, float]:
    """``paperzoo eval``: rebuild the data and model from the run's config and score its best model."""
    return evaluate_model(run_dir, load_dataset(run_dir.config, run_dir.data_root), run_dir.config)
