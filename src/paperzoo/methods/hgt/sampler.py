"""HGSampling: the heterogeneous mini-batch sampler of HGT (Algorithm 1 of arXiv 2003.01332).

PyTorch + numpy on a :class:`~paperzoo.data.hetero.HeteroGraph`; no PyG. Adjacency is kept as one
CSR (sorted by source id) per edge type, built once in ``__init__``; every per-call step is
vectorised (numpy ``repeat``, ``add.at``, ``maximum.at``; ``torch.multinomial`` for the draw).
Python loops run only over rounds, node types and edge types. ``build_csr``, ``csr_neighbors``
and ``_budget_update`` are the same steps in torch, kept as small tested reference helpers.

Algorithm (per call)
--------------------
1. The target nodes enter the subgraph first, in the given order.
2. Budget: for every node ``u`` that enters the subgraph and every edge type ``(tau(u), r, d)``,
   each neighbour ``v`` of ``u`` via ``r`` that is not yet in the subgraph gets
   ``budget[d][v] += 1 / |N_r(u)|`` (normalized degree; the denominator counts ALL neighbours of
   ``u`` through ``r``, as the official code does).
3. ``sampled_depth`` rounds; in each, node types are visited in ``graph.node_types`` order. For a
   type with candidates: if at most ``sampled_number`` candidates, all are taken; otherwise
   ``sampled_number`` are drawn without replacement with probability proportional to
   ``budget ** 2``. The drawn nodes join the subgraph, leave the budget and expand it (step 2)
   right away, so later types in the same round already see their contribution (as upstream).
4. The induced subgraph: every edge of the graph whose two endpoints were sampled, re-indexed.

Edges are followed only in their stored direction (source -> destination). Pass a graph from
:meth:`HeteroGraph.add_reverse_edges` to walk both directions (the paper's setting).

Time handling (follows the official ``pyHGT/data.py::sample_subgraph``)
----------------------------------------------------------------------
* A neighbour of a type without ``node_time`` inherits the time of the node that introduced it;
  that inherited time is what it later passes on and what is returned for it in ``node_time``.
  Upstream overwrites it with the LAST introducer's time (order dependent); here a node's budget
  time is the MAXIMUM over its introducers, which is order-free and deterministic.
* With ``time_aware=True`` a neighbour whose (own or inherited) time is later than the batch
  threshold ``max(target_times)`` is skipped (never enters the budget). Upstream compares with
  ``max(time_range)``, the largest year of the split being sampled, which for a batch drawn from
  that split is >= ``max(target_times)``; we use the batch maximum (the tighter, per-call form).
  It is not a per-target threshold: upstream does not track which target a node descends from.

Deliberate differences from upstream
------------------------------------
* Upstream, when a node has ``>= sampled_number`` neighbours through a relation, first subsamples
  ``sampled_number`` of them uniformly and divides by that count. We add all neighbours with
  weight ``1 / |N_r(u)|`` (the paper's formulation and the brief); this only matters for hubs.
* Upstream adds a ``self`` relation to the returned edge list; we return only graph edges (the
  :class:`~paperzoo.methods.hgt.layer.HGTLayer` has its own skip connection).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from paperzoo.data.hetero import EdgeType, HeteroGraph

__all__ = ["HGSampler", "SampledSubgraph", "build_csr", "csr_neighbors", "_budget_update"]

_NO_TIME = torch.iinfo(torch.long).min


@dataclass
class SampledSubgraph:
    """One HGSampling subgraph.

    node_ids: per node type, the ORIGINAL (type-local) ids of the sampled nodes; for the target
        type the targets come first, in the given order. Every graph node type is present
        (possibly empty).
    node_time: per node type the times of the sampled nodes (own time for timed types, inherited
        time for others), or ``None`` for every type when no times are in play.
    edge_index_dict: ``(src, rel, dst) -> LongTensor (2, E)`` of all graph edges between sampled
        nodes, with subgraph-local ids (positions in ``node_ids``).
    target_type, target_local: the target node type and the local indices of the targets.
    """

    node_ids: dict[str, Tensor]
    node_time: dict[str, Tensor | None]
    edge_index_dict: dict[EdgeType, Tensor]
    target_type: str
    target_local: Tensor
    info: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> dict[str, int]:
        return {nt: int(ids.numel()) for nt, ids in self.node_ids.items()}

    @property
    def time_dict(self) -> dict[str, Tensor]:
        """Times in the form :class:`HGTLayer` expects (types without times left out)."""
        return {nt: t for nt, t in self.node_time.items() if t is not None}


# ----------------------------------------------------------------------------------- CSR helpers
def build_csr(edge_index: Tensor, num_src: int) -> tuple[Tensor, Tensor]:
    """(rowptr (num_src + 1,), col (E,)) of ``edge_index`` grouped by source id."""
    src, dst = edge_index[0], edge_index[1]
    order = torch.argsort(src, stable=True)
    col = dst[order].contiguous()
    counts = torch.bincount(src, minlength=num_src)
    rowptr = torch.zeros(num_src + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(counts, 0)
    return rowptr, col


def csr_neighbors(rowptr: Tensor, col: Tensor, nodes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All out-neighbours of ``nodes``: (neighbour ids, position of the introducing node in
    ``nodes``, out-degree of each node in ``nodes``)."""
    start = rowptr[nodes]
    deg = rowptr[nodes + 1] - start
    total = int(deg.sum())
    owner = torch.repeat_interleave(torch.arange(nodes.numel()), deg)
    if total == 0:
        return col.new_empty(0), owner, deg
    offset = torch.arange(total) - torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
    return col[start[owner] + offset], owner, deg


