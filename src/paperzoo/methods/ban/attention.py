"""Bilinear attention and low-rank bilinear pooling (Kim, Jun, Zhang, NeurIPS 2018, eqs. 3-9).

Notation: ``v`` holds the visual objects ``X`` (batch, V boxes, d_x), ``q`` the question tokens ``Y``
(batch, Q tokens, d_y), ``G`` the glimpses, ``K`` the rank of the attention's joint space.

Bilinear attention map (eq. 9), per glimpse ``g``::

    logit_g[i, j] = p_g^T ( ReLU(U^T x_i) o ReLU(V^T y_j) ) + b_g
    A_g = softmax over ALL (i, j) pairs of logit_g   (masked pairs excluded)

Written as ``(ReLU(U^T x) o p_g) @ ReLU(V^T y)^T``: a batched matrix product per glimpse, so the
(batch, V, Q, K) tensor of all joint pairs is never formed; the largest intermediate is the
(batch, G, min(V, Q), K) side scaled by ``p_g`` (see :func:`bilinear_logits`).

Bilinear pooling per glimpse (eq. 6), with its own projections ``U'``, ``V'`` (rank ``K'``)::

    f_g[k] = sum_ij A_g[i, j] ReLU(U'^T x_i)_k ReLU(V'^T y_j)_k  =  sum_j (A_g^T ReLU(U'^T x))[j, k] ReLU(V'^T y)[j, k]

again without the (batch, V, Q, K') tensor. :func:`naive_bilinear_logits` and :func:`naive_bilinear_pool`
materialise it; the tests and ``benchmarks/ban`` compare the two.

Masks: boxes whose feature row is all zero are empty (the official code's rule; ``v_mask`` overrides
it) and padded question tokens (``q_mask``) are excluded from the softmax: their attention is exactly 0
and a sample's map sums to 1 over its valid (box, token) pairs.

Following the official code (``jnhwkim/ban-vqa``), all linear maps are weight-normalised with one scalar
gain per matrix (``weight_norm(dim=None)``), ``U``/``V`` are ``dropout -> linear -> ReLU`` blocks, the
attention's visual side gets an extra dropout, and the rank of the attention space is ``3 x hidden``
(``rank_multiplier``) while the pooling's rank is ``hidden``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def wn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """A linear layer with weight normalisation, one gain for the whole matrix (the official ``dim=None``)."""
    return weight_norm(nn.Linear(in_features, out_features, bias=bias), dim=None)


class FCNet(nn.Module):
    """``dropout -> weight-normed linear -> activation`` (the official FCNet; ``act=None`` = linear)."""

    def __init__(self, in_features: int, out_features: int, act: str | None = "relu", dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = wn_linear(in_features, out_features)
        self.act = {"relu": nn.ReLU(), None: nn.Identity()}[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(self.drop(x)))


def empty_box_mask(v: torch.Tensor) -> torch.Tensor:
    """(batch, V) bool, True on real boxes: those whose feature row is not all zero (the official rule)."""
    return v.abs().sum(-1) != 0


def pair_mask(v_mask: torch.Tensor | None, q_mask: torch.Tensor | None, shape: tuple[int, int, int],
              device: torch.device) -> torch.Tensor | None:
    """(batch, 1, V, Q) bool, True on valid (box, token) pairs, or None when nothing is masked."""
    b, nv, nq = shape
    if v_mask is None and q_mask is None:
        return None
    vm = v_mask if v_mask is not None else torch.ones(b, nv, dtype=torch.bool, device=device)
    qm = q_mask if q_mask is not None else torch.ones(b, nq, dtype=torch.bool, device=device)
    return (vm[:, :, None] & qm[:, None, :])[:, None]


def masked_joint_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax of (batch, G, V, Q) logits jointly over each glimpse's V x Q pairs; masked pairs get exactly
    0. A sample with no valid pair gets an all-zero map (not NaN)."""
    b, g, nv, nq = logits.shape
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    att = torch.softmax(logits.reshape(b, g, nv * nq), dim=-1).reshape(b, g, nv, nq)
    if mask is not None:
        att = att.masked_fill(~mask, 0.0)  # also turns the NaN of an all-masked sample into 0
    return att


