#!/usr/bin/env python
"""DGP / ADGPM head to head: paperzoo's graph models vs the same models built from PyG, on the
32,297-node GCNZ ImageNet graph.

Run from the repository root (see README.md)::

    PAPERZOO_DATA=../shared/data .venv/bin/python benchmarks/dgp/bench_pyg.py             # everything
    .venv/bin/python benchmarks/dgp/bench_pyg.py --models adgpm --out-dims 257 --epochs 3 --warmup 1
    .venv/bin/python benchmarks/dgp/bench_pyg.py --threads 1,2 --tag _s14

Models (both built from the same graph, the same weights for the check, the same inputs):

adgpm
    Two dense layers, hidden 2048, dropout 0.5 before each: ``LeakyReLU_0.2(sum_k softmax(a)_k A_k (X W + b))``
    with A_k the in-degree-normalised (node, ancestor) pairs at hop k (k = 0..3, and >= 4 merged),
    upward (descendants -> ancestors) in layer 1 and downward in layer 2; no activation after
    layer 2; output rows L2-normalised. PyG: ONE ``torch.nn.Linear`` per layer (the weight is
    shared by the groups, so one ``GCNConv`` per group would be a different model) followed, per
    hop group, by a ``MessagePassing(aggr="add")`` with the group's normalised edge weights, each
    scaled by softmax(a)_k.
gcnz
    Six ``GCNConv`` layers 50 -> 2048 -> 2048 -> 1024 -> 1024 -> 512 -> out, no biases, LeakyReLU 0.2
    between layers, dropout 0.5 before the last two layers (the GCNZ authors' ``GCN_dense_mse``, as
    ours), symmetric normalisation with self-loops (``GCNConv``'s default) over the hierarchy's edges
    in both directions; output rows L2-normalised.

One epoch = the official training step: forward over all nodes, ``sum((pred - target)^2) / (2 * 1000)``
over the 1,000 seen rows, backward, Adam (lr 1e-3, weight decay 5e-4). Inputs are random unit
vectors of GloVe's 50 dimensions and random unit target rows (timing does not depend on values).

Every configuration (model x implementation x output width x threads) runs in its own fresh
subprocess: ``--warmup`` epochs, then ``--epochs`` timed epochs (wall and CPU time of each), and the
peak resident memory of those epochs (Linux ``VmHWM``, reset after the graph, model, inputs and
targets are built) minus the resident size at that point; ``ru_maxrss`` of the whole child is
recorded too. A ``floor`` child times the dense GEMMs of one epoch (``torch.mm`` of exactly the
shapes of the x W products, forward and backward) at the same thread count: no implementation of
these models can be faster. Before timing, a ``check`` child copies our weights into the PyG model
and reports the max abs difference of the two outputs (dropout off).

Results are printed as tables and written to ``--out`` (default ``benchmarks/dgp/results/``) as
JSON, with the machine, versions, load averages and the share of CPU used by other processes while
each child ran (timings with a high share are not comparable).
"""
from __future__ import annotations

import argparse
import collections
import datetime as _dt
import gc
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperzoo.core.procstats import OtherLoad, cpu_name, peak_rss_mib, reset_peak_rss, rss_mib, versions

HERE = Path(__file__).resolve().parent
IN_DIM, HIDDEN, SEEN_ROWS = 50, 2048, 1000
GCNZ_HIDDEN = (2048, 2048, 1024, 1024, 512)
MAX_HOP = 4
DROPOUT = 0.5
SLOPE = 0.2
LR, WEIGHT_DECAY = 1e-3, 5e-4
IMPLS = {"ours": "paperzoo (CSR adjacencies, the default)", "ours_coo": "paperzoo with COO adjacencies",
         "pyg": "PyG"}




# --------------------------------------------------------------------------------------------
# graph
# --------------------------------------------------------------------------------------------
def load_graph(data_root: str | None) -> tuple[int, Tensor, Tensor, str]:
    """``(n, edges child->parent (2, E), seen node indices, source)`` of the GCNZ ImageNet graph,
    from ``paperzoo.data.zsl.load_imagenet_graph``."""
    from paperzoo.data.zsl import load_imagenet_graph

    g = load_imagenet_graph(data_root)
    return g.num_nodes, g.edges, g.seen, "paperzoo.data.zsl.load_imagenet_graph"


