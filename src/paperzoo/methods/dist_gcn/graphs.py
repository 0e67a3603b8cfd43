"""The node-classification graphs of the method: Planetoid (Cora, CiteSeer) or a synthetic SBM."""
from __future__ import annotations

import os

import torch

from paperzoo.data import planetoid
from paperzoo.data.planetoid import NodeGraph


def sbm_graph(num_nodes: int = 160, num_blocks: int = 4, *, p_in: float = 0.12, p_out: float = 0.01,
              num_features: int = 32, seed: int = 0) -> NodeGraph:
    """A stochastic block model graph; a node's class is its block.

    Features are a noisy, non-negative encoding of the class (a class-specific half of the
    features is active with probability 0.3, the rest with 0.1), so that both the features and the
    graph carry signal. Per class, 20% of the nodes (at least one) are training nodes, 20% validation,
    the rest test.
    """
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(num_nodes) % num_blocks
    y = y[torch.randperm(num_nodes, generator=gen)]
    same = y[:, None] == y[None, :]
    prob = torch.where(same, torch.tensor(p_in), torch.tensor(p_out))
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=gen) < prob, diagonal=1)
    adj = upper | upper.T
    edge_index = adj.nonzero().T.contiguous()
    signal = (torch.arange(num_features)[None, :] % num_blocks) == y[:, None]
    active = torch.where(signal, torch.tensor(0.3), torch.tensor(0.1))
    x = (torch.rand(num_nodes, num_features, generator=gen) < active).float()
    splits: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for c in range(num_blocks):
        members = (y == c).nonzero().flatten().tolist()
        k = max(1, len(members) // 5)
        splits["train"] += members[:k]
        splits["valid"] += members[k:2 * k]
        splits["test"] += members[2 * k:]
    return NodeGraph(name=f"sbm{num_nodes}x{num_blocks}", x=x, y=y.long(), edge_index=edge_index,
                     splits={k: torch.tensor(sorted(v), dtype=torch.long) for k, v in splits.items()})


def load_graph(dataset: str, data_root: str | os.PathLike | None = None, *, sbm_nodes: int = 160,
               sbm_blocks: int = 4, seed: int = 0, normalize_features: bool = True) -> NodeGraph:
    """The graph named by a config (``sbm``, ``cora``, ``citeseer``), features row-normalised if asked."""
    if dataset == "sbm":
        graph = sbm_graph(sbm_nodes, sbm_blocks, seed=seed)
    else:
        graph = planetoid.load(dataset, data_root)
    if normalize_features:
        rowsum = graph.x.sum(dim=1, keepdim=True)
        x = graph.x / torch.where(rowsum > 0, rowsum, torch.ones_like(rowsum))
        graph = NodeGraph(graph.name, x, graph.y, graph.edge_index, graph.splits)
    return graph


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype = torch.float32
                         ) -> torch.Tensor:
    """The GCN propagation matrix D^-1/2 (A + I) D^-1/2 as a sparse COO tensor (centralized reference)."""
    loops = torch.arange(num_nodes).repeat(2, 1)
    idx = torch.cat([edge_index, loops], dim=1)
    deg = torch.bincount(idx[0], minlength=num_nodes).to(dtype)
    values = deg[idx[0]].rsqrt() * deg[idx[1]].rsqrt()
    return torch.sparse_coo_tensor(idx, values, (num_nodes, num_nodes), check_invariants=True).coalesce()
