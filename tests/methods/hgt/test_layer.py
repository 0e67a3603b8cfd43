import math

import pytest
import torch
from torch.nn import functional as F

from paperzoo.methods.hgt.layer import HGTLayer, RelTemporalEncoding, segment_softmax

NODE_TYPES = ["paper", "author"]
EDGE_TYPES = [("author", "writes", "paper"), ("paper", "cites", "paper"), ("paper", "rev_writes", "author")]


def _graph(n_paper=6, n_author=4, dim=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = {
        "paper": torch.randn(n_paper, dim, generator=g, dtype=dtype),
        "author": torch.randn(n_author, dim, generator=g, dtype=dtype),
    }
    writes = torch.tensor([[0, 0, 1, 2, 3, 3, 1], [0, 1, 1, 2, 3, 4, 5]])
    cites = torch.tensor([[1, 2, 3, 4, 5, 5, 0], [0, 0, 1, 1, 2, 3, 4]])
    edges = {EDGE_TYPES[0]: writes, EDGE_TYPES[1]: cites, EDGE_TYPES[2]: writes.flip(0)}
    times = {
        "paper": torch.tensor([2010, 2011, 2012, 2012, 2013, 2015]),
        "author": torch.tensor([2008, 2009, 2010, 2011]),
    }
    return x, edges, times


def _layer(dim=8, out_dim=8, heads=2, seed=0, **kw):
    torch.manual_seed(seed)
    layer = HGTLayer(dim, out_dim, NODE_TYPES, EDGE_TYPES, heads, **kw).double()
    with torch.no_grad():  # move priors and skips off their initial values so they matter
        layer.mu.uniform_(0.5, 1.5)
        layer.skip.uniform_(-1.0, 1.0)
    return layer


def test_permuting_nodes_permutes_outputs():
    x, edges, times = _graph()
    layer = _layer(use_rte=True, dropout=0.0).eval()
    perm = {"paper": torch.randperm(6, generator=torch.Generator().manual_seed(1)),
            "author": torch.randperm(4, generator=torch.Generator().manual_seed(2))}
    inv = {k: torch.argsort(p) for k, p in perm.items()}  # inv[old index] = new index
    x_p = {k: v[perm[k]] for k, v in x.items()}
    t_p = {k: v[perm[k]] for k, v in times.items()}
    e_p = {et: torch.stack([inv[et[0]][ei[0]], inv[et[2]][ei[1]]]) for et, ei in edges.items()}
    # Edge order shuffled too: the layer must not depend on it.
    e_p = {et: ei[:, torch.arange(ei.size(1) - 1, -1, -1)] for et, ei in e_p.items()}
    out = layer(x, edges, times)
    out_p = layer(x_p, e_p, t_p)
    for k in x:
        torch.testing.assert_close(out_p[k], out[k][perm[k]])


def test_single_type_matches_dense_attention():
    torch.manual_seed(3)
    n, dim, heads = 5, 6, 3
    d = dim // heads
    layer = HGTLayer(dim, dim, ["n"], [("n", "to", "n")], heads, use_norm=False).double().eval()
    with torch.no_grad():
        layer.mu.uniform_(0.5, 2.0)
        layer.skip.fill_(0.3)
    x = torch.randn(n, dim, dtype=torch.float64)
    adj = torch.tensor([[0, 1, 1, 0, 0],  # adj[s, t] = 1: edge s -> t (node 4 receives nothing)
                        [1, 0, 1, 0, 0],
                        [0, 1, 1, 1, 0],
                        [1, 0, 0, 0, 0],
                        [0, 0, 1, 1, 0]], dtype=torch.bool)
    edge_index = adj.nonzero().t()
    out = layer({"n": x}, {("n", "to", "n"): edge_index})["n"]

    # Independent dense computation.
    Wq, bq = layer.q_lin[0].weight, layer.q_lin[0].bias
    Wk, bk = layer.k_lin[0].weight, layer.k_lin[0].bias
    Wv, bv = layer.v_lin[0].weight, layer.v_lin[0].bias
    Q = (x @ Wq.T + bq).view(n, heads, d)
    K = (x @ Wk.T + bk).view(n, heads, d)
    V = (x @ Wv.T + bv).view(n, heads, d)
    agg = torch.zeros(n, heads, d, dtype=torch.float64)
    for h in range(heads):
        Katt = K[:, h] @ layer.w_att[0, h]  # (n, d), row s
        Vmsg = V[:, h] @ layer.w_msg[0, h]
        scores = (Q[:, h] @ Katt.T) * layer.mu[0, h] / math.sqrt(d)  # scores[t, s]
        scores = scores.masked_fill(~adj.T, float("-inf"))
        for t in range(n):
            if adj[:, t].any():
                agg[t, h] = torch.softmax(scores[t], 0) @ Vmsg
    alpha = torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))
    A = layer.a_lin[0]
    expected = alpha * (F.gelu(agg.reshape(n, dim)) @ A.weight.T + A.bias) + (1 - alpha) * x
    torch.testing.assert_close(out, expected)


