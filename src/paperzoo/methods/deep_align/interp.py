"""Linear interpolation between (aligned) networks, loss barriers, their AUC, and plots.

For networks ``a`` and ``b`` (``b`` already aligned to ``a``) and ``lambda`` in ``[0, 1]``, the
interpolated network is ``lambda * a + (1 - lambda) * b``. With ``L`` the loss on held-out data, the
*barrier curve* is ``L(lambda a + (1-lambda) b) - (lambda L(a) + (1-lambda) L(b))``; the *loss barrier*
is its maximum over lambda, and the *AUC* its integral (trapezoid rule on the lambda grid). Networks
that share no loss (INRs of different signals) are scored in function space instead
(:func:`output_curve`).

Both networks must have the same tensors and shapes (:func:`~.perm.check_compatible`); a mismatch raises
:class:`~.perm.NetworkMismatchError` naming the tensor rather than interpolating the common part.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from paperzoo.core.io import atomic_path
from paperzoo.methods.deep_align.perm import check_compatible

Params = dict[str, Tensor]


def interpolate(a: Params, b: Params, lam: float | Tensor) -> Params:
    """``lam * a + (1 - lam) * b``; a tensor ``lam (K,)`` gives ``K`` networks along a new axis 0.

    ``a`` and ``b`` must have the same tensor names and shapes (checked; values are not scanned here,
    :func:`loss_curve` and :func:`output_curve` also reject NaN/inf)."""
    check_compatible(None, a, b, finite=False)
    if isinstance(lam, Tensor) and lam.dim() == 1:
        return {k: _bcast(lam, a[k]) * a[k] + (1 - _bcast(lam, a[k])) * b[k] for k in a}
    return {k: lam * a[k] + (1 - lam) * b[k] for k in a}


def _bcast(lam: Tensor, like: Tensor) -> Tensor:
    return lam.to(like.dtype).reshape(-1, *([1] * like.dim()))


@dataclass(frozen=True)
class Curve:
    """Losses along the interpolation path and the derived barrier numbers."""

    lambdas: Tensor
    losses: Tensor

    @property
    def barrier_curve(self) -> Tensor:
        """Loss above the straight line between the end points (``lambdas`` weigh network ``a``)."""
        line = self.lambdas * self.losses[-1] + (1 - self.lambdas) * self.losses[0]
        return self.losses - line

    @property
    def barrier(self) -> float:
        return float(self.barrier_curve.max())

    @property
    def auc(self) -> float:
        return float(torch.trapezoid(self.barrier_curve, self.lambdas))


def loss_curve(a: Params, b: Params, loss_of: Callable[[Params], Tensor], num: int = 11) -> Curve:
    """Evaluate ``loss_of`` (batched networks -> per-network loss) on ``num`` evenly spaced networks
    from ``b`` (lambda = 0) to ``a`` (lambda = 1), all at once."""
    if num < 2:
        raise ValueError(f"loss_curve needs at least 2 lambdas, got {num}")
    check_compatible(None, a, b)
    lambdas = torch.linspace(0, 1, num, dtype=torch.float64)
    with torch.no_grad():
        losses = loss_of(interpolate(a, b, lambdas)).to(torch.float64)
    return Curve(lambdas, losses)


def output_curve(a: Params, b: Params, forward: Callable[[Params], Tensor], num: int = 11) -> Curve:
    """Function-space curve for networks without a shared loss (e.g. INRs of different signals): at each
    lambda, the mean squared difference between the interpolated network's outputs and the same
    interpolation of the end networks' outputs (``forward``: batched networks -> ``(K, B, d)``). Zero
    at both ends, so the barrier is the largest distance along the path."""
    if num < 2:
        raise ValueError(f"output_curve needs at least 2 lambdas, got {num}")
    check_compatible(None, a, b)
    lambdas = torch.linspace(0, 1, num, dtype=torch.float64)
    with torch.no_grad():
        out = forward(interpolate(a, b, lambdas)).to(torch.float64)
    target = torch.lerp(out[:1], out[-1:], lambdas.reshape(-1, 1, 1))
    return Curve(lambdas, (out - target).pow(2).mean((1, 2)))


def plot_curves(curves: dict[str, list[Curve]], path: str | Path, title: str = "") -> None:
    """Mean (and +-1 std band) of the barrier curve of every method over its pairs, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, items in curves.items():
        if not items:
            continue
        ys = torch.stack([c.barrier_curve for c in items])
        lam = items[0].lambdas
        mean, std = ys.mean(0), ys.std(0) if len(items) > 1 else torch.zeros_like(lam)
        ax.plot(lam, mean, label=f"{name} (barrier {ys.max(1).values.mean():.3f})")
        ax.fill_between(lam, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("lambda (weight of network A)")
    ax.set_ylabel("loss - linear interpolation of end losses")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title(title or "loss barrier along the interpolation path")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
