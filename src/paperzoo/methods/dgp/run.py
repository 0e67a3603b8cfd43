"""Train and evaluate: ``run(cfg, run_dir)`` runs the whole zero-shot pipeline, ``evaluate(run_dir)``
re-scores a finished run, ``report_section`` summarises runs for the report.

Stages (each checkpointed in ``checkpoints/last.pt``, so a killed run resumes at the stage it was in):

1. the CNN, trained on the seen classes only (image datasets; ``imagenet_graph`` draws synthetic
   classifier rows instead);
2. every graph model of ``cfg.models``, trained to regress the seen rows; its predicted rows of all
   nodes are kept;
3. zero-shot and generalized evaluation with the CNN's features;
4. fine-tuning (``cfg.finetune_epochs > 0``): per graph model, a copy of the CNN is trained on the
   seen classes with that model's predicted seen rows as a FROZEN classifier, then evaluated again
   with the same predicted rows (metrics under ``<model>+ft``).

Run folder: ``config.yaml``, ``log.csv`` (CNN epochs), ``metrics.json``, ``hits.png`` (Hit@k per
model, with and without fine-tuning), ``checkpoints/best.pt`` (CNN, fine-tuned CNN of the headline
model, every graph model's weights and predicted rows, the node list): what ``paperzoo dgp predict``
loads.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from paperzoo.api import Figure, ReportSection, RunResult, overall_verdict
from paperzoo.core.report import mean_std, mean_std_cell, pyplot, save_figure
from paperzoo.core.runs import RunDir, finished_runs
from paperzoo.methods.dgp import cnn as cnnlib
from paperzoo.methods.dgp import pipeline as pl
from paperzoo.methods.dgp.config import MODELS, DGPConfig

log = logging.getLogger(__name__)
METHOD = "dgp"
SYNTHETIC_PER_CLASS = 5


def _stage_seed(cfg: DGPConfig, stage: str) -> torch.Generator:
    """A generator and global seed per stage, so that a resumed run repeats each stage exactly."""
    offset = sum(ord(c) * 31 ** i for i, c in enumerate(stage)) % 1_000_003
    torch.manual_seed(cfg.seed * 1_000_003 + offset)
    g = torch.Generator()
    g.manual_seed(cfg.seed * 1_000_003 + offset + 1)
    return g


def run(cfg: DGPConfig, run_dir: RunDir) -> RunResult:
    """The zero-shot pipeline of ``cfg`` (resuming from ``run_dir``'s last checkpoint)."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.perf_counter()
    task = pl.build_task(cfg, run_dir.data_root)
    log.info("%s", task.summary())
    if task.missing_words:
        log.info("nodes without word vectors (zero input): %s%s", ", ".join(task.missing_words[:10]),
                 " ..." if len(task.missing_words) > 10 else "")
    state: dict[str, Any] = run_dir.load_checkpoint("last") or {"method": METHOD}
    state.setdefault("preds", {})
    state.setdefault("graph", {})
    state.setdefault("graph_history", {})
    state.setdefault("metrics", {})

    def save() -> None:
        run_dir.save_checkpoint(state, "last")

    images = None
    if cfg.dataset == "imagenet_graph":
        if "targets" not in state:
            g = _stage_seed(cfg, "synthetic")
            truth = pl.synthetic_weights(task, cfg.feature_dim + 1, g)
            state["truth"] = truth
            state["targets"] = truth[task.seen_nodes]
            fs, ys = pl.synthetic_features(truth, task.seen_nodes, SYNTHETIC_PER_CLASS, cfg.synthetic_noise, g)
            fu, yu = pl.synthetic_features(truth, task.unseen_nodes, SYNTHETIC_PER_CLASS, cfg.synthetic_noise, g)
            state["synthetic_features"] = {"seen": fs, "seen_y": ys, "unseen": fu, "unseen_y": yu}
            save()
        feats = state["synthetic_features"]
        base_feats = (feats["seen"], feats["seen_y"], feats["unseen"], feats["unseen_y"])
        net = None
    else:
        images = pl.load_images(cfg, run_dir.data_root)
        net = cnnlib.ConvNet(images.in_channels, len(task.seen_nodes), cfg.cnn_width, cfg.feature_dim)
        if "cnn" not in state:
            g = _stage_seed(cfg, "cnn")
            net = cnnlib.ConvNet(images.in_channels, len(task.seen_nodes), cfg.cnn_width, cfg.feature_dim)
            history = cnnlib.fit(net, images.train_x, images.train_y, epochs=cfg.cnn_epochs, lr=cfg.cnn_lr,
                                 batch_size=cfg.batch_size, generator=g, augment=cfg.augment, desc="cnn")
            state["cnn"] = net.state_dict()
            state["cnn_history"] = history
            state["targets"] = net.classifier_rows()
            save()
        net.load_state_dict(state["cnn"])
        base_feats = (cnnlib.features(net, images.test_seen_x), images.test_seen_y,
                      cnnlib.features(net, images.test_unseen_x), images.test_unseen_y)
        acc = float(((base_feats[0] @ state["targets"].T).argmax(1) == base_feats[1]).float().mean())
        state["metrics"]["cnn/seen_test_accuracy"] = acc
        log.info("CNN accuracy on the seen classes' test images (its own classifier): %.3f", acc)
    targets = F.normalize(state["targets"], dim=1)

    for name in cfg.models:
        if name not in state["preds"]:
            _stage_seed(cfg, f"graph-{name}")
            model = pl.make_graph_model(name, task, targets.size(1), cfg)
            pred, hist = pl.train_graph_model(model, task, targets, cfg, desc=name)
            state["preds"][name] = pred
            state["graph"][name] = {k: v for k, v in model.state_dict().items() if not _is_graph_buffer(k)}
            state["graph_history"][name] = hist
            log.info("%s: regression loss %.4f after %d epochs (%.3f s/epoch)", name, hist[-1]["loss"],
                     cfg.graph_epochs, hist[-1]["seconds"] / cfg.graph_epochs)
            save()
        m = pl.zero_shot_metrics(state["preds"][name], task, *base_feats)
        state["metrics"].update({f"test/{name}/{k}": v for k, v in m.items()})
        hist = state["graph_history"][name]
        state["metrics"][f"graph/{name}/final_loss"] = hist[-1]["loss"]
        state["metrics"][f"graph/{name}/seconds_per_epoch"] = hist[-1]["seconds"] / hist[-1]["epoch"]

    if images is not None and cfg.finetune_epochs > 0:
        # the paper's four models are fine-tuned; ablation models (gcn<L>, dense<L>) only if headline
        for name in [m for m in cfg.models if m in MODELS or m == cfg.headline_model]:
            key = f"{name}+ft"
            if key not in state.get("finetuned", {}):
                g = _stage_seed(cfg, f"ft-{name}")
                ft = copy.deepcopy(net)
                ft.set_classifier(F.normalize(state["preds"][name], dim=1)[task.seen_nodes])
                hist = cnnlib.fit(ft, images.train_x, images.train_y, epochs=cfg.finetune_epochs,
                                  lr=cfg.finetune_lr, batch_size=cfg.batch_size, generator=g,
                                  augment=cfg.augment, params=ft.features.parameters(), weight_decay=0.0,
                                  cosine=False, desc=f"fine-tune {name}")
                feats = (cnnlib.features(ft, images.test_seen_x), images.test_seen_y,
                         cnnlib.features(ft, images.test_unseen_x), images.test_unseen_y)
                m = pl.zero_shot_metrics(state["preds"][name], task, *feats)
                m["train_loss"] = hist[-1]["loss"]
                state.setdefault("finetuned", {})[key] = m
                if name == cfg.headline_model:
                    state["cnn_ft"] = ft.state_dict()
                save()
            state["metrics"].update({f"test/{key}/{k}": v for k, v in state["finetuned"][key].items()
                                     if k != "train_loss"})

    metrics = with_headline(dict(state["metrics"]), cfg)
    metrics.update({"num_nodes": task.num_nodes, "num_edges": int(task.edges.size(1)),
                    "num_seen": len(task.seen_nodes), "num_unseen": len(task.unseen_nodes),
                    "missing_words": len(task.missing_words), "train_seconds": time.perf_counter() - t0})
    best = {"method": METHOD, "node_wnids": task.node_wnids, "seen_nodes": task.seen_nodes,
            "unseen_nodes": task.unseen_nodes, "preds": state["preds"], "graph": state["graph"],
            "targets": state["targets"]}
    for key in ("cnn", "cnn_ft", "synthetic_features"):
        if key in state:
            best[key] = state[key]
    if images is not None:
        best.update(image_mean=images.mean, image_std=images.std, image_size=int(images.train_x.size(-1)))
    run_dir.save_checkpoint(best, "best")
    history = [dict(r) for r in state.get("cnn_history", [])]
    if history:
        run_dir.write_history(history)
    artifacts = {"best": "checkpoints/best.pt"}
    artifacts["hits"] = plot_hits(metrics, cfg, run_dir.path / "hits.png")
    return RunResult(metrics=metrics, history=history, artifacts=artifacts)


def headline_key(cfg: DGPConfig) -> str:
    """The model whose metrics are the run's headline (``test/hit@1``...): the last of ``cfg.models``,
    after fine-tuning when the run fine-tunes."""
    tuned = cfg.dataset != "imagenet_graph" and cfg.finetune_epochs > 0
    return cfg.headline_model + ("+ft" if tuned else "")


def with_headline(metrics: dict[str, float], cfg: DGPConfig) -> dict[str, float]:
    """``metrics`` plus ``test/<metric>`` copies of the headline model's ``test/<model>/<metric>``."""
    prefix = f"test/{headline_key(cfg)}/"
    metrics.update({f"test/{k[len(prefix):]}": v for k, v in list(metrics.items()) if k.startswith(prefix)})
    return metrics


def _is_graph_buffer(key: str) -> bool:
    """Adjacency buffers are rebuilt from the graph; only learnable weights are saved."""
    return "adj" in key.split(".")[-1] or key.split(".")[-1].startswith(("up_", "down_", "norm_"))


def evaluate(run_dir: RunDir) -> dict[str, float]:
    """Re-score a finished run from ``best.pt``: its saved predicted rows and CNN(s) on the test images."""
    cfg: DGPConfig = run_dir.config
    best = run_dir.finished_checkpoint("best")
    task = pl.build_task(cfg, run_dir.data_root)
    if task.node_wnids != list(best["node_wnids"]):
        raise ValueError(f"{run_dir.checkpoint_path('best')}: its graph's nodes differ from the graph rebuilt "
                         f"from config.yaml ({len(best['node_wnids'])} vs {task.num_nodes} nodes)")
    out: dict[str, float] = {}
    if cfg.dataset == "imagenet_graph":
        f = best["synthetic_features"]
        feats = {"": (f["seen"], f["seen_y"], f["unseen"], f["unseen_y"])}
    else:
        images = pl.load_images(cfg, run_dir.data_root)
        feats = {}
        for tag, key in (("", "cnn"), ("+ft", "cnn_ft")):
            if key in best:
                net = cnnlib.ConvNet(images.in_channels, len(task.seen_nodes), cfg.cnn_width, cfg.feature_dim)
                if key == "cnn_ft":
                    net.fc.requires_grad_(False)
                net.load_state_dict(best[key])
                feats[tag] = (cnnlib.features(net, images.test_seen_x), images.test_seen_y,
                              cnnlib.features(net, images.test_unseen_x), images.test_unseen_y)
    for name, pred in best["preds"].items():
        for tag, fs in feats.items():
            if tag and name != cfg.headline_model:
                continue
            m = pl.zero_shot_metrics(pred, task, *fs)
            out.update({f"test/{name}{tag}/{k}": v for k, v in m.items()})
    return with_headline(out, cfg)


# ------------------------------------------------------------------------------------------ figures
def _depth(name: str, kind: str) -> int | None:
    return int(name[len(kind):]) if name.startswith(kind) and name[len(kind):].isdigit() else None


def plot_hits(metrics: Mapping[str, float], cfg: DGPConfig, path: Path) -> str:
    """Grouped bars: unseen Hit@1 and generalized H per graph model, without and with fine-tuning; and,
    when the run holds the depth ablation, unseen Hit@1 against depth for GCNs and dense propagation."""
    plt = pyplot()
    models = [m for m in cfg.models if _depth(m, "gcn") is None and _depth(m, "dense") is None]
    ablation = {kind: sorted((d, metrics[f"test/{m}/hit@1"]) for m in cfg.models
                             if (d := _depth(m, kind)) is not None and f"test/{m}/hit@1" in metrics)
                for kind in ("gcn", "dense")}
    panels = 3 if any(ablation.values()) else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.4))
    chance = 1 / len(pl.split_classes(cfg)[1]) if cfg.dataset != "imagenet_graph" else None
    for ax, key, title in ((axes[0], "hit@1", "unseen classes: Hit@1"),
                           (axes[1], "gzsl_H", "generalized: harmonic mean H")):
        xs = range(len(models))
        base = [metrics.get(f"test/{m}/{key}", math.nan) for m in models]
        ft = [metrics.get(f"test/{m}+ft/{key}", math.nan) for m in models]
        ax.bar([x - 0.2 for x in xs], base, 0.4, label="predicted classifier")
        if not all(math.isnan(v) for v in ft):
            ax.bar([x + 0.2 for x in xs], ft, 0.4, label="+ fine-tuned features")
        if key == "hit@1" and chance:
            ax.axhline(chance, color="gray", ls="--", lw=1, label="chance")
        ax.set_xticks(list(xs), [m.upper() for m in models])
        ax.set(title=title, ylim=(0, 1))
    axes[0].legend(fontsize=8)
    if panels == 3:
        ax = axes[2]
        for kind, label, marker in (("gcn", "GCN, L layers", "o"), ("dense", "dense, L hops (ADGPM)", "s")):
            if ablation[kind]:
                ax.plot(*zip(*ablation[kind]), marker=marker, label=label)
        if chance:
            ax.axhline(chance, color="gray", ls="--", lw=1)
        ax.set(title="depth ablation: unseen Hit@1", xlabel="L", ylim=(0, 1))
        ax.legend(fontsize=8)
    fig.suptitle(f"{cfg.dataset} split {cfg.split}, seed {cfg.seed}")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    return path.name