def _budget_update(score: Tensor, btime: Tensor, in_subgraph: Tensor, rowptr: Tensor, col: Tensor,
                   nodes: Tensor, node_times: Tensor | None, dst_time: Tensor | None,
                   threshold: int | None) -> None:
    """Add the normalized-degree contribution of ``nodes`` (one source type, one edge type) to the
    destination type's budget, in place.

    score, btime, in_subgraph: dense per-destination-node budget score (float64), budget time
        (long, ``_NO_TIME`` where unknown) and "already in the subgraph" mask.
    node_times: times of ``nodes`` (None when no times are in play).
    dst_time: the destination type's own node times (None when it has none: inherit).
    threshold: skip neighbours whose time is later (``time_aware``); None disables the check.
    """
    nbr, owner, deg = csr_neighbors(rowptr, col, nodes)
    if nbr.numel() == 0:
        return
    w = (1.0 / deg.to(torch.float64))[owner]
    keep = ~in_subgraph[nbr]
    t = None
    if node_times is not None:
        t = dst_time[nbr] if dst_time is not None else node_times[owner]
        if threshold is not None:
            keep &= t <= threshold
        t = t[keep]
    nbr, w = nbr[keep], w[keep]
    score.index_add_(0, nbr, w)
    if t is not None:
        btime.scatter_reduce_(0, nbr, t, reduce="amax", include_self=True)


