"""Alignment baselines: weight matching, activation matching and Sinkhorn re-basin.

All functions align network ``b`` to network ``a`` (unbatched parameter dicts) and return
permutations ``perms`` such that ``perm.apply(spec, perms, b)`` is close to ``a``.

* :func:`weight_matching`: Git Re-Basin (Ainsworth et al., ICLR 2023, Alg. 1). Coordinate descent:
  each permutation in turn (random order every sweep) solves the linear assignment
  ``max_P <W_a, P W_b>`` summed over every axis it acts on, the others held fixed; stop when a sweep
  improves nothing.
* :func:`activation_matching`: match hidden units by the correlation of their activations on data, one
  assignment per layer (Ainsworth et al., Sec. 3.1).
* :func:`sinkhorn_rebasin`: Pena et al. (CVPR 2023). Per layer, learn logits whose Sinkhorn projection
  is a soft permutation; the forward pass uses the Hungarian projection with a straight-through
  gradient; the objective is the task loss of a randomly interpolated network.

Each validates its networks first (:func:`~paperzoo.methods.deep_align.perm.check_compatible`): a tensor
missing from one network, of another shape, outside the permutation spec or holding NaN/inf raises
:class:`~paperzoo.methods.deep_align.perm.NetworkMismatchError` naming it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align.perm import NetworkMismatchError, Perms, PermutationSpec

Params = dict[str, Tensor]


def hungarian(score: Tensor) -> Tensor:
    """The permutation ``p`` maximising ``sum_i score[i, p[i]]`` (scipy's linear assignment)."""
    rows, cols = linear_sum_assignment(score.detach().to(torch.float64).cpu().numpy(), maximize=True)
    out = np.empty(len(rows), dtype=np.int64)
    out[rows] = cols
    return torch.from_numpy(out)


def log_sinkhorn(log_alpha: Tensor, iters: int = 20, tau: float = 1.0, implicit: bool = False) -> Tensor:
    """Log of the Sinkhorn normalisation of ``exp(log_alpha / tau)`` (rows then columns, ``iters``
    times); works on ``(..., n, n)``. Its exponential is (nearly) doubly stochastic.

    ``implicit=False`` backpropagates through the ``iters`` unrolled iterations; ``implicit=True``
    differentiates the fixed point instead (:class:`ImplicitSinkhorn`): memory independent of ``iters``,
    and the gradient of the balanced matrix rather than of the truncated iteration.
    """
    if implicit:
        return ImplicitSinkhorn.apply(log_alpha, iters, tau)
    z = log_alpha / tau
    for _ in range(iters):
        z = z - torch.logsumexp(z, dim=-1, keepdim=True)
        z = z - torch.logsumexp(z, dim=-2, keepdim=True)
    return z


class ImplicitSinkhorn(torch.autograd.Function):
    """Sinkhorn with the gradient of its fixed point (implicit function theorem).

    At the fixed point ``P = exp(S / tau + f 1^T + 1 g^T)`` with ``P 1 = a``, ``P^T 1 = b`` (all ones once
    balanced). Differentiating the two marginal constraints gives ``K [df; dg] = -[(P o dS) 1;
    (P o dS)^T 1] / tau`` with ``K = [[diag(a), P], [P^T, diag(b)]]``, singular only along ``(1, -1)``
    (``f + c``, ``g - c`` is the same ``P``), which fixing ``dg_n = 0`` removes. For an upstream gradient
    ``G`` on ``log P``, this yields ``dL/dS = (G - P o (w_f 1^T + 1 w_g^T)) / tau`` with
    ``[w_f; w_g] = K^{-1} [G 1; G^T 1]`` (last entry of ``w_g`` fixed to 0): one ``(2n-1)``-square solve
    per matrix (float64), no stored iterates. The forward pass is :func:`log_sinkhorn`'s, without a graph.

    A matrix that is numerically a hard permutation (entries of ``P`` underflow to 0) has no usable fixed
    point derivative: ``K`` splits into singular blocks and the limit is ``0 * inf``. Such matrices (the
    solve fails or does not reproduce its right-hand side) take the unrolled gradient instead.
    """

    @staticmethod
    def forward(ctx, log_alpha: Tensor, iters: int, tau: float) -> Tensor:  # type: ignore[override]
        with torch.no_grad():
            z = log_sinkhorn(log_alpha, iters, tau)
        ctx.save_for_backward(log_alpha, z)
        ctx.iters, ctx.tau = iters, tau
        return z

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        log_alpha, z = ctx.saved_tensors
        p = z.exp()
        n = p.shape[-1]
        a, b = p.sum(-1), p.sum(-2)
        top = torch.cat([torch.diag_embed(a), p[..., :, :-1]], dim=-1)
        bottom = torch.cat([p.transpose(-1, -2)[..., :-1, :], torch.diag_embed(b[..., :-1])], dim=-1)
        k = torch.cat([top, bottom], dim=-2).to(torch.float64)
        rhs = torch.cat([grad.sum(-1), grad.sum(-2)[..., :-1]], dim=-1).unsqueeze(-1).to(torch.float64)
        w, info = torch.linalg.solve_ex(k, rhs)
        residual = (k @ w - rhs).abs().amax((-2, -1))
        ok = ((info == 0) & torch.isfinite(w).all(-1).all(-1)
              & (residual <= 1e-6 * rhs.abs().amax((-2, -1)) + 1e-12))
        w = w.squeeze(-1).to(grad.dtype)
        w_f, w_g = w[..., :n], torch.nn.functional.pad(w[..., n:], (0, 1))
        out = (grad - p * (w_f.unsqueeze(-1) + w_g.unsqueeze(-2))) / ctx.tau
        if not bool(ok.all()):
            with torch.enable_grad():
                leaf = log_alpha.detach().requires_grad_(True)
                unrolled, = torch.autograd.grad(log_sinkhorn(leaf, ctx.iters, ctx.tau), leaf, grad)
            out = torch.where(ok[..., None, None], out, unrolled)
        return out, None, None


# ---------------------------------------------------------------------------- weight matching
@dataclass(frozen=True)
class MatchInfo:
    """What an iterative matcher did: sweeps / steps taken and whether it converged."""

    iterations: int
    converged: bool


def _moved(w: Tensor, axis: int) -> Tensor:
    return torch.movedim(w, axis, 0).reshape(w.shape[axis], -1)


def weight_matching(spec: PermutationSpec, a: Params, b: Params, *, max_iter: int = 100,
                    init: Perms | None = None, generator: torch.Generator | None = None,
                    tol: float = 1e-12) -> tuple[Perms, MatchInfo]:
    """Git Re-Basin weight matching by coordinate descent over the layers (random order per sweep).

    ``init`` starts from given permutations (e.g. Deep-Align's) instead of the identity. Converged
    when a full sweep increases the total inner product ``sum_l <W_a, P#W_b>`` by no more than ``tol``.
    """
    P.check_compatible(spec, a, b)
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"weight_matching: max_iter must be a positive integer, got {max_iter!r}")
    sizes = spec.sizes(a)
    if init is not None:
        P.check_perms(init, sizes, "weight_matching init")
    perms = {k: v.clone() for k, v in (init or P.identity(sizes)).items()}
    p2a = spec.perm_to_axes
    names = list(sizes)
    a64 = {k: v.detach().to(torch.float64) for k, v in a.items()}
    b64 = {k: v.detach().to(torch.float64) for k, v in b.items()}
    for it in range(1, max_iter + 1):
        improved = False
        order = torch.randperm(len(names), generator=generator).tolist()
        for idx in order:
            name = names[idx]
            n = sizes[name]
            score = torch.zeros(n, n, dtype=torch.float64)
            for pname, axis in p2a[name]:
                wb = b64[pname]
                for ax, other in enumerate(spec.axes_to_perm[pname]):
                    if ax != axis and other is not None:
                        wb = torch.index_select(wb, ax, perms[other])
                score += _moved(a64[pname], axis) @ _moved(wb, axis).T
            new = hungarian(score)
            old_val = score[torch.arange(n), perms[name]].sum()
            new_val = score[torch.arange(n), new].sum()
            if new_val > old_val + tol:
                perms[name] = new
                improved = True
        if not improved:
            return perms, MatchInfo(it, True)
    return perms, MatchInfo(max_iter, False)


