"""Tests of HGSampling (paperzoo.methods.hgt.sampler)."""
from __future__ import annotations

import pytest
import torch

from paperzoo.data.hetero import HeteroGraph, synthetic_temporal
from paperzoo.methods.hgt.sampler import HGSampler, _budget_update, build_csr, csr_neighbors


@pytest.fixture(scope="module")
def graph():
    return synthetic_temporal(num_papers=300, seed=0).add_reverse_edges()


def _tiny(with_reverse: bool = False) -> HeteroGraph:
    # papers 0..3 (years 2000, 2001, 2002, 2010), authors 0..2
    edges = {
        ("paper", "rev_writes", "author"): torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 2]]),
        ("paper", "cites", "paper"): torch.tensor([[0, 0, 1], [2, 3, 0]]),
    }
    g = HeteroGraph("tiny", {"paper": 4, "author": 3}, edges,
                    node_time={"paper": torch.tensor([2000, 2001, 2002, 2010])})
    return g.validate()


def _pairs(sub, et):
    s, _, d = et
    e = sub.edge_index_dict[et]
    return set(zip(sub.node_ids[s][e[0]].tolist(), sub.node_ids[d][e[1]].tolist()))


def _brute_induced(g, sub, et):
    s, _, d = et
    S, D = set(sub.node_ids[s].tolist()), set(sub.node_ids[d].tolist())
    return {(a, b) for a, b in g.edges[et].t().tolist() if a in S and b in D}


# ---------------------------------------------------------------------------------- helpers
def test_csr_neighbors_match_edge_list():
    e = torch.tensor([[2, 0, 2, 1, 2], [5, 3, 1, 4, 0]])
    rowptr, col = build_csr(e, 4)
    nbr, owner, deg = csr_neighbors(rowptr, col, torch.tensor([2, 3, 0]))
    assert deg.tolist() == [3, 0, 1]
    assert sorted(nbr[owner == 0].tolist()) == [0, 1, 5]
    assert nbr[owner == 2].tolist() == [3]


def test_budget_update_normalized_degree_and_inherited_time():
    e = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 2]])  # paper -> author
    rowptr, col = build_csr(e, 3)
    score = torch.zeros(3, dtype=torch.float64)
    btime = torch.full((3,), torch.iinfo(torch.long).min)
    in_sub = torch.zeros(3, dtype=torch.bool)
    in_sub[2] = True  # already sampled authors get no budget
    _budget_update(score, btime, in_sub, rowptr, col, torch.tensor([0, 1]),
                   torch.tensor([2000, 2001]), None, 2001)
    assert score.tolist() == [0.5, 1.0, 0.0]
    assert btime[:2].tolist() == [2000, 2001]  # inherited: max over introducers


# ---------------------------------------------------------------------------------- tiny graph
def test_initial_budget_hand_computed():
    s = HGSampler(_tiny(), sampled_depth=1, sampled_number=10, seed=0)
    b = s.initial_budget("paper", torch.tensor([0, 1]))
    ids, score, t = b["author"]
    assert ids.tolist() == [0, 1, 2]
    assert torch.allclose(score, torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64))
    assert t.tolist() == [2000, 2001, 2001]
    # papers 2 (2002) and 3 (2010) are later than the latest target (2001); paper 0 is a target
    assert b["paper"][0].numel() == 0
    b = HGSampler(_tiny(), time_aware=False, seed=0).initial_budget("paper", torch.tensor([0, 1]))
    assert b["paper"][0].tolist() == [2, 3]
    assert b["paper"][1].tolist() == [0.5, 0.5]


def test_all_candidates_taken_when_budget_is_small():
    g = _tiny()
    sub = HGSampler(g, sampled_depth=1, sampled_number=10, time_aware=False, seed=0).sample(
        "paper", torch.tensor([1, 0]))
    assert sub.node_ids["paper"].tolist() == [1, 0, 2, 3]
    assert sorted(sub.node_ids["author"].tolist()) == [0, 1, 2]
    assert sub.target_local.tolist() == [0, 1]
    for et in g.edges:
        assert _pairs(sub, et) == _brute_induced(g, sub, et)
    assert _pairs(sub, ("paper", "cites", "paper")) == {(0, 2), (0, 3), (1, 0)}
    sub = HGSampler(g, sampled_depth=1, sampled_number=10, time_aware=True, seed=0).sample(
        "paper", torch.tensor([1, 0]))
    assert sub.node_ids["paper"].tolist() == [1, 0]
    assert sub.node_time["author"].max() <= 2001


