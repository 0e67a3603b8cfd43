#!/usr/bin/env python
"""BAN: the cost of bilinear attention without the joint tensor vs the materialised (naive) form and the
official code's einsum, and how far a whole BAN training step is from its FLOP floor (issue 24, point 5).

Run from the repository root (see README.md)::

    .venv/bin/python benchmarks/ban/bench_attention.py --ban-vqa /tmp/ban-vqa
    .venv/bin/python benchmarks/ban/bench_attention.py --threads 1,2 --tag _2thr
    .venv/bin/python benchmarks/ban/bench_attention.py --markdown benchmarks/ban/results/bench_attention.json

Two kinds of measurement, each in ONE fresh child process (so that its peak memory is its own):

attention (per variant, batch size and thread count)
    the G bilinear attention maps and the G bilinear poolings alone, forward + backward, on the same
    inputs (``v`` (b, V, d_v) features, ``q`` (b, Q, h) question states that require grad, as the GRU's
    output does) with the same parameters. ``loss = sum_g f_g.sum()``. Variants:

    ``ours``   ``BilinearAttentionMap`` + ``BilinearPooling`` (``naive=False``): no (b, V, Q, K) tensor;
    ``naive``  the same modules with ``naive=True``: the joint (b, V, Q, K) tensor materialised;
    ``peer``   (with ``--ban-vqa PATH``) the official ``BiAttention`` (``BCNet`` with ``h_mat``,
               ``torch.einsum('xhyk,bvk,bqk->bhvq', ...)``) and ``BCNet(k=1).forward_with_weights``
               (``einsum('bvk,bvq,bqk->bk', ...)``), imported read-only from the checkout, with OUR
               parameters copied in.

    The first step is the memory step: peak resident memory (``VmHWM`` after resetting it, see
    ``paperzoo.core.procstats``) minus the resident memory just before it. The next ``--repeats`` steps
    are timed (wall and CPU seconds, medians).
step (per thread count)
    one whole BAN training step at the official sizes: forward, BCE-with-logits on soft scores x the
    number of answers, backward, gradient clipping at 0.25, Adamax step. FLOPs are counted analytically
    (:func:`analytic_flops`, checked against ``torch.utils.flop_counter`` at two small batches and
    extrapolated, FLOPs being affine in the batch size), and a float32 GEMM of the step's dominant shape
    (the poolings' ``(b*V, d_v) @ (d_v, h)``) is timed in the same child before and after the steps:
    ``achieved GFLOP/s = FLOPs / median step time``, beside that rate.

Before the naive form runs, its peak memory is estimated (:func:`naive_estimate_bytes`); a batch whose
estimate exceeds ``--naive-max-gib`` (or 80 % of the memory available) is halved until it fits, and the
row says so.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.core.procstats import (
    cpu_name,
    peak_rss_mib,
    reset_peak_rss,
    rss_mib,
    run_json_child,
    versions,
)

HERE = Path(__file__).resolve().parent
PEER = "jnhwkim/ban-vqa bc.py + attention.py + fc.py (commit ef4cc36, 2023-10-30)"
VARIANTS = ("ours", "naive", "peer")
GIB = 2 ** 30


@dataclass(frozen=True)
class Dims:
    """The sizes of one benchmark configuration (defaults: the official VQA v2 setting)."""

    batch: int = 256
    boxes: int = 36
    tokens: int = 14
    v_dim: int = 2048
    hidden: int = 1024
    glimpses: int = 8
    rank_multiplier: int = 3
    embed: int = 300
    answers: int = 3129
    vocab: int = 19901  # the official VQA v2 dictionary (only the embedding table's size; no FLOPs)

    @property
    def rank(self) -> int:
        return self.hidden * self.rank_multiplier


OFFICIAL = Dims()
TINY = Dims(batch=4, boxes=5, tokens=4, v_dim=16, hidden=8, glimpses=2, embed=6, answers=7, vocab=11)
PRESETS = {"official": OFFICIAL, "tiny": TINY}


# --------------------------------------------------------------------------------------------
# FLOPs and memory, on paper
# --------------------------------------------------------------------------------------------
def analytic_flops(d: Dims, whole_step: bool = True) -> dict[str, int]:
    """FLOPs of one forward + backward pass, by component: every matrix product ``(m, k) @ (k, n)`` is
    ``2 m n k`` forward and the same again for each operand that needs a gradient. The features ``v`` need
    none, so the linear maps applied to ``v`` count 2x (forward + weight gradient), all others 3x; the
    GRU's first step multiplies the constant zero state, whose gradient is not needed (3x less one).
    ``whole_step=False``: the attention maps and poolings alone (``q`` requires grad)."""
    b, nv, nq, dv, h, k, g = d.batch, d.boxes, d.tokens, d.v_dim, d.hidden, d.rank, d.glimpses

    def mm(m: int, kk: int, n: int) -> int:
        return 2 * m * kk * n

    out = {
        "att_v_net": 2 * mm(b * nv, dv, k),  # ReLU(U^T x): (b V, d_v) @ (d_v, K), weight grad only
        "att_q_net": 3 * mm(b * nq, h, k),  # ReLU(V^T y): (b Q, h) @ (h, K)
        "att_logits": 3 * b * mm(nv, k, g * nq),  # (V, K) @ (K, G Q) per sample
        "pool_v_net": 2 * g * mm(b * nv, dv, h),  # G x (b V, d_v) @ (d_v, h)
        "pool_q_net": 3 * g * mm(b * nq, h, h),  # G x (b Q, h) @ (h, h)
        "pool_att": 3 * g * b * mm(nq, nv, h),  # G x per sample A^T (Q, V) @ ReLU(U'^T x) (V, h)
    }
    if whole_step:
        out.update({
            "gru": 3 * nq * (mm(b, d.embed, 3 * h) + mm(b, h, 3 * h)) - mm(b, h, 3 * h),
            "q_prj": 3 * g * mm(b, h, h),
            "classifier": 3 * (mm(b, h, 2 * h) + mm(b, 2 * h, d.answers)),
        })
    out["total"] = sum(out.values())
    return out


def joint_bytes(d: Dims) -> dict[str, int]:
    """Size of the float32 joint tensors the naive form materialises: the attention's (b, V, Q, K) and one
    pooling's (b, V, Q, h)."""
    pairs = d.batch * d.boxes * d.tokens
    return {"attention": 4 * pairs * d.rank, "pooling": 4 * pairs * d.hidden}


