"""Location instability (the paper's measure of how consistently a filter fires on one object part) and
the feature maps it is computed from.

For each filter and each of its top-K images (the images on which its peak activation is highest),
the filter's inferred position is the centre, in image pixels, of the receptive field of its argmax unit.
For each ground-truth part, the distance from that position to the part's landmark varies over the K
images; its standard deviation, divided by the image diagonal, averaged over the parts, is the filter's
location instability. A filter that always fires on the same part has a small one, whatever the part.
Multi-category classification (the protocol of the official metric code): each filter is evaluated on
the images of the category on which its mean peak activation is highest, with that category's parts.
The network's number is the mean over filters (filters with fewer than two usable images are skipped).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Top-K images per filter (the official code's ``patchNumPerPattern``).
TOP_K = 100


@torch.no_grad()
def layer_maps(model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 256,
               transform=None) -> torch.Tensor:
    """The rectified output maps ``(N, filters, h, w)`` of the submodule ``layer`` (eval mode) for
    ``images`` (``transform`` turns a uint8 batch into the network's input)."""
    module = model.get_submodule(layer)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(F.relu(out).detach()))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            model(transform(x) if transform is not None else x)
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise ValueError("layer_maps: no images")
    return torch.cat(captured)


def peak_positions(maps: torch.Tensor, image_size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map's peak: its position ``(N, filters, 2)`` as image coordinates ``(x, y)`` of the centre of
    the argmax unit's cell (unit ``(i, j)`` of an ``h x w`` map over an ``H x W`` image covers
    ``[j W/w, (j+1) W/w) x [i H/h, (i+1) H/h)``, the receptive-field centre of a stack of 'same'-padded
    convs and 2x2 poolings, or stride-2 convs), and its value ``(N, filters)``."""
    hh, ww = (image_size, image_size) if isinstance(image_size, int) else image_size
    n, c, h, w = maps.shape
    value, idx = maps.reshape(n, c, h * w).max(dim=2)
    i, j = idx // w, idx % w
    pos = torch.stack([(j.double() + 0.5) * ww / w, (i.double() + 0.5) * hh / h], dim=-1)
    return pos, value.double()


def filter_instability(positions: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor,
                       image_size: int | tuple[int, int], top_k: int = TOP_K) -> torch.Tensor:
    """Location instability of every filter over ONE category's images: a ``(filters,)`` float64 tensor,
    NaN for a filter with fewer than two usable images for some part.

    ``positions`` ``(N, filters, 2)`` and ``scores`` ``(N, filters)`` are the filters' peaks on the N images
    (:func:`peak_positions`); ``landmarks`` ``(N, P, 2)`` are the images' part landmarks in the same
    coordinates, NaN where a part is absent. Per filter and part: the top-K images by score among those
    where the part is present and the filter fires (score > 0: an all-zero rectified map has no peak), the sample std (N - 1) of the peak-to-landmark distances; the mean over
    parts, divided by the image diagonal."""
    hh, ww = (image_size, image_size) if isinstance(image_size, int) else image_size
    if positions.dim() != 3 or positions.size(-1) != 2 or scores.shape != positions.shape[:2]:
        raise ValueError(f"positions must be (N, filters, 2) and scores (N, filters), got "
                         f"{tuple(positions.shape)} and {tuple(scores.shape)}")
    if landmarks.dim() != 3 or landmarks.size(0) != positions.size(0) or landmarks.size(-1) != 2:
        raise ValueError(f"landmarks must be (N, parts, 2) for the same N images, got {tuple(landmarks.shape)}")
    if top_k < 2:
        raise ValueError(f"top_k must be >= 2 (a std needs two images), got {top_k}")
    positions, scores, landmarks = positions.double(), scores.double(), landmarks.double()
    present = ~torch.isnan(landmarks).any(dim=-1)  # (N, P)
    parts = [p for p in range(landmarks.size(1)) if present[:, p].any()]
    if not parts:
        return torch.full((positions.size(1),), math.nan, dtype=torch.float64)
    order = torch.argsort(scores, dim=0, descending=True, stable=True)  # (N, filters)
    fires = torch.gather(scores, 0, order) > 0  # a silent filter (all-zero map) has no position on that image
    per_part = []
    for p in parts:
        ok = present[:, p][order] & fires  # (N, filters): is the part present in the filter's r-th best image
        rank = ok.long().cumsum(0)
        chosen = ok & (rank <= top_k)
        count = chosen.sum(0)
        # distance on the filter's r-th best image: (N, filters)
        d = (positions[order, torch.arange(positions.size(1))] - landmarks[order, p]).norm(dim=-1)
        d = torch.where(chosen, d, torch.zeros_like(d))
        mean = d.sum(0) / count.clamp(min=1)
        var = (torch.where(chosen, d - mean, torch.zeros_like(d)) ** 2).sum(0) / (count - 1).clamp(min=1)
        std = var.sqrt()
        per_part.append(torch.where(count >= 2, std, torch.full_like(std, math.nan)))
    return torch.stack(per_part).mean(0) / math.hypot(hh, ww)


def location_instability(maps: torch.Tensor, labels: torch.Tensor, landmarks: torch.Tensor,
                         image_size: int | tuple[int, int], top_k: int = TOP_K,
                         categories: Sequence[int] | None = None) -> dict[str, torch.Tensor | float]:
    """The network-level measure over a labelled image set: each filter is assigned the category with
    the highest mean peak activation and scored on that category's images (:func:`filter_instability`).

    Returns ``instability`` (the mean over filters with a value), ``per_filter`` ``(filters,)``,
    ``category`` ``(filters,)`` and ``positions`` / ``scores`` (the peaks on every image)."""
    positions, scores = peak_positions(maps, image_size)
    cats = sorted(set(labels.tolist())) if categories is None else list(categories)
    mean_score = torch.stack([scores[labels == c].mean(0) if (labels == c).any()
                              else torch.full((scores.size(1),), -math.inf, dtype=scores.dtype) for c in cats])
    assigned = torch.tensor(cats)[mean_score.argmax(0)]
    per_filter = torch.full((scores.size(1),), math.nan, dtype=torch.float64)
    for c in cats:
        f = (assigned == c).nonzero().flatten()
        rows = labels == c
        if len(f) and rows.sum() >= 2:
            per_filter[f] = filter_instability(positions[rows][:, f], scores[rows][:, f], landmarks[rows],
                                               image_size, top_k)
    valid = per_filter[~torch.isnan(per_filter)]
    return {"instability": float(valid.mean()) if len(valid) else math.nan, "per_filter": per_filter,
            "category": assigned, "positions": positions, "scores": scores}


def reference_instability(labels: torch.Tensor, landmarks: torch.Tensor, image_size: int, map_size: int,
                          top_k: int = TOP_K, seed: int = 0) -> dict[str, float]:
    """The scale of :func:`location_instability` on a labelled image set, from its landmarks alone:

    - ``random``: filters that peak at a uniformly random unit of a ``map_size`` map on every image (one
      per category, as many as the category has parts, each with random scores);
    - ``part``: ideal part filters, one per category and part, that peak exactly on the unit holding the
      part's landmark in every image where the part is visible (silent elsewhere). Their instability is
      not zero: the distances to the category's OTHER parts still vary with pose and scale.

    A network's filters are part-like when their instability sits near ``part`` and far below ``random``."""
    g = torch.Generator().manual_seed(seed)
    cell = image_size / map_size
    out = {"random": [], "part": []}
    for c in sorted(set(labels.tolist())):
        rows = labels == c
        lm = landmarks[rows].double()
        n = int(rows.sum())
        parts = [p for p in range(lm.size(1)) if (~torch.isnan(lm[:, p]).any(-1)).any()]
        if n < 2 or not parts:
            continue
        k = len(parts)
        units = torch.randint(0, map_size, (n, k, 2), generator=g).double()
        out["random"].append(filter_instability((units + 0.5) * cell, torch.rand(n, k, generator=g, dtype=torch.float64),
                                                lm, image_size, top_k))
        pos = torch.zeros(n, k, 2, dtype=torch.float64)
        score = torch.zeros(n, k, dtype=torch.float64)
        for f, p in enumerate(parts):
            seen = ~torch.isnan(lm[:, p]).any(-1)
            unit = torch.clamp(torch.floor(lm[seen, p] / cell), 0, map_size - 1)
            pos[seen, f] = (unit + 0.5) * cell
            score[seen, f] = 1.0 + torch.rand(int(seen.sum()), generator=g, dtype=torch.float64)
        out["part"].append(filter_instability(pos, score, lm, image_size, top_k))
    result = {}
    for key, vals in out.items():
        v = torch.cat(vals) if vals else torch.zeros(0)
        v = v[~torch.isnan(v)]
        result[key] = float(v.mean()) if len(v) else math.nan
    return result


def instability_by_category(maps: torch.Tensor, labels: torch.Tensor, landmarks: torch.Tensor,
                            image_size: int | tuple[int, int], top_k: int = TOP_K) -> dict[int, float]:
    """Location instability with EVERY filter scored on each category's images in turn (the paper's
    single-category measure, applied per category): category -> the mean over its scored filters.

    Unlike :func:`location_instability`, no filter is assigned to a category, so two networks are compared
    on the same images and parts whatever categories their filters prefer."""
    positions, scores = peak_positions(maps, image_size)
    out = {}
    for c in sorted(set(labels.tolist())):
        rows = labels == c
        if rows.sum() < 2:
            continue
        v = filter_instability(positions[rows], scores[rows], landmarks[rows], image_size, top_k)
        v = v[~torch.isnan(v)]
        out[c] = float(v.mean()) if len(v) else math.nan
    return out