# ----------------------------------------------------------------------------------- sampler
def _gather_positions(rowptr: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR positions of all out-edges of ``ids`` (grouped by node, in CSR order) and each node's
    out-degree: the numpy counterpart of :func:`csr_neighbors` without the owner array."""
    start = rowptr[ids]
    deg = rowptr[ids + 1] - start
    total = int(deg.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64), deg
    shift = start - (np.cumsum(deg) - deg)  # position - output index, constant per node
    return np.arange(total, dtype=np.int64) + np.repeat(shift, deg), deg


class HGSampler:
    """Heterogeneous mini-batch graph sampler (HGSampling).

    Parameters
    ----------
    graph: the graph (use ``graph.add_reverse_edges()`` to sample along both directions).
    sampled_depth: number of sampling rounds.
    sampled_number: nodes drawn per node type per round.
    time_aware: skip neighbours whose time is later than the latest target time.
    seed: seed of the sampler's own ``torch.Generator`` (None: nondeterministic seed).

    Implementation: the per-call work runs on numpy arrays (a subgraph is a few thousand nodes,
    so the cost is the number of array operations, and numpy's are cheaper than torch's and
    never start a thread pool). The edge types from one node type into another are merged into
    one CSR whose entries carry their normalized-degree weight ``1 / |N_r(u)|`` (computed once),
    so a budget update is one gather and one scatter-add per (source type, destination type).
    The draw itself stays ``torch.multinomial`` on the sampler's ``torch.Generator``.
    """

    def __init__(self, graph: HeteroGraph, sampled_depth: int = 2, sampled_number: int = 128,
                 time_aware: bool = True, seed: int | None = None):
        if sampled_depth < 0 or sampled_number < 0:
            raise ValueError("sampled_depth and sampled_number must be non-negative")
        self.graph = graph
        self.sampled_depth = int(sampled_depth)
        self.sampled_number = int(sampled_number)
        self.time_aware = bool(time_aware)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.num_nodes = dict(graph.num_nodes)
        self.node_time = {nt: t.long() for nt, t in graph.node_time.items()}
        self._time_np = {nt: t.numpy() for nt, t in self.node_time.items()}
        # one CSR per edge type, grouped by source node; also an index by source type
        self.csr: dict[EdgeType, tuple[Tensor, Tensor]] = {}
        self.out_types: dict[str, list[EdgeType]] = {nt: [] for nt in self.num_nodes}
        self._csr_np: dict[EdgeType, tuple[np.ndarray, np.ndarray]] = {}
        self._rev_csr_np: dict[EdgeType, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for et, e in graph.edges.items():
            rowptr, col = build_csr(e.long(), self.num_nodes[et[0]])
            self.csr[et] = (rowptr, col)
            self._csr_np[et] = (rowptr.numpy(), col.numpy())
            self.out_types[et[0]].append(et)
            # the same edges grouped by destination: (rowptr, source id, position in the source CSR)
            dst_rowptr, by_dst = build_csr(torch.stack([col, torch.arange(col.numel())]),
                                           self.num_nodes[et[2]])
            pos = by_dst.numpy()
            src_of_pos = np.repeat(np.arange(self.num_nodes[et[0]], dtype=np.int64),
                                   np.diff(rowptr.numpy()))
            self._rev_csr_np[et] = (dst_rowptr.numpy(), src_of_pos[pos], pos)
        # merged budget CSR per (source type, destination type): rowptr, col, weight per entry
        self._budget_csr: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
        for s in self.num_nodes:
            by_dst: dict[str, list[EdgeType]] = {}
            for et in self.out_types[s]:
                by_dst.setdefault(et[2], []).append(et)
            merged = []
            for d, ets in by_dst.items():
                src_parts, col_parts, w_parts = [], [], []
                for et in ets:
                    rowptr, col = self._csr_np[et]
                    deg = np.diff(rowptr)
                    src = np.repeat(np.arange(self.num_nodes[s], dtype=np.int64), deg)
                    src_parts.append(src)
                    col_parts.append(col)
                    w_parts.append(1.0 / deg[src].astype(np.float64))
                src = np.concatenate(src_parts)
                order = np.argsort(src, kind="stable")
                rowptr = np.zeros(self.num_nodes[s] + 1, dtype=np.int64)
                np.cumsum(np.bincount(src, minlength=self.num_nodes[s]), out=rowptr[1:])
                merged.append((d, rowptr, np.concatenate(col_parts)[order],
                               np.concatenate(w_parts)[order]))
            self._budget_csr[s] = merged

    # state ------------------------------------------------------------------------------
    def _new_state(self, use_time: bool) -> dict:
        st = {"score": {}, "btime": {}, "in_sub": {}, "ids": {}, "times": {}, "use_time": use_time}
        for nt, n in self.num_nodes.items():
            st["score"][nt] = np.zeros(n, dtype=np.float64)
            st["btime"][nt] = np.full(n, _NO_TIME, dtype=np.int64)
            st["in_sub"][nt] = np.zeros(n, dtype=bool)
            st["ids"][nt] = []
            st["times"][nt] = []
        return st

    def _add(self, st: dict, nt: str, ids: np.ndarray, times: np.ndarray | None) -> None:
        st["in_sub"][nt][ids] = True
        st["score"][nt][ids] = 0.0
        st["ids"][nt].append(ids)
        if times is not None:
            st["times"][nt].append(times)

    def _expand(self, st: dict, nt: str, ids: np.ndarray, times: np.ndarray | None,
                threshold: int | None) -> None:
        """Budget update (module docstring, step 2) for the nodes ``ids`` of type ``nt``."""
        for d, rowptr, col, weight in self._budget_csr[nt]:
            pos, deg = _gather_positions(rowptr, ids)
            if pos.size == 0:
                continue
            nbr = col[pos]
            keep = ~st["in_sub"][d][nbr]
            t = None
            if st["use_time"]:
                own = self._time_np.get(d)
                t = own[nbr] if own is not None else np.repeat(times, deg)
                if threshold is not None:
                    keep &= t <= threshold
                t = t[keep]
            nbr = nbr[keep]
            np.add.at(st["score"][d], nbr, weight[pos[keep]])
            if t is not None:
                np.maximum.at(st["btime"][d], nbr, t)

    def _prepare(self, target_type: str, target_ids: Tensor, target_times: Tensor | None):
        if target_type not in self.num_nodes:
            raise KeyError(f"unknown node type {target_type!r}")
        ids = torch.as_tensor(target_ids, dtype=torch.long).flatten()
        ids_np = ids.numpy().copy()
        if ids_np.size and (int(ids_np.min()) < 0 or int(ids_np.max()) >= self.num_nodes[target_type]):
            raise ValueError(f"target ids outside [0, {self.num_nodes[target_type]})")
        if np.unique(ids_np).size != ids_np.size:
            raise ValueError("target ids must be distinct")
        if target_times is None and target_type in self.node_time:
            target_times = self.node_time[target_type][ids]
        if target_times is not None:
            target_times = torch.as_tensor(target_times, dtype=torch.long).flatten()
            if target_times.shape != ids.shape:
                raise ValueError("target_times must have one entry per target id")
        use_time = target_times is not None
        threshold = (int(target_times.max()) if self.time_aware and use_time and ids.numel()
                     else None)
        st = self._new_state(use_time)
        times_np = target_times.numpy().copy() if use_time else None
        self._add(st, target_type, ids_np, times_np)
        self._expand(st, target_type, ids_np, times_np, threshold)
        return ids, target_times, st, threshold

    # public -----------------------------------------------------------------------------
    def initial_budget(self, target_type: str, target_ids: Tensor,
                       target_times: Tensor | None = None) -> dict[str, tuple[Tensor, Tensor, Tensor | None]]:
        """Debug hook: the budget right after the targets were added, per node type, as
        (candidate ids ascending, accumulated normalized degree, budget time or None)."""
        _, _, st, _ = self._prepare(target_type, target_ids, target_times)
        out = {}
        for nt in self.num_nodes:
            cand = np.flatnonzero(st["score"][nt] > 0)
            t = torch.from_numpy(st["btime"][nt][cand]) if st["use_time"] else None
            out[nt] = (torch.from_numpy(cand), torch.from_numpy(st["score"][nt][cand]), t)
        return out

    def sample(self, target_type: str, target_ids: Tensor, target_times: Tensor | None = None,
               generator: torch.Generator | None = None) -> SampledSubgraph:
        """Sample the subgraph around ``target_ids`` (see the module docstring)."""
        gen = generator if generator is not None else self.generator
        ids, target_times, st, threshold = self._prepare(target_type, target_ids, target_times)
        k = self.sampled_number
        for _ in range(self.sampled_depth):
            for nt in self.num_nodes:
                score = st["score"][nt]
                cand = np.flatnonzero(score > 0)
                if cand.size == 0 or k == 0:
                    continue
                if cand.size > k:
                    p = torch.from_numpy(score[cand] ** 2)
                    pick = cand[torch.multinomial(p, k, replacement=False, generator=gen).numpy()]
                else:
                    pick = cand
                times = st["btime"][nt][pick] if st["use_time"] else None
                self._add(st, nt, pick, times)
                self._expand(st, nt, pick, times, threshold)
        return self._induce(st, target_type, ids, threshold)

    def _induce(self, st: dict, target_type: str, target_ids: Tensor,
                threshold: int | None) -> SampledSubgraph:
        node_ids, node_time, local = {}, {}, {}
        for nt, n in self.num_nodes.items():
            parts = st["ids"][nt]
            ids = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
            node_ids[nt] = torch.from_numpy(ids)
            if st["use_time"]:
                tp = st["times"][nt]
                node_time[nt] = torch.from_numpy(np.concatenate(tp) if tp else np.empty(0, dtype=np.int64))
            else:
                node_time[nt] = None
            m = np.full(n, -1, dtype=np.int64)
            m[ids] = np.arange(ids.size, dtype=np.int64)
            local[nt] = m
        edges = {}
        ids_np = {nt: t.numpy() for nt, t in node_ids.items()}
        for et, (rowptr, col) in self._csr_np.items():
            s, _, d = et
            src, dst = ids_np[s], ids_np[d]
            rev_rowptr, rev_src, rev_pos = self._rev_csr_np[et]
            if int((rowptr[src + 1] - rowptr[src]).sum()) <= int((rev_rowptr[dst + 1] - rev_rowptr[dst]).sum()):
                # walk the out-edges of the sampled sources: already in the output order
                pos, deg = _gather_positions(rowptr, src)
                dl = local[d][col[pos]]
                keep = dl >= 0
                owner = np.repeat(np.arange(deg.size, dtype=np.int64), deg)
                edges[et] = torch.from_numpy(np.stack([owner[keep], dl[keep]]))
            else:
                # walk the in-edges of the sampled destinations (fewer), then restore the order of
                # the branch above: by source position in the subgraph, then by source CSR position
                rpos, deg = _gather_positions(rev_rowptr, dst)
                sl = local[s][rev_src[rpos]]
                keep = sl >= 0
                dl = np.repeat(np.arange(deg.size, dtype=np.int64), deg)[keep]
                sl = sl[keep]
                order = np.lexsort((rev_pos[rpos][keep], sl))
                edges[et] = torch.from_numpy(np.stack([sl[order], dl[order]]))
        return SampledSubgraph(node_ids, node_time, edges, target_type,
                               torch.arange(target_ids.numel()),
                               info={"time_threshold": threshold})
