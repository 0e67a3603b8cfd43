"""The counting module BAN adds per glimpse (Zhang, Hare, Prugel-Bennett, "Learning to Count Objects in
Natural Images for Visual Question Answering", ICLR 2018), written from that paper's description.

Given the boxes and one attention logit per box, it keeps the ``objects`` boxes with the highest logits,
builds a graph whose edge weights are products of their attention, removes edges within one object
(weighted by ``1 - IoU``) and merges duplicate proposals of one object (by how similar their rows are),
and reads the count off the graph's total weight: with hard attention on ``n`` separate boxes it is
exactly ``n``. The output is the count as a linearly interpolated one-hot over ``0..objects`` scaled by a
learned confidence, ``(batch, objects + 1)``.

Every transfer function is a learned monotone piecewise-linear map of ``[0, 1]`` onto ``[0, 1]``
(:class:`PiecewiseLinear`), initialised to the identity.
"""
from __future__ import annotations

import torch
from torch import nn

from paperzoo.data.grounding import box_iou


class PiecewiseLinear(nn.Module):
    """A monotone increasing map ``[0, 1] -> [0, 1]`` with ``f(0) = 0``, ``f(1) = 1``, linear on each of
    ``pieces`` equal intervals. Slopes are ``|w| / sum |w|``; ``w`` starts at ones (the identity)."""

    def __init__(self, pieces: int = 16):
        super().__init__()
        self.pieces = pieces
        self.weight = nn.Parameter(torch.ones(pieces))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.abs()
        w = w / w.sum()
        knots = torch.cat([w.new_zeros(1), torch.cumsum(w, 0)])  # f at i / pieces
        y = x.clamp(0, 1) * self.pieces
        i = y.detach().floor().long().clamp(max=self.pieces - 1)
        return knots[i] + (y - i) * w[i]


class Counter(nn.Module):
    """``forward(boxes (b, V, 4), logits (b, V)) -> (b, objects + 1)`` count features."""

    def __init__(self, objects: int = 10, pieces: int = 16):
        super().__init__()
        self.objects = objects
        # relevance and distance within an object, similarity, relevance and distance for duplicates,
        # attention and distance confidence, output confidence
        names = ("rel", "dist", "sim", "dup_rel", "dup_dist", "att_conf", "dist_conf", "conf")
        self.f = nn.ModuleDict({n: PiecewiseLinear(pieces) for n in names})

    def count(self, boxes: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                          torch.Tensor]:
        """The raw count ``(b,)`` of the top boxes, with their attention ``a`` (b, n) and distances ``D``
        (b, n, n), before the one-hot read-out."""
        n = min(self.objects, logits.size(1))
        top, idx = logits.topk(n, dim=1)
        boxes = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
        a = torch.sigmoid(top)  # masked boxes (-inf logits) get 0
        relevance = a[:, :, None] * a[:, None, :]
        distance = 1 - box_iou(boxes, boxes)
        f = self.f
        # edges within one object are removed: D is 0 between a box and itself / its exact duplicates
        edges = f["rel"](relevance) * f["dist"](distance)
        # duplicates: two proposals are the same object when their attention and their rows of the
        # duplicate-score matrix agree
        dup = f["dup_rel"](relevance) * f["dup_dist"](distance)
        row_diff = (dup[:, :, None, :] - dup[:, None, :, :]).abs()  # (b, n, n, n)
        similarity = f["sim"](1 - row_diff).prod(-1) * f["sim"](1 - (a[:, :, None] - a[:, None, :]).abs())
        copies = similarity.sum(-1)  # (b, n): how many proposals box i stands for
        edges = edges / (copies[:, :, None] * copies[:, None, :])
        self_loops = f["rel"](a * a) / copies
        total = edges.sum((1, 2)) + self_loops.sum(1)
        return (total + 1e-20).sqrt(), a, distance

    def forward(self, boxes: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        c, a, distance = self.count(boxes, logits)
        c = c.clamp(0, self.objects)
        lo = c.detach().floor().long()
        frac = (c - lo)[:, None]
        bins = torch.arange(self.objects + 1, device=c.device)
        one_hot = (1 - frac) * (bins == lo[:, None]) + frac * (bins == (lo + 1).clamp(max=self.objects)[:, None])
        f = self.f
        confidence = f["conf"]((f["att_conf"](a) - 0.5).abs().mean(1, keepdim=True)
                               + (f["dist_conf"](distance) - 0.5).abs().mean((1, 2))[:, None])
        return one_hot * confidence
