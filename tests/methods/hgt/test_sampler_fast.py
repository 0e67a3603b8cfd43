"""The numpy ``HGSampler`` equals the straightforward torch computation (the sampler as first
written, rebuilt here from the tested helpers ``build_csr`` / ``csr_neighbors`` /
``_budget_update``, one edge type at a time): same budgets (float64, 1e-10) and, with the same
generator seed, the same subgraphs."""
from __future__ import annotations

import pytest
import torch

from paperzoo.data.hetero import synthetic_temporal
from paperzoo.methods.hgt.sampler import (_NO_TIME, HGSampler, _budget_update, build_csr,
                                          csr_neighbors)


class ReferenceSampler:
    def __init__(self, graph, depth, number, time_aware):
        self.n = dict(graph.num_nodes)
        self.time = {nt: t.long() for nt, t in graph.node_time.items()}
        self.depth, self.k, self.time_aware = depth, number, time_aware
        self.csr = {et: build_csr(e, self.n[et[0]]) for et, e in graph.edges.items()}

    def _expand(self, st, nt, ids, times, threshold):
        for et, (rowptr, col) in self.csr.items():
            if et[0] == nt:
                d = et[2]
                _budget_update(st["score"][d], st["btime"][d], st["in"][d], rowptr, col, ids, times,
                               self.time.get(d) if st["use_time"] else None, threshold)

    def _add(self, st, nt, ids, times):
        st["in"][nt][ids] = True
        st["score"][nt][ids] = 0.0
        st["ids"][nt].append(ids)
        st["times"][nt].append(times)

    def start(self, target, ids):
        times = self.time.get(target)
        times = times[ids] if times is not None else None
        use_time = times is not None
        threshold = int(times.max()) if self.time_aware and use_time else None
        st = {"use_time": use_time,
              "score": {nt: torch.zeros(n, dtype=torch.float64) for nt, n in self.n.items()},
              "btime": {nt: torch.full((n,), _NO_TIME, dtype=torch.long) for nt, n in self.n.items()},
              "in": {nt: torch.zeros(n, dtype=torch.bool) for nt, n in self.n.items()},
              "ids": {nt: [] for nt in self.n}, "times": {nt: [] for nt in self.n}}
        self._add(st, target, ids, times)
        self._expand(st, target, ids, times, threshold)
        return st, threshold

    def sample(self, target, ids, gen):
        st, threshold = self.start(target, ids)
        for _ in range(self.depth):
            for nt in self.n:
                cand = (st["score"][nt] > 0).nonzero().flatten()
                if cand.numel() == 0 or self.k == 0:
                    continue
                if cand.numel() > self.k:
                    p = st["score"][nt][cand] ** 2
                    cand = cand[torch.multinomial(p, self.k, replacement=False, generator=gen)]
                times = st["btime"][nt][cand] if st["use_time"] else None
                self._add(st, nt, cand, times)
                self._expand(st, nt, cand, times, threshold)
        node_ids = {nt: torch.cat(p) if p else torch.empty(0, dtype=torch.long) for nt, p in st["ids"].items()}
        edges = {}
        for et, (rowptr, col) in self.csr.items():
            s, _, d = et
            local = torch.full((self.n[d],), -1, dtype=torch.long)
            local[node_ids[d]] = torch.arange(node_ids[d].numel())
            nbr, owner, _ = csr_neighbors(rowptr, col, node_ids[s])
            dl = local[nbr]
            edges[et] = torch.stack([owner[dl >= 0], dl[dl >= 0]])
        times = ({nt: torch.cat(t) if t else torch.empty(0, dtype=torch.long) for nt, t in st["times"].items()}
                 if st["use_time"] else None)
        return node_ids, times, edges


@pytest.fixture(scope="module")
def graph():
    g = synthetic_temporal(num_papers=400, num_venues=5, seed=3).add_reverse_edges()
    return g


@pytest.mark.parametrize("time_aware", [False, True])
def test_initial_budget_equals_reference(graph, time_aware):
    ids = torch.tensor([5, 77, 120, 399, 250])
    fast = HGSampler(graph, 2, 16, time_aware=time_aware).initial_budget("paper", ids)
    st, _ = ReferenceSampler(graph, 2, 16, time_aware).start("paper", ids)
    for nt, (cand, score, btime) in fast.items():
        ref_cand = (st["score"][nt] > 0).nonzero().flatten()
        assert torch.equal(cand, ref_cand)
        torch.testing.assert_close(score, st["score"][nt][ref_cand], rtol=1e-10, atol=1e-10)
        assert torch.equal(btime, st["btime"][nt][ref_cand])


@pytest.mark.parametrize("time_aware", [False, True])
@pytest.mark.parametrize("depth,number", [(1, 8), (2, 20), (3, 50), (2, 1000)])
def test_subgraphs_equal_reference(graph, time_aware, depth, number):
    fast = HGSampler(graph, depth, number, time_aware=time_aware)
    ref = ReferenceSampler(graph, depth, number, time_aware)
    for seed in range(3):
        ids = torch.randperm(400, generator=torch.Generator().manual_seed(seed))[:12]
        sub = fast.sample("paper", ids, generator=torch.Generator().manual_seed(seed))
        node_ids, times, edges = ref.sample("paper", ids, torch.Generator().manual_seed(seed))
        for nt in node_ids:
            assert torch.equal(sub.node_ids[nt], node_ids[nt]), nt
            assert torch.equal(sub.node_time[nt], times[nt]), nt
        for et in edges:
            assert torch.equal(sub.edge_index_dict[et], edges[et]), et


def test_untimed_graph_and_untimed_target(graph):
    g = synthetic_temporal(num_papers=200, seed=1).add_reverse_edges()
    g.node_time = {}
    fast = HGSampler(g, 2, 10)
    ref = ReferenceSampler(g, 2, 10, True)
    ids = torch.tensor([0, 3, 9])
    sub = fast.sample("author", ids, generator=torch.Generator().manual_seed(0))
    node_ids, times, edges = ref.sample("author", ids, torch.Generator().manual_seed(0))
    assert times is None and all(t is None for t in sub.node_time.values())
    for nt in node_ids:
        assert torch.equal(sub.node_ids[nt], node_ids[nt])
    for et in edges:
        assert torch.equal(sub.edge_index_dict[et], edges[et])
