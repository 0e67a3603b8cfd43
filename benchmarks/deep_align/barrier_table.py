"""Barrier table (mean +- std over held-out pairs) of finished Deep-Align runs, next to the paper.

Usage::

    python benchmarks/deep_align/barrier_table.py runs/deep_align/mnist160 runs/deep_align/fmnist64

Writes ``results/<run>+<run>....json`` (or ``--out``) and prints a Markdown table, with a column of the
paper's numbers for every zoo among the runs that the paper reports (MNIST MLP, CIFAR-10 MLP, CIFAR-10
CNN; read from each run's ``config.yaml``). Runs that hold
``test_pairs.json`` (every test pair's barrier per method) also get paired comparisons: for each
``deep_align*`` method against the method it is compared with in the paper, the number of pairs on which
it is lower and the mean +- std of the per-pair difference.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

from paperzoo.core.io import write_json

HERE = Path(__file__).resolve().parent
METHODS = ("naive", "weight_matching", "activation_matching", "sinkhorn", "deep_align",
           "deep_align+weight_matching", "deep_align+sinkhorn")
PAIRED = (("deep_align", "weight_matching"), ("deep_align", "sinkhorn"),
          ("deep_align+weight_matching", "weight_matching"), ("deep_align+sinkhorn", "sinkhorn"))
# the paper's barriers (ICLR 2024 submission, as in shared/papers/deep_align.md), by (task, arch) of the zoo
_PAPER_ROWS = ("naive", "weight_matching", "activation_matching", "sinkhorn", "deep_align",
               "deep_align+sinkhorn")
PAPER = {
    ("mnist", "mlp"): ("paper MNIST MLP", (2.007, 0.047, 0.024, 0.027, 0.005, 0.000)),
    ("cifar10", "mlp"): ("paper CIFAR-10 MLP", (0.927, 0.156, 0.066, 0.183, 0.078, 0.037)),
    ("cifar10", "cnn"): ("paper CIFAR-10 CNN", (1.124, 0.661, 0.238, 0.313, 0.237, 0.081)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default: results/<run names joined by +>.json)")
    args = ap.parse_args()
    out = args.out or HERE / "results" / ("+".join(run.name for run in args.runs) + ".json")
    table: dict[str, dict[str, dict[str, float]]] = {}
    papers: dict[str, dict[str, float]] = {}
    for run in args.runs:
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["config"]
        if (cfg["task"], cfg["arch"]) in PAPER:
            label, values = PAPER[(cfg["task"], cfg["arch"])]
            papers[label] = dict(zip(_PAPER_ROWS, values, strict=True))
        m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        table[run.name] = {x: {"barrier": m[f"test/barrier/{x}"], "std": m[f"test/barrier_std/{x}"],
                               "auc": m[f"test/auc/{x}"], "seconds": m[f"test/align_seconds/{x}"],
                               "iterations": m[f"test/iterations/{x}"], "pairs": m["test/num_pairs"]}
                           for x in METHODS if f"test/barrier/{x}" in m}
    paired = {run.name: paired_differences(run) for run in args.runs if (run / "test_pairs.json").exists()}
    write_json(out, {"runs": table, "paired": paired, "paper": papers})
    names = list(table)
    print("| method | " + " | ".join([f"{n} barrier (AUC)" for n in names] + list(papers)) + " |")
    print("|---|" + "---|" * (len(names) + len(papers)))
    for x in METHODS:
        cells = [f"{t[x]['barrier']:.3f} +- {t[x]['std']:.3f} ({t[x]['auc']:.3f})" if x in t else "-"
                 for t in table.values()]
        cells += [f"{p[x]:.3f}" if x in p else "-" for p in papers.values()]
        print(f"| {x} | " + " | ".join(cells) + " |")
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
