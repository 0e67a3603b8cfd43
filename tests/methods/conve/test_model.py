import pytest
import torch
from torch.nn import functional as F

from paperzoo.methods.conve import ConvE, DistMult, smooth_labels


def test_paper_architecture_shapes():
    model = ConvE(num_entities=50, num_relations=8)
    assert model.fc.in_features == 32 * 38 * 8 == 9728
    assert (model.height, model.width) == (20, 10)
    assert isinstance(model.feature_drop, torch.nn.Dropout2d)
    assert model.conv.kernel_size == (3, 3) and model.conv.padding == (0, 0) and model.conv.bias is not None
    logits = model(torch.tensor([0, 1, 2]), torch.tensor([0, 3, 7]))
    assert logits.shape == (3, 50)


def test_one_n_scoring_equals_scoring_each_entity():
    """1-N scoring is the query vector dotted with every entity embedding, plus the entity bias."""
    torch.manual_seed(0)
    model = ConvE(30, 4, embedding_dim=20, embedding_height=4, conv_channels=4).eval()
    with torch.no_grad():
        model.entity_bias.normal_()
        heads, rels = torch.tensor([3, 5]), torch.tensor([1, 2])
        logits = model(heads, rels)
        q = model.query(heads, rels)
        for b in range(2):
            for t in range(30):
                expected = q[b] @ model.entity.weight[t] + model.entity_bias[t]
                assert logits[b, t] == pytest.approx(expected.item(), abs=1e-5)


def test_eval_mode_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    model = ConvE(30, 4, embedding_dim=20, embedding_height=4, conv_channels=4)
    model(torch.arange(16) % 30, torch.arange(16) % 4)  # update BN running stats
    model.eval()
    full = model(torch.arange(10), torch.arange(10) % 4)
    single = torch.cat([model(torch.tensor([i]), torch.tensor([i % 4])) for i in range(10)])
    assert torch.allclose(full, single, atol=1e-6)


def test_gradients_reach_every_parameter():
    model = ConvE(30, 4, embedding_dim=20, embedding_height=4, conv_channels=4)
    logits = model(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]))
    F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        ConvE(10, 2, embedding_dim=200, embedding_height=30)


def test_distmult_is_trilinear_and_symmetric():
    model = DistMult(12, 3, embedding_dim=8).eval()
    h, r = torch.tensor([2]), torch.tensor([1])
    e, w = model.entity.weight, model.relation.weight
    expected = (e[2] * w[1] * e).sum(-1)
    assert torch.allclose(model(h, r)[0], expected, atol=1e-6)
    # symmetric in head and tail: score(h, r, t) == score(t, r, h)
    scores = model(torch.arange(12), torch.ones(12, dtype=torch.long))
    assert torch.allclose(scores, scores.t(), atol=1e-6)


def test_label_smoothing_forms():
    y = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    correct = smooth_labels(y, 0.1, "correct")
    official = smooth_labels(y, 0.1, "official")
    assert torch.allclose(correct, torch.tensor([[0.925, 0.025, 0.025, 0.025]]))
    assert torch.allclose(official, torch.tensor([[1.15, 0.25, 0.25, 0.25]]))
    assert correct.sum().item() == pytest.approx(1.0)
    assert torch.equal(smooth_labels(y, 0.0), y)


@pytest.mark.parametrize("bias", [True, False])
def test_fast_single_channel_conv_equals_conv2d(bias):
    from paperzoo.methods.conve.model import conv2d_single_channel

    torch.manual_seed(0)
    x = torch.randn(3, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True) if bias else None
    assert torch.allclose(conv2d_single_channel(x, w, b), F.conv2d(x, w, b))
    inputs = (x, w, b) if bias else (x, w)
    assert torch.autograd.gradcheck(lambda *a: conv2d_single_channel(*a) if bias else conv2d_single_channel(*a, None),
                                    inputs)


@pytest.mark.parametrize("epsilon, form", [(0.0, "correct"), (0.1, "correct"), (0.1, "official")])
def test_sparse_one_to_n_bce_equals_dense_bce(epsilon, form):
    from paperzoo.methods.conve.model import one_to_n_bce

    torch.manual_seed(0)
    logits = (torch.randn(6, 40, dtype=torch.float64) * 5).requires_grad_()
    dense = (torch.rand(6, 40) < 0.2).to(torch.float64)
    rows, cols = dense.nonzero(as_tuple=True)
    expected = F.binary_cross_entropy_with_logits(logits, smooth_labels(dense, epsilon, form))
    (grad_expected,) = torch.autograd.grad(expected * 3.0, logits)
    got = one_to_n_bce(logits, rows, cols, epsilon, form)
    (grad_got,) = torch.autograd.grad(got * 3.0, logits)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.allclose(grad_got, grad_expected, atol=1e-14)
