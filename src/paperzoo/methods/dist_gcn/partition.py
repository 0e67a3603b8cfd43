"""Splitting a graph over agents, and what each agent then holds.

Partitioners return ``assignment``: an int64 array, the agent of every node, with part sizes as
equal as possible (they differ by at most one node):

- :func:`spectral_partition`: recursive bisection along the second eigenvector of the regularised
  normalised adjacency D_t^-1/2 (A + t/n 11^T) D_t^-1/2 (t = mean degree; the regulariser keeps the
  eigenvector informative on graphs with many components, like Cora's 78), each cut at the
  size-proportional quantile. A METIS-like balanced min-cut heuristic without multilevel coarsening.
- :func:`random_partition`: a seeded random balanced assignment (the worst case for communication).
- :func:`contiguous_partition`: ranges of node ids (whatever order the dataset ships).

:func:`build_local_graphs` turns an assignment into each agent's :class:`LocalGraph`: its nodes'
features, labels and split, the adjacency rows of its nodes (columns = its own nodes then its halo,
the neighbours owned by other agents), and for every peer the rows it sends and receives.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from paperzoo.data.planetoid import NodeGraph

_DENSE_LIMIT = 600  # below this many nodes a dense eigendecomposition is faster than ARPACK


def contiguous_partition(num_nodes: int, num_parts: int) -> np.ndarray:
    """Node ``v`` goes to part ``floor(v * k / n)``."""
    return (np.arange(num_nodes, dtype=np.int64) * num_parts) // max(num_nodes, 1)


def random_partition(num_nodes: int, num_parts: int, seed: int = 0) -> np.ndarray:
    """A uniformly random balanced assignment."""
    perm = np.random.RandomState(seed).permutation(num_nodes)
    out = np.empty(num_nodes, dtype=np.int64)
    out[perm] = contiguous_partition(num_nodes, num_parts)
    return out


def _second_eigenvector(edges: np.ndarray, n: int) -> np.ndarray:
    """The eigenvector of the second-largest eigenvalue of the regularised normalised adjacency."""
    deg = np.bincount(edges[0], minlength=n).astype(np.float64)
    tau = max(deg.mean(), 1e-3)
    inv_sqrt = 1.0 / np.sqrt(deg + tau)
    if n <= _DENSE_LIMIT:
        a = np.zeros((n, n))
        a[edges[0], edges[1]] = 1.0
        m = inv_sqrt[:, None] * (a + tau / n) * inv_sqrt[None, :]
        _, vecs = np.linalg.eigh(m)
        vec = vecs[:, -2]
    else:
        import scipy.sparse as sp
        from scipy.sparse.linalg import LinearOperator, eigsh

        a = sp.csr_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(n, n))

        def matvec(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v).reshape(-1)
            s = inv_sqrt * v
            return inv_sqrt * (a @ s + tau / n * s.sum())

        op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        v0 = np.random.RandomState(0).rand(n)
        vals, vecs = eigsh(op, k=2, which="LA", v0=v0, tol=1e-8)
        vec = vecs[:, int(np.argsort(vals)[0])]
    return vec * np.sign(vec[np.argmax(np.abs(vec))])  # fix the sign, for determinism


def _induced(edges: np.ndarray, nodes: np.ndarray, num_nodes: int) -> np.ndarray:
    local = np.full(num_nodes, -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    keep = (local[edges[0]] >= 0) & (local[edges[1]] >= 0)
    return local[edges[:, keep]]


def spectral_partition(edge_index: torch.Tensor, num_nodes: int, num_parts: int) -> np.ndarray:
    """Balanced recursive spectral bisection (see module docs)."""
    edges = edge_index.numpy().astype(np.int64)
    out = np.zeros(num_nodes, dtype=np.int64)

    def split(nodes: np.ndarray, first: int, parts: int) -> None:
        if parts == 1:
            out[nodes] = first
            return
        left = parts // 2
        n_left = round(len(nodes) * left / parts)
        if len(nodes) < 3:
            order = np.arange(len(nodes))
        else:
            vec = _second_eigenvector(_induced(edges, nodes, num_nodes), len(nodes))
            order = np.argsort(vec, kind="stable")
        split(nodes[np.sort(order[:n_left])], first, left)
        split(nodes[np.sort(order[n_left:])], first + left, parts - left)

    split(np.arange(num_nodes), 0, num_parts)
    return out


def partition(graph: NodeGraph, num_parts: int, method: str, seed: int = 0) -> np.ndarray:
    """The assignment of ``graph``'s nodes to ``num_parts`` agents by ``method``."""
    if num_parts > graph.num_nodes:
        raise ValueError(f"cannot split {graph.num_nodes} nodes over {num_parts} agents")
    if method == "spectral":
        return spectral_partition(graph.edge_index, graph.num_nodes, num_parts)
    if method == "random":
        return random_partition(graph.num_nodes, num_parts, seed)
    if method == "contiguous":
        return contiguous_partition(graph.num_nodes, num_parts)
    raise ValueError(f"unknown partition method {method!r}; use spectral, random or contiguous")


