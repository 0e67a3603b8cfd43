"""Partitioning and topology design."""
import itertools

import numpy as np
import pytest
import torch

from paperzoo.methods.dist_gcn import graphs
from paperzoo.methods.dist_gcn import partition as P
from paperzoo.methods.dist_gcn import topology as T
from paperzoo.methods.dist_gcn.trainer import hop_counts, routed_traffic_factor


@pytest.fixture(scope="module")
def graph():
    return graphs.sbm_graph(200, 4, p_in=0.15, p_out=0.005, seed=0)


@pytest.mark.parametrize("method", ["spectral", "random", "contiguous"])
@pytest.mark.parametrize("k", [3, 4, 8])
def test_partitions_are_balanced_and_plans_consistent(graph, method, k):
    assignment = P.partition(graph, k, method, seed=2)
    sizes = np.bincount(assignment, minlength=k)
    assert sizes.sum() == graph.num_nodes and sizes.max() - sizes.min() <= 1
    local = P.build_local_graphs(graph, assignment, range(k))
    for a, g in local.items():
        # the rows agent a sends to p are exactly p's halo block from a, in the same order
        for p, idx in g.send_index.items():
            block = local[p].halo[torch.from_numpy(assignment)[local[p].halo] == a]
            assert torch.equal(g.nodes[idx], block)
            assert local[p].recv_rows[a] == idx.numel()
        assert set(g.recv_rows) == set(g.send_index)  # undirected graph: exchanges are symmetric
    stats = P.partition_stats(graph, assignment, k)
    assert stats["boundary_rows"] == sum(g.halo.numel() for g in local.values())


def test_spectral_cuts_fewer_edges_than_random(graph):
    for k in (2, 4):
        spectral = P.partition_stats(graph, P.partition(graph, k, "spectral"), k)
        random = P.partition_stats(graph, P.partition(graph, k, "random"), k)
        assert spectral["edge_cut"] < 0.5 * random["edge_cut"]
    # four planted blocks, four agents: the spectral split recovers them almost exactly
    assignment = P.partition(graph, 4, "spectral")
    purity = sum(np.bincount(graph.y.numpy()[assignment == a]).max() for a in range(4)) / graph.num_nodes
    assert purity > 0.9


