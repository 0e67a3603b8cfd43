"""Alignment time per pair of every method, measured in one process, as ratios to weight matching.

Usage (after a run has finished, e.g. the ``quick`` preset on MNIST)::

    python benchmarks/deep_align/bench_align_time.py runs/deep_align/mnist160 --pairs 10

It reloads the run's zoo and ``best.pt``, aligns the same held-out test pairs with every method of the
run's config (single thread, one warm-up pair first), and writes ``results/<run name>.json`` and
``results/<run name>.png``.

Two optional extra rows: ``--am-examples 60000`` adds activation matching on that many training images
(Git Re-Basin matches activations over the training set; the run's config uses ``am_examples``, 1,000 by
default, to keep the barrier table cheap); ``--batch-pairs K`` adds Deep-Align aligning ``K`` pairs in
one call (one encoder pass over all ``2K`` networks, then a Hungarian per pair and level), reported per
pair: how a zoo of pairs would be aligned.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch
import yaml

from paperzoo.core import config as cfglib
from paperzoo.core.io import atomic_path, write_json
from paperzoo.core.runs import RunDir
from paperzoo.methods.deep_align.config import DeepAlignConfig
from paperzoo.methods.deep_align.nets import stack
from paperzoo.methods.deep_align.run import aligners, load_model, pairs_of, setup

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--am-examples", type=int, nargs="*", default=[],
                    help="extra activation-matching rows on this many training images each")
    ap.add_argument("--batch-pairs", type=int, default=0, help="extra row: Deep-Align on K pairs per call")
    args = ap.parse_args()
    torch.set_num_threads(1)
    saved = yaml.safe_load((args.run_dir / "config.yaml").read_text(encoding="utf-8"))
    cfg = cfglib.from_dict(DeepAlignConfig, saved["config"])
    rd = RunDir(args.run_dir, method="deep_align", preset=saved["preset"], config=cfg,
                data_root=args.data_root or saved.get("data_root"))
    task, zoo, split = setup(cfg, rd)
    model = load_model(cfg, rd, zoo, split)
    table = dict(aligners(cfg, task, zoo.arch, model))
    for n in args.am_examples:
        more = aligners(dataclasses.replace(cfg, am_examples=n), task, zoo.arch, model)
        table[f"activation_matching ({min(n, len(task.x_train))} images)"] = more["activation_matching"]
    methods = list(cfg.methods) + [m for m in table if m.startswith("activation_matching (")]
    pairs = pairs_of(split["test"], args.pairs, cfg.seed + 2)
    a0, b0 = zoo.net(pairs[0][0]), zoo.net(pairs[0][1])
    for name in methods:  # warm-up (imports, allocator)
        table[name](a0, b0, 0)
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for k, (i, j) in enumerate(pairs):
        a, b = zoo.net(i), zoo.net(j)
        for name in methods:
            tic = time.perf_counter()
            table[name](a, b, k)
            seconds[name].append(time.perf_counter() - tic)
    if args.batch_pairs and model is not None:
        label = f"deep_align ({args.batch_pairs} pairs per call)"
        seconds[label] = []
        nets_a = [zoo.net(i) for i, _ in pairs]
        nets_b = [zoo.net(j) for _, j in pairs]
        for start in range(0, len(pairs), args.batch_pairs):
            stop = min(start + args.batch_pairs, len(pairs))
            tic = time.perf_counter()
            with torch.no_grad():
                model.align(stack(nets_a[start:stop]), stack(nets_b[start:stop]))
            seconds[label] += [(time.perf_counter() - tic) / (stop - start)] * (stop - start)
    mean = {m: sum(v) / len(v) for m, v in seconds.items()}
    ref = mean.get("weight_matching", 1.0)
    out = {"run": str(args.run_dir), "task": cfg.task, "arch": cfg.arch, "pairs": len(pairs),
           "threads": 1, "machine": platform.processor() or platform.machine(),
           "seconds_per_pair": mean, "ratio_to_weight_matching": {m: v / ref for m, v in mean.items()},
           "paper_seconds_per_pair_cnn": {"weight_matching": 0.21, "activation_matching": 7.52,
                                          "sinkhorn": 79.81, "deep_align": 0.44}}
    name = args.run_dir.name
    write_json(HERE / "results" / f"{name}.json", out)
    _plot(mean, HERE / "results" / f"{name}.png", f"{cfg.task} {cfg.arch}: alignment time per pair")
    for m, v in mean.items():
        print(f"{m:28s} {v * 1000:9.1f} ms  x{v / ref:7.2f} of weight matching")


def _plot(mean: dict[str, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(mean), [v * 1000 for v in mean.values()])
    ax.set_xscale("log")
    ax.set_xlabel("ms per pair (log scale, 1 thread)")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
