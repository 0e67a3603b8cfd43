"""Sparse graph operators of DGP: hop-distance groups, in-normalisation, GCN normalisation."""
import pytest
import torch

from paperzoo.methods.dgp.graph import (
    GraphError,
    all_ancestor_pairs,
    ancestor_distances,
    gcn_norm,
    hop_groups,
    in_norm,
)

# A small hand-made hierarchy (child -> parent):
#            0
#          /   \
#         1     2
#        / \     \
#       3   4     |
#        \       /
#         5 ----'        5 has two parents: 3 and 2
#         |
#         6
#         |
#         7
N = 8
EDGES = torch.tensor([[1, 2, 3, 4, 5, 5, 6, 7],
                      [0, 0, 1, 1, 3, 2, 5, 6]])

# Shortest upward hop distances, worked out by hand: node -> {ancestor: distance}.
# 5 reaches 0 in 2 hops through 2 (3 hops through 3 -> 1), hence 6 -> 0 is 3 and 7 -> 0 is 4.
HAND_DISTANCES = {
    0: {0: 0},
    1: {1: 0, 0: 1},
    2: {2: 0, 0: 1},
    3: {3: 0, 1: 1, 0: 2},
    4: {4: 0, 1: 1, 0: 2},
    5: {5: 0, 3: 1, 2: 1, 1: 2, 0: 2},
    6: {6: 0, 5: 1, 3: 2, 2: 2, 1: 3, 0: 3},
    7: {7: 0, 6: 1, 5: 2, 3: 3, 2: 3, 1: 4, 0: 4},
}


def as_set(pairs):
    return {(int(a), int(b)) for a, b in pairs.T}


def test_hop_groups_equal_hand_bfs_distances():
    groups = hop_groups(EDGES, N, max_hop=4)
    assert [as_set(g) for g in groups] == [
        {(v, v) for v in range(N)},
        {(1, 0), (2, 0), (3, 1), (4, 1), (5, 3), (5, 2), (6, 5), (7, 6)},
        {(3, 0), (4, 0), (5, 1), (5, 0), (6, 3), (6, 2), (7, 5)},
        {(6, 1), (6, 0), (7, 3), (7, 2)},
        {(7, 1), (7, 0)},
    ]
    # no pair twice, sorted by node then ancestor as documented
    for g in groups:
        keys = (g[0] * N + g[1]).tolist()
        assert keys == sorted(set(keys))


def test_hop_groups_merge_distances_beyond_max_hop():
    groups = hop_groups(EDGES, N, max_hop=2)
    assert len(groups) == 3
    assert as_set(groups[2]) == {(v, a) for v, d in HAND_DISTANCES.items() for a, k in d.items() if k >= 2}
    assert as_set(groups[1]) == {(v, a) for v, d in HAND_DISTANCES.items() for a, k in d.items() if k == 1}


def test_hop_groups_without_merging_drop_far_pairs():
    groups = hop_groups(EDGES, N, max_hop=2, merge_far=False)
    assert len(groups) == 3
    assert as_set(groups[2]) == {(v, a) for v, d in HAND_DISTANCES.items() for a, k in d.items() if k == 2}


def test_ancestor_distances_and_all_pairs_match_hand_table():
    pairs, dist = ancestor_distances(EDGES, N)
    got = {(int(v), int(a)): int(k) for (v, a), k in zip(pairs.T, dist)}
    assert got == {(v, a): k for v, d in HAND_DISTANCES.items() for a, k in d.items()}
    assert as_set(all_ancestor_pairs(EDGES, N)) == set(got)


def test_duplicate_edges_and_cycles_terminate():
    dup = torch.cat([EDGES, EDGES[:, :3]], dim=1)
    assert [as_set(g) for g in hop_groups(dup, N)] == [as_set(g) for g in hop_groups(EDGES, N)]
    cycle = torch.tensor([[0, 1, 2], [1, 2, 0]])
    groups = hop_groups(cycle, 3, max_hop=4)
    assert as_set(groups[1]) == {(0, 1), (1, 2), (2, 0)}
    assert as_set(groups[2]) == {(0, 2), (1, 0), (2, 1)}
    assert [g.shape[1] for g in groups[3:]] == [0, 0]


def dense_relation(pairs, n):
    m = torch.zeros(n, n, dtype=torch.float64)
    m[pairs[0], pairs[1]] = 1.0
    return m


def row_normalise(m):
    s = m.sum(1, keepdim=True)
    return torch.where(s > 0, m / s.clamp(min=1e-30), torch.zeros_like(m))


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_in_norm_matches_dense_averages(layout):
    for pairs in hop_groups(EDGES, N, max_hop=4) + [all_ancestor_pairs(EDGES, N)]:
        rel = dense_relation(pairs, N)  # rel[node, ancestor]
        up = in_norm(pairs, N, "up", dtype=torch.float64, layout=layout).to_dense()
        down = in_norm(pairs, N, "down", dtype=torch.float64, layout=layout).to_dense()
        torch.testing.assert_close(up, row_normalise(rel.T))
        torch.testing.assert_close(down, row_normalise(rel))
    g1, g2 = hop_groups(EDGES, N, max_hop=4)[1:3]
    up1 = in_norm(g1, N, "up").to_dense()
    assert up1[0].tolist() == [0, 0.5, 0.5, 0, 0, 0, 0, 0]  # the root averages its two children
    assert up1[7].abs().sum() == 0  # a leaf has no descendants: zero row
    down2 = in_norm(g2, N, "down").to_dense()
    assert down2[5].tolist() == [0.5, 0.5, 0, 0, 0, 0, 0, 0]  # 5's ancestors at distance 2: 0 and 1
    assert down2[0].abs().sum() == 0


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_gcn_norm_matches_dense_formulas(layout):
    a = torch.zeros(N, N, dtype=torch.float64)
    a[EDGES[0], EDGES[1]] = 1.0
    sym_a = ((a + a.T) > 0).double() + torch.eye(N, dtype=torch.float64)
    d = sym_a.sum(1).rsqrt()
    expected = d[:, None] * sym_a * d[None, :]
    got = gcn_norm(EDGES, N, mode="sym", dtype=torch.float64, layout=layout).to_dense()
    torch.testing.assert_close(got, expected)
    got_in = gcn_norm(EDGES, N, mode="in", dtype=torch.float64, layout=layout).to_dense()
    torch.testing.assert_close(got_in, row_normalise(sym_a))
    # directed, no self-loops: each parent averages its children (messages flow child -> parent)
    directed = gcn_norm(EDGES, N, mode="in", self_loops=False, symmetric=False, dtype=torch.float64)
    torch.testing.assert_close(directed.to_dense(), row_normalise(a.T))


def test_bad_edges_raise_one_clear_error():
    with pytest.raises(GraphError, match=r"edges: column 2 = \(3, 9\) has a node index outside \[0, 8\)"):
        hop_groups(torch.tensor([[1, 2, 3], [0, 0, 9]]), N)
    with pytest.raises(ValueError, match=r"edges: expected shape \(2, E\)"):
        gcn_norm(torch.zeros(3, 4, dtype=torch.long), N)
    with pytest.raises(ValueError, match="pairs: expected an integer tensor"):
        in_norm(torch.zeros(2, 4), N, "up")
    with pytest.raises(ValueError, match="direction"):
        in_norm(EDGES, N, "sideways")
    with pytest.raises(ValueError, match="max_hop"):
        hop_groups(EDGES, N, max_hop=0)
