"""The sine-wave INR zoo: SIRENs fitted to ``f(x) = sin(a x)`` on ``[-pi, pi]``, one ``a`` per network.

Every network of the zoo is an implicit neural representation (INR) of its own sine wave, drawn as
``a ~ U(freq_range)`` (the paper's synthetic zoo; the spec gives ``sin(ax)``, the range is ours). Two
INRs of *different* signals share no loss function, so their interpolation is scored in function space:
the network at ``lambda`` should represent ``lambda f_a + (1 - lambda) f_b``, the same interpolation of
the two end networks' outputs (:func:`~paperzoo.methods.deep_align.interp.output_curve`). This is also
the target of the interpolation loss in Deep-Align's training and of Sinkhorn re-basin here, as in the
official INR code. :class:`SineTask` has the methods of the classification
:class:`~paperzoo.methods.deep_align.zoo.Task`, so the zoo trainer, the harness and Deep-Align use it
unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from paperzoo.methods.deep_align import interp
from paperzoo.methods.deep_align.nets import Arch, Params


@dataclass(frozen=True)
class SineTask:
    """Inputs on a grid of ``[-pi, pi]``; network ``i`` fits ``sin(a_i x)`` (``a_i`` its target)."""

    x_train: Tensor
    x_test: Tensor
    freq_range: tuple[float, float]
    name: str = "sine"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1,)

    @property
    def out_dim(self) -> int:
        return 1

    @property
    def num_train(self) -> int:
        return len(self.x_train)

    def network_targets(self, n: int, generator: torch.Generator) -> Tensor:
        """The frequencies ``a`` of ``n`` new networks, uniform in ``freq_range``."""
        low, high = self.freq_range
        return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)

    @staticmethod
    def signal(freqs: Tensor, x: Tensor) -> Tensor:
        """``sin(a_i x)`` for per-network inputs ``x (N, B, 1)`` or shared ones ``(B, 1)``: ``(N, B, 1)``."""
        return torch.sin(freqs.reshape(-1, 1, 1).to(torch.float64) * x.to(torch.float64)).to(x.dtype)

    def batch_loss(self, arch: Arch, params: Params, idx: Tensor, targets: Tensor | None) -> Tensor:
        """Mean squared error ``(N,)`` of every network on its own mini-batch of grid points."""
        assert targets is not None, "a sine zoo needs the networks' frequencies"
        x = self.x_train[idx]
        return (arch.forward(params, x) - self.signal(targets, x)).pow(2).mean((1, 2))

    def evaluate(self, arch: Arch, params: Params, targets: Tensor | None) -> list[dict[str, float]]:
        """Per network: its frequency and test MSE on the test grid."""
        assert targets is not None, "a sine zoo needs the networks' frequencies"
        with torch.no_grad():
            mse = (arch.forward(params, self.x_test) - self.signal(targets, self.x_test)).pow(2).mean((1, 2))
        return [{"frequency": float(targets[i]), "test_loss": float(mse[i])} for i in range(len(mse))]

    def pair_curve(self, arch: Arch, a: Params, b: Params, num: int, examples: int) -> interp.Curve:
        """Function-space curve from ``b`` (already aligned) to ``a`` on the first ``examples`` test
        points."""
        x = self.x_test[:examples]
        return interp.output_curve(a, b, lambda p: arch.forward(p, x), num)

    def mid_loss(self, arch: Arch, mid: Params, a: Params, b: Params, lam: Tensor, generator: torch.Generator,
                 batch: int) -> Tensor:
        """MSE between the batched networks ``mid`` (``lam`` of ``a``) and ``lam f_a + (1 - lam) f_b`` on
        one random mini-batch of grid points. ``b`` is the unaligned network: a permutation does not
        change its function, and a soft one (in training) would."""
        idx = torch.randint(0, self.num_train, (batch,), generator=generator)
        x = self.x_train[idx]
        with torch.no_grad():
            target = torch.lerp(arch.forward(b, x), arch.forward(a, x), lam.reshape(-1, 1, 1).to(x.dtype))
        return (arch.forward(mid, x) - target).pow(2).mean()


def sine_task(freq_range: tuple[float, float] = (0.5, 10.0), n_train: int = 512, n_test: int = 1000
              ) -> SineTask:
    """Training grid of ``n_train`` evenly spaced points on ``[-pi, pi]``; test points at the centres of
    ``n_test`` equal cells (between the training points)."""
    low, high = freq_range
    if not 0 < low <= high:
        raise ValueError(f"freq_range must satisfy 0 < low <= high, got {freq_range}")
    x_train = torch.linspace(-math.pi, math.pi, n_train).unsqueeze(1)
    edges = torch.linspace(-math.pi, math.pi, n_test + 1)
    return SineTask(x_train, ((edges[1:] + edges[:-1]) / 2).unsqueeze(1), (float(low), float(high)))