def hop_groups_bfs(edges: Tensor, n: int, max_hop: int = MAX_HOP) -> list[Tensor]:
    """(node, ancestor) pairs grouped by shortest upward hop distance (``>= max_hop`` merged).

    An independent, plain breadth-first search per node (a few seconds on the ImageNet graph), so
    that the PyG models do not share the grouping code of the models they are checked against.
    """
    parents: list[list[int]] = [[] for _ in range(n)]
    for c, p in set(zip(edges[0].tolist(), edges[1].tolist())):
        parents[c].append(p)
    groups: list[list[tuple[int, int]]] = [[] for _ in range(max_hop + 1)]
    for v in range(n):
        dist = {v: 0}
        queue = collections.deque([v])
        while queue:
            x = queue.popleft()
            for p in parents[x]:
                if p not in dist:
                    dist[p] = dist[x] + 1
                    queue.append(p)
        for a, d in dist.items():
            groups[min(d, max_hop)].append((v, a))
    return [torch.tensor(g, dtype=torch.long).t().contiguous() for g in groups]


def in_norm_weights(src: Tensor, dst: Tensor, n: int) -> Tensor:
    """Edge weights ``1 / in-degree(dst)``: each target averages the messages it receives."""
    deg = torch.bincount(dst, minlength=n).to(torch.float32)
    return 1.0 / deg[dst]


# --------------------------------------------------------------------------------------------
# PyG models
# --------------------------------------------------------------------------------------------
def _pyg_message_passing():
    from torch_geometric.nn import MessagePassing

    class WeightedSum(MessagePassing):
        """``out[i] = sum_j w_ji x_j`` over the edges ``j -> i``: PyG's gather / scatter-add."""

        def __init__(self) -> None:
            super().__init__(aggr="add")

        def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
            return self.propagate(edge_index, x=x, edge_weight=edge_weight)

        def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
            return edge_weight.view(-1, 1) * x_j

    return WeightedSum


class PygDenseLayer(nn.Module):
    """One ADGPM layer from PyG parts: a shared ``Linear`` then one weighted propagation per hop group."""

    def __init__(self, in_dim: int, out_dim: int, activation: bool) -> None:
        super().__init__()
        self.dropout = nn.Dropout(DROPOUT)
        self.lin = nn.Linear(in_dim, out_dim)
        self.prop = _pyg_message_passing()()
        self.activation = activation

    def forward(self, x: Tensor, groups: list[tuple[Tensor, Tensor]], att: Tensor) -> Tensor:
        support = self.lin(self.dropout(x))
        out = None
        for k, (edge_index, weight) in enumerate(groups):
            y = self.prop(support, edge_index, weight) * att[k]
            out = y if out is None else out + y
        return F.leaky_relu(out, SLOPE) if self.activation else out


