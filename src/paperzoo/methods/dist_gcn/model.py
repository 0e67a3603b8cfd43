"""The two-layer GCN of Kipf & Welling, centralized and distributed over agents.

    logits = A_hat relu(A_hat (X W1) + b1) W2 + b2,   A_hat = D^-1/2 (A + I) D^-1/2

(dropout on X and on the hidden layer during training). Parameters live in one flat vector per
agent (the vector that consensus mixes); :class:`ParamLayout` views it as ``W1, b1, W2, b2``.

Distributed forward, for the agents a process hosts: agent ``a`` computes ``Z = X_a W1`` for its
own rows, receives the rows of ``Z`` its halo needs from their owners (:func:`halo_exchange`),
and multiplies by its rows of A_hat, whose columns are its own nodes then its halo; the same
again for the second layer. Only boundary rows of the narrow products ``X W1`` (hidden wide) and
``H W2`` (classes wide) travel, never features. Agent ``a``'s rows of A_hat need the degrees of
its halo nodes, which are exchanged once at setup (:func:`local_propagation`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from paperzoo.methods.dist_gcn.comm import Comm, HaloPlan, halo_exchange
from paperzoo.methods.dist_gcn.partition import LocalGraph


@dataclass(frozen=True)
class ParamLayout:
    """Shapes of ``W1 (F x H), b1 (H), W2 (H x C), b2 (C)`` inside a flat parameter vector."""

    num_features: int
    hidden: int
    num_classes: int

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [(self.num_features, self.hidden), (self.hidden,), (self.hidden, self.num_classes),
                (self.num_classes,)]

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def unflatten(self, flat: Tensor) -> list[Tensor]:
        """Views ``[W1, b1, W2, b2]`` of ``flat`` (gradients flow back to ``flat``)."""
        out, start = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(flat[start:start + n].view(shape))
            start += n
        return out

    def init(self, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Glorot-uniform weights and zero biases (Kipf & Welling), as one flat vector."""
        gen = torch.Generator().manual_seed(seed)
        parts = []
        for shape in self.shapes:
            if len(shape) == 2:
                bound = math.sqrt(6.0 / (shape[0] + shape[1]))
                parts.append((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
            else:
                parts.append(torch.zeros(shape, dtype=torch.float64))
        return torch.cat([p.flatten() for p in parts]).to(dtype)


def _dropout(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    """Inverted dropout; on a sparse COO tensor only the stored entries are dropped (Kipf's sparse
    dropout), which is what makes dropout on bag-of-words features cheap."""
    if p == 0.0 or generator is None:
        return x
    if x.is_sparse:
        keep = torch.rand(x._nnz(), generator=generator, dtype=x.dtype) >= p
        return torch.sparse_coo_tensor(x._indices(), x._values() * keep / (1.0 - p), x.shape,
                                       is_coalesced=True, check_invariants=False)
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p
    return x * keep / (1.0 - p)


def _matmul(x: Tensor, w: Tensor) -> Tensor:
    return torch.sparse.mm(x, w) if x.is_sparse else x @ w


def as_features(x: Tensor, max_density: float = 0.1) -> Tensor:
    """``x`` as a coalesced sparse COO tensor when at most ``max_density`` of it is non-zero (bag-of-words
    features), else unchanged."""
    if x.numel() and (x != 0).sum().item() <= max_density * x.numel():
        return x.to_sparse().coalesce()
    return x


def gcn_forward(adj: Tensor, x: Tensor, flat: Tensor, layout: ParamLayout, dropout: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Centralized forward: logits of every node; ``adj`` is the sparse normalised adjacency."""
    w1, b1, w2, b2 = layout.unflatten(flat)
    h = torch.relu(torch.sparse.mm(adj, _matmul(_dropout(x, dropout, generator), w1)) + b1)
    return torch.sparse.mm(adj, _dropout(h, dropout, generator) @ w2) + b2


def local_propagation(comm: Comm, graphs: Mapping[int, LocalGraph], plan: HaloPlan,
                      dtype: torch.dtype = torch.float32) -> dict[int, Tensor]:
    """Each hosted agent's rows of A_hat (sparse, n_a x (n_a + halo_a)); halo degrees are exchanged."""
    deg = {a: g.degree.to(dtype).unsqueeze(1) for a, g in graphs.items()}
    outgoing = {a: {p: deg[a].index_select(0, idx) for p, idx in plan.send_index[a].items()} for a in graphs}
    received = comm.exchange(outgoing, plan.recv_rows, 1, dtype)
    out = {}
    for a, g in graphs.items():
        halo_deg = [received[a][p] for p in plan.recv_rows[a]]
        all_deg = torch.cat([deg[a], *halo_deg]).flatten()
        values = all_deg[g.edges[0]].rsqrt() * all_deg[g.edges[1]].rsqrt()
        shape = (g.num_nodes, g.num_nodes + g.halo.numel())
        out[a] = torch.sparse_coo_tensor(g.edges, values, shape, check_invariants=True).coalesce()
    return out


def halo_plan(graphs: Mapping[int, LocalGraph]) -> HaloPlan:
    return HaloPlan({a: g.send_index for a, g in graphs.items()}, {a: g.recv_rows for a, g in graphs.items()})


def dist_forward(comm: Comm, plan: HaloPlan, adj: Mapping[int, Tensor], x: Mapping[int, Tensor],
                 params: Mapping[int, Tensor], layout: ParamLayout, dropout: float = 0.0,
                 generators: Mapping[int, torch.Generator] | None = None) -> dict[int, Tensor]:
    """Distributed forward: the logits of every hosted agent's own nodes, each agent with its own
    parameter vector ``params[a]``. Differentiable through the boundary exchanges."""
    gens = generators or {}
    weights = {a: layout.unflatten(params[a]) for a in comm.agents}
    z = {a: _matmul(_dropout(x[a], dropout, gens.get(a)), weights[a][0]) for a in comm.agents}
    halo = halo_exchange(comm, plan, z)
    h = {a: torch.relu(torch.sparse.mm(adj[a], torch.cat([z[a], halo[a]])) + weights[a][1]) for a in comm.agents}
    z2 = {a: _dropout(h[a], dropout, gens.get(a)) @ weights[a][2] for a in comm.agents}
    halo2 = halo_exchange(comm, plan, z2)
    return {a: torch.sparse.mm(adj[a], torch.cat([z2[a], halo2[a]])) + weights[a][3] for a in comm.agents}


def cross_entropy_sum(logits: Tensor, y: Tensor) -> Tensor:
    """Summed cross-entropy (0 for no rows, still attached to the graph)."""
    if y.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, y, reduction="sum")
