#!/usr/bin/env python
"""Interpretable CNN: the cost of the interpretable layer in a training step, ours vs the official
PyTorch port's ``conv_mask`` (ada-shen/ICNN), and how far a step is from its FLOP floor.

Run from the repository root (see README.md)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/interp_cnn/bench_step.py --icnn /tmp/icnn_peer/conv_mask.py
    .venv/bin/python benchmarks/interp_cnn/bench_step.py --threads 2 --tag _2thr --icnn PATH
    .venv/bin/python benchmarks/interp_cnn/bench_step.py --markdown benchmarks/interp_cnn/results/bench_step.json

Per backbone (``vgg``, ``resnet``), size (``width:top_filters``, default 16:64 and 32:128; 64 x 64
images, so an 8 x 8 top map) and thread count, ONE fresh child process builds every variant from the
same seed and times training steps (forward, backward, AdamW step) on the same random batch, the
variants interleaved step by step (a, b, c, a, b, c, ...) so that load from other processes hits all
of them alike:

plain
    ``build_model(..., interpretable=False)``: the ordinary CNN, loss = cross-entropy.
mask
    the interpretable network with template masking only: the wrapper's forward without the filter
    loss (``template_mask(relu(module(x)))``), loss = cross-entropy (lambda = 0, loss not computed).
loss
    the interpretable network as trained: cross-entropy + lambda * ``filter_loss_of(model)``.
plain1x1 / icnn (with ``--icnn PATH``)
    the peer. The official layer ``conv_mask`` masks its INPUT maps and then applies a conv of its
    own, with the filter-loss gradient written by hand into its backward pass. So ``icnn`` is the
    ordinary network whose top layer (VGG ``top``, ResNet ``layer3.1``) is followed by
    ``conv_mask(F, F, 1x1)``: it masks the same F maps that our wrapper masks. ``plain1x1`` is the
    ordinary network with a plain 1x1 conv at the same place, the peer's own baseline.

The same child also times ``filter_loss`` and ``template_mask`` alone (forward + backward) on a
``(batch, F, 8, 8)`` map, counts the conv / linear FLOPs of a plain training step with
``torch.utils.flop_counter.FlopCounterMode``, and times a large fp32 GEMM at the same thread count:
``floor = FLOPs / GEMM rate`` is the time of a step that ran every FLOP at the GEMM rate.

The peer file is imported from the path given (its ``model/vgg_s/conv_mask.py``, or the repository
root); it is never copied into paperzoo. It calls ``.cuda()`` throughout, so ``torch.Tensor.cuda``
is replaced by the identity in the child that imports it; ``h5py`` (imported there, unused) is stubbed
when it is not installed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.core.procstats import cpu_name, run_json_child, versions

HERE = Path(__file__).resolve().parent
IMAGE, BATCH, CLASSES = 64, 64, 5  # the presets: 64-pixel part images, batch 64, five part categories
LAM, LR, WEIGHT_DECAY = 0.01, 1e-3, 5e-4  # the presets' filter_loss_weight and AdamW settings
VARIANTS = ("plain", "mask", "loss")
PEER_VARIANTS = ("plain1x1", "icnn")
PEER = "ada-shen/ICNN model/vgg_s/conv_mask.py (commit 1012f6c, 2021-03-01)"


# --------------------------------------------------------------------------------------------
# child: the networks
# --------------------------------------------------------------------------------------------
def load_icnn(path: str):
    """The peer's ``conv_mask`` module, imported from ``path`` (the file, or the repository root) with
    ``torch.Tensor.cuda`` made the identity so that it runs on CPU."""
    p = Path(path)
    if p.is_dir():
        p = p / "model" / "vgg_s" / "conv_mask.py"
    if not p.is_file():
        raise FileNotFoundError(f"--icnn: no conv_mask.py at {p}")
    if importlib.util.find_spec("h5py") is None:  # imported by the file, never used by conv_mask
        sys.modules["h5py"] = types.ModuleType("h5py")
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the file hard-codes .cuda()
    spec = importlib.util.spec_from_file_location("icnn_conv_mask", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class MaskOnly(nn.Module):
    """Our interpretable layer's forward without the filter loss: ``template_mask(relu(module(x)))``."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from paperzoo.methods.interp_cnn.filters import template_mask

        return template_mask(F.relu(self.layer.module(x)), self.layer.beta)


