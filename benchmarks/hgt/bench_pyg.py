#!/usr/bin/env python
"""HGT head to head: paperzoo's ``HGTLayer`` / ``HGSampler`` vs PyG's ``HGTConv`` / ``HGTLoader``.

Run from the repository root, in the benchmark environment (see README.md)::

    .venv-bench-hgt/bin/python benchmarks/hgt/bench_pyg.py                   # layer + sampler, both graphs
    .venv-bench-hgt/bin/python benchmarks/hgt/bench_pyg.py --part layer --datasets synthetic
    .venv-bench-hgt/bin/python benchmarks/hgt/bench_pyg.py --part sampler --wait-idle 300

Two parts:

layer
    A 2-layer model of ``HGTConv`` (PyG) and 2-layer models of paperzoo's ``HGTLayer``, hidden 64,
    4 heads, the same fixed random 64-d input features and the same graph (with reverse edge
    types). One step = forward of both layers, a scalar loss over every output, backward (no
    optimizer step). Reported: median seconds per step over ``--steps`` steps after ``--warmup``,
    and the peak memory of the same steps run in a fresh subprocess (Linux ``VmHWM`` minus the
    resident size just before the first step, i.e. after imports, graph and model are built).
    paperzoo runs as ``plain`` (no RTE, no LayerNorm, dropout 0: the computation ``HGTConv``
    does) and ``full`` (RTE when the graph has times, LayerNorm, dropout 0.2: the paper's layer).
sampler
    ``HGSampler`` (depth 2, width W per type, not time-aware, matching ``HGTLoader`` which has
    no time filter) vs ``HGTLoader`` (``num_samples = [W, W]`` for every node type), batches of
    B target nodes, single process, no workers. Reported: subgraphs per second and the mean
    subgraph size (nodes, edges) of each, so that equal work is compared.

Results are printed as tables and written to ``--out`` (default ``benchmarks/hgt/results/``)
as JSON, with the machine, library versions, load average and the share of CPU used by
other processes while each measurement ran (timings with a high share are not comparable).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from paperzoo.core.procstats import (
    OtherLoad,
    cpu_name,
    peak_rss_mib,
    reset_peak_rss,
    rss_mib,
    versions,
    wait_until_quiet,
)

HERE = Path(__file__).resolve().parent
HIDDEN, HEADS, LAYERS = 64, 4, 2
SYNTH = {"papers": 20_000, "authors": 30_000, "venues": 20,
         "authors_per_paper": 3, "cites_per_paper": 5, "years": (2006, 2015)}


# --------------------------------------------------------------------------------------------
# machine state (memory and load helpers: paperzoo.core.procstats)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# graphs
# --------------------------------------------------------------------------------------------
def synthetic_graph(seed: int = 0):
    """The hgt.md benchmark graph: 20k papers / 30k authors / 20 venues, ~180k edges.

    Vectorised (``paperzoo.data.hetero.synthetic_temporal`` loops in Python per paper and would
    take minutes at this size): papers sorted by year 2006-2015; each writes-edge draws one of
    3 authors per paper uniformly; each paper cites 5 uniformly drawn papers of the same or
    earlier year (duplicates removed); one venue per paper. Then reverse edge types are added.
    """
    from paperzoo.data.hetero import HeteroGraph

    g = torch.Generator().manual_seed(seed)
    n_p, n_a, n_v = SYNTH["papers"], SYNTH["authors"], SYNTH["venues"]
    y0, y1 = SYNTH["years"]
    year = torch.randint(y0, y1 + 1, (n_p,), generator=g).sort().values
    # last index of each paper's year: papers 0..last[p] are not newer than p
    last = torch.searchsorted(year, year, right=True) - 1
    k = SYNTH["authors_per_paper"]
    writes = torch.stack([torch.randint(0, n_a, (n_p * k,), generator=g),
                          torch.arange(n_p).repeat_interleave(k)])
    c = SYNTH["cites_per_paper"]
    src = torch.arange(n_p).repeat_interleave(c)
    dst = (torch.rand(n_p * c, generator=g) * (last[src] + 1)).long()
    cites = torch.stack([src, dst])
    venue = torch.stack([torch.arange(n_p), torch.randint(0, n_v, (n_p,), generator=g)])

    def dedup(e: torch.Tensor) -> torch.Tensor:
        return torch.unique(e, dim=1)

    graph = HeteroGraph(
        name="synthetic(20k papers, 30k authors, 20 venues)",
        num_nodes={"paper": n_p, "author": n_a, "venue": n_v},
        edges={("author", "writes", "paper"): dedup(writes),
               ("paper", "cites", "paper"): dedup(cites),
               ("paper", "published_in", "venue"): venue},
        node_time={"paper": year},
    ).validate()
    return graph.add_reverse_edges(), "paper"


def aminer_graph(data_root: str | None):
    from paperzoo.data.hetero import load

    graph = load("aminer", data_root=data_root)
    return graph.add_reverse_edges(), graph.target or "author"


def load_graph(name: str, data_root: str | None):
    if name == "synthetic":
        return synthetic_graph()
    if name == "aminer":
        return aminer_graph(data_root)
    raise ValueError(f"unknown dataset {name!r}")


def full_times(graph) -> dict[str, torch.Tensor]:
    """Node times for every type, for the full-batch RTE run: a type without its own times gets,
    per node, the latest time among its timed neighbours (any edge type), else the earliest time
    of the graph. (HGSampling gives such nodes the time of the node that sampled them; a
    full-batch run has no sampler, so this is one reasonable stand-in; it only sets the RTE
    table rows used, not the amount of work.)"""
    times = {nt: t.long() for nt, t in graph.node_time.items()}
    if not times:
        return {}
    floor = min(int(t.min()) for t in times.values())
    out = dict(times)
    for nt, n in graph.num_nodes.items():
        if nt in times:
            continue
        t = torch.full((n,), floor, dtype=torch.long)
        for (s, _, d), e in graph.edges.items():
            if d == nt and s in times:
                t.scatter_reduce_(0, e[1], times[s][e[0]], reduce="amax", include_self=True)
        out[nt] = t
    return out


def input_features(graph, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {nt: torch.randn(n, HIDDEN, generator=g) for nt, n in graph.num_nodes.items()}


# --------------------------------------------------------------------------------------------
# layer benchmark
# --------------------------------------------------------------------------------------------
IMPLS = {
    "pyg": "PyG HGTConv",
    "ours_plain": "paperzoo HGTLayer plain",
    "ours_full": "paperzoo HGTLayer full",
    "ours_reference": "paperzoo literal (pre-rewrite)",
}


class _Stack(torch.nn.Module):
    def __init__(self, layers, call):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)
        self._call = call

    def forward(self, x_dict):
        for layer in self.layers:
            x_dict = self._call(layer, x_dict)
        return x_dict


def build_model(impl: str, graph):
    """(model, description). ``model(x_dict)`` returns a dict of outputs."""
    edge_index = {et: e for et, e in graph.edges.items()}
    meta = (graph.node_types, graph.edge_types)
    torch.manual_seed(0)
    if impl == "pyg":
        from torch_geometric.nn import HGTConv

        layers = [HGTConv(HIDDEN, HIDDEN, meta, heads=HEADS) for _ in range(LAYERS)]
        return _Stack(layers, lambda layer, x: layer(x, edge_index)), "no RTE, no norm, no dropout"
    from paperzoo.methods.hgt.layer import HGTLayer

    if impl in ("ours_plain", "ours_reference"):
        layers = [HGTLayer(HIDDEN, HIDDEN, *meta, heads=HEADS, dropout=0.0, use_norm=False,
                           use_rte=False) for _ in range(LAYERS)]
        if impl == "ours_plain":
            return _Stack(layers, lambda layer, x: layer(x, edge_index)), "no RTE, no norm, dropout 0"
        return (_Stack(layers, lambda layer, x: layer._forward_reference(x, edge_index)),
                "as plain, through the literal per-edge computation (the code before the rewrite)")
    if impl == "ours_full":
        times = full_times(graph)
        layers = [HGTLayer(HIDDEN, HIDDEN, *meta, heads=HEADS, dropout=0.2, use_norm=True,
                           use_rte=bool(times)) for _ in range(LAYERS)]
        t = times or None
        return (_Stack(layers, lambda layer, x: layer(x, edge_index, t)),
                f"{'RTE, ' if times else 'no times: no RTE, '}LayerNorm, dropout 0.2")
    raise ValueError(impl)


def layer_step(model, x_dict) -> None:
    model.zero_grad(set_to_none=True)
    out = model(x_dict)
    loss = sum(o.square().mean() for o in out.values() if o is not None)
    loss.backward()


def time_layers(impls: list[str], graph, steps: int, warmup: int, wait_idle: float) -> list[dict]:
    """Round-robin timing: every round runs one step of each implementation in turn, so that
    load from other processes, which comes and goes, falls on all of them alike. Records wall
    time and this process's CPU time (user + system) per step, and the other processes' CPU
    share during each implementation's steps."""
    x = input_features(graph)
    models, rows = {}, {}
    for impl in impls:
        try:
            model, desc = build_model(impl, graph)
            model.train()
            for _ in range(warmup):
                layer_step(model, x)
            models[impl] = model
            rows[impl] = {"impl": impl, "label": IMPLS[impl], "config": desc,
                          "params": sum(p.numel() for p in model.parameters()),
                          "step_s": [], "cpu_s": [], "other_cpu_steps": [], "loadavg_steps": []}
        except Exception as e:  # noqa: BLE001 - a missing peer must not stop the rest
            rows[impl] = {"impl": impl, "label": IMPLS[impl], "error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()}
    gc.collect()
    for _ in range(steps):
        if wait_idle > 0:
            wait_until_quiet(wait_idle)
        for impl, model in models.items():
            r = rows[impl]
            load = OtherLoad()
            r["loadavg_steps"].append(os.getloadavg()[0])
            c0, t0 = time.process_time(), time.perf_counter()
            layer_step(model, x)
            r["step_s"].append(time.perf_counter() - t0)
            r["cpu_s"].append(time.process_time() - c0)
            r["other_cpu_steps"].append(load.stop())
    for impl in models:
        r = rows[impl]
        oc = [v for v in r["other_cpu_steps"] if v is not None]
        r.update(median_s=statistics.median(r["step_s"]), min_s=min(r["step_s"]),
                 mean_s=statistics.fmean(r["step_s"]), median_cpu_s=statistics.median(r["cpu_s"]),
                 other_cpu=statistics.fmean(oc) if oc else None)
    del models
    gc.collect()
    return [rows[i] for i in impls]


def memory_child(args) -> None:
    """Subprocess body: build everything, then measure the peak of ``--mem-steps`` steps."""
    torch.set_num_threads(args.threads)
    graph, _ = load_graph(args.child_dataset, args.data_root)
    model, _ = build_model(args.child_impl, graph)
    model.train()
    x = input_features(graph)
    gc.collect()
    base = rss_mib()
    ok = reset_peak_rss()
    for _ in range(args.mem_steps):
        layer_step(model, x)
    peak = peak_rss_mib(ok)
    print(json.dumps({"baseline_mib": base, "peak_mib": peak, "peak_minus_baseline_mib":
                      None if peak is None or base is None else peak - base,
                      "vmhwm_reset": ok}))


def measure_memory(impl: str, dataset: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-memory", "--child-impl", impl,
           "--child-dataset", dataset, "--threads", str(args.threads), "--mem-steps", str(args.mem_steps)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"rc {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def layer_table(rows: list[dict]) -> str:
    head = (f"{'implementation':32s} {'config':44s} {'median s':>9s} {'min s':>7s} {'CPU s':>6s} "
            f"{'PyG/this':>8s} {'peak-base':>10s} {'other CPU':>9s}")
    lines = [head]
    pyg = next((r for r in rows if r["impl"] == "pyg" and "median_s" in r), None)
    for r in rows:
        if "median_s" not in r:
            lines.append(f"{r['label']:32s} FAILED: {r.get('error', '?')}")
            continue
        ratio = f"{pyg['median_s'] / r['median_s']:.2f}x" if pyg else "n/a"
        mem = r.get("memory", {}).get("peak_minus_baseline_mib")
        mem_s = f"{mem:7.0f} MiB" if mem is not None else "       n/a"
        oc = f"{100 * r['other_cpu']:.0f}%" if r.get("other_cpu") is not None else "?"
        lines.append(f"{r['label']:32s} {r['config'][:44]:44s} {r['median_s']:9.3f} {r['min_s']:7.3f} "
                     f"{r['median_cpu_s']:6.2f} {ratio:>8s} {mem_s:>10s} {oc:>9s}")
    return "\n".join(lines)


def run_layers(args, dataset: str) -> dict:
    graph, _ = load_graph(dataset, args.data_root)
    info = {"dataset": dataset, "graph": graph.name, "num_nodes": graph.num_nodes,
            "num_edges": graph.num_edges(), "edge_types": [list(et) for et in graph.edge_types],
            "timed_types": list(graph.node_time)}
    rows = time_layers(args.impls, graph, args.steps, args.warmup, args.wait_idle)
    head = (f"\nLayer, {dataset}: {graph.num_edges()} edges, {sum(graph.num_nodes.values())} nodes, "
            f"{LAYERS} layers, hidden {HIDDEN}, {HEADS} heads, {args.threads} threads")
    del graph
    gc.collect()
    for r in rows:
        if "median_s" in r and args.memory:
            r["memory"] = measure_memory(r["impl"], dataset, args)
        print(f"  {dataset} {r['impl']}: {r.get('median_s', r.get('error'))}", flush=True)
    print(head)
    print(layer_table(rows))
    return {**info, "rows": rows}


# --------------------------------------------------------------------------------------------
# sampler benchmark
# --------------------------------------------------------------------------------------------
def _sub_size(node_counts: dict, edge_counts: dict) -> tuple[int, int]:
    return sum(node_counts.values()), sum(edge_counts.values())


SAMPLER_LABELS = {"pyg": "PyG HGTLoader", "ours": "paperzoo HGSampler",
                  "ours_time": "paperzoo HGSampler (time-aware)"}


def ours_sampler_iter(graph, target: str, width: int, batch: int, n: int, time_aware: bool):
    """Yields (nodes, edges) of ``n`` subgraphs around consecutive batches of a fixed permutation."""
    from paperzoo.methods.hgt.sampler import HGSampler

    sampler = HGSampler(graph, sampled_depth=2, sampled_number=width, time_aware=time_aware, seed=0)
    perm = torch.randperm(graph.num_nodes[target], generator=torch.Generator().manual_seed(0))
    for i in range(n):
        sub = sampler.sample(target, perm[i * batch:(i + 1) * batch])
        yield _sub_size(sub.num_nodes, {k: v.size(1) for k, v in sub.edge_index_dict.items()})


def pyg_loader_iter(graph, target: str, width: int, batch: int, n: int):
    from torch_geometric.loader import HGTLoader

    data = graph.to_pyg()
    perm = torch.randperm(graph.num_nodes[target], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    loader = HGTLoader(data, num_samples={nt: [width, width] for nt in graph.node_types},
                       batch_size=batch, input_nodes=(target, perm[: n * batch]), shuffle=False,
                       num_workers=0)
    for i, sub in enumerate(loader):
        if i >= n:
            return
        yield _sub_size({nt: sub[nt].num_nodes for nt in sub.node_types},
                        {et: sub[et].edge_index.size(1) for et in sub.edge_types})


def time_samplers(graph, target: str, width: int, batch: int, n_batches: int, impls: list[str],
                  errors: dict) -> list[dict]:
    """Round-robin: one subgraph from each sampler in turn (2 warm-up subgraphs each), timing
    each call (wall and CPU) and recording subgraph sizes."""
    n = n_batches + 2
    n = min(n, graph.num_nodes[target] // batch)  # distinct targets per subgraph
    its, rows = {}, {}
    for impl in impls:
        rows[impl] = {"impl": impl, "label": SAMPLER_LABELS[impl], "width": width, "batch": batch}
        if impl in errors:
            rows[impl]["error"] = errors[impl]
            continue
        its[impl] = (pyg_loader_iter(graph, target, width, batch, n) if impl == "pyg" else
                     ours_sampler_iter(graph, target, width, batch, n, impl == "ours_time"))
        rows[impl].update(wall=[], cpu=[], nodes=[], edges=[], other=[])
    for i in range(n):
        for impl in list(its):
            r = rows[impl]
            load = OtherLoad()
            c0, t0 = time.process_time(), time.perf_counter()
            try:
                nodes, edges = next(its[impl])
            except Exception as e:  # noqa: BLE001
                r["error"] = f"{type(e).__name__}: {e}"
                r["traceback"] = traceback.format_exc()
                del its[impl]
                continue
            if i < 2:
                continue
            r["wall"].append(time.perf_counter() - t0)
            r["cpu"].append(time.process_time() - c0)
            r["other"].append(load.stop())
            r["nodes"].append(nodes)
            r["edges"].append(edges)
    for impl in its:
        r = rows[impl]
        oc = [v for v in r.pop("other") if v is not None]
        r.update(batches=len(r["wall"]), seconds=sum(r["wall"]),
                 subgraphs_per_s=len(r["wall"]) / sum(r["wall"]),
                 subgraphs_per_cpu_s=len(r["cpu"]) / max(sum(r["cpu"]), 1e-9),
                 mean_nodes=statistics.fmean(r["nodes"]), mean_edges=statistics.fmean(r["edges"]),
                 other_cpu=statistics.fmean(oc) if oc else None, loadavg=os.getloadavg())
        r["wall_median_ms"] = 1e3 * statistics.median(r.pop("wall"))
        r["cpu_median_ms"] = 1e3 * statistics.median(r.pop("cpu"))
        del r["nodes"], r["edges"]
    return [rows[i] for i in impls]


def sampler_table(rows: list[dict]) -> str:
    lines = [f"{'sampler':34s} {'width':>5s} {'batch':>5s} {'subgraphs/s':>11s} {'per CPU s':>9s} "
             f"{'ours/PyG':>8s} {'nodes':>8s} {'edges':>9s} {'other CPU':>9s}"]
    for r in rows:
        if "subgraphs_per_s" not in r:
            lines.append(f"{r['label']:34s} {r['width']:5d} {r['batch']:5d} FAILED: {r.get('error', '?')}")
            continue
        pyg = next((p for p in rows if p["impl"] == "pyg" and p["width"] == r["width"]
                    and p["batch"] == r["batch"] and "subgraphs_per_s" in p), None)
        ratio = f"{r['subgraphs_per_s'] / pyg['subgraphs_per_s']:.2f}x" if pyg and r["impl"] != "pyg" else ""
        oc = f"{100 * r['other_cpu']:.0f}%" if r.get("other_cpu") is not None else "?"
        lines.append(f"{r['label']:34s} {r['width']:5d} {r['batch']:5d} {r['subgraphs_per_s']:11.1f} "
                     f"{r['subgraphs_per_cpu_s']:9.1f} {ratio:>8s} {r['mean_nodes']:8.0f} "
                     f"{r['mean_edges']:9.0f} {oc:>9s}")
    return "\n".join(lines)


def run_sampler(args, dataset: str) -> dict:
    graph, target = load_graph(dataset, args.data_root)
    rows = []
    pyg_ok, pyg_error = True, None
    try:
        import torch_sparse  # noqa: F401  (HGTLoader needs it)
    except Exception as e:  # noqa: BLE001
        pyg_ok = False
        pyg_error = (f"torch_sparse is not importable ({type(e).__name__}: {e}); PyG's HGTLoader "
                     f"needs it. Build log: /tmp/hgt_sparse_build.log (see README).")
        print("WARNING: " + pyg_error, flush=True)
    errors = {} if pyg_ok else {"pyg": pyg_error}
    for width, batch in args.sampler_configs:
        if args.wait_idle > 0:
            wait_until_quiet(args.wait_idle)
        got = time_samplers(graph, target, width, batch, args.sampler_batches,
                            ["pyg", "ours", "ours_time"], errors)
        for r in got:
            print(f"  {dataset} {r['impl']} w={width} b={batch}: "
                  f"{r.get('subgraphs_per_s', r.get('error'))}", flush=True)
        rows += got
    print(f"\nSampler, {dataset} (targets: {target}), depth 2, single process")
    print(sampler_table(rows))
    return {"dataset": dataset, "target": target, "pyg_available": pyg_ok, "pyg_error": pyg_error,
            "rows": rows}


# --------------------------------------------------------------------------------------------
VERSIONED = ("torch_geometric", "torch_sparse", "torch_scatter", "pyg_lib", "paperzoo")
"""Distributions whose installed versions the results record."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("layer", "sampler", "all"), default="all")
    p.add_argument("--datasets", default="synthetic,aminer")
    p.add_argument("--impls", default="pyg,ours_plain,ours_full,ours_reference",
                   help="layer implementations, from " + ",".join(IMPLS))
    p.add_argument("--steps", type=int, default=10, help="timed steps per implementation")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mem-steps", type=int, default=2, help="steps in the memory subprocess")
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--sampler-batches", type=int, default=30)
    p.add_argument("--sampler-configs", default="512x128,128x256",
                   help="comma-separated WIDTHxBATCH (width per type per layer, target batch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--wait-idle", type=float, default=0.0,
                   help="before each measurement wait up to this many seconds for a quiet CPU")
    p.add_argument("--data-root", default=os.environ.get("PAPERZOO_DATA"))
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-impl", help=argparse.SUPPRESS)
    p.add_argument("--child-dataset", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_memory:
        memory_child(args)
        return 0
    args.impls = [s for s in args.impls.split(",") if s]
    args.sampler_configs = [tuple(int(v) for v in c.split("x")) for c in args.sampler_configs.split(",")]
    torch.set_num_threads(args.threads)
    env = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "threads": args.threads, "versions": versions(*VERSIONED),
           "loadavg_start": os.getloadavg()}
    print(json.dumps(env, indent=1), flush=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for dataset in [d for d in args.datasets.split(",") if d]:
        if args.part in ("layer", "all"):
            res = {"env": env, "settings": {"hidden": HIDDEN, "heads": HEADS, "layers": LAYERS,
                                            "steps": args.steps, "warmup": args.warmup,
                                            "mem_steps": args.mem_steps}, **run_layers(args, dataset)}
            res["loadavg_end"] = os.getloadavg()
            path = out_dir / f"layer_{dataset}{args.tag}.json"
            path.write_text(json.dumps(res, indent=1))
            print(f"-> {path}")
        if args.part in ("sampler", "all"):
            res = {"env": env, "settings": {"depth": 2, "configs": args.sampler_configs,
                                            "batches": args.sampler_batches}, **run_sampler(args, dataset)}
            res["loadavg_end"] = os.getloadavg()
            path = out_dir / f"sampler_{dataset}{args.tag}.json"
            path.write_text(json.dumps(res, indent=1))
            print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