class PygADGPM(nn.Module):
    """ADGPM (two dense layers, attention over hop groups) from ``torch.nn.Linear`` + PyG message passing."""

    def __init__(self, n: int, groups: list[Tensor], in_dim: int, out_dim: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.up, self.down = [], []
        for pairs in groups:  # row 0 node, row 1 ancestor
            node, anc = pairs[0], pairs[1]
            up = torch.stack([node, anc])  # messages descendant -> ancestor
            down = torch.stack([anc, node])  # messages ancestor -> descendant
            self.up.append((up, in_norm_weights(up[0], up[1], n)))
            self.down.append((down, in_norm_weights(down[0], down[1], n)))
        self.att_up = nn.Parameter(torch.ones(len(groups)))
        self.att_down = nn.Parameter(torch.ones(len(groups)))
        self.layer1 = PygDenseLayer(in_dim, hidden, activation=True)
        self.layer2 = PygDenseLayer(hidden, out_dim, activation=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer1(x, self.up, torch.softmax(self.att_up, 0))
        x = self.layer2(x, self.down, torch.softmax(self.att_down, 0))
        return F.normalize(x)


class PygGCNZ(nn.Module):
    """GCNZ from six ``GCNConv`` layers (symmetric normalisation with self-loops: ``GCNConv``'s default),
    no biases, LeakyReLU 0.2 between layers, dropout 0.5 before the last two layers (the GCNZ authors'
    ``GCN_dense_mse``, as ``paperzoo.methods.dgp.model.build_model("gcnz", ...)``)."""

    def __init__(self, n: int, edges: Tensor, in_dim: int, out_dim: int,
                 hidden: tuple[int, ...] = GCNZ_HIDDEN) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv
        from torch_geometric.utils import coalesce, to_undirected

        self.edge_index = coalesce(to_undirected(edges, num_nodes=n), num_nodes=n)
        dims = (in_dim, *hidden, out_dim)
        self.convs = nn.ModuleList(GCNConv(a, b, cached=True, bias=False) for a, b in itertools.pairwise(dims))
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: Tensor) -> Tensor:
        depth = len(self.convs)
        for i, conv in enumerate(self.convs):
            x = conv(self.dropout(x) if i >= depth - 2 else x, self.edge_index)
            if i < depth - 1:
                x = F.leaky_relu(x, SLOPE)
        return F.normalize(x)


# --------------------------------------------------------------------------------------------
# building both implementations
# --------------------------------------------------------------------------------------------
def build(impl: str, model: str, n: int, edges: Tensor, out_dim: int) -> nn.Module:
    torch.manual_seed(0)
    if impl == "pyg":
        if model == "adgpm":
            return PygADGPM(n, hop_groups_bfs(edges, n), IN_DIM, out_dim)
        if model == "gcnz":
            return PygGCNZ(n, edges, IN_DIM, out_dim)
        raise ValueError(f"unknown model {model!r}")
    if impl in ("ours", "ours_coo"):
        from paperzoo.methods.dgp.model import build_model

        return build_model(model, n, edges, IN_DIM, out_dim, layout="coo" if impl == "ours_coo" else "csr")
    raise ValueError(f"unknown implementation {impl!r}")


def copy_weights(ours: nn.Module, pyg: nn.Module, model: str) -> None:
    """Copy our model's parameters into the PyG model: ours keep ``W`` as ``(in, out)``, PyG's ``Linear``
    as ``(out, in)``. Raises ``ValueError`` on a shape or parameter-count mismatch."""
    pairs: list[tuple[Tensor, Tensor]] = []
    if model == "adgpm":
        pairs += [(pyg.att_up, ours.att_up), (pyg.att_down, ours.att_down)]
        for mine, theirs in ((pyg.layer1, ours.conv1), (pyg.layer2, ours.conv2)):
            pairs += [(mine.lin.weight, theirs.weight.t()), (mine.lin.bias, theirs.bias)]
    elif model == "gcnz":
        if len(pyg.convs) != len(ours.layers):
            raise ValueError(f"gcnz: {len(pyg.convs)} PyG layers but {len(ours.layers)} of ours")
        for conv, layer in zip(pyg.convs, ours.layers):
            pairs.append((conv.lin.weight, layer.weight.t()))
            if (conv.bias is None) != (layer.bias is None):
                raise ValueError("gcnz: one implementation has biases, the other not")
            if conv.bias is not None:
                pairs.append((conv.bias, layer.bias))
    else:
        raise ValueError(f"unknown model {model!r}")
    n_ours = sum(1 for _ in ours.parameters())
    if n_ours != len(pairs) or sum(1 for _ in pyg.parameters()) != len(pairs):
        raise ValueError(f"{model}: {n_ours} parameter tensors of ours, {len(pairs)} matched")
    with torch.no_grad():
        for dst, src in pairs:
            if dst.shape != src.shape:
                raise ValueError(f"{model}: shape {tuple(src.shape)} of ours vs {tuple(dst.shape)} in PyG")
            dst.copy_(src)


# --------------------------------------------------------------------------------------------
# one epoch, the GEMM floor
# --------------------------------------------------------------------------------------------
def inputs(n: int, out_dim: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, IN_DIM, generator=g))
    target = F.normalize(torch.randn(SEEN_ROWS, out_dim, generator=g))
    return x, target


def epoch(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, seen: Tensor, target: Tensor) -> float:
    """One official training step: forward on all nodes, loss on the seen rows, backward, Adam."""
    model.train()
    pred = model(x)
    loss = (pred[seen] - target).square().sum() / (2 * seen.numel())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss)


def layer_dims(model: str, out_dim: int) -> list[tuple[int, int]]:
    if model == "adgpm":
        dims = (IN_DIM, HIDDEN, out_dim)
    elif model == "gcnz":
        dims = (IN_DIM, *GCNZ_HIDDEN, out_dim)
    else:
        raise ValueError(model)
    return list(itertools.pairwise(dims))


def gemm_shapes(model: str, n: int, out_dim: int) -> list[tuple[int, int, int]]:
    """``(m, k, p)`` of every dense product of one epoch: per layer ``X W`` forward, ``X^T G`` (the
    weight's gradient) and, except for the first layer (its input needs no gradient), ``G W^T``."""
    shapes = []
    for i, (a, b) in enumerate(layer_dims(model, out_dim)):
        shapes.append((n, a, b))
        shapes.append((a, n, b))
        if i > 0:
            shapes.append((n, b, a))
    return shapes


