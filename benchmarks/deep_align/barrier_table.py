"""Barrier table (mean +- std over held-out pairs) of finished Deep-Align runs, next to the paper.

Usage::

    python benchmarks/deep_align/barrier_table.py runs/deep_align/mnist160 runs/deep_align/fmnist64

Writes ``results/barrier_table.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from paperzoo.core.io import write_json

HERE = Path(__file__).resolve().parent
METHODS = ("naive", "weight_matching", "activation_matching", "sinkhorn", "deep_align",
           "deep_align+weight_matching", "deep_align+sinkhorn")
PAPER_MNIST = {"naive": 2.007, "weight_matching": 0.047, "activation_matching": 0.024, "sinkhorn": 0.027,
               "deep_align": 0.005, "deep_align+sinkhorn": 0.000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for run in args.runs:
        m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        table[run.name] = {x: {"barrier": m[f"test/barrier/{x}"], "std": m[f"test/barrier_std/{x}"],
                               "auc": m[f"test/auc/{x}"], "seconds": m[f"test/align_seconds/{x}"],
                               "iterations": m[f"test/iterations/{x}"], "pairs": m["test/num_pairs"]}
                           for x in METHODS if f"test/barrier/{x}" in m}
    write_json(HERE / "results" / "barrier_table.json", {"runs": table, "paper_mnist_mlp": PAPER_MNIST})
    names = list(table)
    print("| method | " + " | ".join(f"{n} barrier (AUC)" for n in names) + " | paper MNIST MLP |")
    print("|---|" + "---|" * (len(names) + 1))
    for x in METHODS:
        cells = [f"{t[x]['barrier']:.3f} +- {t[x]['std']:.3f} ({t[x]['auc']:.3f})" if x in t else "-"
                 for t in table.values()]
        paper = PAPER_MNIST.get(x)
        print(f"| {x} | " + " | ".join(cells) + f" | {'-' if paper is None else f'{paper:.3f}'} |")


if __name__ == "__main__":
    main()