def test_probability_proportional_to_squared_budget():
    # budget {author0: 0.5, author1: 1.0, author2: 0.5} -> P(author1 first) = 1 / 1.5 = 2/3
    s = HGSampler(_tiny(), sampled_depth=1, sampled_number=1, seed=0)
    n, hits = 1000, 0
    for _ in range(n):
        sub = s.sample("paper", torch.tensor([0, 1]))
        assert sub.node_ids["author"].numel() == 1
        hits += int(sub.node_ids["author"][0]) == 1
    assert abs(hits / n - 2 / 3) < 0.06


# ---------------------------------------------------------------------------------- synthetic
def test_targets_first_and_counts_bounded(graph):
    depth, k = 2, 16
    s = HGSampler(graph, sampled_depth=depth, sampled_number=k, seed=0)
    targets = torch.tensor([250, 3, 77, 120, 5])
    sub = s.sample("paper", targets)
    assert torch.equal(sub.node_ids["paper"][: len(targets)], targets)
    assert torch.equal(sub.node_ids["paper"][sub.target_local], targets)
    for nt, ids in sub.node_ids.items():
        assert ids.numel() == torch.unique(ids).numel()
        bound = depth * k + (len(targets) if nt == "paper" else 0)
        assert ids.numel() <= bound
        assert sub.node_time[nt].shape == ids.shape
    assert sub.node_ids["author"].numel() > 0


def test_edges_exist_and_induced_subgraph_complete(graph):
    s = HGSampler(graph, sampled_depth=2, sampled_number=24, seed=1)
    sub = s.sample("paper", torch.arange(100, 132))
    assert set(sub.edge_index_dict) == set(graph.edges)
    total = 0
    for et in graph.edges:
        got = _pairs(sub, et)
        assert len(got) == sub.edge_index_dict[et].shape[1]  # no duplicates
        assert got == _brute_induced(graph, sub, et)
        total += len(got)
    assert total > 0


def test_seed_determinism(graph):
    targets = torch.arange(200, 232)

    def run(seed):
        return HGSampler(graph, sampled_depth=2, sampled_number=16, seed=seed).sample("paper", targets)

    a, b, c = run(7), run(7), run(8)
    for nt in graph.num_nodes:
        assert torch.equal(a.node_ids[nt], b.node_ids[nt])
    for et in graph.edges:
        assert torch.equal(a.edge_index_dict[et], b.edge_index_dict[et])
    assert any(not torch.equal(a.node_ids[nt], c.node_ids[nt]) for nt in graph.num_nodes)
    # an explicit generator overrides the sampler's own
    s = HGSampler(graph, sampled_depth=2, sampled_number=16, seed=0)
    d = s.sample("paper", targets, generator=torch.Generator().manual_seed(3))
    e = s.sample("paper", targets, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(d.node_ids[nt], e.node_ids[nt]) for nt in graph.num_nodes)


def test_time_aware_no_future_nodes(graph):
    years = graph.node_time["paper"]
    targets = (years <= 2009).nonzero().flatten()[-40:]
    tmax = int(years[targets].max())
    sub = HGSampler(graph, sampled_depth=3, sampled_number=32, seed=0).sample("paper", targets)
    assert int(years[sub.node_ids["paper"]].max()) <= tmax
    assert torch.equal(sub.node_time["paper"], years[sub.node_ids["paper"]])
    for nt, t in sub.node_time.items():
        if t.numel():
            assert int(t.max()) <= tmax
    assert sub.info["time_threshold"] == tmax
    # without time awareness later papers do show up (the reverse citations reach them)
    loose = HGSampler(graph, sampled_depth=3, sampled_number=32, time_aware=False, seed=0)
    sub = loose.sample("paper", targets)
    assert int(years[sub.node_ids["paper"]].max()) > tmax


def test_explicit_target_times_and_no_times():
    g = _tiny()
    s = HGSampler(g, sampled_depth=1, sampled_number=10, seed=0)
    sub = s.sample("paper", torch.tensor([0, 1]), target_times=torch.tensor([2005, 2005]))
    assert sorted(sub.node_ids["paper"].tolist()) == [0, 1, 2]  # 2002 <= 2005 < 2010
    assert sub.node_time["paper"][:2].tolist() == [2005, 2005]
    untimed = HeteroGraph("u", dict(g.num_nodes), dict(g.edges))
    sub = HGSampler(untimed, sampled_depth=1, sampled_number=10, seed=0).sample(
        "paper", torch.tensor([0, 1]))
    assert all(t is None for t in sub.node_time.values())
    assert sub.time_dict == {}
    assert sorted(sub.node_ids["paper"].tolist()) == [0, 1, 2, 3]


def test_bad_targets_rejected():
    s = HGSampler(_tiny(), seed=0)
    with pytest.raises(ValueError):
        s.sample("paper", torch.tensor([0, 0]))
    with pytest.raises(ValueError):
        s.sample("paper", torch.tensor([9]))
    with pytest.raises(KeyError):
        s.sample("venue", torch.tensor([0]))