def test_attention_normalised_across_edge_types():
    x, edges, _ = _graph()
    layer = _layer(dropout=0.0).eval()
    out, att = layer(x, edges, return_attention=True)
    assert set(att) == set(edges)
    sums = torch.zeros(6, 2, dtype=torch.float64)
    per_type = {}
    for et in [EDGE_TYPES[0], EDGE_TYPES[1]]:  # both enter "paper"
        assert att[et].shape == (edges[et].size(1), 2)
        s = torch.zeros(6, 2, dtype=torch.float64).index_add_(0, edges[et][1], att[et])
        per_type[et] = s
        sums += s
    has_in = torch.zeros(6, dtype=torch.bool)
    has_in[torch.cat([edges[EDGE_TYPES[0]][1], edges[EDGE_TYPES[1]][1]])] = True
    torch.testing.assert_close(sums[has_in], torch.ones(int(has_in.sum()), 2, dtype=torch.float64))
    # Paper 1 has incoming edges of both types, so neither type alone sums to one.
    assert (per_type[EDGE_TYPES[0]][1] < 1 - 1e-6).all() and (per_type[EDGE_TYPES[1]][1] < 1 - 1e-6).all()
    a = torch.zeros(4, 2, dtype=torch.float64).index_add_(0, edges[EDGE_TYPES[2]][1], att[EDGE_TYPES[2]])
    torch.testing.assert_close(a, torch.ones(4, 2, dtype=torch.float64))


def test_rte_depends_only_on_time_differences():
    x, edges, times = _graph()
    edges = {et: ei for et, ei in edges.items() if et != EDGE_TYPES[2]}  # authors are only sources
    layer = _layer(use_rte=True, dropout=0.0).eval()
    base = layer(x, edges, times)
    shifted = layer(x, edges, {k: v + 37 for k, v in times.items()})
    for k in x:
        torch.testing.assert_close(shifted[k], base[k])
    # Without times the layer runs, and RTE does change the result.
    no_time = layer(x, edges)
    assert not torch.allclose(no_time["paper"], base["paper"])

    # Move author 3 in time: only the papers it writes (3 and 4) change.
    t2 = {k: v.clone() for k, v in times.items()}
    t2["author"][3] -= 5
    moved = layer(x, edges, t2)
    changed = ~torch.isclose(moved["paper"], base["paper"], rtol=0, atol=1e-12).all(1)
    assert changed.nonzero().flatten().tolist() == [3, 4]
    torch.testing.assert_close(moved["author"], base["author"], rtol=0, atol=0)


