"""Memory of HGSampling mini-batch training stays flat as batches accumulate.

Trains HGT (``sampled_aminer`` preset unless overridden) for ``--batches`` mini-batches and
records this process's resident memory (VmRSS) after every batch, then compares the growth over
the second half of the run with the size of one batch's working set. Writes
``results/memory_sampled_<dataset>.json`` and a plot.

    PAPERZOO_DATA=../shared/data .venv/bin/python benchmarks/hgt/memory_sampled.py --batches 400
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from paperzoo.core import config as cfglib
from paperzoo.core import io
from paperzoo.methods.hgt.config import PRESETS
from paperzoo.core.loop import rss_mib
from paperzoo.methods.hgt.run import Batcher, build_model, load_graph, train_epoch

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="sampled_aminer")
    p.add_argument("--batches", type=int, default=400, help="mini-batches to train (default 400)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = cfglib.from_dict(type(PRESETS[args.preset].config), cfglib.parse_overrides(args.overrides),
                           base=PRESETS[args.preset].config)
    cfg = replace(cfg, mode="sampled")
    graph = load_graph(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, graph)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batcher = Batcher(cfg, graph)
    gen = torch.Generator().manual_seed(cfg.seed)
    rss, sizes, losses = [], [], []
    start_rss = rss_mib()

    sampler = batcher.sampler
    original = sampler.sample

    def counting_sample(*a, **kw):  # record each subgraph's size
        sub = original(*a, **kw)
        sizes.append(sum(sub.num_nodes.values()))
        return sub

    sampler.sample = counting_sample
    tic = time.perf_counter()
    while len(rss) < args.batches:
        def on_batch(i, loss):
            losses.append(loss)
            rss.append(rss_mib())
        train_epoch(model, opt, batcher, cfg, gen, on_batch=on_batch)
    seconds = time.perf_counter() - tic
    rss = rss[: args.batches]
    half = len(rss) // 2
    second = rss[half:]
    n = len(second)
    xs = list(range(n))
    mx, my = sum(xs) / n, sum(second) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, second)) / max(sum((x - mx) ** 2 for x in xs), 1e-12)
    result = {
        "preset": args.preset, "config": cfglib.to_dict(cfg), "batches": len(rss),
        "threads": args.threads, "seconds": seconds, "batches_per_second": len(rss) / seconds,
        "rss_start_mib": start_rss, "rss_first_batch_mib": rss[0], "rss_peak_mib": max(rss),
        "rss_at_half_mib": rss[half], "rss_end_mib": rss[-1],
        "growth_second_half_mib": rss[-1] - rss[half],
        "slope_second_half_mib_per_1000_batches": slope * 1000,
        "mean_subgraph_nodes": sum(sizes) / max(len(sizes), 1), "rss_mib": rss, "loss": losses[: len(rss)],
        "platform": platform.platform(), "torch": torch.__version__, "python": sys.version.split()[0],
    }
    out = args.out or HERE / "results" / f"memory_sampled_{cfg.dataset}.json"
    io.write_json(out, result)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.plot(range(1, len(rss) + 1), rss)
        ax.set_xlabel("mini-batch")
        ax.set_ylabel("resident memory (MiB)")
        ax.set_title(f"HGT + HGSampling on {cfg.dataset}: memory per batch")
        ax.set_ylim(0, max(rss) * 1.1)
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=120)
        plt.close(fig)
    except ImportError:
        pass
    print(f"{len(rss)} batches in {seconds:.0f} s ({len(rss) / seconds:.1f}/s), "
          f"mean subgraph {result['mean_subgraph_nodes']:.0f} nodes")
    print(f"RSS: start {start_rss:.0f} MiB, after batch 1 {rss[0]:.0f}, at half {rss[half]:.0f}, "
          f"end {rss[-1]:.0f}, peak {max(rss):.0f} MiB; second-half slope "
          f"{result['slope_second_half_mib_per_1000_batches']:+.1f} MiB per 1000 batches")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
