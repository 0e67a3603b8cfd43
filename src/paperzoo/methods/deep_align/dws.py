"""Deep weight space (DWS) layers: linear maps between MLP weight spaces that commute with hidden-neuron
permutations (Navon et al., ICML 2023, "Equivariant Architectures for Learning in Deep Weight Spaces").

An MLP with ``L`` layers has neuron *levels* ``0..L`` (inputs, hidden layers, outputs); weight ``W_m``
``(n_{m+1}, n_m)`` has rows at level ``m+1`` and columns at level ``m``, bias ``b_m`` sits at level
``m+1``. A hidden permutation of level ``l`` reorders every axis at that level. Tensors here carry a
batch axis and a trailing feature axis: ``W_m (B, n_{m+1}, n_m, C)``, ``b_m (B, n_{m+1}, C)``.

The equivariant linear maps are built from the known basis of pooling and broadcasting operations:

* **neuron features** of level ``l``: everything indexed by that level alone, i.e. ``W_{l-1}`` pooled
  over its columns, ``b_{l-1}``, and ``W_l`` pooled over its rows (whichever exist);
* **global features**: every weight and bias tensor pooled over all its neuron axes;
* output ``W_m`` = ``Lin(W_m)`` (elementwise in the neuron axes) + ``Lin(row features of level m+1)``
  broadcast along the columns + ``Lin(column features of level m)`` broadcast along the rows +
  ``Lin(global)``; output ``b_m`` = ``Lin(b_m)`` + ``Lin(neuron features of level m+1)`` + ``Lin(global)``.

Pooling is the mean (the linear DWS basis, which this then spans for hidden levels) or the maximum
(``reduction="max"``, the official Deep-Align code's default: the layer is then equivariant but no longer
linear). Each term is a pooling / broadcast over neuron axes (which commute with permutations of those
axes) followed by a linear map of the feature axis only, so every map is exactly equivariant. The input
and output levels are not permuted: their axes may be flattened into features (``fixed_io``: a
first-hidden-level neuron sees its whole incoming weight row, a last-hidden-level neuron its whole
outgoing column), and the input axis may be shortened by a learned linear map (:class:`InputProjection`);
the remaining index-specific maps of the full basis (e.g. between two input-level entries of different
tensors) are left out, which keeps exact equivariance.

Convolutional networks (the "channel version" of DWS): a chain of convolutions, global average pooling
and a linear head has the same neuron levels (input channels, the hidden channels of each convolution,
classes), and a channel permutation acts on ``conv{m}.weight (c_{m+1}, c_m, k, k)`` exactly as a neuron
permutation on an MLP weight whose entries carry ``k * k`` features (the kernel). :class:`EntryLift`
maps every tensor's entry features to one common width by a per-tensor linear map (elementwise in the
neuron axes, hence equivariant), after which the MLP layers apply unchanged.
"""
from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import Tensor, nn

Weights = list[Tensor]
Biases = list[Tensor]
Reduction = Literal["mean", "max"]


def pool(t: Tensor, dims: int | tuple[int, ...], reduction: Reduction = "mean") -> Tensor:
    """Mean or max of ``t`` over the neuron axes ``dims`` (both commute with permutations of them)."""
    if reduction == "max":
        return t.amax(dims)
    return t.mean(dims)


def neuron_features(ws: Weights, bs: Biases, fixed_io: bool = False, reduction: Reduction = "mean"
                    ) -> list[Tensor]:
    """Per level ``l = 0..L``: features ``(B, n_l, k_l)`` of its neurons (see module docstring).

    With ``fixed_io``, a neuron of the first hidden level also sees its whole incoming weight row (the
    input axis is never permuted, so it may be flattened into features) and a neuron of the last
    hidden level its whole outgoing weight column: these are the index-specific maps of the DWS basis
    for the unpermuted input and output levels. ``reduction`` pools the edges of a neuron by their
    mean or their maximum (the official code's default is the maximum).
    """
    num = len(ws)
    out = []
    for level in range(num + 1):
        parts = []
        if level > 0:
            parts += [pool(ws[level - 1], 2, reduction), bs[level - 1]]
            if fixed_io and level == 1 and num > 1:
                parts.append(ws[0].flatten(2))
        if level < num:
            parts.append(pool(ws[level], 1, reduction))
            if fixed_io and level == num - 1 and level > 0:
                parts.append(ws[level].transpose(1, 2).flatten(2))
        out.append(torch.cat(parts, dim=-1))
    return out


def global_features(ws: Weights, bs: Biases, reduction: Reduction = "mean") -> Tensor:
    """``(B, 2 L C)``: every tensor pooled over its neuron axes."""
    return torch.cat([pool(w, (1, 2), reduction) for w in ws] + [pool(b, 1, reduction) for b in bs], dim=-1)


def level_width(level: int, sizes: tuple[int, ...], c: int, fixed_io: bool) -> int:
    """Width of :func:`neuron_features` of ``level`` for MLP ``sizes`` and ``c`` features per entry."""
    num = len(sizes) - 1
    width = (2 if level > 0 else 0) + (1 if level < num else 0)
    if fixed_io and level == 1 and num > 1:
        width += sizes[0]
    if fixed_io and level == num - 1 and level > 0:
        width += sizes[-1]
    return width * c


