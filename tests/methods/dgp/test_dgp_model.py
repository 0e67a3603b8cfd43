"""The DGP graph models: dense propagation layer, ADGPM / DGP, SGCN / GCNZ, the regression loss."""
import pytest
import torch
from torch.nn import functional as F

from paperzoo.methods.dgp.graph import all_ancestor_pairs, gcn_norm, hop_groups, in_norm
from paperzoo.methods.dgp.model import (
    BUILDABLE,
    GCN,
    MODELS,
    DenseGraphConv,
    DenseGraphPropagation,
    GraphConv,
    build_model,
    regression_loss,
)

# the hierarchy of test_dgp_graph.py: 5 has two parents (3 and 2), depth 5
N = 8
EDGES = torch.tensor([[1, 2, 3, 4, 5, 5, 6, 7],
                      [0, 0, 1, 1, 3, 2, 5, 6]])


def dense(adj):
    return adj.to_dense().double()


@pytest.mark.parametrize("in_dim,out_dim", [(3, 6), (6, 3)])  # both sides of the propagate-narrow switch
@pytest.mark.parametrize("activation", [True, False])
def test_single_group_layer_is_a_plain_gcn_layer(in_dim, out_dim, activation):
    torch.manual_seed(0)
    layer = DenseGraphConv(in_dim, out_dim, activation=activation).double()
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)  # a non-zero bias, so that A (xW + b) != A xW + b is tested
    adj = gcn_norm(EDGES, N, mode="sym", dtype=torch.float64)  # rows do not sum to 1
    x = torch.randn(N, in_dim, dtype=torch.float64)
    expected = dense(adj) @ (x @ layer.weight + layer.bias)
    if activation:
        expected = F.leaky_relu(expected, 0.2)
    torch.testing.assert_close(layer(x, [adj]), expected)
    torch.testing.assert_close(layer(x, [adj], torch.ones(1, dtype=torch.float64)), expected)


@pytest.mark.parametrize("in_dim,out_dim", [(3, 6), (6, 3)])
def test_weighted_groups_match_dense_sum(in_dim, out_dim):
    torch.manual_seed(1)
    layer = DenseGraphConv(in_dim, out_dim).double()
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    adjs = [in_norm(g, N, "up", dtype=torch.float64) for g in hop_groups(EDGES, N, max_hop=4)]
    w = torch.softmax(torch.randn(len(adjs), dtype=torch.float64), 0)
    x = torch.randn(N, in_dim, dtype=torch.float64)
    support = x @ layer.weight + layer.bias
    expected = F.leaky_relu(sum(w[k] * dense(a) @ support for k, a in enumerate(adjs)), 0.2)
    torch.testing.assert_close(layer(x, adjs, w), expected)
    with pytest.raises(ValueError, match=r"weights: expected shape \(5,\)"):
        layer(x, adjs, w[:3])


def manual_dense_propagation(model, x):
    """ADGPM / DGP forward computed with dense matrices built here from the edges (dropout off)."""
    if model.attention:
        groups = hop_groups(EDGES, N, max_hop=4)
        w_up, w_down = F.softmax(model.att_up, 0), F.softmax(model.att_down, 0)
    else:
        groups = [all_ancestor_pairs(EDGES, N)]
        w_up = w_down = torch.ones(1, dtype=torch.float64)
    up = [dense(in_norm(g, N, "up")) for g in groups]
    down = [dense(in_norm(g, N, "down")) for g in groups]
    c1, c2 = model.conv1, model.conv2
    h = F.leaky_relu(sum(w_up[k] * up[k] @ (x @ c1.weight + c1.bias) for k in range(len(groups))), 0.2)
    out = sum(w_down[k] * down[k] @ (h @ c2.weight + c2.bias) for k in range(len(groups)))
    return out / out.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("attention", [True, False])
def test_dense_propagation_is_descendants_up_then_ancestors_down(attention):
    torch.manual_seed(2)
    model = DenseGraphPropagation(N, EDGES, 4, 5, hidden=7, attention=attention, dropout=0.5).double()
    assert model.num_groups == (5 if attention else 1)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
    model.eval()
    x = torch.randn(N, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x), manual_dense_propagation(model, x))