class IcnnAfter(nn.Module):
    """``module`` followed by the peer's ``conv_mask`` (1x1, F -> F), fed the batch's one-hot labels."""

    def __init__(self, module: nn.Module, icnn, filters: int):
        super().__init__()
        self.module = module
        self.conv = icnn.conv_mask(filters, filters, kernel_size=(1, 1), stride=(1, 1), padding=(0,),
                                   labelnum=CLASSES, loss_type="softmax")
        nn.init.normal_(self.conv.weight, mean=0.0, std=0.01)  # as the official vgg_s.py initialises it
        # The official backward's mask_weight gradient is 0/0 = NaN for a filter that is zero on every image
        # of a class (its strength-weighted mean of sqrtvar); from scratch, with random inputs, there are
        # such filters, and one NaN step makes every weight NaN. Zero those entries (one op on (F, 1)).
        self.conv.mask_weight.register_hook(torch.nan_to_num)
        self.label: torch.Tensor | None = None
        self.iter = torch.tensor([1.0])
        self.density = torch.full((CLASSES,), 1.0 / CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.module(x)), self.label, self.iter, self.density)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential) and child.isdigit():
        parent[int(child)] = new
    else:
        setattr(parent, child, new)


def build(variant: str, backbone: str, width: int, top: int, icnn=None) -> nn.Module:
    """The network of one variant (see the module docstring), initialised from seed 0."""
    from paperzoo.methods.interp_cnn.models import TOP_LAYER, build_model

    torch.manual_seed(0)
    name = TOP_LAYER[backbone]
    model = build_model(backbone, CLASSES, width=width, top_filters=top,
                        interpretable=variant in ("mask", "loss"))
    if variant == "mask":
        _replace(model, name, MaskOnly(model.get_submodule(name)))
    elif variant == "plain1x1":
        _replace(model, name, nn.Sequential(model.get_submodule(name), nn.ReLU(), nn.Conv2d(top, top, 1)))
    elif variant == "icnn":
        _replace(model, name, IcnnAfter(model.get_submodule(name), icnn, top))
    return model.train()


