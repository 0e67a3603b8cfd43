"""ConvE's forward pass pinned to an independent reference written from the paper.

Dettmers et al. (AAAI 2018), Sec. 4 and Eq. (1)-(2): ``psi_r(e_s, e_o) = f(vec(f([e_s; r_r] * w)) W) e_o``,
where ``e_s`` and ``r_r`` are reshaped to ``k_w x k_h`` images and stacked, ``*`` is a 2D convolution
with filters ``w``, ``f`` is a ReLU and ``W`` a projection back to ``k`` dimensions; p = sigmoid(psi).
Sec. 4 (and the official code) add batch norm after the input, the convolution and the projection,
dropout on the input embeddings, on the feature maps (whole maps) and on the hidden layer, and a
per-entity bias. The reference below applies exactly that sequence with the functional ops
(``F.batch_norm``, ``F.conv2d``, ``F.linear``) on parameters read out of the model, so removing,
reordering or skipping any layer of ``ConvE.query`` / ``ConvE.forward`` makes these tests fail.

Every batch norm gets random affine parameters and random running statistics: with PyTorch's defaults
(mean 0, var 1, weight 1, bias 0) an eval-mode batch norm is nearly the identity and a dropped or
moved one would go unnoticed.
"""
import pytest
import torch
from torch.nn import functional as F

from paperzoo.methods.conve import ConvE

HEIGHT, WIDTH = 4, 5  # k_w != k_h, so a transposed reshape changes the result
DIM = HEIGHT * WIDTH
NUM_ENTITIES, NUM_RELATIONS, CHANNELS = 17, 6, 3


def _model(dropout: tuple[float, float, float] = (0.0, 0.0, 0.0), seed: int = 0) -> ConvE:
    torch.manual_seed(seed)
    model = ConvE(NUM_ENTITIES, NUM_RELATIONS, embedding_dim=DIM, embedding_height=HEIGHT,
                  conv_channels=CHANNELS, kernel_size=3, input_dropout=0.0, feature_dropout=0.0,
                  hidden_dropout=0.0).double()
    g = torch.Generator().manual_seed(seed + 1)
    bns = (model.bn0, model.bn1, model.bn2)
    with torch.no_grad():
        for bn in bns:
            n = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.float64))
            bn.bias.copy_(0.5 * torch.randn(n, generator=g, dtype=torch.float64))
            bn.momentum = 1.0
        # running statistics of the scale the layers really see (one train-mode pass over every query,
        # dropout off), then perturbed so that eval-mode and train-mode normalisations differ
        model.train()(torch.arange(NUM_ENTITIES), torch.arange(NUM_ENTITIES) % NUM_RELATIONS)
        for bn in bns:
            n = bn.num_features
            std = bn.running_var.sqrt()
            bn.running_mean.add_(0.5 * std * torch.randn(n, generator=g, dtype=torch.float64))
            bn.running_var.mul_(0.5 + torch.rand(n, generator=g, dtype=torch.float64))
            bn.momentum = 0.1
        model.entity_bias.copy_(torch.randn(NUM_ENTITIES, generator=g, dtype=torch.float64))
    model.input_drop.p, model.feature_drop.p, model.hidden_drop.p = dropout
    return model


def _bn_state(bn: torch.nn.modules.batchnorm._BatchNorm) -> dict:
    """A batch norm's parameters and (cloned, so the reference updates its own) running statistics."""
    return {"weight": bn.weight.detach().clone(), "bias": bn.bias.detach().clone(),
            "running_mean": bn.running_mean.clone(), "running_var": bn.running_var.clone(),
            "eps": bn.eps, "momentum": bn.momentum}


def _params(model: ConvE) -> dict:
    return {"E": model.entity.weight.detach().clone(), "R": model.relation.weight.detach().clone(),
            "conv_w": model.conv.weight.detach().clone(), "conv_b": model.conv.bias.detach().clone(),
            "fc_w": model.fc.weight.detach().clone(), "fc_b": model.fc.bias.detach().clone(),
            "bias": model.entity_bias.detach().clone(),
            "bn0": _bn_state(model.bn0), "bn1": _bn_state(model.bn1), "bn2": _bn_state(model.bn2)}


def _batch_norm(x: torch.Tensor, s: dict, training: bool) -> torch.Tensor:
    return F.batch_norm(x, s["running_mean"], s["running_var"], s["weight"], s["bias"], training,
                        s["momentum"], s["eps"])


