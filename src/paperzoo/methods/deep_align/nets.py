"""Small architectures whose weights live in plain dictionaries with a leading *network* axis.

A zoo of ``N`` networks is one dict ``name -> tensor of shape (N, *shape)``; a single network is the
same with ``N = 1`` (or without the axis, see :func:`unbatch`). Every architecture evaluates all ``N``
networks at once (``bmm`` for MLPs, grouped convolutions for CNNs), which is what makes training a zoo
of hundreds of networks on a CPU a matter of minutes.

Parameter names: MLP ``layer{m}.weight`` ``(d_{m+1}, d_m)`` and ``layer{m}.bias``; CNN
``conv{m}.weight`` ``(c_{m+1}, c_m, k, k)``, ``conv{m}.bias``, ``fc.weight``, ``fc.bias``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from paperzoo.methods.deep_align.perm import NetworkMismatchError, PermutationSpec, check_params

Params = dict[str, Tensor]


def unbatch(params: Params, i: int) -> Params:
    """Network ``i`` of a batched parameter dict, without the network axis."""
    return {k: v[i] for k, v in params.items()}


def stack(nets: list[Params]) -> Params:
    """Stack single networks into a batched dict (leading network axis). Every network must have the
    first one's tensors with the same shapes (:class:`~.perm.NetworkMismatchError` names the tensor)."""
    if not nets:
        raise NetworkMismatchError("stack needs at least one network")
    first = nets[0]
    for i, net in enumerate(nets[1:], 1):
        for k in [*first, *(k for k in net if k not in first)]:  # in order, for a deterministic message
            if k not in net or k not in first:
                where = f"network {i}" if k in net else "network 0"
                raise NetworkMismatchError(f"stack: tensor {k} is only in {where}")
            if net[k].shape != first[k].shape:
                raise NetworkMismatchError(f"stack: tensor {k} has shape {tuple(net[k].shape)} in network {i} "
                                           f"but {tuple(first[k].shape)} in network 0")
    return {k: torch.stack([n[k] for n in nets]) for k in first}