def train_step(variant: str, model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, onehot: torch.Tensor) -> float:
    from paperzoo.methods.interp_cnn.filters import filter_loss_of

    if variant == "icnn":
        for m in model.modules():
            if isinstance(m, IcnnAfter):
                m.label = onehot
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    if variant == "loss":
        loss = loss + LAM * filter_loss_of(model)
    loss.backward()
    opt.step()
    return float(loss.detach())


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs (conv, linear, matmul: what FlopCounterMode counts) of one forward + backward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def gemm_rate(repeats: int, n: int = 1024) -> dict:
    """Median fp32 ``n x n x n`` matmul rate at the current thread count, per wall second and per CPU
    second of this process (on a loaded machine the CPU rate is the steadier one)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        torch.mm(a, b)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    med, med_cpu = statistics.median(walls), statistics.median(cpus)
    return {"n": n, "median_s": med, "median_cpu_s": med_cpu, "gflops_per_s": 2 * n ** 3 / med / 1e9,
            "gflops_per_cpu_s": 2 * n ** 3 / med_cpu / 1e9}


def time_fn(fn, repeats: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"median_s": statistics.median(walls), "median_cpu_s": statistics.median(cpus), "wall_s": walls}


def time_layer_ops(top: int, repeats: int) -> dict:
    """``filter_loss`` and ``template_mask`` alone, forward + backward, on a (BATCH, top, 8, 8) map."""
    from paperzoo.methods.interp_cnn.filters import filter_loss, template_mask

    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(BATCH, top, IMAGE // 8, IMAGE // 8, generator=g)).requires_grad_()

    def fl():
        filter_loss(x).sum().backward()
        x.grad = None

    def tm():
        template_mask(x).sum().backward()
        x.grad = None

    return {"shape": list(x.shape), "filter_loss": time_fn(fl, repeats * 3), "template_mask": time_fn(tm, repeats * 3)}


def child(args) -> dict:
    torch.set_num_threads(int(args.threads))
    backbone, (width, top) = args.child_backbone, map(int, args.child_size.split(":"))
    icnn = load_icnn(args.icnn) if args.icnn else None
    variants = [*VARIANTS, *(PEER_VARIANTS if icnn else ())]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, IMAGE, IMAGE, generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    onehot = F.one_hot(y, CLASSES).float().reshape(BATCH, CLASSES, 1, 1)
    models = {v: build(v, backbone, width, top, icnn) for v in variants}
    opts = {v: torch.optim.AdamW(m.parameters(), lr=LR, weight_decay=WEIGHT_DECAY) for v, m in models.items()}
    flops = {v: step_flops(models[v], x, y) for v in ("plain", *(("plain1x1",) if icnn else ()))}
    rate = gemm_rate(max(args.repeats, 5))
    for _ in range(args.warmup):
        for v in variants:
            train_step(v, models[v], opts[v], x, y, onehot)
    walls = {v: [] for v in variants}
    cpus = {v: [] for v in variants}
    losses = {}
    for _ in range(args.repeats):
        for v in variants:
            c0, t0 = time.process_time(), time.perf_counter()
            losses[v] = train_step(v, models[v], opts[v], x, y, onehot)
            walls[v].append(time.perf_counter() - t0)
            cpus[v].append(time.process_time() - c0)
    rate_after = gemm_rate(max(args.repeats, 5))
    steps = {v: {"median_s": statistics.median(walls[v]), "median_cpu_s": statistics.median(cpus[v]),
                 "wall_s": walls[v], "cpu_s": cpus[v], "last_loss": losses[v]} for v in variants}
    gflops = max(rate["gflops_per_s"], rate_after["gflops_per_s"])
    gflops_cpu = max(rate["gflops_per_cpu_s"], rate_after["gflops_per_cpu_s"])
    return {"steps": steps, "step_flops": flops, "gemm": [rate, rate_after],
            "floor_s": flops["plain"] / (gflops * 1e9),
            "floor_cpu_s": flops["plain"] / (gflops_cpu * 1e9), "layer_ops": time_layer_ops(top, args.repeats)}


def run_child(backbone: str, size: str, threads: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--child-backbone", backbone,
           "--child-size", size, "--threads", str(threads), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup)]
    if args.icnn:
        cmd += ["--icnn", args.icnn]
    return run_json_child(cmd, threads, args.child_timeout, args.max_wait)


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------
def ratios(r: dict) -> dict:
    """The headline ratios of one child's result (median wall times)."""
    s = {v: d["median_s"] for v, d in r["steps"].items()}
    out = {"loss/plain": s["loss"] / s["plain"], "mask/plain": s["mask"] / s["plain"],
           "plain/floor": s["plain"] / r["floor_s"], "loss/floor": s["loss"] / r["floor_s"]}
    out["loss_cpu/plain_cpu"] = r["steps"]["loss"]["median_cpu_s"] / r["steps"]["plain"]["median_cpu_s"]
    # CPU seconds of the step over CPU seconds of its FLOPs at the GEMM rate (NaN: an older results file)
    out["plain_cpu/floor_cpu"] = r["steps"]["plain"]["median_cpu_s"] / r.get("floor_cpu_s", math.nan)
    if "icnn" in s:
        out["icnn/plain1x1"] = s["icnn"] / s["plain1x1"]
        out["loss/icnn"] = s["loss"] / s["icnn"]
    return out


def table(rows: list[dict]) -> str:
    head = (f"{'backbone':8s} {'size':>6s} {'thr':>3s} {'plain ms':>8s} {'mask ms':>8s} {'loss ms':>8s} "
            f"{'loss/pl':>7s} {'mask/pl':>7s} {'icnn ms':>8s} {'icnn/1x1':>8s} {'ours/icnn':>9s} "
            f"{'floor ms':>8s} {'pl/floor':>8s} {'FL ms':>6s} {'other':>5s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['backbone']:8s} {r['size']:>6s} {r['threads']:3d} error: {r['error']}")
            continue
        s, q = r["steps"], r["ratios"]
        icnn = (f"{s['icnn']['median_s'] * 1e3:8.1f} {q['icnn/plain1x1']:7.2f}x {q['loss/icnn']:8.2f}x"
                if "icnn" in s else f"{'-':>8s} {'-':>8s} {'-':>9s}")
        oc = f"{r['other_cpu']:.2f}" if r.get("other_cpu") is not None else "?"
        lines.append(
            f"{r['backbone']:8s} {r['size']:>6s} {r['threads']:3d} {s['plain']['median_s'] * 1e3:8.1f} "
            f"{s['mask']['median_s'] * 1e3:8.1f} {s['loss']['median_s'] * 1e3:8.1f} {q['loss/plain']:6.2f}x "
            f"{q['mask/plain']:6.2f}x {icnn} {r['floor_s'] * 1e3:8.1f} {q['plain/floor']:7.1f}x "
            f"{r['layer_ops']['filter_loss']['median_s'] * 1e3:6.2f} {oc:>5s}")
    return "\n".join(lines)