def test_dense_propagation_limited_to_max_hop():
    adgpm = build_model("adgpm", N, EDGES, 4, 3, hidden=6, max_hop=2, merge_far=False)
    assert adgpm.num_groups == 3
    up2 = dense(adgpm.adjacencies("up")[2])
    third = 1 / 3
    torch.testing.assert_close(up2[0], torch.tensor([0, 0, 0, third, third, third, 0, 0], dtype=torch.float64),
                               atol=1e-7, rtol=0)  # 0's descendants 2 hops down: 3, 4, 5
    dgp = build_model("dgp", N, EDGES, 4, 3, hidden=6, max_hop=2, merge_far=False)
    down = dense(dgp.adjacencies("down")[0])
    torch.testing.assert_close(down[7], torch.tensor([0, 0, 0, 0, 0, third, third, third], dtype=torch.float64),
                               atol=1e-7, rtol=0)  # 7 itself and its ancestors 6, 5
    full = dense(build_model("dgp", N, EDGES, 4, 3, hidden=6).adjacencies("down")[0])[7]
    seventh = 1 / 7  # merged: 7 and all its ancestors 6, 5, 3, 2, 1, 0 (not 4)
    torch.testing.assert_close(full, torch.tensor([seventh] * 4 + [0] + [seventh] * 3, dtype=torch.float64),
                               atol=1e-7, rtol=0)


def test_gcn_models_match_dense_formula():
    torch.manual_seed(3)
    a = torch.zeros(N, N, dtype=torch.float64)
    a[EDGES[0], EDGES[1]] = 1.0
    sym_a = ((a + a.T) > 0).double() + torch.eye(N, dtype=torch.float64)
    d = sym_a.sum(1)
    norms = {"sym": sym_a / d.sqrt()[:, None] / d.sqrt()[None, :], "in": sym_a / d[:, None]}
    x = torch.randn(N, 4, dtype=torch.float64)
    for name, norm, bias in [("sgcn", "in", True), ("gcnz", "sym", False)]:
        model = build_model(name, N, EDGES, 4, 3, hidden=(6, 5) if name == "gcnz" else 6).double().eval()
        assert all((layer.bias is not None) == bias for layer in model.layers)
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-1, 1)
        h = x
        for i, layer in enumerate(model.layers):
            h = norms[norm] @ (h @ layer.weight) + (layer.bias if bias else 0)
            h = F.leaky_relu(h, 0.2) if i < len(model.layers) - 1 else h
        torch.testing.assert_close(model(x), F.normalize(h, dim=1))


def test_dropout_placement_follows_the_official_models():
    def dropped(model):
        return [layer.dropout is not None for layer in model.layers]

    assert dropped(build_model("sgcn", N, EDGES, 4, 3, hidden=6)) == [True, True]  # 'd2048,d'
    assert dropped(build_model("gcnz", N, EDGES, 4, 3)) == [False] * 4 + [True, True]
    assert dropped(build_model("gcn", N, EDGES, 4, 3, layers=4, hidden=6)) == [True, False, False, True]
    assert dropped(GCN(N, EDGES, 4, 3, hidden=(6, 6), dropout_all=True)) == [True] * 3
    adgpm = build_model("adgpm", N, EDGES, 4, 3, hidden=6)
    assert adgpm.conv1.dropout.p == adgpm.conv2.dropout.p == 0.5
    assert [layer.weight.shape[1] for layer in build_model("gcnz", N, EDGES, 4, 3).layers] == \
        [2048, 2048, 1024, 1024, 512, 3]