def time_floor(model: str, n: int, out_dim: int, repeats: int) -> dict:
    """Median seconds of one epoch's GEMMs, each ``torch.mm`` timed on fresh random operands."""
    shapes = gemm_shapes(model, n, out_dim)
    flops = sum(2 * m * k * p for m, k, p in shapes)
    walls, cpus = [], []
    for _ in range(repeats):
        wall = cpu = 0.0
        for m, k, p in shapes:
            a, b = torch.randn(m, k), torch.randn(k, p)
            c0, t0 = time.process_time(), time.perf_counter()
            torch.mm(a, b)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            del a, b
        walls.append(wall)
        cpus.append(cpu)
    med = statistics.median(walls)
    return {"gemm_flops": flops, "floor_s": walls, "floor_cpu_s": cpus, "median_s": med,
            "median_cpu_s": statistics.median(cpus), "gflops_per_s": flops / med / 1e9}


# --------------------------------------------------------------------------------------------
# children
# --------------------------------------------------------------------------------------------
def child(args) -> dict:
    """Subprocess body of one configuration; returns the JSON printed to the parent."""
    torch.set_num_threads(int(args.threads))
    model, impl, out_dim = args.child_model, args.child_impl, args.child_out
    t0 = time.perf_counter()
    n, edges, seen, source = load_graph(args.data_root)
    if impl == "floor":
        return {**time_floor(model, n, out_dim, args.floor_repeats), "n": n}
    if impl == "check":
        return check_equal(model, n, edges, out_dim)
    net = build(impl, model, n, edges, out_dim)
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    x, target = inputs(n, out_dim)
    build_s = time.perf_counter() - t0
    gc.collect()
    base = rss_mib()
    ok = reset_peak_rss()
    for _ in range(args.warmup):
        epoch(net, opt, x, seen, target)
    walls, cpus = [], []
    for _ in range(args.epochs):
        c0, t1 = time.process_time(), time.perf_counter()
        epoch(net, opt, x, seen, target)
        walls.append(time.perf_counter() - t1)
        cpus.append(time.process_time() - c0)
    peak = peak_rss_mib(ok)
    return {"n": n, "edges": int(edges.shape[1]), "seen": int(seen.numel()), "graph_source": source,
            "params": sum(p.numel() for p in net.parameters()), "build_s": build_s,
            "epoch_s": walls, "epoch_cpu_s": cpus, "median_s": statistics.median(walls),
            "median_cpu_s": statistics.median(cpus), "baseline_mib": base, "peak_mib": peak,
            "peak_minus_baseline_mib": None if peak is None or base is None else peak - base,
            "vmhwm_reset": ok, "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def check_equal(model: str, n: int, edges: Tensor, out_dim: int) -> dict:
    """Max abs difference of our output and the PyG model's with our weights copied in, dropout off."""
    ours = build("ours", model, n, edges, out_dim)
    pyg = build("pyg", model, n, edges, out_dim)
    copy_weights(ours, pyg, model)
    x, _ = inputs(n, out_dim)
    ours.eval()
    pyg.eval()
    with torch.no_grad():
        a, b = ours(x), pyg(x)
    return {"max_abs_diff": float((a - b).abs().max()), "max_abs_output": float(a.abs().max()),
            "shape": list(a.shape)}


def run_child(model: str, impl: str, out_dim: int, threads: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--child-model", model,
           "--child-impl", impl, "--child-out", str(out_dim), "--threads", str(threads),
           "--epochs", str(args.epochs), "--warmup", str(args.warmup),
           "--floor-repeats", str(args.floor_repeats)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    load = OtherLoad()
    la0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout,
                             check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.child_timeout} s"}
    info = {"child_wall_s": time.perf_counter() - t0, "other_cpu": load.stop(), "loadavg_start": la0,
            "loadavg_end": os.getloadavg()[0]}
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        err = res.stderr.strip().splitlines()
        return {**info, "error": err[-1] if err else f"rc {res.returncode}", "stderr_tail": err[-15:]}
    return {**info, **json.loads(lines[-1])}


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------
def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def table(rows: list[dict]) -> str:
    head = (f"{'model':6s} {'out':>5s} {'thr':>3s} {'impl':9s} {'median s':>9s} {'CPU s':>7s} {'ours/PyG':>8s} "
            f"{'peak-base MiB':>13s} {'ours/PyG':>8s} {'x floor':>7s} {'other CPU':>9s}")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:6s} {r['out']:5d} {r['threads']:3d} {r['impl']:9s} FAILED: {r['error']}")
            continue
        if r["impl"] == "floor":
            lines.append(f"{r['model']:6s} {r['out']:5d} {r['threads']:3d} {'GEMMs':9s} {r['median_s']:9.3f} "
                         f"{r['median_cpu_s']:7.2f}   ({r['gemm_flops'] / 1e9:.0f} GFLOP, "
                         f"{r['gflops_per_s']:.1f} GFLOP/s)")
            continue
        mem = r.get("peak_minus_baseline_mib")
        oc = f"{100 * r['other_cpu']:.0f}%" if r.get("other_cpu") is not None else "?"
        lines.append(f"{r['model']:6s} {r['out']:5d} {r['threads']:3d} {r['impl']:9s} {r['median_s']:9.3f} "
                     f"{r['median_cpu_s']:7.2f} {r.get('time_ratio', ''):>8s} "
                     f"{(f'{mem:.0f}' if mem is not None else 'n/a'):>13s} {r.get('mem_ratio', ''):>8s} "
                     f"{r.get('x_floor', ''):>7s} {oc:>9s}")
    return "\n".join(lines)