def markdown(path: Path) -> str:
    """The README table of a results file (ratios of median wall times; the CPU-time ratio of (c)/(a) and
    the floor in CPU seconds beside them)."""
    data = json.loads(path.read_text())
    lines = [("| backbone | width:F | threads | plain ms | mask only ms | mask + loss ms | (c)/(a) wall, CPU | "
              "(b)/(a) | ICNN ms | ICNN / its base | ours (c) / ICNN | floor CPU ms | plain / floor (CPU) | "
              "filter_loss ms | other CPU |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        if "error" in r:
            lines.append(f"| {r['backbone']} | {r['size']} | {r['threads']} | error: {r['error']} |")
            continue
        s, q = r["steps"], ratios(r)
        icnn = (f"{s['icnn']['median_s'] * 1e3:.0f} | {q['icnn/plain1x1']:.2f}x | **{q['loss/icnn']:.2f}x**"
                if "icnn" in s else "- | - | -")
        oc = f"{r['other_cpu']:.2f}" if r.get("other_cpu") is not None else "?"
        lines.append(f"| {r['backbone']} | {r['size']} | {r['threads']} | {s['plain']['median_s'] * 1e3:.0f} | "
                     f"{s['mask']['median_s'] * 1e3:.0f} | {s['loss']['median_s'] * 1e3:.0f} | "
                     f"**{q['loss/plain']:.2f}x**, {q['loss_cpu/plain_cpu']:.2f}x | {q['mask/plain']:.2f}x | {icnn} | "
                     f"{r.get('floor_cpu_s', math.nan) * 1e3:.0f} | {q['plain_cpu/floor_cpu']:.2f}x | "
                     f"{r['layer_ops']['filter_loss']['median_s'] * 1e3:.1f} | {oc} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", default="vgg,resnet")
    p.add_argument("--sizes", default="16:64,32:128", help="comma-separated width:top_filters")
    p.add_argument("--threads", default="1", help="comma-separated torch thread counts")
    p.add_argument("--repeats", type=int, default=9, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    p.add_argument("--icnn", help="the peer's conv_mask.py (or the ICNN repository root); absent: peer skipped")
    p.add_argument("--max-wait", type=float, default=20.0,
                   help="seconds to wait for a quiet machine before each child (0: do not wait)")
    p.add_argument("--child-timeout", type=float, default=600.0, help="seconds before a child is killed")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--markdown", metavar="JSON", help="print the README table of a results file and exit")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-backbone", help=argparse.SUPPRESS)
    p.add_argument("--child-size", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.markdown:
        print(markdown(Path(args.markdown)))
        return 0
    torch.set_num_threads(1)
    if args.icnn and not Path(args.icnn).exists():
        raise SystemExit(f"bench_step: error: --icnn {args.icnn}: no such file or directory")
    if not args.icnn:
        print("note: no --icnn PATH given: the official conv_mask peer is skipped", flush=True)
    backbones = [b for b in args.backbones.split(",") if b]
    sizes = [s for s in args.sizes.split(",") if s]
    threads = [int(t) for t in args.threads.split(",") if t]
    env = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "versions": versions(), "loadavg_start": os.getloadavg()}
    print(json.dumps(env), flush=True)
    settings = {"backbones": backbones, "sizes": sizes, "threads": threads, "repeats": args.repeats,
                "warmup": args.warmup, "image": IMAGE, "batch": BATCH, "classes": CLASSES, "lambda": LAM,
                "adamw": {"lr": LR, "weight_decay": WEIGHT_DECAY}, "peer": PEER if args.icnn else None}
    rows = []
    t_start = time.perf_counter()
    for backbone in backbones:
        for size in sizes:
            for thr in threads:
                r = {"backbone": backbone, "size": size, "threads": thr, **run_child(backbone, size, thr, args)}
                if "error" not in r:
                    r["ratios"] = ratios(r)
                print(f"  {backbone} {size} {thr} thr: {r.get('ratios', r.get('error'))}", flush=True)
                rows.append(r)
    print(f"\n{IMAGE}x{IMAGE} images, batch {BATCH}, {args.warmup} warm-up + {args.repeats} timed steps per variant, "
          f"interleaved; medians of wall time; 'other' = share of the machine's CPU used by other processes")
    print(table(rows))
    out = Path(args.out) / f"bench_step{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from paperzoo.core.io import write_json

    write_json(out, {"env": env, "settings": settings, "rows": rows, "total_s": time.perf_counter() - t_start,
                     "loadavg_end": os.getloadavg()})
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
