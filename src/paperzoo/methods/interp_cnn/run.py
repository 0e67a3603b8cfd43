"""Train and evaluate: ``run(cfg, run_dir)`` trains the ordinary and the interpretable CNN side by side,
``evaluate(run_dir)`` re-scores a finished run, ``report_section`` summarises runs for the report.

Both networks of a run have the same architecture and the same initial weights (the interpretable
wrapper has no parameters), see the same batches in the same order, and are trained by one optimizer
optimizer over both (their parameters are disjoint, so this is two independent SGD runs). The
interpretable one adds ``filter_loss_weight * sum_f Loss_f`` to its cross-entropy. The epoch loop is
:func:`paperzoo.core.loop.train`: ``last.pt`` after every epoch (both networks, optimizer, RNG), exact
resume. The final weights are evaluated (the paper trains a fixed schedule; ``best.pt`` = last epoch).

Metrics (``test/<variant>/...``): ``accuracy``; on the part dataset ``instability`` (location
instability, lower is more interpretable, each filter scored on the category it prefers: the official
multi-category protocol), ``instability_<category>`` and their mean ``instability_by_category`` (every
filter scored on each category's images), ``filters_scored``, and ``mi`` (mean per-filter mutual
information between the top maps and the templates on test batches). ``test/accuracy`` and
``test/instability`` are the headline variant's (the last of ``cfg.variants``).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from paperzoo.api import RunResult
from paperzoo.core import loop
from paperzoo.core.runs import RunDir
from paperzoo.data.vision import channel_stats, load_cifar10, normalize, per_class_indices, random_crop_flip
from paperzoo.methods.interp_cnn.config import InterpCNNConfig
from paperzoo.methods.interp_cnn.filters import filter_loss, filter_loss_of
from paperzoo.methods.interp_cnn.metrics import (
    instability_by_category,
    layer_maps,
    location_instability,
    reference_instability,
)
from paperzoo.methods.interp_cnn.models import STRIDE, TOP_LAYER, build_model

log = logging.getLogger(__name__)
METHOD = "interp_cnn"


@dataclass
class Data:
    """Images as uint8 ``(N, 3, S, S)`` (normalised batch by batch with ``mean`` / ``std``), labels, and the
    test images' part landmarks ``(N, P, 2)`` (``None`` for CIFAR-10)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_landmarks: torch.Tensor | None
    categories: tuple[str, ...]
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    @property
    def image_size(self) -> int:
        return int(self.test_x.size(-1))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> the networks' normalised float input."""
        return normalize(x, self.mean, self.std)


def load_data(cfg: InterpCNNConfig, data_root: str | None = None) -> Data:
    """The run's train / val / test images (part dataset: generated from ``cfg.data_seed``)."""
    if cfg.dataset == "parts":
        from paperzoo.data.parts import make_part_images

        cats = cfg.categories or None
        sets = {split: make_part_images(split, per_class=n, size=cfg.image_size, seed=cfg.data_seed,
                                        categories=cats, clutter=cfg.clutter)
                for split, n in (("train", cfg.train_per_class), ("val", cfg.val_per_class),
                                 ("test", cfg.test_per_class))}
        tr, va, te = sets["train"], sets["val"], sets["test"]
        data = Data(tr.images, tr.labels, va.images, va.labels, te.images, te.labels, te.landmarks,
                    tuple(tr.categories))
    else:
        from paperzoo.data.vision import CIFAR10_CLASSES

        keep = cfg.train_per_class + cfg.val_per_class if cfg.train_per_class else None
        tx, ty = load_cifar10(data_root, "train", limit_per_class=keep)
        ex, ey = load_cifar10(data_root, "test", limit_per_class=cfg.test_per_class or None)
        n_train = cfg.train_per_class or int((ty == 0).sum()) - cfg.val_per_class
        tr_idx, va_idx = per_class_indices(ty, n_train), per_class_indices(ty, cfg.val_per_class, start=n_train)
        data = Data(tx[tr_idx], ty[tr_idx], tx[va_idx], ty[va_idx], ex, ey, None, tuple(CIFAR10_CLASSES))
    data.mean, data.std = channel_stats(data.train_x)
    return data