# ------------------------------------------------------------------------ activation matching
def activation_matching(a: Params, b: Params, activations: Callable[[Params], list[Tensor]]) -> Perms:
    """Match hidden units by the Pearson correlation of their activations.

    ``activations(params)`` returns the hidden activations ``(num_samples, width)`` of every permuted
    layer of one network on the same data, in the order ``P0, P1, ...``. Both networks must have the
    same tensors and shapes, and give the same number of layers with equal shapes (no silent matching of
    only the common layers); the message names the tensor or layer.
    """
    P.check_compatible(None, a, b)
    perms = {}
    with torch.no_grad():
        acts_a, acts_b = list(activations(a)), list(activations(b))
        if len(acts_a) != len(acts_b) or not acts_a:
            raise NetworkMismatchError(f"activation_matching: network a gives {len(acts_a)} hidden layers, "
                                       f"network b {len(acts_b)}")
        for m, (ha, hb) in enumerate(zip(acts_a, acts_b, strict=True)):
            if ha.dim() != 2 or ha.shape != hb.shape:
                raise NetworkMismatchError(f"activation_matching: activations of P{m} have shape "
                                           f"{tuple(ha.shape)} in network a and {tuple(hb.shape)} in network b "
                                           "(expected equal (samples, width))")
            if ha.shape[0] < 2:
                raise ValueError(f"activation_matching: P{m} has activations on {ha.shape[0]} sample(s); "
                                 "correlations need at least 2")
            for label, h in (("a", ha), ("b", hb)):
                if not bool(torch.isfinite(h).all()):
                    raise NetworkMismatchError(f"activation_matching: activations of P{m} in network {label} "
                                               "hold NaN/inf")
            ha, hb = ha.to(torch.float64), hb.to(torch.float64)
            za = (ha - ha.mean(0)) / (ha.std(0) + 1e-8)
            zb = (hb - hb.mean(0)) / (hb.std(0) + 1e-8)
            perms[f"P{m}"] = hungarian(za.T @ zb / len(za))
    return perms


