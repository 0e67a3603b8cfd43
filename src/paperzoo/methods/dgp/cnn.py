"""The image side of zero-shot learning: a CNN trained from scratch on the SEEN classes only.

Its last layer is a linear classifier ``logits = f(x) W^T + b``; the rows ``[W | b]`` of the seen
classes are the targets the graph networks regress, and a predicted row ``[w | b]`` of any class
scores an image as ``[f(x), 1] . [w, b]``. The paper uses an ImageNet-pretrained ResNet-50
(2048-d features, 2049-d classifier rows); no pretrained network can be had here, so this is a small
ResNet-style network trained from scratch (README: deviations).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.core.progress import progress
from paperzoo.data.vision import random_crop_flip

log = logging.getLogger(__name__)


def _stage(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]


class ConvNet(nn.Module):
    """Four 3x3 conv-ReLU stages (widths w, 2w, 4w, ``feature_dim``) with 2x2 max-pooling between them,
    global average pooling (non-negative features, like a ResNet's), then the linear classifier
    ``fc``. No batch normalisation: on this CPU its backward pass made training 5x slower, and a
    four-layer network trains well without it."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, feature_dim: int = 256):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_stage(in_channels, w), nn.MaxPool2d(2),
            *_stage(w, 2 * w), nn.MaxPool2d(2),
            *_stage(2 * w, 4 * w), nn.MaxPool2d(2),
            *_stage(4 * w, feature_dim),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x.contiguous(memory_format=torch.channels_last)))

    def classifier_rows(self) -> torch.Tensor:
        """``[W | b]``: one row per class, the bias last (the regression targets)."""
        return torch.cat([self.fc.weight, self.fc.bias[:, None]], dim=1).detach().clone()

    def set_classifier(self, rows: torch.Tensor) -> None:
        """Replace the classifier by ``rows`` (``[W | b]`` per class) and freeze it."""
        if rows.dim() != 2 or rows.size(1) != self.feature_dim + 1:
            raise ValueError(f"classifier rows must be (classes, {self.feature_dim + 1}), got {tuple(rows.shape)}")
        self.fc = nn.Linear(self.feature_dim, rows.size(0)).to(rows.device)
        with torch.no_grad():
            self.fc.weight.copy_(rows[:, :-1])
            self.fc.bias.copy_(rows[:, -1])
        self.fc.requires_grad_(False)


def fit(model: ConvNet, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
        batch_size: int, generator: torch.Generator, augment: bool = True, momentum: float = 0.9,
        weight_decay: float = 5e-4, cosine: bool = True, params=None, desc: str = "cnn",
        on_epoch: Callable[[int, float, float], None] | None = None) -> list[dict[str, float]]:
    """Cross-entropy training with SGD (optionally cosine-annealed); ``params`` limits what is trained
    (fine-tuning trains the features only). Returns one row per epoch (loss, accuracy)."""
    params = list(model.parameters() if params is None else params)
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(images) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine and steps else None
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total_loss, correct = 0.0, 0
        bar = progress(range(0, len(images), batch_size), desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False)
        for start in bar:
            idx = order[start:start + batch_size]
            x, y = images[idx], labels[idx]
            if augment:
                x = random_crop_flip(x, generator)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        row = {"epoch": epoch + 1, "loss": total_loss / len(images), "accuracy": correct / len(images)}
        history.append(row)
        log.info("%s epoch %d/%d: loss %.4f, train accuracy %.3f", desc, epoch + 1, epochs, row["loss"],
                 row["accuracy"])
        if on_epoch is not None:
            on_epoch(epoch + 1, row["loss"], row["accuracy"])
    return history


@torch.no_grad()
def features(model: ConvNet, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``[f(x), 1]`` per image (eval mode): the features with a constant 1 for the bias."""
    model.eval()
    out = [model.features(images[i:i + batch_size].contiguous(memory_format=torch.channels_last)) for i in range(0, len(images), batch_size)]
    feats = torch.cat(out) if out else torch.zeros(0, model.feature_dim)
    return torch.cat([feats, torch.ones(len(feats), 1)], dim=1)