def naive_estimate_bytes(d: Dims) -> int:
    """Rough peak of the naive attention + poolings step: the attention's joint tensor and its gradient,
    the G poolings' joint tensors kept for backward, and one pooling temporary."""
    j = joint_bytes(d)
    return 2 * j["attention"] + (d.glimpses + 1) * j["pooling"]


def mem_available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes; None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def fit_naive_batch(d: Dims, cap_bytes: float) -> int:
    """The largest batch ``d.batch / 2^i`` whose :func:`naive_estimate_bytes` is at most ``cap_bytes``
    (at least 1)."""
    b = d.batch
    while b > 1 and naive_estimate_bytes(replace(d, batch=b)) > cap_bytes:
        b //= 2
    return b


# --------------------------------------------------------------------------------------------
# child: the modules and the steps
# --------------------------------------------------------------------------------------------
def inputs(d: Dims, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random inputs of the given sizes: ReLU features (no empty box), question states, tokens with
    lengths 4..Q (0 = padding, right-padded), normalised boxes, soft answer scores (1-3 answers a question
    with scores in {0.3, 0.6, 0.9, 1.0}, as VQA v2's)."""
    g = torch.Generator().manual_seed(seed)
    b = d.batch
    v = torch.relu(torch.randn(b, d.boxes, d.v_dim, generator=g)) + 1e-3
    q = torch.randn(b, d.tokens, d.hidden, generator=g)
    lengths = torch.randint(min(4, d.tokens), d.tokens + 1, (b,), generator=g)
    tokens = torch.randint(1, d.vocab, (b, d.tokens), generator=g)
    tokens[torch.arange(d.tokens)[None] >= lengths[:, None]] = 0
    xy = torch.rand(b, d.boxes, 2, generator=g) * 0.7
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(b, d.boxes, 2, generator=g) * 0.25], -1)
    target = torch.zeros(b, d.answers)
    for i in range(b):
        n = int(torch.randint(1, 4, (1,), generator=g))
        idx = torch.randint(0, d.answers, (n,), generator=g)
        target[i, idx] = torch.tensor([0.3, 0.6, 0.9, 1.0])[torch.randint(0, 4, (n,), generator=g)]
    return {"v": v, "q": q, "tokens": tokens, "boxes": boxes, "target": target}


