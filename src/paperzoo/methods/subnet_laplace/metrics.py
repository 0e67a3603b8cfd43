"""Predictive-quality metrics for classification and regression, and a reliability diagram.

Classification metrics take predicted class probabilities ``probs (N, C)`` and integer labels ``y (N,)``;
regression metrics a predictive mean and variance ``(N, D)`` (or ``(N,)``) and targets of the same shape.
Every metric is averaged over the ``N`` data points and returned as a Python float::

    accuracy     = mean_n [argmax_c probs[n, c] == y_n]               (ties: the lowest class id)
    nll          = -mean_n log probs[n, y_n]
    brier        = mean_n sum_c (probs[n, c] - [c == y_n])^2          (in [0, 2])
    gaussian_nll = mean_n sum_d [ log(2 pi var) / 2 + (y - mean)^2 / (2 var) ]_{n, d}
    rmse         = sqrt(mean_{n, d} (y - mean)^2)
    ece          = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|

ECE bins the confidence ``max_c probs[n, c]`` into ``n_bins`` equal-width bins ``(k/M, (k+1)/M]`` (a
confidence of exactly 0 goes to the first bin); ``acc`` and ``conf`` are the bin's mean correctness
and mean confidence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from paperzoo.core.io import atomic_path

__all__ = [
    "CalibrationBins",
    "accuracy",
    "brier",
    "brier_terms",
    "calibration_bins",
    "ece",
    "gaussian_nll",
    "gaussian_nll_terms",
    "nll",
    "nll_terms",
    "reliability_diagram",
    "rmse",
]


def _classification_inputs(probs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    probs, y = torch.as_tensor(probs), torch.as_tensor(y)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be a non-empty (N, C) tensor of class probabilities, got shape "
                         f"{tuple(probs.shape)}")
    if y.shape != probs.shape[:1] or y.is_floating_point():
        raise ValueError(f"labels must be integer class ids of shape ({probs.shape[0]},), got dtype "
                         f"{y.dtype} and shape {tuple(y.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}), got values from {int(y.min())} to "
                         f"{int(y.max())}")
    return probs.detach().to(torch.float64), y.detach().to(probs.device, torch.long)


def _regression_inputs(*tensors: Tensor) -> list[Tensor]:
    tensors = [torch.as_tensor(t).detach().to(torch.float64) for t in tensors]
    shape = tensors[0].shape
    if len(shape) == 0 or shape[0] == 0 or any(t.shape != shape for t in tensors):
        raise ValueError(f"regression predictions and targets must be non-empty and of one shape, got "
                         f"{[tuple(t.shape) for t in tensors]}")
    return [t.reshape(shape[0], -1) for t in tensors]


def accuracy(probs: Tensor, y: Tensor) -> float:
    """Fraction of data points whose most probable class is the label."""
    probs, y = _classification_inputs(probs, y)
    return float((probs.argmax(-1) == y).to(torch.float64).mean())


def nll_terms(probs: Tensor, y: Tensor) -> Tensor:
    """Per-example negative log probability of the true class, shape (N,), float64 (probabilities floored
    at the smallest positive float64, so a confident miss costs about 708 nats instead of infinity)."""
    probs, y = _classification_inputs(probs, y)
    p_true = probs.gather(1, y.unsqueeze(1)).squeeze(1)
    return -torch.log(p_true.clamp_min(torch.finfo(torch.float64).tiny))


def nll(probs: Tensor, y: Tensor) -> float:
    """Mean of :func:`nll_terms`."""
    return float(nll_terms(probs, y).mean())


def brier_terms(probs: Tensor, y: Tensor) -> Tensor:
    """Per-example Brier score: squared error to the one-hot label summed over classes, shape (N,)."""
    probs, y = _classification_inputs(probs, y)
    onehot = torch.nn.functional.one_hot(y, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).square().sum(1)


def brier(probs: Tensor, y: Tensor) -> float:
    """Brier score averaged over data points (:func:`brier_terms`)."""
    return float(brier_terms(probs, y).mean())


def gaussian_nll_terms(mean: Tensor, var: Tensor, y: Tensor) -> Tensor:
    """Per-point negative log density of ``y`` under ``N(mean, var)`` (independent outputs, summed over
    output dimensions), shape (N,)."""
    mean, var, y = _regression_inputs(mean, var, y)
    if not (var > 0).all():
        raise ValueError("predictive variances must be positive")
    return (0.5 * (torch.log(2 * math.pi * var) + (y - mean).square() / var)).sum(1)


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> float:
    """:func:`gaussian_nll_terms` averaged over data points."""
    return float(gaussian_nll_terms(mean, var, y).mean())


def rmse(mean: Tensor, y: Tensor) -> float:
    """Root mean squared error over all data points and output dimensions."""
    mean, y = _regression_inputs(mean, y)
    return float((mean - y).square().mean().sqrt())


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin data of :func:`ece`, shape ``(n_bins,)`` each. Empty bins have ``count == 0`` and NaN
    ``confidence`` / ``accuracy``."""

    lower: Tensor
    upper: Tensor
    confidence: Tensor
    accuracy: Tensor
    count: Tensor


