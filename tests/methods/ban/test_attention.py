"""The defining properties of bilinear attention, pooling, the models built on them and the counter."""
import pytest
import torch

from paperzoo.data.grounding import box_iou
from paperzoo.methods.ban.attention import (
    BilinearAttentionMap,
    BilinearPooling,
    bilinear_logits,
    bilinear_pool,
    naive_bilinear_logits,
    naive_bilinear_pool,
)
from paperzoo.methods.ban.counting import Counter, PiecewiseLinear
from paperzoo.methods.ban.models import BAN, GroundingModel, build_vqa_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b=3, nv=5, nq=4, dv=6, dq=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(b, nv, dv, generator=g).relu() + 0.01
    q = torch.randn(b, nq, dq, generator=g)
    return v, q


def _map(dv=6, dq=7, hidden=4, glimpses=3, **kw):
    torch.manual_seed(0)
    return BilinearAttentionMap(dv, dq, hidden, glimpses, dropout=0.0, attention_dropout=0.0, **kw).eval()


def test_attention_sums_to_one_over_valid_pairs_and_is_zero_on_masked_ones():
    v, q = _inputs()
    v[0, 3:] = 0  # empty boxes (all-zero rows), found by the official rule
    q_mask = torch.ones(3, 4, dtype=torch.bool)
    q_mask[1, 2:] = False
    att, logits = _map()(v, q, q_mask=q_mask)
    assert att.shape == (3, 3, 5, 4)
    valid = torch.ones(3, 1, 5, 4, dtype=torch.bool)
    valid[0, :, 3:] = False
    valid[1, :, :, 2:] = False
    torch.testing.assert_close(att.sum((2, 3)), torch.ones(3, 3))
    assert (att.masked_select(~valid.expand_as(att)) == 0).all()
    assert (att.masked_select(valid.expand_as(att)) > 0).all()
    assert torch.isinf(logits.masked_select(~valid.expand_as(logits))).all()


def test_an_explicit_box_mask_overrides_the_zero_row_rule():
    v, q = _inputs()
    v_mask = torch.ones(3, 5, dtype=torch.bool)
    v_mask[2, 0] = False
    att, _ = _map()(v, q, v_mask=v_mask)
    assert (att[2, :, 0] == 0).all() and (att[0, :, 0] > 0).all()


@pytest.mark.parametrize("nv,nq", [(5, 4), (3, 6)])  # both branches: the token side or the box side scaled
def test_einsum_logits_and_pooling_equal_the_materialised_joint_tensor(nv, nq):
    g = torch.Generator().manual_seed(1)
    v_, q_ = torch.randn(2, nv, 8, generator=g).relu(), torch.randn(2, nq, 8, generator=g).relu()
    p, bias = torch.randn(3, 8, generator=g), torch.randn(3, generator=g)
    fast, slow = bilinear_logits(v_, q_, p, bias), naive_bilinear_logits(v_, q_, p, bias)
    torch.testing.assert_close(fast, slow)
    # against the definition, one entry written out
    assert torch.isclose(fast[1, 2, nv - 1, 0], (p[2] * v_[1, nv - 1] * q_[1, 0]).sum() + bias[2])
    att = torch.softmax(torch.randn(2, nv * nq, generator=g), -1).view(2, nv, nq)
    torch.testing.assert_close(bilinear_pool(v_, att, q_), naive_bilinear_pool(v_, att, q_))
    f = sum(att[0, i, j] * v_[0, i] * q_[0, j] for i in range(nv) for j in range(nq))
    torch.testing.assert_close(bilinear_pool(v_, att, q_)[0], f)


def test_the_naive_modules_give_the_same_maps_and_pooling_with_the_same_parameters():
    v, q = _inputs()
    fast, slow = _map(), _map(naive=True)
    slow.load_state_dict(fast.state_dict())
    torch.testing.assert_close(fast(v, q)[0], slow(v, q)[0])
    torch.manual_seed(0)
    pool = BilinearPooling(6, 7, 4, dropout=0.0)
    naive = BilinearPooling(6, 7, 4, dropout=0.0, naive=True)
    naive.load_state_dict(pool.state_dict())
    att = fast(v, q)[0][:, 0]
    torch.testing.assert_close(pool(v, q, att), naive(v, q, att))