def cut_matrix(edge_index: torch.Tensor, assignment: np.ndarray, num_parts: int) -> np.ndarray:
    """``C[a, b]``: undirected data edges between a node of agent ``a`` and one of agent ``b`` (a != b)."""
    owner = assignment[edge_index.numpy()]
    cross = owner[0] != owner[1]
    counts = np.zeros((num_parts, num_parts), dtype=np.int64)
    np.add.at(counts, (owner[0, cross], owner[1, cross]), 1)
    return counts  # each undirected edge appears once in each direction: C is symmetric


@dataclass(frozen=True)
class LocalGraph:
    """Everything agent ``agent`` holds: its nodes, their incident edges, and its exchange plan."""

    agent: int
    nodes: torch.Tensor
    """Global ids of the agent's own nodes (sorted); local row ``r`` is node ``nodes[r]``."""
    halo: torch.Tensor
    """Global ids of the neighbours owned by other agents, grouped by owner (ascending), each group
    sorted; local column ``len(nodes) + h`` is node ``halo[h]``."""
    recv_rows: dict[int, int]
    """Peer -> number of halo rows it sends to this agent (peers in ascending order)."""
    send_index: dict[int, torch.Tensor]
    """Peer -> local rows of this agent's nodes that the peer needs (sorted by global id)."""
    edges: torch.Tensor
    """(2, nnz) local adjacency of the own rows including self-loops: row in [0, n), col in
    [0, n + h)."""
    x: torch.Tensor
    y: torch.Tensor
    splits: dict[str, torch.Tensor]
    """``train`` / ``valid`` / ``test``: local row indices of the agent's labelled nodes."""

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.numel())

    @property
    def degree(self) -> torch.Tensor:
        """Degree of every own node including its self-loop."""
        return torch.bincount(self.edges[0], minlength=self.num_nodes)

    @property
    def peers(self) -> list[int]:
        """Agents this one exchanges boundary rows with (in either direction)."""
        return sorted(set(self.recv_rows) | set(self.send_index))


def build_local_graphs(graph: NodeGraph, assignment: np.ndarray, agents: Iterable[int]
                       ) -> dict[int, LocalGraph]:
    """The :class:`LocalGraph` of each agent in ``agents`` (all of them in simulation, one per process)."""
    owner = torch.from_numpy(np.asarray(assignment, dtype=np.int64))
    src, dst = graph.edge_index
    split_of = {name: torch.zeros(graph.num_nodes, dtype=torch.bool).index_fill_(0, idx, True)
                for name, idx in graph.splits.items()}
    out = {}
    for a in agents:
        nodes = (owner == a).nonzero().flatten()
        n = nodes.numel()
        mine = owner[src] == a
        e_src, e_dst = src[mine], dst[mine]
        foreign = owner[e_dst] != a
        halo_ids = torch.unique(e_dst[foreign])  # sorted by global id
        halo_owner = owner[halo_ids]
        order = torch.argsort(halo_owner * graph.num_nodes + halo_ids)
        halo = halo_ids[order]
        peers_in = halo_owner[order]
        local = torch.full((graph.num_nodes,), -1, dtype=torch.long)
        local[nodes] = torch.arange(n)
        local[halo] = torch.arange(n, n + halo.numel())
        loops = torch.arange(n)
        edges = torch.stack([torch.cat([local[e_src], loops]), torch.cat([local[e_dst], loops])])
        recv_rows = {int(p): int(c) for p, c in zip(*torch.unique(peers_in, return_counts=True))}
        # rows peer p needs = own nodes with an edge to a node of p, sorted by global id; p's
        # halo block from this agent lists exactly these nodes in the same order
        send_index = {}
        for p in sorted(set(owner[e_dst[foreign]].tolist())):
            needed = torch.unique(e_src[foreign & (owner[e_dst] == p)])
            send_index[p] = local[needed]
        out[a] = LocalGraph(
            agent=a, nodes=nodes, halo=halo, recv_rows=recv_rows, send_index=send_index, edges=edges,
            x=graph.x[nodes], y=graph.y[nodes],
            splits={name: mask[nodes].nonzero().flatten() for name, mask in split_of.items()})
    return out


def partition_stats(graph: NodeGraph, assignment: np.ndarray, num_parts: int) -> dict[str, float]:
    """Edge cut, boundary rows (halo rows summed over agents) and balance of an assignment."""
    cut = cut_matrix(graph.edge_index, assignment, num_parts)
    owner = torch.from_numpy(np.asarray(assignment))
    src, dst = graph.edge_index
    cross = owner[src] != owner[dst]
    # a boundary row = (receiving agent, foreign node) pair
    pairs = torch.unique(owner[src[cross]] * graph.num_nodes + dst[cross])
    sizes = np.bincount(assignment, minlength=num_parts)
    return {"edge_cut": int(cut.sum() // 2), "edge_cut_fraction": float(cut.sum() / max(graph.edge_index.shape[1], 1)),
            "boundary_rows": int(pairs.numel()), "max_part": int(sizes.max()), "min_part": int(sizes.min()),
            "agent_pairs_sharing_edges": int((cut > 0).sum() // 2)}
