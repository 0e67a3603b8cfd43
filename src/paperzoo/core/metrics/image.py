"""Image metrics for the rendering methods: PSNR and SSIM from torchmetrics (imported on first use).

LPIPS is not offered: it needs pretrained AlexNet / VGG weights, which cannot be fetched offline.
Images are ``(B, C, H, W)`` or ``(H, W, C)`` / ``(B, H, W, C)`` tensors in ``[0, data_range]``; channel-last
input is detected by a last dimension of 1, 3 or 4 and a larger second-to-last dimension.
"""
from __future__ import annotations

import torch

__all__ = ["LPIPS_UNAVAILABLE", "psnr", "ssim", "ssim_loss"]

#: What the report says about LPIPS.
LPIPS_UNAVAILABLE = ("LPIPS needs pretrained AlexNet/VGG weights; none can be downloaded on an offline machine, "
                     "so it is not reported")


def _bchw(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"image metrics need (B, C, H, W) or (H, W, C) tensors, got shape {tuple(x.shape)}")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] > 4:
        x = x.permute(0, 3, 1, 2)
    return x


def _check(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _bchw(pred), _bchw(target)
    if p.shape != t.shape:
        raise ValueError(f"image metrics: prediction {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
    return p, t.to(p)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, ``(B,)`` (torchmetrics' ``peak_signal_noise_ratio``)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    p, t = _check(pred, target)
    return peak_signal_noise_ratio(p, t, data_range=data_range, reduction="none", dim=(1, 2, 3))


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM, ``(B,)`` (torchmetrics: Gaussian window 11, sigma 1.5, as Wang et al. 2004)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, t = _check(pred, target)
    return structural_similarity_index_measure(p, t, data_range=data_range, reduction="none")


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``1 - SSIM`` averaged over the batch; differentiable (the training loss's structural term)."""
    return 1.0 - ssim(pred, target, data_range).mean()