# ------------------------------------------------------------------------------------------ report
CLAIM = ("Dense propagation over the WordNet hierarchy (each node connected to all its ancestors and "
         "descendants, weighted by hop distance) predicts unseen classifiers better than many-layer GCNs that "
         "smooth with every layer: on ImageNet 2-hops, Hit@1 GCNZ 21.0 < SGCN 26.2 < DGP 26.6 (ADGPM); "
         "fine-tuning the features on the predicted seen classifiers helps further.")
ORDER = ("gcnz", "sgcn", "dgp", "adgpm")
FULL_PROTOCOL_RUNS = 9
"""3 stated splits x 3 seeds per dataset: the README's table."""


def _cell(values: list[float] | None) -> str:
    """A table cell in %: mean ± std over runs, the mean alone for one run, a dash for none."""
    return mean_std_cell(values, scale=100, digits=1)


def aggregate(finished: list[tuple[RunDir, dict[str, float]]]) -> dict[tuple[str, str, str], list[float]]:
    """(dataset, model[+ft], metric) -> values over runs (splits and seeds)."""
    out: dict[tuple[str, str, str], list[float]] = {}
    for rd, m in finished:
        ds = rd.config.dataset
        for key, value in m.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "test" and isinstance(value, (int, float)):
                out.setdefault((ds, parts[1], parts[2]), []).append(float(value))
    return out