def build_models(cfg: InterpCNNConfig, num_classes: int) -> torch.nn.ModuleDict:
    """One network per variant, each built right after ``torch.manual_seed(cfg.seed)``: the same initial
    weights (the interpretable wrapper has no parameters of its own)."""
    models = {}
    for variant in cfg.variants:
        torch.manual_seed(cfg.seed)
        models[variant] = build_model(cfg.backbone, num_classes, width=cfg.width, top_filters=cfg.top_filters,
                                      interpretable=variant == "interpretable", beta=cfg.beta)
    return torch.nn.ModuleDict(models)


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: Data, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy (eval mode) of ``model`` on uint8 images ``x``."""
    if len(x) == 0:
        return math.nan
    model.eval()
    correct = sum(int((model(data.prepare(x[i:i + batch_size])).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def run(cfg: InterpCNNConfig, run_dir: RunDir) -> RunResult:
    """Train both variants of ``cfg`` (resuming from ``run_dir``'s last checkpoint) and evaluate them."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.perf_counter()
    data = load_data(cfg, run_dir.data_root)
    log.info("%s: %d train / %d val / %d test images, %d classes, %d px", cfg.dataset, len(data.train_x),
             len(data.val_x), len(data.test_x), len(data.categories), data.image_size)
    generator = torch.Generator()
    generator.manual_seed(cfg.seed + 1)
    models = build_models(cfg, len(data.categories))
    torch.manual_seed(cfg.seed + 2)
    opt = (torch.optim.AdamW(models.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay) if cfg.optimizer == "adam"
           else torch.optim.SGD(models.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    stats: dict[str, float] = {}

    def train_epoch() -> float:
        models.train()
        order = torch.randperm(len(data.train_x), generator=generator)
        sums: dict[str, float] = {}
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            x, y = data.prepare(data.train_x[idx]), data.train_y[idx]
            if cfg.augment:
                x = random_crop_flip(x, generator)
            loss = x.new_zeros(())
            for name, model in models.items():
                logits = model(x)
                ce = F.cross_entropy(logits, y)
                loss = loss + ce
                sums[f"{name}/ce"] = sums.get(f"{name}/ce", 0.0) + float(ce.detach()) * len(idx)
                sums[f"{name}/train_acc"] = sums.get(f"{name}/train_acc", 0.0) + float((logits.argmax(1) == y).sum())
                if name == "interpretable":
                    fl = filter_loss_of(model)
                    loss = loss + cfg.filter_loss_weight * fl
                    sums[f"{name}/filter_loss"] = sums.get(f"{name}/filter_loss", 0.0) + float(fl.detach()) * len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        stats.clear()
        stats.update({k: v / len(order) for k, v in sums.items()})
        return total / len(order)

    def validate() -> tuple[float, dict[str, float]]:
        row = dict(stats)
        for name, model in models.items():
            row[f"{name}/val_acc"] = accuracy(model, data, data.val_x, data.val_y)
        # the final weights are evaluated: the score is the epoch (the loop has stepped the scheduler), so it
        # only grows and best.pt is the last epoch
        return float(sched.last_epoch), row

    state = loop.train(run_dir, model=models, optimizer=opt, scheduler=sched, generators={"train": generator},
                       schedule=loop.Schedule(epochs=cfg.epochs), train_epoch=train_epoch,
                       validate=validate, desc=f"{METHOD} {cfg.backbone}")
    run_dir.write_history(state["history"])  # again: a run killed between the last checkpoint and the log resumes here
    scored = score_filters(models, data, cfg) if data.test_landmarks is not None else None
    metrics = test_metrics(models, data, cfg, scored)
    metrics.update(loop.summary(state, models))
    metrics["wall_seconds"] = time.perf_counter() - t0
    if state["history"]:
        last = state["history"][-1]
        metrics.update({f"train/{k}": v for k, v in last.items() if "/" in k})
    artifacts = {"best": "checkpoints/best.pt"}
    if scored is not None:
        from paperzoo.methods.interp_cnn.figures import plot_filters, plot_instability

        artifacts["filters"] = plot_filters(scored, data, cfg, run_dir.path / "filters.png")
        artifacts["instability"] = plot_instability(scored, cfg, run_dir.path / "instability.png")
    return RunResult(metrics=metrics, history=[dict(r) for r in state["history"]], artifacts=artifacts)


@torch.no_grad()
def mean_mutual_information(maps: torch.Tensor, batch_size: int, beta: float) -> float:
    """Mean over filters and full batches of ``MI(X; T)`` of the top maps (test images in file order)."""
    vals = [-filter_loss(maps[i:i + batch_size], beta=beta).mean()
            for i in range(0, len(maps) - batch_size + 1, batch_size)]
    return float(torch.stack(vals).mean()) if vals else math.nan


def feature_layer(cfg: InterpCNNConfig, variant: str) -> str:
    """The submodule whose rectified output is the top filters' maps BEFORE masking: the top layer of the
    ordinary network, the wrapped module of the interpretable one (masking keeps each map's peak, so
    peak positions and values are the same either way; the mutual information is not)."""
    return TOP_LAYER[cfg.backbone] + (".module" if variant == "interpretable" else "")


def score_filters(models: torch.nn.ModuleDict, data: Data, cfg: InterpCNNConfig) -> dict[str, dict[str, Any]]:
    """Per variant, on the part dataset's test images: the top maps before masking (``maps``) and their
    :func:`~paperzoo.methods.interp_cnn.metrics.location_instability` (``per_filter``, ``category``,
    ``positions``, ``scores``, ``instability``). The metrics and the figures both read it."""
    out = {}
    for name, model in models.items():
        maps = layer_maps(model, feature_layer(cfg, name), data.test_x, transform=data.prepare)
        out[name] = {"maps": maps, **location_instability(maps, data.test_y, data.test_landmarks, data.image_size,
                                                          cfg.top_k)}
    return out


def test_metrics(models: torch.nn.ModuleDict, data: Data, cfg: InterpCNNConfig,
                 scored: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Accuracy per variant on the test images; on the part dataset also location instability (both
    protocols) and MI, from ``scored`` (:func:`score_filters`, computed here when not given)."""
    out: dict[str, Any] = {}
    if data.test_landmarks is not None and scored is None:
        scored = score_filters(models, data, cfg)
    for name, model in models.items():
        out[f"test/{name}/accuracy"] = accuracy(model, data, data.test_x, data.test_y)
        if scored is not None:
            maps, per_filter = scored[name]["maps"], scored[name]["per_filter"]
            out[f"test/{name}/instability"] = scored[name]["instability"]
            out[f"test/{name}/filters_scored"] = int((~torch.isnan(per_filter)).sum())
            out[f"test/{name}/mi"] = mean_mutual_information(maps, cfg.batch_size, cfg.beta)
            per_cat = instability_by_category(maps, data.test_y, data.test_landmarks, data.image_size, cfg.top_k)
            for c, value in per_cat.items():
                out[f"test/{name}/instability_{data.categories[c]}"] = value
            out[f"test/{name}/instability_by_category"] = (sum(per_cat.values()) / len(per_cat) if per_cat
                                                          else math.nan)
    if data.test_landmarks is not None:
        # the metric's scale on these images: filters at random units vs ideal part filters
        ref = reference_instability(data.test_y, data.test_landmarks, data.image_size, data.image_size // STRIDE,
                                    cfg.top_k, seed=cfg.data_seed)
        out["test/random_filters/instability"] = ref["random"]
        out["test/part_filters/instability"] = ref["part"]
    head = f"test/{cfg.headline_variant}/"
    out.update({f"test/{k[len(head):]}": v for k, v in list(out.items()) if k.startswith(head)})
    return out


def evaluate(run_dir: RunDir) -> dict[str, float]:
    """Re-score a finished run from ``best.pt`` (its final weights) on the regenerated test images."""
    cfg: InterpCNNConfig = run_dir.config
    best = run_dir.finished_checkpoint("best")
    data = load_data(cfg, run_dir.data_root)
    models = build_models(cfg, len(data.categories))
    models.load_state_dict(best["model"])
    return test_metrics(models, data, cfg)
