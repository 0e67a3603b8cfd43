"""Deep-Align on CNN weights (DWS channel version): exact symmetries in float64, soft application of
Sinkhorn matrices, and training steps on a tiny image zoo."""
import pytest
import torch

from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align import train as T
from paperzoo.methods.deep_align import zoo as Z
from paperzoo.methods.deep_align.dws import DWSEncoder
from paperzoo.methods.deep_align.matching import soft_apply
from paperzoo.methods.deep_align.model import DeepAlign, layer_keys, level_sizes, split_params
from paperzoo.methods.deep_align.nets import CNNArch, unbatch

ARCH = CNNArch(3, (4, 5, 6), 3)
SPEC = ARCH.spec()
KEYS = layer_keys(ARCH)

REDUCTIONS = pytest.mark.parametrize("reduction", ["mean", "max"])


def _model(seed=0, reduction="mean"):
    torch.manual_seed(seed)
    return DeepAlign(ARCH, hidden=6, depth=3, out_dim=10, input_proj=5, reduction=reduction).double()


def _nets(n, seed):
    return ARCH.init(n, torch.Generator().manual_seed(seed), torch.float64)


def _perms(seed):
    return P.random_perms(SPEC.sizes(unbatch(_nets(1, 0), 0)), torch.Generator().manual_seed(seed))


def test_layer_keys_and_levels_follow_the_architecture():
    assert KEYS == [("conv0.weight", "conv0.bias"), ("conv1.weight", "conv1.bias"),
                    ("conv2.weight", "conv2.bias"), ("fc.weight", "fc.bias")]
    assert level_sizes(ARCH) == (3, 4, 5, 6, 3)
    model = _model()
    # the input level has 3 channels: no input projection; kernels lifted to the hidden width
    assert model.encoder.input_proj is None and model.encoder.lift is not None
    assert [lin.in_features for lin in model.encoder.lift.w] == [9, 9, 9, 1]


@REDUCTIONS
def test_dws_encoder_on_cnn_weights_is_equivariant(reduction):
    torch.manual_seed(0)
    enc = DWSEncoder(level_sizes(ARCH), 5, 3, 4, reduction=reduction, weight_features=(9, 9, 9, 1)).double()
    v, g = _nets(2, 1), _perms(2)

    def encode(params):
        ws, bs = enc(*split_params(params, KEYS))
        # encoder outputs keyed like the parameters: (B, rows, cols, C) and (B, rows, C), on which the
        # spec permutes the same leading axes (its kernel axes are unpermuted)
        return {**{w: t for (w, _), t in zip(KEYS, ws)}, **{b: t for (_, b), t in zip(KEYS, bs)}}

    out, moved = encode(v), encode(P.apply(SPEC, g, v, batched=True))
    expected = P.apply(SPEC, g, out, batched=True)
    for key in out:
        assert torch.allclose(expected[key], moved[key], atol=1e-10), key


@REDUCTIONS
def test_similarity_equivariance_F_gv_hw(reduction):
    model, v, w = _model(reduction=reduction), _nets(3, 1), _nets(3, 2)
    g, h = _perms(3), _perms(4)
    base = model.similarity(v, w)
    moved = model.similarity(P.apply(SPEC, g, v, batched=True), P.apply(SPEC, h, w, batched=True))
    assert len(base) == len(ARCH.channels)
    for lv, (s, s2) in enumerate(zip(base, moved)):
        gm, hm = P.as_matrix(g[f"P{lv}"], torch.float64), P.as_matrix(h[f"P{lv}"], torch.float64)
        assert torch.allclose(gm @ s @ hm.T, s2, atol=1e-10)


@REDUCTIONS
def test_similarity_swap_symmetry(reduction):
    model, v, w = _model(reduction=reduction), _nets(2, 5), _nets(2, 6)
    for s, st in zip(model.similarity(v, w), model.similarity(w, v)):
        assert torch.allclose(s, st.transpose(1, 2), atol=1e-12)


@REDUCTIONS
@pytest.mark.parametrize("seed", [0, 1])
def test_align_recovers_channel_permutation(seed, reduction):
    model, v, g = _model(seed, reduction), _nets(2, 100 + seed), _perms(10 + seed)
    for perms in model.align(v, P.apply(SPEC, g, v, batched=True)):
        assert all(torch.equal(perms[k], P.invert(g)[k]) for k in g)


def test_soft_apply_batched_with_permutation_matrices_equals_apply():
    v, g = _nets(2, 3), _perms(5)
    mats = [torch.stack([P.as_matrix(g[f"P{lv}"], torch.float64)] * 2) for lv in range(len(ARCH.channels))]
    hard = P.apply(SPEC, g, v, batched=True)
    for given in (mats, {f"P{lv}": m for lv, m in enumerate(mats)}):
        soft = T.soft_apply_batched(SPEC, given, v)
        assert all(torch.equal(soft[k], hard[k]) for k in v)


def test_soft_apply_batched_matches_unbatched_soft_apply():
    """Doubly stochastic (not hard) matrices: per network the same as :func:`matching.soft_apply`."""
    v, gen = _nets(2, 4), torch.Generator().manual_seed(0)
    mats = {f"P{lv}": torch.softmax(torch.randn(2, c, c, generator=gen, dtype=torch.float64), -1)
            for lv, c in enumerate(ARCH.channels)}
    soft = T.soft_apply_batched(SPEC, mats, v)
    for i in range(2):
        ref = soft_apply(SPEC, {k: m[i] for k, m in mats.items()}, unbatch(v, i))
        assert all(torch.allclose(soft[k][i], ref[k], atol=1e-12) for k in v)


def _image_task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    return Z.Task("toy_images", x, y, x[:16], y[:16], 3)


def test_train_steps_on_a_cnn_zoo_are_finite_and_update_parameters():
    task = _image_task()
    torch.manual_seed(0)
    model = DeepAlign(ARCH, hidden=4, depth=2, out_dim=8)
    zoo = ARCH.init(6, torch.Generator().manual_seed(0))
    model.fit_scales(zoo)
    assert set(model.tensor_scales()) == set(zoo)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, amsgrad=True)
    before = [p.detach().clone() for p in model.parameters()]
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        out = T.train_step(model, opt, zoo, task, T.LossWeights(), T.Augment(),
                           T.StepSettings(batch_size=4, data_batch=16), gen)
        assert set(out) == {"loss", "supervised", "alignment", "interpolation"}
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
