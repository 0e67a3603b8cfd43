"""Savings of the broker's plan vs single-region and single-cloud baselines on the curated catalog.

    PAPERZOO_DATA=../shared/data .venv/bin/python benchmarks/sky_broker/bench_savings.py

The job is the ``quick`` preset's training DAG (preprocess on 8+ vCPUs -> train on any single GPU
-> eval on 4+ vCPUs, input data in one region, results sent back there). For each data location,
data size and market (on-demand / spot for training) the broker plans over all of AWS, GCP and
Azure; each baseline solves the same problem on part of the catalog: ``data_region`` (everything
where the data is), ``single_region_best`` (the best single region), ``data_cloud`` (any region of
the data's cloud) and ``single_cloud_best``. Writes ``results/savings.json`` and prints tables.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from paperzoo.core import io
from paperzoo.methods.sky_broker.catalog import load_catalog
from paperzoo.methods.sky_broker.run import BASELINES, savings

RESULTS = Path(__file__).with_name("results")
LOCATIONS = ("aws:us-east-1", "aws:ap-northeast-1", "gcp:europe-west4", "azure:westeurope", "azure:japaneast")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("PAPERZOO_DATA"))
    parser.add_argument("--sizes", default="10,200", help="input data sizes in GB")
    args = parser.parse_args()
    catalog = load_catalog(data_root=args.data_root)
    rows = []
    for location in LOCATIONS:
        for size in map(float, args.sizes.split(",")):
            for spot in (False, True):
                metrics, plans = savings(catalog, location, size, use_spot=spot)
                placement = {t.task: t.candidate.label() for t in plans["cost"].placements}
                rows.append({"data": location, "data_gb": size, "spot": spot, "placement": placement, **metrics})
    io.write_json(RESULTS / "savings.json", {"catalog": "curated (see catalog/README.md)", "rows": rows})

    for title, plan, tag, ratio, unit in (("Cost (objective: cost)", "plan/cost_usd", "baseline", "savings", "$"),
                                          ("Time (objective: time)", "plan_fast/time_h", "baseline_fast", "speedup",
                                           "h")):
        key = "cost_usd" if unit == "$" else "time_h"
        print(f"\n### {title}\n")
        print(f"| data | GB | train | broker {unit} | " + " | ".join(f"{b} {unit} (x)" for b in BASELINES) + " |")
        print("|---|---:|---|---:|" + "---:|" * len(BASELINES))
        for r in rows:
            cells = " | ".join(f"{r[f'{tag}/{b}/{key}']:.2f} ({r[f'{ratio}/{b}_x']:.2f}x)" for b in BASELINES)
            print(f"| {r['data']} | {r['data_gb']:g} | {'spot' if r['spot'] else 'on-demand'} | {r[plan]:.2f} | "
                  f"{cells} |")
    for b in BASELINES:
        xs = [r[f"savings/{b}_x"] for r in rows]
        print(f"\n{b}: cost savings mean {sum(xs) / len(xs):.2f}x, max {max(xs):.2f}x over {len(xs)} jobs")


if __name__ == "__main__":
    main()