# ----------------------------------------------------------------------------- Sinkhorn re-basin
def soft_apply(spec: PermutationSpec, mats: Sequence[Tensor] | dict[str, Tensor], params: Params,
               batched: bool = False) -> Params:
    """``M # v``: every axis that ``spec`` permutes by ``P{l}`` is mixed by ``M_l`` (``M[i, j]``: weight of
    old unit ``j`` at new position ``i``); unpermuted axes (inputs, classes, kernels) are untouched, so
    ``W_m -> M_{m+1} W_m M_m^T``, ``b_m -> M_{m+1} b_m``, and a convolution's channel axes likewise at
    every kernel position. ``mats`` is keyed by permutation name or listed in ``P0, P1, ...`` order;
    ``batched``: parameters and matrices ``(B, n, n)`` carry a leading network axis. With permutation
    matrices this equals :func:`perm.apply`."""
    if not isinstance(mats, dict):
        mats = {f"P{lv}": m for lv, m in enumerate(mats)}
    if not batched:
        out = soft_apply(spec, {k: m.unsqueeze(0) for k, m in mats.items()},
                         {k: v.unsqueeze(0) for k, v in params.items()}, batched=True)
        return {k: v.squeeze(0) for k, v in out.items()}
    out = {}
    for name, value in params.items():
        if name not in spec.axes_to_perm:
            raise NetworkMismatchError(f"tensor {name} is not part of the architecture "
                                       f"({', '.join(spec.axes_to_perm)})")
        for axis, pname in enumerate(spec.axes_to_perm[name]):
            if pname is None:
                continue
            if pname not in mats:
                raise NetworkMismatchError(f"soft_apply: no matrix for permutation {pname} (acting on {name})")
            mat = mats[pname]
            if mat.shape[-1] != value.shape[axis + 1] or mat.shape[-2] != mat.shape[-1]:
                raise NetworkMismatchError(f"soft_apply: matrix {pname} has shape {tuple(mat.shape[-2:])} but "
                                           f"{name} axis {axis} has {value.shape[axis + 1]} units")
            if axis == 0:  # rows: M @ v (biases and flattened kernels as extra columns)
                value = (mat @ value.reshape(*value.shape[:2], -1)).reshape(value.shape)
            else:  # columns: v @ M^T with the axis moved last, M broadcast over the axes in between
                moved = value.movedim(axis + 1, -1)
                mat_t = mat.transpose(1, 2).reshape(mat.shape[0], *([1] * (moved.dim() - 3)), *mat.shape[1:])
                value = (moved @ mat_t).movedim(-1, axis + 1)
        out[name] = value
    return out


