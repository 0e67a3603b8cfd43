#!/usr/bin/env python
"""ConvE head to head: PyKEEN vs paperzoo, same data files, settings, epochs, seed and threads.

Run from the repository root::

    .venv/bin/python benchmarks/conve/bench_pykeen.py --data-root /work/shared/data           # UMLS, 100 epochs
    .venv/bin/python benchmarks/conve/bench_pykeen.py --dataset kinship --epochs 20

Both libraries are trained one after the other in this one process (PyKEEN first unless
``--paperzoo-first``), on the same train/valid/test files, found under ``--data-root`` (or
``$PAPERZOO_DATA``) exactly as paperzoo finds them. For each library the script records

* seconds per training epoch: mean wall time of the epoch loop body (batches, forward,
  backward, optimizer step); evaluation, checkpoints and one-off setup are excluded;
* filtered test MRR / MR / Hits@1/3/10 with realistic ranks (mean of optimistic and
  pessimistic), both directions, filtered by train + valid + test;
* peak resident memory of the process while that library ran (Linux ``VmHWM``, reset between
  the two phases through ``/proc/self/clear_refs``).

It prints a side-by-side table and writes the same as JSON to ``--out``
(default ``benchmarks/conve/results/<dataset>.json``).
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# paperzoo: no progress bars (must be set before paperzoo decides; it reads it at call time anyway)
os.environ.setdefault("PAPERZOO_PROGRESS", "0")

import torch

from paperzoo.core.procstats import (
    OtherLoad,
    cpu_name,
    peak_rss_mib,
    reset_peak_rss,
    rss_mib,
    wait_until_quiet,
)

HERE = Path(__file__).resolve().parent

# The shared settings: the paper's / official code's ConvE hyperparameters.
SETTINGS = {
    "embedding_dim": 200,
    "embedding_height": 20,      # each embedding is a 20 x 10 image; head and relation stacked -> 40 x 10
    "embedding_width": 10,
    "conv_channels": 32,
    "kernel_size": 3,            # 3 x 3, stride 1, no padding -> 32 x 38 x 8 = 9728 features
    "conv_bias": True,
    "batch_normalization": True,  # BN on input, feature maps and hidden layer
    "input_dropout": 0.2,
    "feature_dropout": 0.2,      # Dropout2d on whole feature maps
    "hidden_dropout": 0.3,       # PyKEEN: output_dropout
    "label_smoothing": 0.1,
    "lr": 0.003,                 # Adam, no weight decay, no lr decay
    "batch_size": 128,           # distinct (head, relation) queries per batch, last partial batch kept
    "eval_batch_size": 512,
    "init": "torch.nn.init.xavier_normal_ on the full (N, d) entity and (2R, d) relation tables; "
            "entity bias 0; conv / linear / BN: PyTorch defaults",
    "training": "1-N / LCWA (KvsAll) over distinct (h, r) queries with reciprocal relations, "
                "BCE with logits, mean over all B x N entries",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

class GCTimer:
    """Wall time spent in Python's garbage collector (automatic and explicit ``gc.collect()``)."""

    def __init__(self) -> None:
        self.seconds, self.collections, self._t = 0.0, 0, None

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        elif self._t is not None:
            self.seconds += time.perf_counter() - self._t
            self.collections += 1
            self._t = None

    def __enter__(self) -> GCTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)


def find_dataset(name: str, data_root: str) -> Path:
    """The folder paperzoo reads for ``name`` under ``data_root`` (the same first-hit rule)."""
    from paperzoo.data import catalog

    source = catalog.get(name)
    for rel in source.relpaths:
        folder = Path(data_root).expanduser() / rel
        if all((folder / f).is_file() for f in source.files):
            return folder.resolve()
    raise SystemExit(f"dataset {name!r} not found under {data_root} (tried "
                     f"{', '.join(str(Path(data_root) / r) for r in source.relpaths)})")