@dataclass(frozen=True)
class MLPArch:
    """MLP ``sizes[0] -> ... -> sizes[-1]``; hidden layer ``m`` is permuted by ``P{m}``.

    ``activation="relu"`` (classifiers) or ``"sine"``: a SIREN (Sitzmann et al., 2020), hidden units
    ``sin(w0 * (W h + b))`` and a linear output, as used for implicit neural representations (INRs).
    Both act elementwise, so the hidden-permutation symmetry is the same.
    """

    sizes: tuple[int, ...]
    activation: Literal["relu", "sine"] = "relu"
    w0: float = 30.0

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for m in range(self.num_layers):
            out[f"layer{m}.weight"] = (self.sizes[m + 1], self.sizes[m])
            out[f"layer{m}.bias"] = (self.sizes[m + 1],)
        return out

    def spec(self) -> PermutationSpec:
        return PermutationSpec.mlp(self.num_layers)

    def check(self, params: Params, batched: bool = True, name: str = "network", finite: bool = True) -> None:
        """Raise :class:`~.perm.NetworkMismatchError` naming the first tensor of ``params`` that this
        architecture does not have, lacks, or has in another shape (or, with ``finite``, NaN/inf)."""
        check_params(self.spec(), params, shapes=self.shapes(), batched=batched, name=name, finite=finite)

    def init(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
        """PyTorch's default ``nn.Linear`` initialisation, independently for ``n`` networks; for
        ``sine``, SIREN's weights (first layer ``U(-1/n_0, 1/n_0)``, later ones
        ``U(-sqrt(6/n_m)/w0, sqrt(6/n_m)/w0)``) with the default bias."""
        params: Params = {}
        shape = self.shapes()
        for m in range(self.num_layers):
            bound = 1.0 / math.sqrt(self.sizes[m])
            if self.activation == "sine":
                w_bound = 1.0 / self.sizes[0] if m == 0 else math.sqrt(6.0 / self.sizes[m]) / self.w0
            else:
                w_bound = bound
            for kind, b in (("weight", w_bound), ("bias", bound)):
                key = f"layer{m}.{kind}"
                u = torch.rand((n, *shape[key]), generator=generator, dtype=dtype)
                params[key] = (2 * u - 1) * b
        return params

    def activations(self, params: Params, x: Tensor) -> list[Tensor]:
        """Hidden activations ``(N, B, d_m)`` (after the nonlinearity) of every hidden layer, then the
        outputs."""
        if x.dim() in (2, 4):  # shared inputs (B, d) or images (B, C, H, W)
            h = x.flatten(1).unsqueeze(0).expand(params["layer0.weight"].shape[0], -1, -1)
        else:  # per-network inputs (N, B, ...)
            h = x.flatten(2)
        outs = []
        for m in range(self.num_layers):
            w, b = params[f"layer{m}.weight"], params[f"layer{m}.bias"]
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if m < self.num_layers - 1:
                h = torch.sin(self.w0 * h) if self.activation == "sine" else torch.relu(h)
            outs.append(h)
        return outs

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Logits ``(N, B, classes)`` for shared inputs ``x (B, ...)`` or per-network ``(N, B, ...)``."""
        return self.activations(params, x)[-1]


@dataclass(frozen=True)
class CNNArch:
    """Stride-2 3x3 ReLU convolutions, global average pooling, a linear head; conv ``m``'s output
    channels are permuted by ``P{m}``."""

    in_channels: int
    channels: tuple[int, ...]
    num_classes: int
    kernel: int = 3

    @property
    def num_layers(self) -> int:
        return len(self.channels) + 1

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        prev = self.in_channels
        for m, c in enumerate(self.channels):
            out[f"conv{m}.weight"] = (c, prev, self.kernel, self.kernel)
            out[f"conv{m}.bias"] = (c,)
            prev = c
        out["fc.weight"] = (self.num_classes, prev)
        out["fc.bias"] = (self.num_classes,)
        return out

    def spec(self) -> PermutationSpec:
        return PermutationSpec.cnn(len(self.channels))

    def check(self, params: Params, batched: bool = True, name: str = "network", finite: bool = True) -> None:
        """Raise :class:`~.perm.NetworkMismatchError` naming the first tensor of ``params`` that this
        architecture does not have, lacks, or has in another shape (or, with ``finite``, NaN/inf)."""
        check_params(self.spec(), params, shapes=self.shapes(), batched=batched, name=name, finite=finite)

    def init(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
        """Kaiming-uniform like ``nn.Conv2d`` / ``nn.Linear`` defaults, independently for ``n`` nets."""
        params: Params = {}
        for key, shape in self.shapes().items():
            fan_in = math.prod(self.shapes()[key.replace("bias", "weight")][1:])
            bound = 1.0 / math.sqrt(fan_in)
            u = torch.rand((n, *shape), generator=generator, dtype=dtype)
            params[key] = (2 * u - 1) * bound
        return params

    def activations(self, params: Params, x: Tensor) -> list[Tensor]:
        """Channel activations of every conv layer, as ``(N, B*H*W, c)``, then logits ``(N, B, k)``."""
        n = params["fc.weight"].shape[0]
        if x.dim() == 4:
            x = x.unsqueeze(0).expand(n, *x.shape)
        b = x.shape[1]
        h = x.transpose(0, 1).reshape(b, n * x.shape[2], *x.shape[3:])
        outs = []
        for m in range(len(self.channels)):
            w = params[f"conv{m}.weight"]
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), params[f"conv{m}.bias"].reshape(-1),
                         stride=2, padding=self.kernel // 2, groups=n)
            h = torch.relu(h)
            c = w.shape[1]
            outs.append(h.reshape(b, n, c, -1).permute(1, 0, 3, 2).reshape(n, -1, c))
        pooled = h.mean(dim=(2, 3)).reshape(b, n, -1).transpose(0, 1)
        logits = torch.baddbmm(params["fc.bias"].unsqueeze(1), pooled, params["fc.weight"].transpose(1, 2))
        outs.append(logits)
        return outs

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Logits ``(N, B, classes)`` for images ``x (B, C, H, W)`` or per-network ``(N, B, C, H, W)``."""
        return self.activations(params, x)[-1]


Arch = MLPArch | CNNArch