def bilinear_logits(v_: torch.Tensor, q_: torch.Tensor, p: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``logit[b, g, i, j] = sum_k v_[b, i, k] p[g, k] q_[b, j, k] + bias[g]`` without the (b, V, Q, K)
    tensor: ``p`` scales the side with fewer rows, then one batched matrix product.

    ``v_`` (b, V, K) and ``q_`` (b, Q, K) are the rank-K projections ReLU(U^T x), ReLU(V^T y); ``p`` is
    (G, K) and ``bias`` (G,)."""
    b, nv, k = v_.shape
    nq = q_.size(1)
    g = p.size(0)
    if nq <= nv:  # scale the token side: (b, G*Q, K) then (b, V, K) @ (b, K, G*Q)
        qp = (q_[:, None] * p[None, :, None, :]).reshape(b, g * nq, k)
        logits = torch.bmm(v_, qp.transpose(1, 2)).reshape(b, nv, g, nq).permute(0, 2, 1, 3)
    else:  # scale the box side: (b, G*V, K) @ (b, K, Q)
        vp = (v_[:, None] * p[None, :, None, :]).reshape(b, g * nv, k)
        logits = torch.bmm(vp, q_.transpose(1, 2)).reshape(b, g, nv, nq)
    return logits + bias.view(1, g, 1, 1)


def naive_bilinear_logits(v_: torch.Tensor, q_: torch.Tensor, p: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """:func:`bilinear_logits` the literal way: the joint (b, V, Q, K) tensor of all pairs, then ``p_g``."""
    joint = v_[:, :, None, :] * q_[:, None, :, :]  # (b, V, Q, K)
    return torch.einsum("bvqk,gk->bgvq", joint, p) + bias.view(1, -1, 1, 1)


def bilinear_pool(v_: torch.Tensor, att: torch.Tensor, q_: torch.Tensor) -> torch.Tensor:
    """``f[b, k] = sum_ij att[b, i, j] v_[b, i, k] q_[b, j, k]`` (eq. 6) as ``((att^T v_) o q_).sum(j)``:
    (b, V, K), (b, V, Q), (b, Q, K) -> (b, K), never forming (b, V, Q, K)."""
    return (torch.bmm(att.transpose(1, 2), v_) * q_).sum(1)


def naive_bilinear_pool(v_: torch.Tensor, att: torch.Tensor, q_: torch.Tensor) -> torch.Tensor:
    """:func:`bilinear_pool` through the materialised (b, V, Q, K) joint tensor."""
    joint = v_[:, :, None, :] * q_[:, None, :, :]
    return (att[..., None] * joint).sum((1, 2))


class BilinearAttentionMap(nn.Module):
    """The G glimpses' bilinear attention maps ``A_g`` over (box, token) pairs (eq. 9).

    ``forward(v, q, v_mask=None, q_mask=None) -> (att, logits)``, both (batch, G, V, Q); ``att`` sums
    to 1 over each glimpse's valid pairs, ``logits`` are the masked pre-softmax scores (``-inf`` on
    masked pairs). ``naive=True`` computes the logits through the materialised joint tensor (for tests
    and the benchmark; same parameters, same result)."""

    def __init__(self, v_dim: int, q_dim: int, hidden: int, glimpses: int, rank_multiplier: int = 3,
                 dropout: float = 0.2, attention_dropout: float = 0.5, naive: bool = False):
        super().__init__()
        rank = hidden * rank_multiplier
        self.glimpses, self.rank, self.naive = glimpses, rank, naive
        self.v_net = FCNet(v_dim, rank, dropout=dropout)
        self.q_net = FCNet(q_dim, rank, dropout=dropout)
        self.drop = nn.Dropout(attention_dropout) if attention_dropout > 0 else nn.Identity()
        # p_g and b_g; the official code draws both from N(0, 1) and weight-normalises p as one matrix
        self.p = nn.Parameter(torch.randn(glimpses, rank))
        self.p_gain = nn.Parameter(self.p.detach().norm())
        self.bias = nn.Parameter(torch.randn(glimpses))

    def projections(self, v: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ReLU(U^T x) (with the attention dropout) and ReLU(V^T y): (b, V, K), (b, Q, K)."""
        return self.drop(self.v_net(v)), self.q_net(q)

    def p_matrix(self) -> torch.Tensor:
        """The (G, K) matrix of the p_g, weight-normalised as one matrix."""
        return self.p * (self.p_gain / self.p.norm())

    def forward(self, v: torch.Tensor, q: torch.Tensor, v_mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if v_mask is None:
            v_mask = empty_box_mask(v)
        v_, q_ = self.projections(v, q)
        fn = naive_bilinear_logits if self.naive else bilinear_logits
        logits = fn(v_, q_, self.p_matrix(), self.bias)
        mask = pair_mask(v_mask, q_mask, (v.size(0), v.size(1), q.size(1)), v.device)
        att = masked_joint_softmax(logits, mask)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return att, logits


class BilinearPooling(nn.Module):
    """One glimpse's low-rank bilinear pooling ``f = sum_ij A[i, j] ReLU(U'^T x_i) o ReLU(V'^T y_j)``
    (eq. 6): (b, V, d_x), (b, Q, d_y), (b, V, Q) -> (b, hidden)."""

    def __init__(self, v_dim: int, q_dim: int, hidden: int, dropout: float = 0.2, naive: bool = False):
        super().__init__()
        self.v_net = FCNet(v_dim, hidden, dropout=dropout)
        self.q_net = FCNet(q_dim, hidden, dropout=dropout)
        self.naive = naive

    def forward(self, v: torch.Tensor, q: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        fn = naive_bilinear_pool if self.naive else bilinear_pool
        return fn(self.v_net(v), att, self.q_net(q))


def attention_entropy(att: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each glimpse's map, (b, G, V, Q) -> (G,) summed over the batch (the official
    training log's attention entropy)."""
    p = att.flatten(2)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1).sum(0)


__all__ = [
    "BilinearAttentionMap",
    "BilinearPooling",
    "FCNet",
    "attention_entropy",
    "bilinear_logits",
    "bilinear_pool",
    "empty_box_mask",
    "masked_joint_softmax",
    "naive_bilinear_logits",
    "naive_bilinear_pool",
    "pair_mask",
    "wn_linear",
]