def read_labels(folder: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Entity and relation ids over all three splits, sorted by name (as paperzoo assigns them)."""
    ents, rels = set(), set()
    for split in ("train", "valid", "test"):
        for line in (folder / f"{split}.txt").read_text().splitlines():
            parts = line.strip().split("\t")
            if len(parts) == 3:
                ents.update((parts[0], parts[2]))
                rels.add(parts[1])
    return ({e: i for i, e in enumerate(sorted(ents))}, {r: i for i, r in enumerate(sorted(rels))})


def summarize_epochs(seconds: list[float]) -> dict[str, float]:
    return {"seconds_per_epoch": statistics.fmean(seconds),
            "median_seconds_per_epoch": statistics.median(seconds),
            "train_seconds": sum(seconds),
            "first_epoch_seconds": seconds[0]}


# --------------------------------------------------------------------------------------------
# PyKEEN
# --------------------------------------------------------------------------------------------

def run_pykeen(folder: Path, args: argparse.Namespace) -> dict:
    import pykeen
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.losses import BCEWithLogitsLoss
    from pykeen.models import ConvE
    from pykeen.training import LCWATrainingLoop
    from pykeen.triples import TriplesFactory
    from pykeen.utils import set_random_seed

    class TimedLCWATrainingLoop(LCWATrainingLoop):
        """LCWA loop that times each epoch's batch loop (data loading, forward, backward, step)."""

        epoch_seconds: list[float]

        def _train_epoch(self, *a, **kw):
            tic = time.perf_counter()
            loss = super()._train_epoch(*a, **kw)
            if not kw.get("only_size_probing"):  # memory probing runs are not epochs
                self.epoch_seconds.append(time.perf_counter() - tic)
            return loss

    entity_to_id, relation_to_id = read_labels(folder)
    factories = {
        split: TriplesFactory.from_path(folder / f"{split}.txt", entity_to_id=entity_to_id,
                                        relation_to_id=relation_to_id, create_inverse_triples=True)
        for split in ("train", "valid", "test")
    }
    training = factories["train"]
    set_random_seed(args.seed)
    model = ConvE(
        triples_factory=training,
        embedding_dim=SETTINGS["embedding_dim"],
        embedding_height=SETTINGS["embedding_height"],
        embedding_width=SETTINGS["embedding_width"],
        # input_channels: left unset, resolved to 1 (passing 1 explicitly raises in PyKEEN 1.11.1)
        output_channels=SETTINGS["conv_channels"],
        kernel_height=SETTINGS["kernel_size"],
        kernel_width=SETTINGS["kernel_size"],
        input_dropout=SETTINGS["input_dropout"],
        feature_map_dropout=SETTINGS["feature_dropout"],
        output_dropout=SETTINGS["hidden_dropout"],
        apply_batch_normalization=SETTINGS["batch_normalization"],
        # PyKEEN's own xavier_normal_ uses std sqrt(2/d); torch's on the (N, d) table matches paperzoo
        entity_initializer=torch.nn.init.xavier_normal_,
        relation_initializer=torch.nn.init.xavier_normal_,
        loss=BCEWithLogitsLoss(reduction="mean"),
        random_seed=args.seed,
    )
    shape = model.interaction.shape_info
    assert (shape.input_channels, 2 * shape.image_height, shape.image_width, shape.num_in_features) \
        == (1, 40, 10, 9728), shape
    assert model.num_relations == 2 * training.real_num_relations
    optimizer = torch.optim.Adam(model.get_grad_params(), lr=SETTINGS["lr"], weight_decay=0.0)
    # automatic_memory_optimization would first probe sub-batch/slice sizes with two extra forward and
    # backward passes; it is for GPUs and pointless at this size on CPU
    loop = TimedLCWATrainingLoop(model=model, triples_factory=training, optimizer=optimizer,
                                 automatic_memory_optimization=False)
    loop.epoch_seconds = []

    tic = time.perf_counter()
    losses = loop.train(
        triples_factory=training,
        num_epochs=args.epochs,
        batch_size=SETTINGS["batch_size"],
        label_smoothing=SETTINGS["label_smoothing"],
        drop_last=False,  # PyKEEN drops the last partial batch by default when there is BN; paperzoo keeps it
        use_tqdm=False,
        use_tqdm_batch=False,
        pin_memory=False,
    )
    train_wall = time.perf_counter() - tic

    evaluator = RankBasedEvaluator(filtered=True)
    tic = time.perf_counter()
    result = evaluator.evaluate(
        model=model,
        mapped_triples=factories["test"].mapped_triples,
        additional_filter_triples=[training.mapped_triples, factories["valid"].mapped_triples],
        batch_size=SETTINGS["eval_batch_size"],
        use_tqdm=False,
    )
    eval_seconds = time.perf_counter() - tic

    def metric(name: str) -> float:
        return float(result.get_metric(f"both.realistic.{name}"))

    out = {
        "library": f"pykeen {pykeen.get_version()}",
        **summarize_epochs(loop.epoch_seconds),
        "train_wall_seconds": train_wall,
        "test_eval_seconds": eval_seconds,
        "test/mrr": metric("inverse_harmonic_mean_rank"),
        "test/mr": metric("arithmetic_mean_rank"),
        "test/hits@1": metric("hits_at_1"),
        "test/hits@3": metric("hits_at_3"),
        "test/hits@10": metric("hits_at_10"),
        "final_loss": float(losses[-1]) if losses else None,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_entities": model.num_entities,
        "num_relations_with_inverse": model.num_relations,
    }
    return out


# --------------------------------------------------------------------------------------------
# paperzoo
# --------------------------------------------------------------------------------------------

def run_paperzoo(args: argparse.Namespace, data_root: str, folder: Path) -> dict:
    import paperzoo
    from paperzoo.data import catalog
    from paperzoo.data.roots import locate

    assert locate(catalog.get(args.dataset), data_root).resolve() == folder, "paperzoo would read other files"
    with tempfile.TemporaryDirectory(prefix="bench-conve-") as tmp:
        run_dir = Path(args.keep_run_dir) if args.keep_run_dir else Path(tmp) / "run"
        tic = time.perf_counter()
        result = paperzoo.run(
            "conve", preset="quick", run_dir=run_dir, data_root=data_root,
            dataset=args.dataset, epochs=args.epochs, eval_every=args.epochs, patience=0,
            seed=args.seed, num_threads=args.threads,
            embedding_dim=SETTINGS["embedding_dim"], embedding_height=SETTINGS["embedding_height"],
            conv_channels=SETTINGS["conv_channels"], kernel_size=SETTINGS["kernel_size"],
            conv_bias=SETTINGS["conv_bias"], input_dropout=SETTINGS["input_dropout"],
            feature_dropout=SETTINGS["feature_dropout"], hidden_dropout=SETTINGS["hidden_dropout"],
            label_smoothing=SETTINGS["label_smoothing"], label_smoothing_form="correct",
            lr=SETTINGS["lr"], weight_decay=0.0, lr_decay=1.0, batch_size=SETTINGS["batch_size"],
            eval_batch_size=SETTINGS["eval_batch_size"], unseen="keep",
        )
        wall = time.perf_counter() - tic
    m = result.metrics
    if m.get("epochs_run") != args.epochs or m.get("best_epoch") != args.epochs:
        raise RuntimeError(f"paperzoo ran {m.get('epochs_run')} epochs and evaluated epoch "
                           f"{m.get('best_epoch')}, expected {args.epochs}")
    seconds = [row["seconds"] for row in result.history]
    out = {
        "library": f"paperzoo {paperzoo.__version__}",
        **summarize_epochs(seconds),
        "paperzoo_train_seconds": m["train_seconds"],
        "run_wall_seconds": wall,
        "test/mrr": m["test/mrr"],
        "test/mr": m["test/mr"],
        "test/hits@1": m["test/hits@1"],
        "test/hits@3": m["test/hits@3"],
        "test/hits@10": m["test/hits@10"],
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "num_parameters": m.get("num_parameters"),
    }
    return out


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    head = f"{'library':<18} {'s/epoch':>8} {'median':>8} {'train s':>8} {'MRR':>6} {'MR':>6} " \
           f"{'H@1':>6} {'H@3':>6} {'H@10':>6} {'GC s':>6} {'peak RSS':>9} {'other CPU':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        rss = f"{r['peak_rss_mib']:.0f} MiB" if r.get("peak_rss_mib") else "n/a"
        other = r.get("other_processes_cpu_share")
        other = f"{other:.0%}" if other is not None else "n/a"
        lines.append(f"{r['library']:<18} {r['seconds_per_epoch']:>8.3f} {r['median_seconds_per_epoch']:>8.3f} "
                     f"{r['train_seconds']:>8.1f} {r['test/mrr']:>6.3f} {r['test/mr']:>6.2f} "
                     f"{r['test/hits@1']:>6.3f} {r['test/hits@3']:>6.3f} {r['test/hits@10']:>6.3f} {r['gc_seconds']:>6.1f} {rss:>9} {other:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="umls", choices=["umls", "kinship", "nations"])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both libraries")
    p.add_argument("--data-root", default=os.environ.get("PAPERZOO_DATA"),
                   help="data root holding kg/<dataset>/ or <dataset>/ (default: $PAPERZOO_DATA)")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/conve/results/<dataset>.json)")
    p.add_argument("--paperzoo-first", action="store_true", help="run paperzoo before PyKEEN")
    p.add_argument("--keep-run-dir", default=None, help="keep paperzoo's run folder here instead of a temp dir")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each library, wait up to this long for other processes to leave the CPU")
    p.add_argument("-v", "--verbose", action="store_true", help="show the libraries' INFO logs")
    args = p.parse_args(argv)
    if not args.data_root:
        p.error("give --data-root or set PAPERZOO_DATA (PyKEEN's bundled copies are not used)")

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    import pykeen
    import pykeen.evaluation
    if not args.verbose:
        warnings.filterwarnings("ignore")
        for name in ("pykeen", "paperzoo"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("torch_max_mem").setLevel(logging.ERROR)  # "CPU tensors" notice at evaluation
    torch.set_num_threads(args.threads)
    folder = find_dataset(args.dataset, args.data_root)
    print(f"ConvE on {args.dataset} ({folder}), {args.epochs} epochs, seed {args.seed}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {cpu_name()}", flush=True)

    phases = [("paperzoo", lambda: run_paperzoo(args, args.data_root, folder)),
              ("pykeen", lambda: run_pykeen(folder, args))]
    if not args.paperzoo_first:
        phases.reverse()
    results = {}
    for name, fn in phases:
        before = wait_until_quiet(args.wait_idle) if args.wait_idle > 0 else None
        print(f"training {name} ...", flush=True)
        gc.collect()
        rss_start = rss_mib()
        reset_ok = reset_peak_rss()
        load = OtherLoad()
        with GCTimer() as gct:
            res = fn()
        res["gc_seconds"] = gct.seconds  # whole phase (training + evaluation)
        res["gc_collections"] = gct.collections
        res["other_processes_cpu_share"] = load.stop()
        res["other_processes_cpu_share_before"] = before
        res["peak_rss_mib"] = peak_rss_mib(reset_ok)
        res["peak_rss_is_per_phase"] = reset_ok
        res["rss_at_start_mib"] = rss_start
        results[name] = res
        torch.set_num_threads(args.threads)  # in case a library changed it
        print(f"  {name}: {res['seconds_per_epoch']:.3f} s/epoch, test MRR {res['test/mrr']:.4f}", flush=True)
        share = res["other_processes_cpu_share"]
        if share is not None and share > 0.05:
            print(f"  WARNING: other processes used {share:.0%} of the machine's CPU time while {name} ran; "
                  f"its timing is inflated", flush=True)

    pk, pz = results["pykeen"], results["paperzoo"]
    speedup = pk["seconds_per_epoch"] / pz["seconds_per_epoch"]
    mrr_diff = pz["test/mrr"] - pk["test/mrr"]
    print()
    print(table([pk, pz]))
    print(f"\nspeedup (pykeen s/epoch / paperzoo s/epoch): {speedup:.2f}x   "
          f"(median-based: {pk['median_seconds_per_epoch'] / pz['median_seconds_per_epoch']:.2f}x)")
    print(f"test MRR difference (paperzoo - pykeen): {mrr_diff:+.4f}   "
          f"H@10 difference: {pz['test/hits@10'] - pk['test/hits@10']:+.4f}")

    out_path = Path(args.out) if args.out else HERE / "results" / f"{args.dataset}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "conve: pykeen vs paperzoo",
        "dataset": args.dataset,
        "data_folder": str(folder),
        "epochs": args.epochs,
        "seed": args.seed,
        "threads": args.threads,
        "order": [name for name, _ in phases],
        "settings": SETTINGS,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "pykeen": pykeen.get_version(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
                        "platform": platform.platform(),
                        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "results": results,
        "speedup_pykeen_over_paperzoo": speedup,
        "median_speedup": pk["median_seconds_per_epoch"] / pz["median_seconds_per_epoch"],
        "mrr_diff_paperzoo_minus_pykeen": mrr_diff,
    }
    out_path.write_text(json.dumps(record, indent=2) + "\n")
    print("(s/epoch: mean over epochs of the training loop only; GC s: time in Python's garbage collector "
          "during the whole run, included in s/epoch where it falls in an epoch (PyKEEN calls gc.collect() "
          "after every epoch); other CPU: share of the machine's CPU time used by other processes while "
          "that library ran, should be ~0%)")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