@pytest.mark.parametrize("kind", ["designed", "ring", "star", "random", "complete"])
@pytest.mark.parametrize("mixing", ["metropolis", "fmmc"])
def test_mixing_matrices_are_symmetric_doubly_stochastic_and_connected(kind, mixing):
    n = 7
    cut = np.random.RandomState(0).randint(0, 50, (n, n))
    cut = np.triu(cut, 1) + np.triu(cut, 1).T
    topo = T.build_topology(kind, n, cut=cut, mixing=mixing, fmmc_steps=100, seed=1)
    w = topo.weights
    np.testing.assert_allclose(w, w.T, atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert w.min() >= -1e-12
    off = (w != 0) & ~np.eye(n, dtype=bool)
    assert {tuple(e) for e in np.argwhere(np.triu(off))} <= set(topo.links)
    assert np.isfinite(hop_counts(topo)).all()
    # spectral gap 1 - max(|lambda_2|, |lambda_n|), from an independent eigen-decomposition; positive on a
    # connected topology with a doubly stochastic mixing matrix
    moduli = np.sort(np.abs(np.linalg.eigvals(w)))
    assert topo.gap == pytest.approx(1 - moduli[-2], abs=1e-9) and topo.gap > 1e-3
    if kind != "complete":
        assert len(topo.links) == n  # the ring's link count


def test_fmmc_never_worse_than_metropolis_and_beats_it_on_a_path():
    path = [(i, i + 1) for i in range(5)]
    mh = T.spectral_gap(T.metropolis_weights(6, path))
    fm = T.spectral_gap(T.fastest_mixing_weights(6, path, 400))
    assert fm > mh + 0.01
    # known optimum for a path of n nodes: uniform weights 1/2, lambda_2 = cos(pi / n)
    assert 1 - fm == pytest.approx(np.cos(np.pi / 6), abs=0.02)


def _symmetric_cut(n: int, heavy: dict, seed: int = 0, light: int = 5) -> np.ndarray:
    cut = np.random.RandomState(seed).randint(0, light, (n, n))
    cut = np.triu(cut, 1) + np.triu(cut, 1).T
    for (i, j), c in heavy.items():
        cut[i, j] = cut[j, i] = c
    return cut


def _is_hamiltonian_cycle(n: int, links: list) -> bool:
    deg = np.bincount(np.asarray(links).ravel(), minlength=n)
    topo = T.Topology("x", links, T.metropolis_weights(n, links), "metropolis")
    return len(links) == n and (deg == 2).all() and np.isfinite(hop_counts(topo)).all()


def test_designed_links_follow_the_data_graph():
    # the heavy pairs form the cycle 0-3-1-4-2-5-0, which a ring by agent id misses entirely
    order = [0, 3, 1, 4, 2, 5]
    cut = _symmetric_cut(6, {(order[k], order[(k + 1) % 6]): 100 + k for k in range(6)})
    links = T.designed_links(cut, 6)
    assert links == sorted(tuple(sorted((order[k], order[(k + 1) % 6]))) for k in range(6))
    designed = T.Topology("designed", links, T.metropolis_weights(6, links), "metropolis")
    ring = T.Topology("ring", T.ring_links(6), T.metropolis_weights(6, T.ring_links(6)), "metropolis")
    assert designed.gap == pytest.approx(ring.gap)          # same shape, so the same spectrum ...
    assert routed_traffic_factor(cut, designed) < routed_traffic_factor(cut, ring)   # ... but data-matched
    # N - 1 links: the maximum spanning tree of the cut counts
    tree = T.designed_links(cut, 5)
    assert len(tree) == 5 and set(tree) <= set(links)
    # more links than a cycle: the cycle is kept and every extra link improves the mixing
    more = T.designed_links(cut, 8)
    assert set(links) <= set(more) and len(more) == 8
    assert T.spectral_gap(T.metropolis_weights(6, more)) > designed.gap
    with pytest.raises(ValueError, match="needs between 5 and 15 links"):
        T.designed_links(cut, 4)


@pytest.mark.parametrize("n", [4, 7, 8])
def test_heaviest_cycle_is_exact_on_small_graphs(n):
    cut = _symmetric_cut(n, {}, seed=n, light=100)
    order = T.heaviest_cycle(cut)
    assert sorted(order) == list(range(n))
    brute = max(T._cycle_weight(cut, [0, *p]) for p in itertools.permutations(range(1, n)))
    assert T._cycle_weight(cut, order) == brute


def test_heaviest_cycle_local_search_on_many_agents():
    n = 16
    order = list(np.random.RandomState(3).permutation(n))
    cut = _symmetric_cut(n, {(order[k], order[(k + 1) % n]): 1000 for k in range(n)}, seed=1, light=50)
    found = T.heaviest_cycle(cut)       # beyond the exact range: greedy tour + 2-opt
    links = sorted({tuple(sorted((found[k], found[(k + 1) % n]))) for k in range(n)})
    assert _is_hamiltonian_cycle(n, links)
    assert T._cycle_weight(cut, found) >= 1000 * n      # it finds the planted heavy cycle's weight


def test_disagreement_cost_sums_the_averaging_series():
    n = 6
    links = T.random_links(n, 7, seed=2)
    w = T.metropolis_weights(n, links)
    h = np.random.RandomState(0).randn(n, 3)
    hc = h - h.mean(0)
    # sum_t <h_c, W^t h_c>: the disagreement repeated averaging leaves, accumulated over rounds
    series, power = 0.0, np.eye(n)
    for _ in range(4000):
        series += float((hc * (power @ hc)).sum())
        power = power @ w
    assert T.disagreement_cost(w, h) == pytest.approx(series, rel=1e-8)
    # isotropic heterogeneity: Kemeny's constant sum_k 1 / (1 - lambda_k)
    vals = np.linalg.eigvalsh(w)[:-1]
    assert T.disagreement_cost(w, np.eye(n)) == pytest.approx(float((1 / (1 - vals)).sum()))
    assert T.disagreement_cost(T.metropolis_weights(n, [(0, 1), (2, 3), (4, 5)]), h) == float("inf")


def test_designed_links_mix_the_heterogeneous_agents_first():
    n = 8
    cut = _symmetric_cut(n, {}, seed=4, light=30)
    # two camps whose gradients pull apart: agents 0-3 and 4-7 (a ring by id joins them twice)
    h = np.repeat([[1.0, 0.5], [-1.0, -0.5]], 4, axis=0) + 0.01 * np.random.RandomState(1).randn(n, 2)
    links = T.designed_links(cut, n, h, proposals=1500, seed=0)
    assert len(links) == n and T._is_connected(n, links)
    assert links == T.designed_links(cut, n, h, proposals=1500, seed=0)       # deterministic
    cost = T.disagreement_cost(T.metropolis_weights(n, links), h)
    for start in (T.cut_cycle_links(cut, n), T.ring_links(n)):
        assert cost < T.disagreement_cost(T.metropolis_weights(n, start), h)
    across = sum((i < 4) != (j < 4) for i, j in links)
    assert across > sum((i < 4) != (j < 4) for i, j in T.ring_links(n))
    # the same budget rules as without heterogeneity; N - 1 links give a spanning tree
    tree = T.designed_links(cut, n - 1, h, proposals=500)
    assert len(tree) == n - 1 and T._is_connected(n, tree)
    with pytest.raises(ValueError, match="needs between 7 and 28 links"):
        T.designed_links(cut, 6, h)
