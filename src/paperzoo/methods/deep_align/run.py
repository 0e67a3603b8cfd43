"""Experiment harness: zoo -> Deep-Align training -> barrier table on held-out pairs.

1. **Zoo**: :func:`zoo.build_zoo` in ``cfg.zoo_dir`` (or ``<run>/zoo``), resumable by shard; networks
   split into train / val / test networks.
2. **Deep-Align** (MLP or CNN zoos, whenever ``cfg.methods`` asks for it): trained on pairs of training
   networks with the three losses through :func:`paperzoo.core.loop.train` (``last.pt`` after every
   epoch, ``best.pt`` by the validation pairs' mean barrier).
3. **Evaluation**: for ``cfg.test_pairs`` pairs of test networks, every method of ``cfg.methods``
   aligns ``b`` to ``a``; loss barrier and AUC of the interpolation curve on ``cfg.eval_examples`` test
   images. Metrics ``test/barrier/<method>`` (mean over pairs), ``test/barrier_std/<method>``,
   ``test/auc/<method>``, ``test/align_seconds/<method>``; plot ``plots/barrier_curves.png``; every
   pair's barrier per method in ``test_pairs.json``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from paperzoo.api import Figure, ReportSection, RunResult, overall_verdict
from paperzoo.core import loop
from paperzoo.core import seed as seedlib
from paperzoo.core.io import write_json
from paperzoo.core.progress import progress
from paperzoo.core.runs import RunDir, finished_runs
from paperzoo.methods.deep_align import interp, matching
from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align import train as T
from paperzoo.methods.deep_align import zoo as Z
from paperzoo.methods.deep_align.config import PRESETS, DeepAlignConfig
from paperzoo.methods.deep_align.model import DeepAlign
from paperzoo.methods.deep_align.nets import CNNArch, MLPArch, Params, stack

log = logging.getLogger(__name__)

Aligner = Callable[[Params, Params, int], tuple[P.Perms, int]]


def make_arch(cfg: DeepAlignConfig, task: Z.AnyTask) -> MLPArch | CNNArch:
    if cfg.arch == "cnn":
        return CNNArch(task.input_shape[0] if len(task.input_shape) == 3 else 1, cfg.cnn_channels,
                       task.num_classes)
    if cfg.task == "sine":
        return MLPArch((1, *cfg.hidden_sizes, 1), activation="sine", w0=cfg.inr_w0)
    return MLPArch((math.prod(task.input_shape), *cfg.hidden_sizes, task.out_dim))


def setup(cfg: DeepAlignConfig, run_dir: RunDir) -> tuple[Z.AnyTask, Z.Zoo, dict[str, list[int]]]:
    """Data, the (built or reloaded) zoo and its network split."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    freq_range = (cfg.sine_freq[0], cfg.sine_freq[1])
    task = Z.load_task(cfg.task, run_dir.data_root, train_limit=cfg.train_limit,
                       test_limit=cfg.eval_examples, seed=cfg.seed, freq_range=freq_range)
    arch = make_arch(cfg, task)
    folder = Path(cfg.zoo_dir) if cfg.zoo_dir else run_dir.path / "zoo"
    zoo = Z.build_zoo(folder, arch, task, zoo_settings(cfg, arch))
    return task, zoo, zoo.split(tuple(cfg.split), cfg.seed)  # type: ignore[arg-type]


def zoo_settings(cfg: DeepAlignConfig, arch: MLPArch | CNNArch) -> Z.ZooSettings:
    """The zoo settings of ``cfg`` (stored in ``zoo.json``; a zoo folder built with others is refused)."""
    freq_range = (cfg.sine_freq[0], cfg.sine_freq[1])
    return Z.ZooSettings(task=cfg.task, arch=Z.arch_to_dict(arch), num_networks=cfg.num_networks,
                         shard_size=cfg.shard_size, epochs=cfg.zoo_epochs, batch_size=cfg.zoo_batch_size,
                         lr=cfg.zoo_lr, seed=cfg.seed, store_dtype=cfg.store_dtype,
                         task_options={"freq_range": list(freq_range)} if cfg.task == "sine" else {})