def test_group_weights_softmax_normalised_and_trained():
    torch.manual_seed(4)
    model = build_model("adgpm", N, EDGES, 4, 3, hidden=8, dropout=0.0)
    before = model.group_weights()
    assert set(before) == {"up", "down"}
    for w in before.values():
        assert w.shape == (5,) and (w > 0).all()
        torch.testing.assert_close(w.sum(), torch.tensor(1.0))
        torch.testing.assert_close(w, torch.full((5,), 0.2))  # official init: ones
    x, target = torch.randn(N, 4), F.normalize(torch.randn(N, 3), dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        loss = regression_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        assert model.att_up.grad.abs().sum() > 0 and model.att_down.grad.abs().sum() > 0
        opt.step()
    after = model.group_weights()
    for d in ("up", "down"):
        torch.testing.assert_close(after[d].sum(), torch.tensor(1.0))
        assert (after[d] - before[d]).abs().max() > 1e-4
    assert build_model("dgp", N, EDGES, 4, 3, hidden=8).group_weights() == {}


@pytest.mark.parametrize("name", BUILDABLE)
def test_output_rows_l2_normalised(name):
    torch.manual_seed(5)
    model = build_model(name, N, EDGES, 4, 3, hidden=(6, 6) if name == "gcnz" else 6, layers=3)
    x = torch.randn(N, 4)
    for train in (True, False):
        model.train(train)
        torch.testing.assert_close(model(x).norm(dim=1), torch.ones(N))


def test_gradcheck_through_dense_layer_with_sparse_adjacency():
    torch.manual_seed(6)
    groups = hop_groups(EDGES, N, max_hop=2)
    for layout in ("csr", "coo"):
        adjs = [in_norm(g, N, "down", dtype=torch.float64, layout=layout) for g in groups]
        for in_dim, out_dim in [(2, 3), (3, 2)]:
            layer = DenseGraphConv(in_dim, out_dim).double()

            def f(x, weight, bias, logits, layer=layer, adjs=adjs):
                params = {"weight": weight, "bias": bias}
                return torch.func.functional_call(layer, params, (x, adjs, torch.softmax(logits, 0)))

            inputs = (torch.randn(N, in_dim, dtype=torch.float64, requires_grad=True),
                      layer.weight.detach().clone().requires_grad_(),
                      torch.randn(out_dim, dtype=torch.float64, requires_grad=True),
                      torch.randn(len(adjs), dtype=torch.float64, requires_grad=True))
            assert torch.autograd.gradcheck(f, inputs)
        conv = GraphConv(3, 2).double()
        adj = gcn_norm(EDGES, N, dtype=torch.float64, layout=layout)
        assert torch.autograd.gradcheck(lambda x, conv=conv, adj=adj: conv(x, adj),
                                        (torch.randn(N, 3, dtype=torch.float64, requires_grad=True),))


def test_adgpm_fits_seen_targets():
    torch.manual_seed(7)
    # a 3-level tree of 40 nodes: root 0, 3 children, 12 grandchildren, 24 leaves; 5 has a second parent
    parents = [0] * 3 + [1 + i // 4 for i in range(12)] + [4 + i // 2 for i in range(24)]
    edges = torch.tensor([list(range(1, 40)) + [5], parents + [2]])
    n, seen = 40, torch.arange(15, 40, 2)  # half of the leaves are "seen classes"
    x = F.normalize(torch.randn(n, 16), dim=1)
    target = F.normalize(torch.randn(len(seen), 12), dim=1)
    model = build_model("adgpm", n, edges, 16, 12, hidden=64, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = regression_loss(model(x)[seen], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_regression_loss_is_official_l2_loss():
    pred, target = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert regression_loss(pred, target).item() == pytest.approx((1 + 4 + 9) / (2 * 2))
    with pytest.raises(ValueError, match="regression_loss"):
        regression_loss(pred, target[:1])


def test_bad_arguments_raise_one_clear_error():
    assert MODELS == ("gcnz", "sgcn", "dgp", "adgpm")
    with pytest.raises(KeyError, match="unknown graph model 'gat'"):
        build_model("gat", N, EDGES, 4, 3)
    with pytest.raises(ValueError, match="layers"):
        build_model("gcn", N, EDGES, 4, 3)
    model = build_model("sgcn", N, EDGES, 4, 3, hidden=6)
    with pytest.raises(ValueError, match=r"x: expected node inputs of shape \(8, 4\), got \(8, 5\)"):
        model(torch.randn(N, 5))
    with pytest.raises(ValueError, match="dropout_layers"):
        GCN(N, EDGES, 4, 3, hidden=(6,), dropout_layers=(2,))


def test_adjacencies_are_buffers_outside_the_state_dict():
    model = build_model("adgpm", N, EDGES, 4, 3, hidden=6)
    buffers = dict(model.named_buffers())
    assert {f"adj_{d}_{k}" for d in ("up", "down") for k in range(5)} == set(buffers)
    assert not any(key.startswith("adj") for key in model.state_dict())
    moved = model.double()
    assert all(b.dtype == torch.float64 for b in moved.buffers())
    assert moved(torch.randn(N, 4, dtype=torch.float64)).dtype == torch.float64
