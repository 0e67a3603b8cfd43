"""Filtered ranking metrics for link prediction and retrieval (MR, MRR, Hits@k).

Tie policy: the *realistic* rank (the expected rank when ties are broken uniformly at random),
``rank = 1 + #{score > target} + #{score == target, other} / 2``.  It is the mean of the optimistic
and pessimistic ranks, as PyKEEN and LibKGE report.  Ranking the target above tied candidates
(optimistic) inflates models that output constant scores; that is the bug the ConvE authors fixed.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch

DEFAULT_KS = (1, 3, 10)


def filtered_ranks(scores: torch.Tensor, targets: torch.Tensor, filter_rows: torch.Tensor | None = None,
                   filter_cols: torch.Tensor | None = None) -> torch.Tensor:
    """Realistic rank of ``targets`` in each row of ``scores`` after removing filtered candidates.

    Args:
        scores: ``(B, N)`` scores, higher is better. Modified in place (filtered entries set to -inf).
        targets: ``(B,)`` column index of the true answer of each row.
        filter_rows, filter_cols: coordinates of other known answers to remove (the filtered
            setting). Entries equal to the target are allowed and ignored.

    Returns:
        ``(B,)`` float ranks, 1 = best.
    """
    if scores.ndim != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"scores must be (B, N) and targets (B,), got {tuple(scores.shape)} and "
                         f"{tuple(targets.shape)}")
    rows = torch.arange(scores.shape[0], device=scores.device)
    target_scores = scores[rows, targets].clone()
    if torch.isnan(target_scores).any() or torch.isnan(scores).any():
        raise FloatingPointError("NaN scores: the model has diverged")
    if filter_rows is not None and filter_rows.numel():
        scores[filter_rows, filter_cols] = float("-inf")
    scores[rows, targets] = float("-inf")  # the target is counted separately below
    target_scores = target_scores.unsqueeze(1)
    greater = (scores > target_scores).sum(dim=1)
    equal = (scores == target_scores).sum(dim=1)
    return 1.0 + greater.to(torch.float64) + 0.5 * equal.to(torch.float64)


def rank_metrics(ranks: torch.Tensor, ks: Iterable[int] = DEFAULT_KS, prefix: str = "") -> dict[str, float]:
    """MR, MRR and Hits@k of a 1-D tensor of ranks."""
    ranks = ranks.to(torch.float64)
    if ranks.numel() == 0:
        raise ValueError("no ranks to summarise")
    out = {f"{prefix}mr": ranks.mean().item(), f"{prefix}mrr": ranks.reciprocal().mean().item()}
    for k in ks:
        out[f"{prefix}hits@{k}"] = (ranks <= k).to(torch.float64).mean().item()
    return out


def both_sides(head_ranks: torch.Tensor, tail_ranks: torch.Tensor, prefix: str = "") -> Mapping[str, float]:
    """Metrics over both directions (the number papers report), plus each side on its own."""
    out = rank_metrics(torch.cat([head_ranks, tail_ranks]), prefix=prefix)
    out.update(rank_metrics(head_ranks, prefix=f"{prefix}head/"))
    out.update(rank_metrics(tail_ranks, prefix=f"{prefix}tail/"))
    return out