class OursAttention(nn.Module):
    """The attention maps and the G poolings of :class:`paperzoo.methods.ban.models.BAN`, with ``q`` held
    fixed (no residual update between glimpses, so that the peer computes the same thing)."""

    def __init__(self, d: Dims, naive: bool):
        super().__init__()
        from paperzoo.methods.ban.attention import BilinearAttentionMap, BilinearPooling

        torch.manual_seed(0)
        self.attention = BilinearAttentionMap(d.v_dim, d.hidden, d.hidden, d.glimpses,
                                              rank_multiplier=d.rank_multiplier, naive=naive)
        self.pool = nn.ModuleList(BilinearPooling(d.v_dim, d.hidden, d.hidden, naive=naive)
                                  for _ in range(d.glimpses))

    def forward(self, v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """-> (b, G, h): each glimpse's pooled feature."""
        att, _ = self.attention(v, q)
        return torch.stack([self.pool[g](v, q, att[:, g]) for g in range(len(self.pool))], 1)


def load_peer(path: str):
    """The official ``attention`` and ``bc`` modules, imported from the ban-vqa checkout at ``path``."""
    root = Path(path)
    if not (root / "bc.py").is_file() or not (root / "attention.py").is_file():
        raise FileNotFoundError(f"--ban-vqa: no bc.py / attention.py in {root}")
    sys.path.insert(0, str(root))  # the files import each other as top-level modules (fc, bc)
    import warnings

    with warnings.catch_warnings():  # torch.nn.utils.weight_norm is deprecated, and still works
        warnings.simplefilter("ignore", FutureWarning)
        import attention as peer_attention
        import bc as peer_bc
    return peer_attention, peer_bc


class PeerAttention(nn.Module):
    """The official ``BiAttention`` and G ``BCNet(v_dim, h, h, None, k=1)``, as ``build_ban`` makes them,
    with the parameters of ``ours`` copied in (so outputs match ours in eval mode)."""

    def __init__(self, d: Dims, ours: OursAttention, peer_attention, peer_bc):
        super().__init__()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.v_att = peer_attention.BiAttention(d.v_dim, d.hidden, d.hidden, d.glimpses)
            self.b_net = nn.ModuleList(peer_bc.BCNet(d.v_dim, d.hidden, d.hidden, None, k=1)
                                       for _ in range(d.glimpses))
        if d.rank_multiplier != 3:
            raise ValueError("the official BiAttention has rank 3 x hidden: use rank_multiplier 3 with the peer")
        with torch.no_grad():
            a, pa = ours.attention, self.v_att.logits
            pa.h_mat_v.copy_(a.p.view(1, d.glimpses, 1, -1))
            pa.h_mat_g.copy_(a.p_gain)
            pa.h_bias.copy_(a.bias.view(1, -1, 1, 1))
            _copy_fc(a.v_net, pa.v_net)
            _copy_fc(a.q_net, pa.q_net)
            for ours_pool, peer_pool in zip(ours.pool, self.b_net):
                _copy_fc(ours_pool.v_net, peer_pool.v_net)
                _copy_fc(ours_pool.q_net, peer_pool.q_net)

    def forward(self, v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        att, _ = self.v_att.forward_all(v, q)
        return torch.stack([self.b_net[g].forward_with_weights(v, q, att[:, g]) for g in range(len(self.b_net))], 1)


def _copy_fc(ours, peer) -> None:
    """Our ``FCNet`` (parametrized weight norm) into the official one (``weight_g`` / ``weight_v``)."""
    lin = ours.linear
    (plin,) = [m for m in peer.main if isinstance(m, nn.Linear)]
    plin.weight_g.copy_(lin.parametrizations.weight.original0)
    plin.weight_v.copy_(lin.parametrizations.weight.original1)
    plin.bias.copy_(lin.bias)


def build_attention(variant: str, d: Dims, ban_vqa: str | None = None) -> nn.Module:
    """The module of one attention variant, in training mode (dropouts on, as in training)."""
    ours = OursAttention(d, naive=variant == "naive")
    if variant == "peer":
        if not ban_vqa:
            raise ValueError("the peer variant needs --ban-vqa PATH")
        return PeerAttention(d, ours, *load_peer(ban_vqa)).train()
    return ours.train()


def attention_step(model: nn.Module, v: torch.Tensor, q: torch.Tensor) -> float:
    """Forward + backward of the attention maps and poolings; ``loss = sum of the pooled features``."""
    model.zero_grad(set_to_none=True)
    q.grad = None
    loss = model(v, q).sum()
    loss.backward()
    return float(loss.detach())


def soft_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official loss: mean BCE-with-logits over (batch, answers) x the number of answers."""
    return F.binary_cross_entropy_with_logits(logits, target) * target.size(1)


def build_ban(d: Dims) -> nn.Module:
    """The BAN model at sizes ``d`` (no counter, as issue 24's official-size setting), training mode."""
    from paperzoo.methods.ban.models import BAN

    torch.manual_seed(0)
    return BAN(vocab_size=d.vocab, num_answers=d.answers, v_dim=d.v_dim, hidden=d.hidden, glimpses=d.glimpses,
               embed_dim=d.embed, rank_multiplier=d.rank_multiplier).train()


def train_step(model: nn.Module, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               clip: float = 0.25) -> float:
    """One official training step: forward, soft-score BCE x answers, backward, clip 0.25, Adamax."""
    opt.zero_grad(set_to_none=True)
    logits, _ = model(batch)
    loss = soft_bce(logits, batch["target"])
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return float(loss.detach())


def counted_flops(fn) -> int:
    """FLOPs that ``torch.utils.flop_counter.FlopCounterMode`` counts (matrix products) while ``fn()`` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def counted_step_flops(d: Dims, whole_step: bool = True, batches: tuple[int, int] = (2, 4)) -> int:
    """The counter's FLOPs of one forward + backward at ``d.batch``, extrapolated from two small batches
    (FLOPs are affine in the batch size; the counter itself would need a full step at the big size)."""
    counts = []
    for b in batches:
        dd = replace(d, batch=b)
        x = inputs(dd)
        if whole_step:
            model = build_ban(dd)
            counts.append(counted_flops(lambda m=model, x=x: soft_bce(m(x)[0], x["target"]).backward()))
        else:
            model = build_attention("ours", dd)
            q = x["q"].requires_grad_()
            counts.append(counted_flops(lambda m=model, v=x["v"], q=q: m(v, q).sum().backward()))
    slope = (counts[1] - counts[0]) / (batches[1] - batches[0])
    return round(counts[0] + slope * (d.batch - batches[0]))


def gemm_rate(d: Dims, repeats: int) -> dict:
    """Median fp32 rate of the step's dominant product, ``(b V, d_v) @ (d_v, h)`` (a pooling's U'),
    per wall second and per CPU second of this process."""
    m, k, n = d.batch * d.boxes, d.v_dim, d.hidden
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        torch.mm(a, b)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    flops = 2 * m * k * n
    return {"shape": [m, k, n], "median_s": statistics.median(walls), "median_cpu_s": statistics.median(cpus),
            "gflops_per_s": flops / statistics.median(walls) / 1e9,
            "gflops_per_cpu_s": flops / statistics.median(cpus) / 1e9}


def measure(step, repeats: int) -> dict:
    """The first call's peak memory over the resident memory before it, then ``repeats`` timed calls."""
    gc.collect()
    rss0 = rss_mib()
    ok = reset_peak_rss()
    c0, t0 = time.process_time(), time.perf_counter()
    step()
    first = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    peak = peak_rss_mib(ok)
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"rss_before_mib": rss0, "peak_rss_mib": peak, "peak_delta_mib": peak - rss0, "hwm_reset": ok,
            "first_step": first, "median_s": statistics.median(walls), "median_cpu_s": statistics.median(cpus),
            "wall_s": walls, "cpu_s": cpus}


def child(args) -> dict:
    torch.set_num_threads(int(args.threads))
    d = Dims(**json.loads(args.child_dims))
    x = inputs(d)
    if args.child == "attention":
        model = build_attention(args.child_variant, d, args.ban_vqa)
        v, q = x["v"], x["q"].requires_grad_()
        del x
        res = measure(lambda: attention_step(model, v, q), args.repeats)
        return {**res, "flops": analytic_flops(d, whole_step=False)["total"]}
    model = build_ban(d)
    opt = torch.optim.Adamax(model.parameters(), lr=1e-3)
    batch = {k: x[k] for k in ("v", "tokens", "boxes", "target")}
    rate = gemm_rate(d, args.gemm_repeats)
    res = measure(lambda: train_step(model, opt, batch), args.repeats)
    rate_after = gemm_rate(d, args.gemm_repeats)
    return {**res, "gemm": [rate, rate_after], "flops_by_part": analytic_flops(d),
            "flops": analytic_flops(d)["total"], "counted_flops": counted_step_flops(d)}


def run_child(kind: str, variant: str, d: Dims, threads: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--child-variant", variant,
           "--child-dims", json.dumps(asdict(d)), "--threads", str(threads),
           "--repeats", str(args.repeats if d.batch < OFFICIAL.batch else args.repeats_official),
           "--gemm-repeats", str(args.gemm_repeats)]
    if args.ban_vqa:
        cmd += ["--ban-vqa", args.ban_vqa]
    return run_json_child(cmd, threads, args.child_timeout, args.max_wait)


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------
def _s(s: float) -> str:
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def markdown(data: dict) -> str:
    """The README tables of a results dict (as written to the JSON file)."""
    lines = [("| batch | threads | variant | fwd+bwd wall | CPU | vs ours (wall; CPU) | peak memory MiB | joint tensors MiB | "
              "GFLOP/s (wall; CPU) | other CPU |"), "|---|---|---|---|---|---|---|---|---|---|"]
    rows = data["attention"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['batch']} | {r['threads']} | {r['variant']} | error: {r['error']} |")
            continue
        ours = next((o for o in rows if o["variant"] == "ours" and o["batch"] == r["batch"]
                     and o["threads"] == r["threads"] and "error" not in o), None)
        vs = (f"{r['median_s'] / ours['median_s']:.2f}x; **{r['median_cpu_s'] / ours['median_cpu_s']:.2f}x**"
              if ours else "-")
        jb = r.get("joint_mib", {})
        joint = f"{jb['attention']:.0f} + {r['glimpses']} x {jb['pooling']:.0f}" if r["variant"] == "naive" else "0"
        note = f" (asked {r['asked_batch']})" if r.get("asked_batch", r["batch"]) != r["batch"] else ""
        oc = f"{r['other_cpu']:.2f}" if r.get("other_cpu") is not None else "?"
        lines.append(f"| {r['batch']}{note} | {r['threads']} | {r['variant']} | {_s(r['median_s'])} | "
                     f"{_s(r['median_cpu_s'])} | {vs} | {r['peak_delta_mib']:.0f} | {joint} | "
                     f"{r['flops'] / r['median_s'] / 1e9:.1f}; {r['flops'] / r['median_cpu_s'] / 1e9:.1f} | {oc} |")
    lines += ["", ("| threads | step wall | step CPU | peak memory MiB | step TFLOP (analytic; counter) | "
                   "GEMM GFLOP/s (wall; CPU) | achieved GFLOP/s (wall; CPU) | % of GEMM (wall; CPU) | other CPU |"),
              "|---|---|---|---|---|---|---|---|---|"]
    for r in data["step"]:
        if "error" in r:
            lines.append(f"| {r['threads']} | error: {r['error']} |")
            continue
        s = step_summary(r)
        oc = f"{r['other_cpu']:.2f}" if r.get("other_cpu") is not None else "?"
        lines.append(f"| {r['threads']} | {_s(r['median_s'])} | {_s(r['median_cpu_s'])} | {r['peak_delta_mib']:.0f} | "
                     f"{r['flops'] / 1e12:.3f}; {r['counted_flops'] / 1e12:.3f} | {s['gemm']:.1f}; {s['gemm_cpu']:.1f} | "
                     f"{s['achieved']:.1f}; {s['achieved_cpu']:.1f} | {s['pct']:.0f} %; {s['pct_cpu']:.0f} % | {oc} |")
    return "\n".join(lines)


def step_summary(r: dict) -> dict:
    """Achieved rates of a whole-step row and their share of the better of its two GEMM measurements."""
    gemm = max(g["gflops_per_s"] for g in r["gemm"])
    gemm_cpu = max(g["gflops_per_cpu_s"] for g in r["gemm"])
    achieved, achieved_cpu = r["flops"] / r["median_s"] / 1e9, r["flops"] / r["median_cpu_s"] / 1e9
    return {"gemm": gemm, "gemm_cpu": gemm_cpu, "achieved": achieved, "achieved_cpu": achieved_cpu,
            "pct": 100 * achieved / gemm, "pct_cpu": 100 * achieved_cpu / gemm_cpu}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="official", help="the sizes (tiny: for the tests)")
    p.add_argument("--batches", default="256,64", help="comma-separated batch sizes of the attention rows")
    p.add_argument("--variants", default="ours,naive,peer", help="attention variants (peer: only with --ban-vqa)")
    p.add_argument("--no-step", action="store_true", help="skip the whole training step")
    p.add_argument("--threads", default="1", help="comma-separated torch thread counts")
    p.add_argument("--repeats", type=int, default=5, help="timed steps after the memory step (small batches)")
    p.add_argument("--repeats-official", type=int, default=3, help="timed steps at the official batch 256")
    p.add_argument("--gemm-repeats", type=int, default=3, help="timed GEMMs before and after the steps")
    p.add_argument("--ban-vqa", help="a checkout of jnhwkim/ban-vqa (the peer); absent: peer skipped")
    p.add_argument("--naive-max-gib", type=float, default=12.0, help="memory allowed for the naive form")
    p.add_argument("--max-wait", type=float, default=10.0,
                   help="seconds to wait for a quiet machine before each child (0: do not wait)")
    p.add_argument("--child-timeout", type=float, default=600.0, help="seconds before a child is killed")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--markdown", metavar="JSON", help="print the README tables of a results file and exit")
    p.add_argument("--child", choices=["attention", "step"], help=argparse.SUPPRESS)
    p.add_argument("--child-variant", default="ours", help=argparse.SUPPRESS)
    p.add_argument("--child-dims", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    torch.set_num_threads(1)
    if args.ban_vqa and not Path(args.ban_vqa).is_dir():
        raise SystemExit(f"bench_attention: error: --ban-vqa {args.ban_vqa}: no such directory")
    variants = [v for v in args.variants.split(",") if v]
    if bad := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"bench_attention: error: --variants: unknown {', '.join(bad)} (use {', '.join(VARIANTS)})")
    if "peer" in variants and not args.ban_vqa:
        print("note: no --ban-vqa PATH given: the official ban-vqa peer is skipped", flush=True)
        variants.remove("peer")
    base = PRESETS[args.preset]
    batches = [int(b) for b in args.batches.split(",") if b]
    threads = [int(t) for t in args.threads.split(",") if t]
    avail = mem_available_bytes()
    cap = min(args.naive_max_gib * GIB, 0.8 * avail) if avail else args.naive_max_gib * GIB
    env = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "versions": versions(), "loadavg_start": os.getloadavg(),
           "mem_available_gib": avail / GIB if avail else None}
    print(json.dumps(env), flush=True)
    settings = {"preset": args.preset, "dims": asdict(base), "batches": batches, "variants": variants,
                "threads": threads, "repeats": args.repeats, "repeats_official": args.repeats_official,
                "gemm_repeats": args.gemm_repeats, "naive_cap_gib": cap / GIB,
                "peer": PEER if args.ban_vqa else None}
    t_start = time.perf_counter()
    rows = []
    for batch in batches:
        for thr in threads:
            for variant in variants:
                d = replace(base, batch=batch)
                row = {"variant": variant, "batch": batch, "asked_batch": batch, "threads": thr,
                       "glimpses": d.glimpses}
                if variant == "naive":
                    fit = fit_naive_batch(d, cap)
                    row.update(batch=fit, estimate_gib=naive_estimate_bytes(replace(d, batch=fit)) / GIB)
                    if fit != batch:
                        print(f"  naive at batch {batch}: estimated {naive_estimate_bytes(d) / GIB:.1f} GiB > "
                              f"{cap / GIB:.1f} GiB: measured at batch {fit}", flush=True)
                    d = replace(d, batch=fit)
                    row["joint_mib"] = {k: b / 2 ** 20 for k, b in joint_bytes(d).items()}
                row.update(run_child("attention", variant, d, thr, args))
                print(f"  attention {variant} b={row['batch']} {thr} thr: "
                      + (row["error"] if "error" in row else
                         f"{row['median_s']:.2f} s (CPU {row['median_cpu_s']:.2f} s), peak +{row['peak_delta_mib']:.0f} MiB"),
                      flush=True)
                rows.append(row)
    steps = []
    if not args.no_step:
        for thr in threads:
            row = {"threads": thr, "batch": base.batch, **run_child("step", "ours", base, thr, args)}
            if "error" not in row:
                s = step_summary(row)
                print(f"  step {thr} thr: {row['median_s']:.2f} s (CPU {row['median_cpu_s']:.2f} s), "
                      f"{row['flops'] / 1e12:.3f} TFLOP (counter {row['counted_flops'] / 1e12:.3f}): achieved "
                      f"{s['achieved']:.1f} GFLOP/s = {s['pct']:.0f} % of the measured GEMM rate {s['gemm']:.1f} "
                      f"GFLOP/s (per CPU second: {s['achieved_cpu']:.1f} = {s['pct_cpu']:.0f} % of "
                      f"{s['gemm_cpu']:.1f})", flush=True)
            else:
                print(f"  step {thr} thr: {row['error']}", flush=True)
            steps.append(row)
    data = {"env": env, "settings": settings, "attention": rows, "step": steps,
            "total_s": time.perf_counter() - t_start, "loadavg_end": os.getloadavg()}
    table = markdown(data)
    print(table)
    from paperzoo.core.io import write_json, write_text

    out = Path(args.out)
    write_json(out / f"bench_attention{args.tag}.json", data)
    write_text(out / f"bench_attention{args.tag}.md", table + "\n")
    print(f"-> {out / f'bench_attention{args.tag}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
