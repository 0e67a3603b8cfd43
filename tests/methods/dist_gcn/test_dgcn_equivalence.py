"""Distributed forward and back-propagation equal the centralized GCN (in-process simulation)."""
import pytest
import torch

from paperzoo.methods.dist_gcn import graphs
from paperzoo.methods.dist_gcn import model as M
from paperzoo.methods.dist_gcn import partition as P
from paperzoo.methods.dist_gcn.comm import SimComm


def _centralized(graph, flat, layout):
    adj = graphs.normalized_adjacency(graph.edge_index, graph.num_nodes)
    w = flat.clone().requires_grad_()
    logits = M.gcn_forward(adj, graph.x, w, layout)
    train = graph.splits["train"]
    loss = torch.nn.functional.cross_entropy(logits[train], graph.y[train])
    loss.backward()
    return logits.detach(), loss.detach(), w.grad


def _distributed(graph, flat, layout, assignment, k, sparse_features=False):
    local = P.build_local_graphs(graph, assignment, range(k))
    comm = SimComm(k)
    plan = M.halo_plan(local)
    adj = M.local_propagation(comm, local, plan)
    params = {a: flat.clone().requires_grad_() for a in range(k)}
    feats = {a: M.as_features(g.x, 1.0) if sparse_features else g.x for a, g in local.items()}
    logits = M.dist_forward(comm, plan, adj, feats, params, layout)
    n_train = graph.splits["train"].numel()
    losses = [M.cross_entropy_sum(logits[a][g.splits["train"]], g.y[g.splits["train"]]) / n_train
              for a, g in local.items()]
    torch.stack(losses).sum().backward()
    full = torch.zeros(graph.num_nodes, layout.num_classes)
    for a, g in local.items():
        full[g.nodes] = logits[a].detach()
    return full, sum(float(v.detach()) for v in losses), sum(params[a].grad for a in range(k)), comm


@pytest.fixture(scope="module")
def graph():
    return graphs.sbm_graph(150, 3, num_features=24, seed=3)


@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("method", ["spectral", "random", "contiguous"])
def test_forward_and_gradient_equal_centralized(graph, k, method):
    layout = M.ParamLayout(graph.num_features, 8, graph.num_classes)
    flat = layout.init(seed=k)
    ref_logits, ref_loss, ref_grad = _centralized(graph, flat, layout)
    assignment = P.partition(graph, k, method, seed=1)
    logits, loss, grad, _ = _distributed(graph, flat, layout, assignment, k, sparse_features=(k == 4))
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)
    assert loss == pytest.approx(float(ref_loss), abs=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=0)


def test_exchange_bytes_are_the_boundary_rows(graph):
    k = 4
    layout = M.ParamLayout(graph.num_features, 8, graph.num_classes)
    assignment = P.partition(graph, k, "random", seed=0)
    stats = P.partition_stats(graph, assignment, k)
    *_, comm = _distributed(graph, layout.init(0), layout, assignment, k)
    sent = sum(comm.bytes_sent[a]["exchange"] for a in range(k))
    degree_setup = stats["boundary_rows"] * 4
    # forward + backward of both layers: every boundary row once per direction, hidden then classes wide
    assert sent - degree_setup == 2 * stats["boundary_rows"] * (8 + graph.num_classes) * 4


def test_agent_without_halo_still_joins_backward():
    # two disconnected blocks: with a contiguous split agent 0 has no boundary rows at all
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 0, 3, 2, 5, 4]])
    g = graphs.NodeGraph("pairs", torch.eye(6), torch.tensor([0, 0, 1, 1, 0, 1]), edge_index,
                         {"train": torch.arange(6), "valid": torch.arange(6), "test": torch.arange(6)})
    layout = M.ParamLayout(6, 4, 2)
    flat = layout.init(0)
    ref_logits, _, ref_grad = _centralized(g, flat, layout)
    assignment = P.contiguous_partition(6, 3)
    logits, _, grad, _ = _distributed(g, flat, layout, assignment, 3)
    torch.testing.assert_close(logits, ref_logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=0)
