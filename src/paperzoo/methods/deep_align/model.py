"""Deep-Align: ``F = F_proj o F_prod o F_V->A o F_DWS`` (Navon et al., ICML 2024).

* ``F_DWS`` (:class:`~paperzoo.methods.deep_align.dws.DWSEncoder`) maps each network's weights to
  equivariant features; the same encoder reads both networks (Siamese).
* ``F_V->A`` turns them into one feature vector per hidden neuron: the neuron features of its level
  (bias channels, the weight features pooled over the neuron's incoming and outgoing edges, and, next
  to the unpermuted input / output levels, the whole incoming row / outgoing column), through a
  per-level MLP.
* ``F_prod``: per hidden level, ``S[i, j] = s^2 <a_i/|a_i|, a'_j/|a'_j|>`` (learned scale ``s``).
* ``F_proj``: Sinkhorn in training (soft permutations), Hungarian at inference.

The same model aligns the CNN zoo (stride-2 convolutions, global average pooling, linear head): its
weight space is an MLP weight space over channels whose convolution entries carry ``k * k`` features
(see :mod:`~paperzoo.methods.deep_align.dws`); :func:`layer_keys` and :func:`level_sizes` give either
architecture's tensors and levels.

Symmetries (tested exactly): ``F(g.v, g'.v') = g F(v, v') g'^T`` (encoder equivariance),
``F(v, v') = F(v', v)^T`` (symmetric similarity), and ``Hungarian(F(v, g.v)) = g^{-1}`` whenever the
neurons of ``v`` have pairwise distinct features (the diagonal of cosine 1 is the unique optimum).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from paperzoo.methods.deep_align.dws import DWSEncoder, Reduction, level_width, neuron_features
from paperzoo.methods.deep_align.matching import hungarian, log_sinkhorn
from paperzoo.methods.deep_align.nets import Arch, MLPArch, Params
from paperzoo.methods.deep_align.perm import NetworkMismatchError, Perms


def layer_keys(arch: Arch) -> list[tuple[str, str]]:
    """``(weight key, bias key)`` of every layer in order: ``layer{m}`` for an MLP; ``conv{m}`` and then
    ``fc`` for a CNN. Layer ``m`` maps level ``m`` to level ``m + 1``."""
    if isinstance(arch, MLPArch):
        return [(f"layer{m}.weight", f"layer{m}.bias") for m in range(arch.num_layers)]
    convs = [(f"conv{m}.weight", f"conv{m}.bias") for m in range(len(arch.channels))]
    return convs + [("fc.weight", "fc.bias")]


def level_sizes(arch: Arch) -> tuple[int, ...]:
    """Neurons per level: MLP widths, or input channels, the channels of every convolution, classes."""
    if isinstance(arch, MLPArch):
        return arch.sizes
    return (arch.in_channels, *arch.channels, arch.num_classes)


def split_params(params: Params, keys: list[tuple[str, str]]) -> tuple[list[Tensor], list[Tensor]]:
    """Batched parameters -> ``W_m (B, n_{m+1}, n_m, f_m)`` and ``b_m (B, n_{m+1}, 1)``, where ``f_m`` is
    the number of entries behind one (row, column) pair: ``k * k`` for a convolution, 1 for a linear map."""
    ws = [params[w].reshape(*params[w].shape[:3], -1) for w, _ in keys]
    bs = [params[b].unsqueeze(-1) for _, b in keys]
    return ws, bs


class DeepAlign(nn.Module):
    """Siamese equivariant alignment network for the MLPs or CNNs of architecture ``arch``.

    Args:
        arch: the architecture of the zoo (:class:`MLPArch` or :class:`CNNArch`).
        hidden: DWS hidden features (paper: 64).
        depth: number of DWS layers (paper: 4).
        out_dim: per-neuron feature size of ``F_V->A`` (paper: 128).
        input_proj: width of the learned projection of the input axis (0: none; used only when smaller
            than the input width, never for CNNs, whose input level is a handful of image channels).
        init_scale: initial ``s^2`` of the similarity.
        reduction: pooling over neuron axes in the encoder and ``F_V->A``, ``max`` (the official code's
            default, as :class:`~paperzoo.methods.deep_align.config.DeepAlignConfig`) or ``mean``.
    """

    def __init__(self, arch: Arch, hidden: int = 64, depth: int = 4, out_dim: int = 128,
                 input_proj: int = 64, init_scale: float = 10.0, reduction: Reduction = "max"):
        super().__init__()
        self.arch = arch
        self.reduction = reduction
        self.layer_keys = layer_keys(arch)
        num = arch.num_layers
        sizes = level_sizes(arch)
        shapes = arch.shapes()
        # entries per (row, column) pair of each weight tensor; lifted to `hidden` features only when some
        # exceed 1 (convolution kernels), so MLPs go into the first DWS layer as single scalars
        entries = tuple(math.prod(shapes[w][2:]) for w, _ in self.layer_keys)
        proj = input_proj if isinstance(arch, MLPArch) and input_proj and input_proj < sizes[0] else 0
        self.encoder = DWSEncoder(sizes, hidden, depth, hidden, proj, reduction=reduction,
                                  weight_features=entries if max(entries) > 1 else ())
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(level_width(lv, self.encoder.sizes, hidden, True), out_dim), nn.ReLU(),
                          nn.Linear(out_dim, out_dim))
            for lv in range(1, num))
        self.log_s = nn.Parameter(torch.tensor(0.5 * math.log(init_scale)))
        self.register_buffer("w_scale", torch.ones(num))
        self.register_buffer("b_scale", torch.ones(num))

    @torch.no_grad()
    def fit_scales(self, params: Params) -> None:
        """Normalise every weight / bias tensor by its standard deviation over a (training) zoo."""
        self.arch.check(params, name="fit_scales zoo")
        for m, (w, b) in enumerate(self.layer_keys):
            self.w_scale[m] = params[w].std().clamp_min(1e-8)
            self.b_scale[m] = params[b].std().clamp_min(1e-8)

    def tensor_scales(self) -> dict[str, Tensor]:
        """Parameter key -> the zoo scale of that tensor (see :meth:`fit_scales`)."""
        out = {}
        for m, (w, b) in enumerate(self.layer_keys):
            out[w], out[b] = self.w_scale[m], self.b_scale[m]
        return out

    def neuron_embeddings(self, params: Params) -> list[Tensor]:
        """``F_V->A o F_DWS``: per hidden level ``(B, n_l, out_dim)``. ``params`` (batched) must be networks
        of the architecture the model was built for (names, shapes; the message names the tensor)."""
        self.arch.check(params, name="input networks", finite=False)
        ws, bs = split_params(params, self.layer_keys)
        ws = [w / self.w_scale[m].to(w.dtype) for m, w in enumerate(ws)]
        bs = [b / self.b_scale[m].to(b.dtype) for m, b in enumerate(bs)]
        ws, bs = self.encoder(ws, bs)
        feats = neuron_features(ws, bs, fixed_io=True, reduction=self.reduction)
        return [head(feats[lv + 1]) for lv, head in enumerate(self.heads)]

    def similarity(self, a: Params | list[Tensor], b: Params | list[Tensor]) -> list[Tensor]:
        """``F_prod``: per hidden level ``(B, n_l, n_l)`` scaled cosine similarities between neurons of
        ``a`` (rows) and ``b`` (columns); either may be given as precomputed :meth:`neuron_embeddings`."""
        scale = self.log_s.exp() ** 2
        for label, side in (("network a", a), ("network b", b)):
            if isinstance(side, dict):
                self.arch.check(side, name=label, finite=False)
        if isinstance(a, dict) and isinstance(b, dict):
            # one encoder pass over both sides (the encoder has no batch-coupled layers, so this is
            # the Siamese pair exactly, with half the per-call overhead)
            n = next(iter(a.values())).shape[0]
            joint = self.neuron_embeddings({k: torch.cat([a[k], b[k]]) for k in a})
            emb_a, emb_b = [e[:n] for e in joint], [e[n:] for e in joint]
        else:
            emb_a = a if isinstance(a, list) else self.neuron_embeddings(a)
            emb_b = b if isinstance(b, list) else self.neuron_embeddings(b)
        levels = len(self.heads)
        if len(emb_a) != levels or len(emb_b) != levels:
            raise NetworkMismatchError(f"similarity: embeddings of {len(emb_a)} and {len(emb_b)} hidden levels; "
                                       f"the model has {levels}")
        out = []
        for ea, eb in zip(emb_a, emb_b, strict=True):
            ea = ea / ea.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            eb = eb / eb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            out.append(scale * ea @ eb.transpose(1, 2))
        return out

    def soft_perms(self, a: Params | list[Tensor], b: Params | list[Tensor], iters: int = 20,
                   tau: float = 1.0, implicit: bool = False) -> list[Tensor]:
        """Log doubly-stochastic matrices (Sinkhorn of the similarities), per hidden level; ``implicit``
        differentiates Sinkhorn's fixed point instead of its unrolled iterations (see
        :func:`~paperzoo.methods.deep_align.matching.log_sinkhorn`)."""
        return [log_sinkhorn(s, iters, tau, implicit) for s in self.similarity(a, b)]

    @torch.no_grad()
    def align(self, a: Params, b: Params) -> list[Perms]:
        """Hungarian alignment of each ``b[i]`` to ``a[i]`` (batched parameters).

        Both batches must be networks of the architecture the model was built for, with the same number
        of networks and finite values: otherwise :class:`~.perm.NetworkMismatchError` names the tensor
        and the expected and actual shapes."""
        self.arch.check(a, name="network a")
        self.arch.check(b, name="network b")
        na, nb = next(iter(a.values())).shape[0], next(iter(b.values())).shape[0]
        if na != nb:
            raise NetworkMismatchError(f"align: {na} networks in a but {nb} in b (pairs a[i], b[i])")
        sims = self.similarity(a, b)
        return [{f"P{lv}": hungarian(s[i]) for lv, s in enumerate(sims)} for i in range(sims[0].shape[0])]