def pairs_of(indices: list[int], count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` distinct unordered pairs of ``indices`` (all of them if there are fewer)."""
    allp = [(a, b) for i, a in enumerate(indices) for b in indices[i + 1:]]
    order = torch.randperm(len(allp), generator=torch.Generator().manual_seed(seed)).tolist()
    return [allp[k] for k in order[:count]]


def uses_deep_align(cfg: DeepAlignConfig) -> bool:
    """Whether any method of ``cfg.methods`` needs a trained Deep-Align model."""
    return any(m.startswith("deep_align") for m in cfg.methods)


def build_model(cfg: DeepAlignConfig, arch: MLPArch | CNNArch, train_params: Params) -> DeepAlign:
    torch.manual_seed(cfg.seed)
    model = DeepAlign(arch, cfg.encoder_hidden, cfg.encoder_depth, cfg.out_dim, cfg.input_proj,
                      reduction=cfg.encoder_reduction)
    model.fit_scales(train_params)
    return model


# ------------------------------------------------------------------------------------- aligners
def aligners(cfg: DeepAlignConfig, task: Z.AnyTask, arch: MLPArch | CNNArch, model: DeepAlign | None
             ) -> dict[str, Aligner]:
    """Every method as ``(a, b, pair_seed) -> (perms aligning b to a, iterations)``."""
    spec = arch.spec()
    x_am = task.x_train[:cfg.am_examples]

    def acts(p: Params) -> list[Tensor]:
        return [h[0] for h in arch.activations(stack([p]), x_am)[:-1]]

    def deep(a: Params, b: Params) -> P.Perms:
        assert model is not None
        return model.align(stack([a]), stack([b]))[0]

    def wm(a: Params, b: Params, seed: int, init: P.Perms | None = None) -> tuple[P.Perms, int]:
        perms, info = matching.weight_matching(spec, a, b, max_iter=cfg.wm_max_iter, init=init,
                                               generator=torch.Generator().manual_seed(seed))
        return perms, info.iterations

    def sk(a: Params, b: Params, seed: int, init: P.Perms | None = None) -> tuple[P.Perms, int]:
        ends = stack([a]), stack([b])

        def rebasin_loss(p: Params, lam: Tensor, gen: torch.Generator) -> Tensor:
            return task.mid_loss(arch, stack([p]), *ends, lam.reshape(1), gen, cfg.rebasin_batch)

        perms, info = matching.sinkhorn_rebasin(spec, a, b, rebasin_loss, steps=cfg.rebasin_steps,
                                                lr=cfg.rebasin_lr, iters=cfg.sinkhorn_iters, tau=cfg.tau,
                                                init=init, init_scale=cfg.rebasin_init_scale,
                                                generator=torch.Generator().manual_seed(seed))
        return perms, info.iterations

    sizes_of = spec.sizes
    return {
        "naive": lambda a, b, s: (P.identity(sizes_of(a)), 0),
        "weight_matching": lambda a, b, s: wm(a, b, s),
        "activation_matching": lambda a, b, s: (matching.activation_matching(a, b, acts), 1),
        "sinkhorn": lambda a, b, s: sk(a, b, s),
        "deep_align": lambda a, b, s: (deep(a, b), 1),
        "deep_align+weight_matching": lambda a, b, s: wm(a, b, s, deep(a, b)),
        "deep_align+sinkhorn": lambda a, b, s: sk(a, b, s, deep(a, b)),
    }


def barrier_eval(cfg: DeepAlignConfig, task: Z.AnyTask, zoo: Z.Zoo, pairs: list[tuple[int, int]],
                 methods: tuple[str, ...], model: DeepAlign | None, desc: str = "pairs"
                 ) -> tuple[dict[str, float], dict[str, list[interp.Curve]]]:
    """Barrier / AUC / time / iterations of ``methods`` on ``pairs``, and the curves for plotting."""
    arch, spec = zoo.arch, zoo.arch.spec()
    table = aligners(cfg, task, arch, model)
    rows: dict[str, dict[str, list[float]]] = {m: {"barrier": [], "auc": [], "seconds": [], "iters": []}
                                               for m in methods}
    curves: dict[str, list[interp.Curve]] = {m: [] for m in methods}
    for k, (i, j) in enumerate(progress(pairs, desc=desc)):
        a, b = zoo.net(i), zoo.net(j)
        for name in methods:
            tic = time.perf_counter()
            perms, iters = table[name](a, b, cfg.seed * 7919 + k)
            rows[name]["seconds"].append(time.perf_counter() - tic)
            rows[name]["iters"].append(float(iters))
            curve = task.pair_curve(arch, a, P.apply(spec, perms, b), cfg.num_lambdas, cfg.eval_examples)
            rows[name]["barrier"].append(curve.barrier)
            rows[name]["auc"].append(curve.auc)
            curves[name].append(curve)
    out: dict[str, float] = {}
    for name, r in rows.items():
        bar = torch.tensor(r["barrier"], dtype=torch.float64)
        out[f"barrier/{name}"] = float(bar.mean())
        out[f"barrier_std/{name}"] = float(bar.std()) if len(bar) > 1 else 0.0
        out[f"auc/{name}"] = float(torch.tensor(r["auc"]).mean())
        out[f"align_seconds/{name}"] = float(torch.tensor(r["seconds"]).mean())
        out[f"iterations/{name}"] = float(torch.tensor(r["iters"]).mean())
    return out, curves


# ------------------------------------------------------------------------------------------ run
def run(cfg: DeepAlignConfig, run_dir: RunDir) -> RunResult:
    """Build the zoo, train Deep-Align (resumably), evaluate every method on the test pairs."""
    task, zoo, split = setup(cfg, run_dir)
    state: dict = {"history": []}
    model = None
    summary: dict[str, float] = {}
    if uses_deep_align(cfg):
        model, state = _train(cfg, run_dir, task, zoo, split)
        summary = loop.summary(state, model)
    metrics = _test_metrics(cfg, run_dir, task, zoo, split, model, plots=True)
    metrics.update(summary)
    metrics.update(zoo_metrics(zoo, split["test"]))
    return RunResult(metrics=metrics, history=state["history"],
                     artifacts={"best": "checkpoints/best.pt", "plots": "plots/"})


def zoo_metrics(zoo: Z.Zoo, nets: list[int]) -> dict[str, float]:
    """Mean test accuracy (classifiers) or test MSE (INRs) of the zoo networks ``nets``."""
    key, name = ("test_acc", "zoo/test_acc") if "test_acc" in zoo.meta[0] else ("test_loss", "zoo/test_mse")
    return {name: sum(zoo.meta[i][key] for i in nets) / len(nets)}


def _train(cfg: DeepAlignConfig, run_dir: RunDir, task: Z.AnyTask, zoo: Z.Zoo, split: dict[str, list[int]]
           ) -> tuple[DeepAlign, dict]:
    train_params = zoo.subset(split["train"])
    model = build_model(cfg, zoo.arch, train_params)
    generator = seedlib.seed_everything(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    weights = T.LossWeights(*cfg.loss_weights)
    aug = T.Augment(cfg.aug_noise, cfg.aug_dropout, cfg.aug_scale)
    step = T.StepSettings(cfg.batch_size, cfg.data_batch, cfg.sinkhorn_iters, cfg.tau, cfg.clip,
                          implicit=cfg.sinkhorn_grad == "implicit")
    # validation networks plus one training network, so that a tiny zoo with two validation networks
    # still offers several pairs (validation only selects best.pt; test pairs never see training nets)
    val_pairs = pairs_of(split["val"] + split["train"][:1], cfg.val_pairs, cfg.seed + 1)

    def train_epoch() -> float:
        model.train()
        rows = [T.train_step(model, opt, train_params, task, weights, aug, step, generator)
                for _ in range(cfg.steps_per_epoch)]
        return sum(r["loss"] for r in rows) / len(rows)

    def validate() -> tuple[float, dict[str, float]]:
        model.eval()
        res, _ = barrier_eval(cfg, task, zoo, val_pairs, ("deep_align",), model, desc="val pairs")
        return -res["barrier/deep_align"], {"val/barrier": res["barrier/deep_align"]}

    state = loop.train(run_dir, model=model, optimizer=opt, scheduler=sched, generators={"train": generator},
                       schedule=loop.Schedule(cfg.epochs), train_epoch=train_epoch, validate=validate,
                       desc="Deep-Align")
    best = run_dir.load_checkpoint("best")
    assert best is not None
    model.load_state_dict(best["model"])
    model.eval()
    return model, state


def _test_metrics(cfg: DeepAlignConfig, run_dir: RunDir, task: Z.AnyTask, zoo: Z.Zoo,
                  split: dict[str, list[int]], model: DeepAlign | None, plots: bool) -> dict[str, float]:
    pairs = pairs_of(split["test"], cfg.test_pairs, cfg.seed + 2)
    res, curves = barrier_eval(cfg, task, zoo, pairs, cfg.methods, model, desc="test pairs")
    # per-pair barriers, for paired comparisons between methods (benchmarks/deep_align/barrier_table.py)
    write_json(run_dir.path / "test_pairs.json",
               {"pairs": [list(p) for p in pairs],
                "barrier": {name: [c.barrier for c in cs] for name, cs in curves.items()}})
    if plots:
        interp.plot_curves(curves, run_dir.path / "plots" / "barrier_curves.png",
                           f"{cfg.task} {cfg.arch} zoo: {len(pairs)} held-out pairs")
        _plot_history(run_dir)
    out = {f"test/{k}": v for k, v in res.items()}
    out["test/num_pairs"] = float(len(pairs))
    return out


def _plot_history(run_dir: RunDir) -> Path | None:
    """``plots/training.png``: the training loss and, when the run validated, the validation pairs' mean
    Deep-Align barrier (best epoch marked) against epoch; ``None`` without a history."""
    rows = run_dir.read_history()
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from paperzoo.core.io import atomic_path

    val = [(r["epoch"], r["val/barrier"]) for r in rows
           if isinstance(r.get("val/barrier"), float) and math.isfinite(r["val/barrier"])]
    fig = Figure(figsize=(9 if val else 4.5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 2 if val else 1, squeeze=False)[0]
    ax[0].plot([r["epoch"] for r in rows], [r["loss"] for r in rows], marker="o", markersize=3)
    ax[0].set(xlabel="epoch", ylabel="training loss (sum of the three)")
    if val:
        ax[1].plot(*zip(*val), marker="o")
        best = min(val, key=lambda p: p[1])
        ax[1].scatter([best[0]], [best[1]], s=80, facecolors="none", edgecolors="tab:red", label="best.pt")
        ax[1].set(xlabel="epoch", ylabel="validation barrier (Deep-Align)")
        ax[1].legend(fontsize=8)
    fig.tight_layout()
    path = run_dir.path / "plots" / "training.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def load_model(cfg: DeepAlignConfig, run_dir: RunDir, zoo: Z.Zoo, split: dict[str, list[int]]
               ) -> DeepAlign | None:
    """The run's trained Deep-Align (``best.pt``, in eval mode), or ``None`` if no method needs it."""
    if not uses_deep_align(cfg):
        return None
    model = build_model(cfg, zoo.arch, zoo.subset(split["train"]))
    best = run_dir.load_checkpoint("best")
    if best is None:
        raise FileNotFoundError(f"{run_dir.checkpoint_path('best')} is missing: the run never validated")
    model.load_state_dict(best["model"])
    model.eval()
    return model


def evaluate(run_dir: RunDir) -> dict[str, float]:
    """Reload the zoo and ``best.pt`` and recompute the test table (timings excluded)."""
    cfg = run_dir.config
    task, zoo, split = setup(cfg, run_dir)
    model = load_model(cfg, run_dir, zoo, split)
    metrics = _test_metrics(cfg, run_dir, task, zoo, split, model, plots=False)
    metrics.update(zoo_metrics(zoo, split["test"]))
    return {k: v for k, v in metrics.items() if "seconds" not in k}


# ------------------------------------------------------------------------------------------ report
#: Where the README shows the paper's ordering on CPU: preset, Deep-Align and weight matching test
#: barriers on 10 held-out MNIST pairs after 2,500 steps (README "Results vs paper").
README_ORDERING = ("cpu_mnist_mlp", 0.124, 0.128)
#: ``reproduced`` also needs Deep-Align's barrier within this much of the paper's (absolute loss).
BARRIER_TOLERANCE = 0.02


def _paired_difference(run_dir: RunDir, m: dict[str, float]) -> tuple[float, float, int]:
    """Mean Deep-Align minus weight-matching barrier over the test pairs and its standard error
    (from ``test_pairs.json``; from the two means and stds when the file is missing)."""
    saved = run_dir.path / "test_pairs.json"
    if saved.is_file():
        try:
            bars = json.loads(saved.read_text(encoding="utf-8"))["barrier"]
            diffs = torch.tensor(bars["deep_align"], dtype=torch.float64) - torch.tensor(
                bars["weight_matching"], dtype=torch.float64)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            log.warning("%s: unreadable (%s: %s); the verdict uses the mean barriers and their stds", saved,
                        type(exc).__name__, exc)
        else:
            se = float(diffs.std() / math.sqrt(len(diffs))) if len(diffs) > 1 else 0.0
            return float(diffs.mean()), se, len(diffs)
    n = int(m.get("test/num_pairs", 1))
    se = math.hypot(m.get("test/barrier_std/deep_align", 0.0), m.get("test/barrier_std/weight_matching", 0.0))
    return m["test/barrier/deep_align"] - m["test/barrier/weight_matching"], se / math.sqrt(max(n, 1)), n


def verdict(run_dir: RunDir, m: dict[str, float], paper: dict[str, float]) -> str:
    """Deep-Align against weight matching on the run's test pairs (ordering: at most one standard error
    of the paired difference above it) and against the paper's barrier (``BARRIER_TOLERANCE``)."""
    if "test/barrier/deep_align" not in m or "test/barrier/weight_matching" not in m:
        return "not reproduced: the run did not evaluate both Deep-Align and weight matching"
    da, wm = m["test/barrier/deep_align"], m["test/barrier/weight_matching"]
    diff, se, n = _paired_difference(run_dir, m)
    steps = int(m.get("epochs_run", run_dir.config.epochs)) * run_dir.config.steps_per_epoch
    facts = f"Deep-Align {da:.3f} vs weight matching {wm:.3f} on {n} test pairs after {steps} steps"
    if diff > se:
        preset, ref_da, ref_wm = README_ORDERING
        return (f"not reproduced in the {run_dir.preset} preset: {facts} (difference {diff:+.3f} ± {se:.3f}); "
                f"preset {preset} reaches {ref_da:.3f} vs {ref_wm:.3f} (README)")
    ref = paper.get("barrier/deep_align")
    if ref is not None and abs(da - ref) <= BARRIER_TOLERANCE:
        return f"reproduced: {facts}; paper {ref:.3f} vs {paper['barrier/weight_matching']:.3f}"
    gap = f"; paper {ref:.3f} vs {paper['barrier/weight_matching']:.3f}, ours higher" if ref is not None else ""
    return f"ordering reproduced: {facts} (difference {diff:+.3f} ± {se:.3f}){gap}"




def report_section(run_dirs: list[RunDir]) -> ReportSection:
    """The report's Deep-Align section: the paper's claim, a verdict per run, the barrier / AUC / time
    table of every method against the paper, and the run's barrier curves and training curves."""
    claim = ("Deep-Align, an equivariant network trained on a zoo, aligns two networks' weights in one "
             "forward pass; on the MNIST MLP zoo its test loss barrier is .005 against weight matching's "
             ".047 (and .000 as Sinkhorn's initialisation), at a fraction of the alignment time.")
    parts, verdicts, figures = [], [], []
    for rd, m in finished_runs(run_dirs):
        preset = PRESETS.get(rd.preset)
        paper = dict(preset.paper.metrics) if preset is not None and preset.paper is not None else {}
        verdicts.append((rd.path.name, verdict(rd, m, paper)))
        methods = [name for name in rd.config.methods if f"test/barrier/{name}" in m]
        parts += [(f"**{rd.path.name}** ({rd.config.task} {rd.config.arch} zoo, "
                   f"{m.get('test/num_pairs', 0):.0f} held-out pairs, preset {rd.preset})"), "",
                  "| method | test barrier (mean ± std) | paper | AUC | align ms / pair |", "|---|---|---|---|---|"]
        for name in methods:
            ref = paper.get(f"barrier/{name}")
            parts.append(f"| {name} | {m[f'test/barrier/{name}']:.3f} ± {m.get(f'test/barrier_std/{name}', 0):.3f} "
                         f"| {'–' if ref is None else f'{ref:.3f}'} | {m.get(f'test/auc/{name}', math.nan):.3f} | "
                         f"{1e3 * m.get(f'test/align_seconds/{name}', math.nan):.1f} |")
        parts.append("")
        curves = rd.path / "plots" / "barrier_curves.png"
        if curves.is_file():
            figures.append(Figure(curves.resolve(), f"{rd.path.name}: loss along the interpolation path between "
                                                    f"aligned test pairs, minus the straight line between the "
                                                    f"end losses (the barrier is its maximum; lower is better)"))
        history = rd.read_history()
        if sum(1 for r in history if isinstance(r.get("val/barrier"), float)) >= 2:
            training = _plot_history(rd)
            if training is not None:
                figures.append(Figure(training.resolve(), f"{rd.path.name}: Deep-Align's training loss and the "
                                                          f"validation pairs' barrier (best.pt circled)"))
    return ReportSection(claim=claim, verdict=overall_verdict(verdicts),
                         markdown="\n".join(parts).strip(), figures=tuple(figures))