def calibration_bins(probs: Tensor, y: Tensor, n_bins: int = 15) -> CalibrationBins:
    """Mean confidence and accuracy of the predictions in each equal-width confidence bin."""
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    dtype = torch.as_tensor(probs).dtype if torch.as_tensor(probs).is_floating_point() else torch.float64
    probs, y = _classification_inputs(probs, y)
    confidence, predicted = probs.max(-1)
    correct = (predicted == y).to(torch.float64)
    # Bin in the input's own precision, so a float32 confidence of 0.6 lands in (0.4, 0.6] with the
    # float32 edge 0.6; bucketize(right=False) puts x into bin k when edges[k] < x <= edges[k + 1].
    inner = torch.linspace(0.0, 1.0, int(n_bins) + 1, dtype=dtype, device=probs.device)[1:-1]
    which = torch.bucketize(confidence.to(dtype), inner, right=False)
    edges = torch.linspace(0.0, 1.0, int(n_bins) + 1, dtype=torch.float64, device=probs.device)
    count = torch.bincount(which, minlength=n_bins).to(torch.float64)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64, device=probs.device).index_add_(0, which, confidence)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64, device=probs.device).index_add_(0, which, correct)
    safe = count.clamp_min(1)
    empty = count == 0
    return CalibrationBins(
        lower=edges[:-1], upper=edges[1:],
        confidence=torch.where(empty, torch.nan, conf_sum / safe),
        accuracy=torch.where(empty, torch.nan, acc_sum / safe),
        count=count.long(),
    )


def ece(probs: Tensor, y: Tensor, n_bins: int = 15) -> tuple[float, CalibrationBins]:
    """Expected calibration error with ``n_bins`` equal-width confidence bins, and the per-bin data."""
    bins = calibration_bins(probs, y, n_bins)
    weight = bins.count.to(torch.float64) / bins.count.sum()
    gap = (bins.accuracy - bins.confidence).abs().nan_to_num(0.0)
    return float((weight * gap).sum()), bins


def reliability_diagram(probs: Tensor, y: Tensor, path: str | Path, n_bins: int = 15,
                        title: str | None = None) -> Path:
    """Save a reliability diagram (accuracy vs confidence per bin, with the gap to the diagonal, over a
    histogram of confidences) as a PNG at ``path``, written atomically. Returns ``path``.

    Uses matplotlib's Agg canvas directly, so it neither needs a display nor changes the global backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    error, bins = ece(probs, y, n_bins)
    lower, width = bins.lower.cpu().numpy(), (bins.upper - bins.lower).cpu().numpy()
    acc = bins.accuracy.nan_to_num(0.0).cpu().numpy()
    conf = bins.confidence.cpu().numpy()
    centre = lower + width / 2
    count = bins.count.cpu().numpy()

    fig = Figure(figsize=(4.8, 5.6))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(lower, acc, width=width, align="edge", color="tab:blue", edgecolor="black", linewidth=0.5,
            label="accuracy")
    filled = count > 0
    top.bar(lower[filled], (conf - acc)[filled], bottom=acc[filled], width=width[filled], align="edge",
            color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//", linewidth=0.5,
            label="gap to confidence")
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title or "reliability diagram")
    top.text(0.04, 0.93, f"ECE = {error:.3f}  ({n_bins} bins, N = {int(count.sum())})", fontsize=9,
             transform=top.transAxes, va="top")
    top.legend(loc="lower right", fontsize=8)
    bottom.bar(centre, count / max(count.sum(), 1), width=width, color="gray", edgecolor="black",
               linewidth=0.5)
    bottom.set(xlabel="confidence", ylabel="fraction")
    fig.tight_layout()

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