def test_rte_table_and_range():
    rte = RelTemporalEncoding(6, max_len=10)
    assert "table" in dict(rte.named_buffers()) and "table" not in dict(rte.named_parameters())
    t, j = 7, 1
    w = 10000 ** (-2 * j / 6)
    assert rte.table[t, 2 * j].item() == pytest.approx(math.sin(t * w) / math.sqrt(6), abs=1e-6)
    assert rte.table[t, 2 * j + 1].item() == pytest.approx(math.cos(t * w) / math.sqrt(6), abs=1e-6)
    x = torch.zeros(2, 6)
    rte.eval()
    torch.testing.assert_close(rte(x, torch.tensor([7, 0])), rte.lin(rte.table[[7, 0]]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        rte(x, torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        rte(x, torch.tensor([-1, 0]))
    layer = _layer(use_rte=True, max_time=20)
    x, edges, times = _graph()
    times = {"paper": times["paper"], "author": times["author"] - 30}
    with pytest.raises(ValueError, match="time differences"):
        layer(x, edges, times)


def test_gradients_reach_every_parameter():
    x, edges, times = _graph()
    layer = _layer(use_rte=True, dropout=0.1).train()
    x = {k: v.requires_grad_() for k, v in x.items()}
    out = layer(x, edges, times)
    (sum((o * torch.randn_like(o)).sum() for o in out.values())).backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(v.grad is not None for v in x.values())


def test_shapes_without_skip_and_without_edges():
    x, edges, _ = _graph()
    layer = _layer(dim=8, out_dim=12, heads=3).eval()
    out = layer(x, edges)
    assert out["paper"].shape == (6, 12) and out["author"].shape == (4, 12)
    # A type that is nobody's target keeps a defined output (the update with agg = 0).
    only_writes = {EDGE_TYPES[0]: edges[EDGE_TYPES[0]]}
    out = layer(x, only_writes)
    assert set(out) == {"paper", "author"}
    # in_dim != out_dim: no skip term, so every author is LN(A_author(GELU(0))) = LN(bias of A_author)
    i = layer.node_index["author"]
    expected = layer.norms[i](layer.a_lin[i].bias).expand(4, -1)
    torch.testing.assert_close(out["author"], expected, rtol=1e-12, atol=1e-12)
    # Empty edge index is fine.
    out = layer(x, {EDGE_TYPES[0]: torch.zeros(2, 0, dtype=torch.long)})
    assert out["paper"].shape == (6, 12)


def test_clear_errors():
    x, edges, times = _graph()
    layer = _layer()
    with pytest.raises(KeyError, match="unknown node type"):
        layer({**x, "venue": torch.zeros(2, 8, dtype=torch.float64)}, edges)
    with pytest.raises(KeyError, match="unknown edge type"):
        layer(x, {("paper", "writes", "author"): edges[EDGE_TYPES[2]]})
    bad = dict(edges)
    bad[EDGE_TYPES[0]] = torch.tensor([[0, 4], [0, 1]])  # only 4 authors
    with pytest.raises(IndexError, match="source indices"):
        layer(x, bad)
    bad[EDGE_TYPES[0]] = torch.tensor([[0, 1], [-1, 1]])
    with pytest.raises(IndexError, match="target indices"):
        layer(x, bad)
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        layer(x, {EDGE_TYPES[0]: torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="expected"):
        layer({"paper": torch.zeros(6, 5), "author": x["author"]}, edges)
    with pytest.raises(KeyError, match="needs features"):
        layer({"paper": x["paper"]}, edges)
    with pytest.raises(ValueError, match="divisible"):
        HGTLayer(8, 10, NODE_TYPES, EDGE_TYPES, heads=3)
    with pytest.raises(ValueError, match="known node types"):
        HGTLayer(8, 8, NODE_TYPES, [("paper", "in", "venue")], heads=2)
    rte_layer = _layer(use_rte=True)
    with pytest.raises(KeyError, match="time_dict"):
        rte_layer(x, edges, {"paper": times["paper"]})


def test_segment_softmax_matches_dense():
    logits = torch.randn(7, 2, dtype=torch.float64) * 50
    index = torch.tensor([0, 2, 0, 2, 2, 3, 0])
    out = segment_softmax(logits, index, 5)
    for g in range(5):
        m = index == g
        if m.any():
            torch.testing.assert_close(out[m], torch.softmax(logits[m], 0))