class DWSLayer(nn.Module):
    """One equivariant linear layer from ``c_in`` to ``c_out`` features per weight / bias entry.

    Args:
        sizes: widths of the MLP levels it reads (after any input projection).
        c_in: input features per entry.
        c_out: output features per entry.
        fixed_io: add the maps that flatten the unpermuted input / output axes (see
            :func:`neuron_features`).
        reduction: pooling over neuron axes, ``mean`` or ``max``.
    """

    def __init__(self, sizes: tuple[int, ...], c_in: int, c_out: int, fixed_io: bool = True,
                 reduction: Reduction = "mean"):
        super().__init__()
        num_layers = len(sizes) - 1
        self.num_layers = num_layers
        self.fixed_io = fixed_io
        self.reduction = reduction
        g = 2 * num_layers * c_in
        width = [level_width(lv, sizes, c_in, fixed_io) for lv in range(num_layers + 1)]
        self.w_self = nn.ModuleList(nn.Linear(c_in, c_out) for _ in range(num_layers))
        self.w_rows = nn.ModuleList(nn.Linear(width[m + 1], c_out, bias=False) for m in range(num_layers))
        self.w_cols = nn.ModuleList(nn.Linear(width[m], c_out, bias=False) for m in range(num_layers))
        self.w_glob = nn.ModuleList(nn.Linear(g, c_out, bias=False) for _ in range(num_layers))
        self.b_self = nn.ModuleList(nn.Linear(c_in, c_out) for _ in range(num_layers))
        self.b_rows = nn.ModuleList(nn.Linear(width[m + 1], c_out, bias=False) for m in range(num_layers))
        self.b_glob = nn.ModuleList(nn.Linear(g, c_out, bias=False) for _ in range(num_layers))

    def forward(self, ws: Weights, bs: Biases) -> tuple[Weights, Biases]:
        feats = neuron_features(ws, bs, self.fixed_io, self.reduction)
        glob = global_features(ws, bs, self.reduction)
        new_w, new_b = [], []
        for m in range(self.num_layers):
            rows = self.w_rows[m](feats[m + 1])[:, :, None]
            cols = self.w_cols[m](feats[m])[:, None]
            new_w.append(self.w_self[m](ws[m]) + rows + cols + self.w_glob[m](glob)[:, None, None])
            new_b.append(self.b_self[m](bs[m]) + self.b_rows[m](feats[m + 1])
                         + self.b_glob[m](glob)[:, None])
        return new_w, new_b


class InputProjection(nn.Module):
    """Learned linear map of the (unpermuted) input axis of ``W_0``: ``n_0 -> dim`` (e.g. 784 -> 64).

    Input neurons are never permuted, so any linear map along that axis keeps equivariance; it makes
    the first layer's weight tensor small enough for the following DWS layers.
    """

    def __init__(self, n_in: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(n_in, dim, bias=False)
        nn.init.normal_(self.proj.weight, std=1.0 / n_in ** 0.5)

    def forward(self, w0: Tensor) -> Tensor:
        """``(B, n_1, n_0, C) -> (B, n_1, dim, C)``."""
        return self.proj(w0.transpose(2, 3)).transpose(2, 3)


class EntryLift(nn.Module):
    """Per-tensor linear map of the feature axis to ``dim`` features: weight tensor ``m`` from
    ``weight_features[m]`` (e.g. the ``k * k`` entries of a convolution kernel, 1 for a linear layer),
    every bias from 1.

    It acts on each entry separately (elementwise in the neuron axes), so it commutes with every neuron
    permutation; it gives tensors whose entries carry different numbers of features a common width.
    """

    def __init__(self, weight_features: tuple[int, ...], dim: int):
        super().__init__()
        self.w = nn.ModuleList(nn.Linear(f, dim, bias=False) for f in weight_features)
        self.b = nn.ModuleList(nn.Linear(1, dim, bias=False) for _ in weight_features)

    def forward(self, ws: Weights, bs: Biases) -> tuple[Weights, Biases]:
        return [lin(w) for lin, w in zip(self.w, ws)], [lin(b) for lin, b in zip(self.b, bs)]


class DWSEncoder(nn.Module):
    """A stack of :class:`DWSLayer` with ReLU in between (the Siamese ``F_DWS`` of Deep-Align).

    Args:
        sizes: MLP level widths ``(n_0, ..., n_L)``.
        hidden: features per entry in the hidden DWS layers.
        depth: number of DWS layers.
        out: features per entry of the output.
        input_proj: projected input width (0 keeps ``n_0``).
        fixed_io: use the input / output index-specific maps (see :func:`neuron_features`).
        reduction: pooling over neuron axes in every layer, ``mean`` or ``max``.
        weight_features: features per entry of each weight tensor (``k * k`` for a convolution); when
            given, an :class:`EntryLift` first maps every tensor to ``hidden`` features. Empty: every
            entry is one scalar (MLPs) and the first layer reads it directly.
    """

    def __init__(self, sizes: tuple[int, ...], hidden: int, depth: int, out: int, input_proj: int = 0,
                 fixed_io: bool = True, reduction: Reduction = "mean", weight_features: tuple[int, ...] = ()):
        super().__init__()
        self.input_proj = InputProjection(sizes[0], input_proj) if input_proj else None
        self.lift = EntryLift(weight_features, hidden) if weight_features else None
        self.sizes = ((input_proj,) if input_proj else sizes[:1]) + tuple(sizes[1:])
        dims = [hidden if self.lift is not None else 1] + [hidden] * (depth - 1) + [out]
        self.layers = nn.ModuleList(DWSLayer(self.sizes, a, b, fixed_io, reduction)
                                    for a, b in itertools.pairwise(dims))

    def forward(self, ws: Weights, bs: Biases) -> tuple[Weights, Biases]:
        if self.lift is not None:
            ws, bs = self.lift(ws, bs)
        if self.input_proj is not None:
            ws = [self.input_proj(ws[0])] + list(ws[1:])
        for i, layer in enumerate(self.layers):
            ws, bs = layer(ws, bs)
            if i < len(self.layers) - 1:
                ws, bs = [torch.relu(w) for w in ws], [torch.relu(b) for b in bs]
        return ws, bs