def _ordering(agg: dict[tuple[str, str, str], list[float]], dataset: str,
              metric: str) -> tuple[str, str] | None:
    """(``holds`` / ``dense > GCNZ only`` / ``fails``, "GCNZ x, SGCN y, ...") of the paper's ordering
    DGP/ADGPM > SGCN > GCNZ on the mean of ``metric``; None when a model is missing."""
    got = {}
    for m in ORDER:
        v = agg.get((dataset, m, metric))
        if not v:
            return None
        got[m] = mean_std(v)[0]
    dense = max(got["dgp"], got["adgpm"])
    facts = ", ".join(f"{m.upper()} {100 * got[m]:.1f}" for m in ORDER)
    if dense > got["sgcn"] > got["gcnz"]:
        return "holds", facts
    return ("dense > GCNZ only" if dense > got["gcnz"] else "fails"), facts


def verdict(agg: dict[tuple[str, str, str], list[float]], dataset: str, runs: int) -> str:
    """The paper's ordering (DGP/ADGPM > SGCN > GCNZ) on ``dataset``'s runs: judged on unseen Hit@1 (the
    paper's metric), with the generalized harmonic mean H reported beside it."""
    hit = _ordering(agg, dataset, "hit@1")
    if hit is None:
        return f"not reproduced: {dataset} runs lack some of {', '.join(ORDER)} (run all four models)"
    where = f"{dataset}, {runs} run(s): unseen Hit@1 {hit[1]}"
    h = _ordering(agg, dataset, "gzsl_H")
    if h is not None:
        where += f"; generalized H {h[1]} (ordering {h[0]})"
    if hit[0] == "holds":
        return f"ordering reproduced: {where}"
    if hit[0] == "dense > GCNZ only":
        return f"not reproduced in full: on Hit@1 dense propagation beats GCNZ but not SGCN ({where})"
    return f"not reproduced: {where}"