def test_gradients_of_the_einsum_forms_match_numerical_ones():
    g = torch.Generator().manual_seed(2)
    args = [torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(2, 2, 4, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(bilinear_logits, args)
    att = torch.rand(2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(bilinear_pool, (args[0], att, args[1]))


def test_permuting_the_boxes_permutes_the_attention_and_leaves_the_answer_unchanged():
    v, q = _inputs()
    perm = torch.tensor([3, 0, 4, 1, 2])
    m = _map()
    torch.testing.assert_close(m(v[:, perm], q)[0], m(v, q)[0][:, :, perm])
    model = _ban().eval()
    batch = _batch()
    permuted = dict(batch, v=batch["v"][:, perm], boxes=batch["boxes"][:, perm])
    logits, att = model(batch)
    logits_p, att_p = model(permuted)
    torch.testing.assert_close(logits_p, logits)
    torch.testing.assert_close(att_p, att[:, :, perm])


def _ban(**kw):
    torch.manual_seed(0)
    return BAN(vocab_size=12, num_answers=5, v_dim=6, hidden=8, glimpses=2, embed_dim=5, **kw)


def _batch(pad=0, seed=0):
    v, _ = _inputs(seed=seed)
    v[0, 4] = 0
    tokens = torch.tensor([[3, 4, 5, 0], [7, 1, 0, 0], [2, 2, 9, 11]])
    tokens = torch.cat([tokens, tokens.new_zeros(3, pad)], 1)
    boxes = torch.rand(3, 5, 2, generator=torch.Generator().manual_seed(5)) * 0.5
    return {"v": v, "tokens": tokens, "boxes": torch.cat([boxes, boxes + 0.3], -1)}


@pytest.mark.parametrize("name", ["ban", "coattention", "attention"])
def test_padding_tokens_change_nothing(name):
    torch.manual_seed(0)
    model = build_vqa_model(name, vocab_size=12, num_answers=5, v_dim=6, hidden=8, glimpses=2, embed_dim=5,
                            counter=True).eval()
    logits, att = model(_batch())
    logits_pad, att_pad = model(_batch(pad=3))
    torch.testing.assert_close(logits_pad, logits)
    if name == "ban":
        torch.testing.assert_close(att_pad[..., :4], att)
        assert (att_pad[..., 4:] == 0).all()
    else:
        torch.testing.assert_close(att_pad, att)


def test_ban_trains_end_to_end_with_the_counter_and_every_parameter_gets_a_gradient():
    model = _ban(counter=True)
    logits, _ = model(_batch())
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_glimpses_each_pool_with_their_own_map():
    model = _ban().eval()
    batch = _batch()
    _, att = model(batch)
    assert att.shape == (3, 2, 5, 4)
    assert not torch.allclose(att[:, 0], att[:, 1])


def test_grounding_box_scores_are_the_token_marginals_of_the_joint_map():
    torch.manual_seed(0)
    model = GroundingModel("ban", vocab_size=12, v_dim=6, hidden=8, embed_dim=5, query="tokens").eval()
    batch = _batch()
    box_logits, att = model(batch)
    torch.testing.assert_close(torch.softmax(box_logits, -1), att[:, 0].sum(-1))
    assert torch.isinf(box_logits[0, 4]) and box_logits[0, 4] < 0
    # the official query: the last word's state; padding after it changes nothing
    torch.manual_seed(0)
    last = GroundingModel("ban", vocab_size=12, v_dim=6, hidden=8, embed_dim=5).eval()
    box_logits, att = last(batch)
    torch.testing.assert_close(last(_batch(pad=2))[0], box_logits)
    torch.testing.assert_close(att[:, 0].sum(-1), torch.ones(3))
    v_, q_ = last.attention.projections(batch["v"], last.question(batch["tokens"])[0][[0, 1, 2], [2, 1, 3]][:, None])
    expected = (v_ * last.attention.p_matrix()[0] * q_).sum(-1) + last.attention.bias[0]
    torch.testing.assert_close(box_logits[1], expected[1])
    torch.manual_seed(0)
    co = GroundingModel("coattention", vocab_size=12, v_dim=6, hidden=8, embed_dim=5).eval()
    box_logits, att = co(batch)
    torch.testing.assert_close(att[:, 0].sum(-1), torch.ones(3))
    assert att[0, 0, 4] == 0


def test_piecewise_linear_starts_as_the_identity_and_stays_monotone_onto_0_1():
    f = PiecewiseLinear(16)
    x = torch.linspace(0, 1, 101)
    torch.testing.assert_close(f(x), x)
    with torch.no_grad():
        f.weight.copy_(torch.rand(16) + 0.1)
    y = f(x)
    assert y[0] == 0 and torch.isclose(y[-1], torch.tensor(1.0)) and (y.diff() >= 0).all()


def test_the_counter_counts_separate_boxes_and_merges_duplicates():
    counter = Counter(objects=10)
    boxes = torch.tensor([[[0.0, 0.0, 0.1, 0.1], [0.2, 0.2, 0.3, 0.3], [0.5, 0.5, 0.6, 0.6],
                           [0.7, 0.0, 0.9, 0.2], [0.0, 0.7, 0.2, 0.9], [0.4, 0.0, 0.5, 0.1]]])
    big = 50.0  # sigmoid(50) = 1, sigmoid(-50) = 0: hard attention
    for n in range(5):
        logits = torch.full((1, 6), -big)
        logits[0, :n] = big
        c = counter.count(boxes, logits)[0].detach()
        assert abs(float(c) - n) < 1e-3, (n, float(c))
    # the same object proposed twice (identical boxes) counts once
    dup = torch.cat([boxes[:, :3], boxes[:, :1]], 1)
    logits = torch.full((1, 4), big)
    assert abs(float(counter.count(dup, logits)[0].detach()) - 3) < 1e-3
    out = counter(boxes, torch.tensor([[big, big, -big, -big, -big, -big]]))
    assert out.shape == (1, 11) and out[0].argmax() == 2


def test_pairwise_iou_known_values():
    b = torch.tensor([[[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]]])
    iou = box_iou(b, b)[0]  # the counter's batched pairwise form
    torch.testing.assert_close(iou, torch.tensor([[1.0, 1 / 7, 0.0], [1 / 7, 1.0, 0.0], [0.0, 0.0, 1.0]]))