def reference_logits(p: dict, heads: torch.Tensor, rels: torch.Tensor, *, training: bool,
                     dropout: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """ConvE logits ``(B, N)`` straight from the paper (the sigmoid is left to the loss)."""
    batch = len(heads)
    e_s = p["E"][heads].reshape(batch, 1, HEIGHT, WIDTH)       # 2D reshape of the subject embedding
    r_r = p["R"][rels].reshape(batch, 1, HEIGHT, WIDTH)        # ... and of the relation embedding
    x = torch.cat([e_s, r_r], dim=2)                           # stacked: (B, 1, 2 k_w, k_h)
    x = _batch_norm(x, p["bn0"], training)                     # input batch norm
    x = F.dropout(x, dropout[0], training)                      # input dropout
    x = F.conv2d(x, p["conv_w"], p["conv_b"])                  # 2D convolution, no padding
    x = _batch_norm(x, p["bn1"], training)                     # feature-map batch norm
    x = F.relu(x)                                              # f
    x = F.dropout2d(x, dropout[1], training)                   # feature-map dropout (whole maps)
    x = x.reshape(batch, -1)                                   # vec(.)
    x = F.linear(x, p["fc_w"], p["fc_b"])                      # projection W to k dimensions
    x = F.dropout(x, dropout[2], training)                     # hidden dropout
    x = _batch_norm(x, p["bn2"], training)                     # hidden batch norm
    x = F.relu(x)                                              # f
    return x @ p["E"].T + p["bias"]                            # dot with every e_o, plus entity bias


HEADS = torch.tensor([0, 3, 16, 7, 7, 11])
RELS = torch.tensor([5, 0, 2, 2, 4, 1])


def test_eval_logits_equal_the_paper_reference():
    model = _model().eval()
    p = _params(model)
    with torch.no_grad():
        got = model(HEADS, RELS)
    expected = reference_logits(p, HEADS, RELS, training=False)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # the comparison is not vacuous: the logits differ across queries and entities
    assert got.std() > 0.1 and (got[0] - got[1]).abs().max() > 1e-3


def test_train_mode_batch_statistics_equal_the_paper_reference():
    """Training mode with dropout off: every batch norm normalises by the batch's statistics and moves
    its running statistics by the same amount as the reference's."""
    model = _model().train()
    p = _params(model)
    got = model(HEADS, RELS)
    expected = reference_logits(p, HEADS, RELS, training=True)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for name in ("bn0", "bn1", "bn2"):
        bn = getattr(model, name)
        torch.testing.assert_close(bn.running_mean, p[name]["running_mean"], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn.running_var, p[name]["running_var"], rtol=1e-12, atol=1e-12)
    # batch statistics are not the running ones, so train and eval logits must differ
    assert (got.detach() - reference_logits(_params(_model()), HEADS, RELS, training=False)).abs().max() > 1e-2


@pytest.mark.parametrize("dropout", [(0.3, 0.0, 0.0), (0.0, 0.4, 0.0), (0.0, 0.0, 0.5), (0.2, 0.2, 0.3)],
                         ids=["input", "feature", "hidden", "paper"])
def test_train_mode_dropouts_are_where_the_paper_puts_them(dropout):
    """Same random stream, same dropout calls in the same order on tensors of the same shape: the masks
    coincide, so a dropout applied at another point of the forward pass changes the logits."""
    model = _model(dropout).train()
    p = _params(model)
    torch.manual_seed(123)
    got = model(HEADS, RELS)
    torch.manual_seed(123)
    expected = reference_logits(p, HEADS, RELS, training=True, dropout=dropout)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.manual_seed(123)
    no_drop = reference_logits(_params(_model(dropout)), HEADS, RELS, training=True)
    assert (got.detach() - no_drop).abs().max() > 1e-3  # dropout did act


def test_scores_are_probabilities_through_the_logistic_sigmoid():
    """Eq. (2): p = sigma(psi); the model's 1-N training loss is the binary cross-entropy of those
    probabilities against the true tails."""
    from paperzoo.methods.conve.model import one_to_n_bce

    model = _model().eval()
    p = _params(model)
    logits = model(HEADS, RELS)
    target = torch.zeros_like(logits)
    target[torch.arange(len(HEADS)), HEADS] = 1.0
    probs = torch.sigmoid(reference_logits(p, HEADS, RELS, training=False))
    expected = -(target * probs.log() + (1 - target) * (1 - probs).log()).mean()
    got = one_to_n_bce(logits, torch.arange(len(HEADS)), HEADS)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