def paired_wins(finished: list[tuple[RunDir, dict[str, float]]], dataset: str,
                metric: str = "hit@1") -> list[str]:
    """Markdown: in how many runs (same CNN, same split) the row model beats the column model on
    ``metric``; pairs within a run remove the split-to-split spread that dominates the std."""
    runs = [m for rd, m in finished if rd.config.dataset == dataset
            and all(f"test/{x}/{metric}" in m for x in ORDER)]
    if len(runs) < 2:
        return []
    rows = [f"Runs in which the row model beats the column model on {metric} (of {len(runs)}, same CNN):", "",
            "| | " + " | ".join(m.upper() for m in ORDER) + " |", "|---" * (len(ORDER) + 1) + "|"]
    for a in ORDER:
        cells = ["–" if a == b else str(sum(m[f"test/{a}/{metric}"] > m[f"test/{b}/{metric}"] for m in runs))
                 for b in ORDER]
        rows.append(f"| {a.upper()} | " + " | ".join(cells) + " |")
    return rows + [""]


def report_section(run_dirs: list[RunDir]) -> ReportSection:
    """Mean and std over runs (splits x seeds) of unseen Hit@k and generalized H per model, with and
    without fine-tuning, the ordering verdict per dataset, and each run's bar chart."""
    finished = finished_runs(run_dirs)
    agg = aggregate(finished)
    datasets = sorted({rd.config.dataset for rd, _ in finished})
    parts, verdicts, figures = [], [], []
    for ds in datasets:
        runs = [rd for rd, _ in finished if rd.config.dataset == ds]
        models = [m for m in sorted({k[1] for k in agg if k[0] == ds}, key=_model_order)
                  if _depth(m, "gcn") is None and _depth(m, "dense") is None]
        unseen = min(int(m.get("num_unseen", 0)) for rd, m in finished if rd.config.dataset == ds) or 0
        ks = [k for k in pl.HIT_KS if k < unseen] or [1]
        parts.append(f"**{ds}** ({len(runs)} run(s); {unseen} unseen classes, so Hit@k is shown for k < {unseen}):")
        parts.append("")
        header = "| model | " + " | ".join(f"Hit@{k}" for k in ks) + " | GZSL seen | GZSL unseen | GZSL H |"
        parts += [header, "|---" * (len(ks) + 4) + "|"]
        for model in models:
            cells = []
            for metric in [f"hit@{k}" for k in ks] + ["gzsl_seen", "gzsl_unseen", "gzsl_H"]:
                v = agg.get((ds, model, metric))
                cells.append(_cell(v))
            parts.append(f"| {model.upper()} | " + " | ".join(cells) + " |")
        parts.append("")
        parts += paired_wins(finished, ds)
        parts += ablation_table(agg, ds)
        if ds != "imagenet_graph":
            v = verdict(agg, ds, len(runs))
            if len(runs) < FULL_PROTOCOL_RUNS:
                v += (f"; the README's Results table has the full protocol ({FULL_PROTOCOL_RUNS} runs per dataset, "
                      "presets paper_cifar10 / paper_fmnist)")
            verdicts.append((ds, v))
        for rd in runs:
            png = rd.path / "hits.png"
            if png.is_file():
                figures.append(Figure(png.resolve(), f"{rd.path.name}: unseen Hit@1 and generalized H per graph "
                                                     f"model; the dashed line is chance"))
    if not verdicts:
        why = ("not reproduced: the ImageNet graph mode has synthetic weights (no images here); run "
               "paper_cifar10 / paper_fmnist for the ordering")
        verdicts = [("imagenet_graph", why)]
    parts.append("Published, ImageNet 2-hops Hit@1/2/5/10/20 (ResNet-50, GloVe 300-d; context only, no "
                 "ImageNet images here): GCNZ 21.0/33.7/52.7/64.8/74.3; SGCN 26.2 and DGP 26.6 Hit@1 "
                 "(yinboc/DGP#20; a re-run got 25.5 and 25.8).")
    return ReportSection(claim=CLAIM, verdict=overall_verdict(verdicts), markdown="\n".join(parts),
                         figures=tuple(figures[:6]))


def ablation_table(agg: dict[tuple[str, str, str], list[float]], dataset: str) -> list[str]:
    """Markdown rows: unseen Hit@1 (mean ± std over runs) of the L-layer GCN and of dense propagation
    limited to L hops, per L (empty when the runs hold no ablation)."""
    depths = sorted({d for (ds, m, _) in agg if ds == dataset for kind in ("gcn", "dense")
                     if (d := _depth(m, kind)) is not None})
    if not depths:
        return []

    def cell(model: str) -> str:
        return _cell(agg.get((dataset, model, "hit@1")))

    intro = ("Depth ablation (unseen Hit@1): more GCN layers = more Laplacian smoothing; dense propagation "
             "reaches the same hops in two layers.")
    rows = [intro, "", "| L | GCN, L layers | dense, L hops |", "|---|---|---|"]
    rows += [f"| {d} | {cell(f'gcn{d}')} | {cell(f'dense{d}')} |" for d in depths]
    return rows + [""]


def _model_order(name: str) -> tuple[int, str]:
    base = name.split("+")[0]
    return (ORDER.index(base) if base in ORDER else len(ORDER), name)
