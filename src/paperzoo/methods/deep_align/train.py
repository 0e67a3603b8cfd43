"""The three label-free Deep-Align losses and one optimisation step.

* **supervised** (synthetic pairs): ``v' = g . aug(v)`` for a random hidden permutation ``g``; the
  target alignment of row ``i`` is ``g^{-1}[i]``; cross-entropy of the log soft permutation.
* **alignment**: ``|| v - P # v' ||^2`` for two different zoo networks, with ``P`` the soft
  (Sinkhorn) permutations, per tensor normalised by the zoo's scale of that tensor.
* **interpolation**: task loss of ``lambda v + (1 - lambda) P # v'``, ``lambda ~ U(0, 1)``, on a
  mini-batch of the zoo's training data (cross-entropy; for INRs, the squared distance to
  ``lambda f_v + (1 - lambda) f_v'``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from paperzoo.methods.deep_align import matching
from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align.model import DeepAlign
from paperzoo.methods.deep_align.nets import Params
from paperzoo.methods.deep_align.zoo import AnyTask


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three losses (paper: 1 / 1 / 1)."""

    supervised: float = 1.0
    alignment: float = 1.0
    interpolation: float = 1.0


@dataclass(frozen=True)
class Augment:
    """Augmentation of the synthetic pairs: Gaussian noise (relative to each tensor's zoo scale),
    dropout of weights, and a random global scale in ``[1 - scale, 1 + scale]``."""

    noise: float = 0.05
    dropout: float = 0.05
    scale: float = 0.1


def augment(model: DeepAlign, params: Params, aug: Augment, generator: torch.Generator) -> Params:
    """A noisy copy of batched MLP or CNN parameters (see :class:`Augment`)."""
    out = {}
    n = next(iter(params.values())).shape[0]
    factor = 1 + aug.scale * (2 * torch.rand(n, generator=generator) - 1)
    scales = model.tensor_scales()
    for key, v in params.items():
        scale = scales[key]
        noisy = v + aug.noise * scale * torch.randn(v.shape, generator=generator)
        if aug.dropout:
            keep = torch.rand(v.shape, generator=generator) >= aug.dropout
            noisy = noisy * keep / (1 - aug.dropout)
        out[key] = noisy * factor.reshape(-1, *([1] * (v.dim() - 1)))
    return out


def supervised_loss(model: DeepAlign, v: Params, aug: Augment, generator: torch.Generator,
                    iters: int, tau: float, emb_v: list[Tensor] | None = None, implicit: bool = False
                    ) -> Tensor:
    """Cross-entropy of recovering a random permutation of an augmented copy of ``v`` (``emb_v``: the
    precomputed neuron embeddings of ``v``, to share the encoder pass with the other losses)."""
    spec = model.arch.spec()
    n = next(iter(v.values())).shape[0]
    sizes = spec.sizes({k: t[0] for k, t in v.items()})
    gs = [P.random_perms(sizes, generator) for _ in range(n)]
    noisy = augment(model, v, aug, generator)
    moved = {k: torch.stack([P.apply(spec, gs[i], {k: noisy[k][i]})[k] for i in range(n)]) for k in noisy}
    logp = model.soft_perms(emb_v if emb_v is not None else v, moved, iters, tau, implicit)
    loss = torch.zeros((), dtype=logp[0].dtype)
    for lv, lp in enumerate(logp):
        target = torch.stack([P.invert(g)[f"P{lv}"] for g in gs])
        loss = loss + F.nll_loss(lp.reshape(-1, lp.shape[-1]), target.reshape(-1))
    return loss / len(logp)


def alignment_loss(model: DeepAlign, v: Params, aligned: Params) -> Tensor:
    """Mean squared distance between ``v`` and the softly aligned ``P # v'`` (scale-normalised)."""
    total = torch.zeros(())
    scales = model.tensor_scales()
    for key, t in v.items():
        total = total + ((t - aligned[key]) / scales[key]).pow(2).mean()
    return total / len(v)


def interpolation_loss(model: DeepAlign, v: Params, aligned: Params, task: AnyTask,
                       generator: torch.Generator, data_batch: int, other: Params) -> Tensor:
    """Task loss of the network at a random point between ``v`` and ``P # v'`` (``other``: ``v'`` itself,
    whose function is the INR target)."""
    n = next(iter(v.values())).shape[0]
    lam = torch.rand(n, generator=generator)
    mid = {k: lam.reshape(-1, *([1] * (t.dim() - 1))) * t + (1 - lam.reshape(-1, *([1] * (t.dim() - 1))))
           * aligned[k] for k, t in v.items()}
    return task.mid_loss(model.arch, mid, v, other, lam, generator, data_batch)


@dataclass(frozen=True)
class StepSettings:
    """Batch sizes and Sinkhorn settings of one training step."""

    batch_size: int = 32
    data_batch: int = 128
    sinkhorn_iters: int = 20
    tau: float = 1.0
    clip: float = 1.0
    implicit: bool = True
    """Differentiate Sinkhorn's fixed point (the paper) rather than its unrolled iterations."""


def train_step(model: DeepAlign, optimizer: torch.optim.Optimizer, zoo_params: Params, task: AnyTask,
               weights: LossWeights, aug: Augment, step: StepSettings, generator: torch.Generator
               ) -> dict[str, float]:
    """Sample pairs of training networks, take one clipped AdamW step on the weighted losses."""
    num = next(iter(zoo_params.values())).shape[0]
    i = torch.randint(0, num, (step.batch_size,), generator=generator)
    j = (i + torch.randint(1, num, (step.batch_size,), generator=generator)) % num
    va = {k: t[i] for k, t in zoo_params.items()}
    vb = {k: t[j] for k, t in zoo_params.items()}
    parts: dict[str, Tensor] = {}
    emb_a = model.neuron_embeddings(va)
    if weights.supervised:
        parts["supervised"] = supervised_loss(model, va, aug, generator, step.sinkhorn_iters, step.tau, emb_a,
                                              step.implicit)
    if weights.alignment or weights.interpolation:
        mats = [lp.exp() for lp in model.soft_perms(emb_a, vb, step.sinkhorn_iters, step.tau, step.implicit)]
        aligned = matching.soft_apply(model.arch.spec(), mats, vb, batched=True)
        if weights.alignment:
            parts["alignment"] = alignment_loss(model, va, aligned)
        if weights.interpolation:
            parts["interpolation"] = interpolation_loss(model, va, aligned, task, generator, step.data_batch,
                                                        vb)
    total = sum(getattr(weights, k) * v for k, v in parts.items())
    assert isinstance(total, Tensor)
    optimizer.zero_grad()
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), step.clip)
    optimizer.step()
    return {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}
