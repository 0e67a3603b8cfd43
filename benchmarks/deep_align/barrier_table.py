"""Barrier table (mean +- std over held-out pairs) of finished Deep-Align runs, next to the paper.

Usage::

    python benchmarks/deep_align/barrier_table.py runs/deep_align/mnist160 runs/deep_align/fmnist64

Writes ``results/barrier_table.json`` (``--out``) and prints a Markdown table. Runs that hold
``test_pairs.json`` (every test pair's barrier per method) also get paired comparisons: for each
``deep_align*`` method against the method it is compared with in the paper, the number of pairs on which
it is lower and the mean +- std of the per-pair difference.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from paperzoo.core.io import write_json

HERE = Path(__file__).resolve().parent
METHODS = ("naive", "weight_matching", "activation_matching", "sinkhorn", "deep_align",
           "deep_align+weight_matching", "deep_align+sinkhorn")
PAIRED = (("deep_align", "weight_matching"), ("deep_align", "sinkhorn"),
          ("deep_align+weight_matching", "weight_matching"), ("deep_align+sinkhorn", "sinkhorn"))
PAPER_MNIST = {"naive": 2.007, "weight_matching": 0.047, "activation_matching": 0.024, "sinkhorn": 0.027,
               "deep_align": 0.005, "deep_align+sinkhorn": 0.000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "barrier_table.json")
    args = ap.parse_args()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for run in args.runs:
        m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        table[run.name] = {x: {"barrier": m[f"test/barrier/{x}"], "std": m[f"test/barrier_std/{x}"],
                               "auc": m[f"test/auc/{x}"], "seconds": m[f"test/align_seconds/{x}"],
                               "iterations": m[f"test/iterations/{x}"], "pairs": m["test/num_pairs"]}
                           for x in METHODS if f"test/barrier/{x}" in m}
    paired = {run.name: paired_differences(run) for run in args.runs if (run / "test_pairs.json").exists()}
    write_json(args.out, {"runs": table, "paired": paired, "paper_mnist_mlp": PAPER_MNIST})
    names = list(table)
    print("| method | " + " | ".join(f"{n} barrier (AUC)" for n in names) + " | paper MNIST MLP |")
    print("|---|" + "---|" * (len(names) + 1))
    for x in METHODS:
        cells = [f"{t[x]['barrier']:.3f} +- {t[x]['std']:.3f} ({t[x]['auc']:.3f})" if x in t else "-"
                 for t in table.values()]
        paper = PAPER_MNIST.get(x)
        print(f"| {x} | " + " | ".join(cells) + f" | {'-' if paper is None else f'{paper:.3f}'} |")
    for name, rows in paired.items():
        print(f"\n{name}, paired over test pairs (difference = first - second; negative: first is lower):")
        for r in rows:
            print(f"- {r['first']} vs {r['second']}: lower on {r['lower']} of {r['pairs']} pairs, "
                  f"difference {r['mean']:+.3f} +- {r['std']:.3f}")


def paired_differences(run: Path) -> list[dict]:
    """Per-pair comparisons of a run's ``test_pairs.json`` (see the module docstring)."""
    saved = json.loads((run / "test_pairs.json").read_text(encoding="utf-8"))["barrier"]
    rows = []
    for first, second in PAIRED:
        if first in saved and second in saved:
            diff = [a - b for a, b in zip(saved[first], saved[second], strict=True)]
            rows.append({"first": first, "second": second, "pairs": len(diff),
                         "lower": sum(d < 0 for d in diff), "mean": statistics.fmean(diff),
                         "std": statistics.stdev(diff) if len(diff) > 1 else 0.0})
    return rows


if __name__ == "__main__":
    main()