def sinkhorn_rebasin(spec: PermutationSpec, a: Params, b: Params,
                     loss_of: Callable[[Params, Tensor, torch.Generator], Tensor], *, steps: int = 100,
                     lr: float = 0.1, iters: int = 20, tau: float = 1.0, init: Perms | None = None,
                     init_scale: float = 5.0, generator: torch.Generator | None = None
                     ) -> tuple[Perms, MatchInfo]:
    """Sinkhorn re-basin with the random-interpolation task loss and straight-through Hungarian.

    ``loss_of(params, lam, generator)`` is the task loss of one (unbatched) network, ``lam`` of the way
    from ``P # b`` to ``a``, on a data batch it draws with ``generator`` (``lam`` matters where the target
    itself is interpolated, as for INRs of different signals). Logits start at 0 or, with ``init``, at
    ``init_scale`` on ``init``'s entries.
    Returns the Hungarian projection of the final logits.
    """
    P.check_compatible(spec, a, b)
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"sinkhorn_rebasin: steps must be a non-negative integer, got {steps!r}")
    if isinstance(iters, bool) or int(iters) != iters or iters < 1:
        raise ValueError(f"sinkhorn_rebasin: iters must be a positive integer, got {iters!r}")
    if not (tau > 0 and lr > 0):
        raise ValueError(f"sinkhorn_rebasin: tau and lr must be positive, got tau={tau!r}, lr={lr!r}")
    sizes = spec.sizes(a)
    if init is not None:
        P.check_perms(init, sizes, "sinkhorn_rebasin init")
    logits = {}
    for k, n in sizes.items():
        start = torch.zeros(n, n, dtype=torch.float32)
        if init is not None:
            start = start + init_scale * P.as_matrix(init[k])
        logits[k] = start.requires_grad_(True)
    opt = torch.optim.Adam(list(logits.values()), lr=lr)
    a_d = {k: v.detach() for k, v in a.items()}
    b_d = {k: v.detach() for k, v in b.items()}
    for _ in range(steps):
        mats = {}
        for k, z in logits.items():
            soft = log_sinkhorn(z, iters, tau).exp()
            hard = P.as_matrix(hungarian(soft), soft.dtype)
            mats[k] = hard + soft - soft.detach()
        lam = torch.rand((), generator=generator)
        mid = {k: lam * a_d[k] + (1 - lam) * v for k, v in soft_apply(spec, mats, b_d).items()}
        loss = loss_of(mid, lam, generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = {k: hungarian(log_sinkhorn(z.detach(), iters, tau)) for k, z in logits.items()}
    return final, MatchInfo(steps, True)