def markdown(path: Path) -> str:
    """The README table of a results file: per configuration, wall and CPU medians of ours and PyG,
    their ratios, peak memory, and each implementation's CPU time over the GEMM floor's."""
    data = json.loads(path.read_text())
    by: dict[tuple, dict] = {}
    for r in data["rows"]:
        if "error" not in r:
            by.setdefault((r["model"], r["out"], r["threads"]), {})[r["impl"]] = r
    lines = [("| model | out | threads | impl | epoch s (wall) | epoch CPU s | ours / PyG (wall, CPU) "
              "| peak - base MiB | ours / PyG memory | CPU x floor | other CPU |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, out, thr), impls in by.items():
        pyg, floor = impls.get("pyg"), impls.get("floor")
        for impl, r in impls.items():
            if impl == "floor":
                continue
            mem = r.get("peak_minus_baseline_mib")
            ratio = (f"**{r['median_s'] / pyg['median_s']:.2f}x**, {r['median_cpu_s'] / pyg['median_cpu_s']:.2f}x"
                     if pyg and impl != "pyg" else "")
            mem_ratio = (f"{mem / pyg['peak_minus_baseline_mib']:.2f}x"
                         if pyg and impl != "pyg" and mem is not None and pyg.get("peak_minus_baseline_mib") else "")
            xf = f"{r['median_cpu_s'] / floor['median_cpu_s']:.1f}x" if floor else ""
            oc = f"{100 * r['other_cpu']:.0f}%" if r.get("other_cpu") is not None else "?"
            lines.append(f"| {model} | {out} | {thr} | {IMPLS.get(impl, impl)} | {r['median_s']:.2f} | "
                         f"{r['median_cpu_s']:.2f} | {ratio} | {mem:,.0f} | {mem_ratio} | {xf} | {oc} |")
        if floor:
            lines.append(f"| {model} | {out} | {thr} | GEMM floor ({floor['gemm_flops'] / 1e9:.0f} GFLOP, "
                         f"{floor['gemm_flops'] / floor['median_cpu_s'] / 1e9:.1f} GFLOP/CPU-s) | "
                         f"{floor['median_s']:.2f} | {floor['median_cpu_s']:.2f} | | | | 1.0x | |")
    return "\n".join(lines)


def merge(path: Path | None, run: dict, rows: list[dict]) -> dict:
    """The results file at ``path`` with this run added: its rows replace earlier rows of the same
    (model, out, threads, impl); each row names the run (index into ``runs``) that measured it."""
    old = json.loads(path.read_text()) if path is not None and path.exists() else {"runs": [], "rows": []}
    if not (isinstance(old, dict) and isinstance(old.get("runs"), list) and isinstance(old.get("rows"), list)):
        raise ValueError(  # noqa: TRY004 - a bad input file: one line via ValueError, as the project's CLI
            f"{path}: not a results file of this script (no 'runs' / 'rows' lists)")
    index = len(old["runs"])
    for r in rows:
        r["run"] = index
    def key(r: dict) -> tuple:
        return r["model"], r["out"], r["threads"], r["impl"]

    new_keys = {key(r) for r in rows}
    return {"runs": [*old["runs"], run], "rows": [r for r in old["rows"] if key(r) not in new_keys] + rows}


VERSIONED = ("torch_geometric", "torch_sparse", "torch_scatter", "pyg_lib", "paperzoo")
"""Distributions whose installed versions the results record."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="adgpm,gcnz")
    p.add_argument("--impls", default="ours,pyg", help="from " + ", ".join(IMPLS))
    p.add_argument("--out-dims", default="2049,257", help="output widths (2049: ResNet-50 fc + bias)")
    p.add_argument("--threads", default="1", help="comma-separated torch thread counts")
    p.add_argument("--epochs", type=int, default=10, help="timed epochs per configuration")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--floor-repeats", type=int, default=3)
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the ours == PyG check")
    p.add_argument("--child-timeout", type=float, default=1800.0, help="seconds before a child is killed")
    p.add_argument("--data-root", default=os.environ.get("PAPERZOO_DATA"))
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--append", action="store_true",
                   help="add this run to an existing results file (its rows replace the same configurations)")
    p.add_argument("--markdown", metavar="JSON", help="print the README table of a results file and exit")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-model", help=argparse.SUPPRESS)
    p.add_argument("--child-impl", help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.markdown:
        print(markdown(Path(args.markdown)))
        return 0
    torch.set_num_threads(1)
    models = [m for m in args.models.split(",") if m]
    impls = [i for i in args.impls.split(",") if i]
    out_dims = [int(d) for d in args.out_dims.split(",") if d]
    threads = [int(t) for t in args.threads.split(",") if t]
    env = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "versions": versions(*VERSIONED), "loadavg_start": os.getloadavg()}
    print(json.dumps(env, indent=1), flush=True)
    settings = {"models": models, "impls": impls, "out_dims": out_dims, "threads": threads,
                "epochs": args.epochs, "warmup": args.warmup, "floor_repeats": args.floor_repeats,
                "in_dim": IN_DIM, "hidden_adgpm": HIDDEN, "hidden_gcnz": GCNZ_HIDDEN, "max_hop": MAX_HOP,
                "dropout": DROPOUT, "seen_rows": SEEN_ROWS, "adam": {"lr": LR, "weight_decay": WEIGHT_DECAY}}
    checks, rows = {}, []
    t_start = time.perf_counter()
    for model in models:
        if args.check and "ours" in impls and "pyg" in impls:
            res = run_child(model, "check", min(out_dims), 1, args)
            checks[model] = res
            print(f"check {model} (out {min(out_dims)}): "
                  f"{res.get('max_abs_diff', res.get('error'))} max abs difference", flush=True)
        for out_dim in out_dims:
            for thr in threads:
                group = []
                for impl in [*impls, "floor"]:
                    r = {"model": model, "out": out_dim, "threads": thr, "impl": impl,
                         **run_child(model, impl, out_dim, thr, args)}
                    print(f"  {model} out {out_dim} {thr} thr {impl}: "
                          f"{r.get('median_s', r.get('error'))}", flush=True)
                    group.append(r)
                by = {r["impl"]: r for r in group if "error" not in r}
                for r in group:
                    if "error" in r or r["impl"] == "floor":
                        continue
                    r["time_ratio"] = fmt_ratio(r["median_s"], by.get("pyg", {}).get("median_s"))
                    r["cpu_ratio"] = fmt_ratio(r["median_cpu_s"], by.get("pyg", {}).get("median_cpu_s"))
                    r["mem_ratio"] = fmt_ratio(r.get("peak_minus_baseline_mib"),
                                               by.get("pyg", {}).get("peak_minus_baseline_mib"))
                    r["x_floor"] = fmt_ratio(r["median_s"], by.get("floor", {}).get("median_s"))
                rows.extend(group)
    print(f"\nGCNZ ImageNet graph, 1,000 seen rows, {args.warmup} warm-up + {args.epochs} timed epochs per "
          f"child; ratios ours/PyG (< 1: ours faster / smaller); 'x floor': time / the epoch's GEMMs")
    print(table(rows))
    run = {"env": env, "settings": settings, "checks": checks, "total_s": time.perf_counter() - t_start,
           "loadavg_end": os.getloadavg()}
    out = Path(args.out) / f"bench_pyg{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from paperzoo.core.io import write_json

    write_json(out, merge(out if args.append else None, run, rows))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
