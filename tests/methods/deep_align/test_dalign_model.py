"""Exact symmetries of the DWS encoder and of Deep-Align (float64) on MLP and CNN weights, and the three
losses."""
import pytest
import torch

from paperzoo.methods.deep_align import matching
from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align import train as T
from paperzoo.methods.deep_align.dws import DWSEncoder
from paperzoo.methods.deep_align.model import DeepAlign, layer_keys, level_sizes, split_params
from paperzoo.methods.deep_align.nets import CNNArch, MLPArch, unbatch
from paperzoo.methods.deep_align.zoo import synthetic_task

ARCH = MLPArch((12, 8, 7, 6, 3))
CNN = CNNArch(3, (4, 5, 6), 3)  # a CNN's weight space is an MLP's over channels, entries = 3x3 kernels

REDUCTIONS = pytest.mark.parametrize("reduction", ["mean", "max"])
ARCHS = pytest.mark.parametrize("arch", [ARCH, CNN], ids=["mlp", "cnn"])


def _model(seed=0, reduction="mean", arch=ARCH):
    torch.manual_seed(seed)
    return DeepAlign(arch, hidden=6, depth=3, out_dim=10, input_proj=5, reduction=reduction).double()


def _nets(n, seed, arch=ARCH):
    return arch.init(n, torch.Generator().manual_seed(seed), torch.float64)


def _perms(seed, arch=ARCH):
    sizes = arch.spec().sizes(unbatch(_nets(1, 0, arch), 0))
    return P.random_perms(sizes, torch.Generator().manual_seed(seed))


@ARCHS
@REDUCTIONS
def test_dws_encoder_is_equivariant(reduction, arch):
    kernels = (9, 9, 9, 1) if isinstance(arch, CNNArch) else ()
    torch.manual_seed(0)
    enc = DWSEncoder(level_sizes(arch), 5, 3, 4, input_proj=0, reduction=reduction,
                     weight_features=kernels).double()
    keys, spec = layer_keys(arch), arch.spec()
    v, g = _nets(2, 1, arch), _perms(2, arch)

    def encode(params):
        ws, bs = enc(*split_params(params, keys))
        # outputs keyed like the parameters, (B, rows, cols, C) and (B, rows, C): the spec permutes the
        # same leading axes (the trailing feature axis is unpermuted)
        return {**{w: t for (w, _), t in zip(keys, ws)}, **{b: t for (_, b), t in zip(keys, bs)}}

    out, moved = encode(v), encode(P.apply(spec, g, v, batched=True))
    expected = P.apply(spec, g, out, batched=True)
    for key in out:
        assert torch.allclose(expected[key], moved[key], atol=1e-10), key


@ARCHS
@REDUCTIONS
def test_deep_align_equivariance_F_gv_gpv(reduction, arch):
    model, v, w = _model(reduction=reduction, arch=arch), _nets(3, 1, arch), _nets(3, 2, arch)
    g, h = _perms(3, arch), _perms(4, arch)
    spec = arch.spec()
    base = model.similarity(v, w)
    moved = model.similarity(P.apply(spec, g, v, batched=True), P.apply(spec, h, w, batched=True))
    assert len(base) == len(g)
    for lv, (s, s2) in enumerate(zip(base, moved)):
        gm, hm = P.as_matrix(g[f"P{lv}"], torch.float64), P.as_matrix(h[f"P{lv}"], torch.float64)
        assert torch.allclose(gm @ s @ hm.T, s2, atol=1e-10)


@ARCHS
@REDUCTIONS
def test_deep_align_swap_symmetry(reduction, arch):
    model, v, w = _model(reduction=reduction, arch=arch), _nets(2, 5, arch), _nets(2, 6, arch)
    for s, st in zip(model.similarity(v, w), model.similarity(w, v)):
        assert torch.allclose(s, st.transpose(1, 2), atol=1e-12)


def test_joint_encoder_pass_equals_separate_passes():
    model, v, w = _model(), _nets(3, 7), _nets(3, 8)
    separate = model.similarity(model.neuron_embeddings(v), model.neuron_embeddings(w))
    for s, s_sep in zip(model.similarity(v, w), separate, strict=True):
        assert torch.allclose(s, s_sep, atol=1e-12)


@ARCHS
@REDUCTIONS
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deep_align_recovers_permutation_of_held_out_network(seed, reduction, arch):
    model = _model(seed, reduction, arch)  # untrained weights: recovery holds by construction
    v = _nets(2, 100 + seed, arch)  # networks never seen
    g = _perms(10 + seed, arch)
    aligned = model.align(v, P.apply(arch.spec(), g, v, batched=True))
    for perms in aligned:
        assert all(torch.equal(perms[k], P.invert(g)[k]) for k in g)


def test_losses_are_finite_and_train_step_updates_parameters():
    task = synthetic_task(dim=12, num_classes=3, n_train=64, n_test=16)
    model = DeepAlign(ARCH, hidden=4, depth=2, out_dim=8, input_proj=0)
    zoo = ARCH.init(6, torch.Generator().manual_seed(0))
    model.fit_scales(zoo)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, amsgrad=True)
    before = [p.detach().clone() for p in model.parameters()]
    out = T.train_step(model, opt, zoo, task, T.LossWeights(), T.Augment(), T.StepSettings(batch_size=4,
                       data_batch=16), torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "supervised", "alignment", "interpolation"}
    # weights 1 / 1 / 1: the total is the plain sum; an untrained model cannot match all units yet
    assert out["loss"] == pytest.approx(out["supervised"] + out["alignment"] + out["interpolation"])
    assert out["supervised"] > 0.1 and out["alignment"] > 0 and out["interpolation"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@ARCHS
def test_batched_soft_apply_with_permutation_matrices_equals_apply(arch):
    v, g = _nets(2, 3, arch), _perms(5, arch)
    mats = [torch.stack([P.as_matrix(g[f"P{lv}"], torch.float64)] * 2) for lv in range(len(g))]
    hard = P.apply(arch.spec(), g, v, batched=True)
    for given in (mats, {f"P{lv}": m for lv, m in enumerate(mats)}):  # listed or keyed by name
        soft = matching.soft_apply(arch.spec(), given, v, batched=True)
        assert all(torch.equal(soft[k], hard[k]) for k in v)


def test_supervised_loss_drops_below_chance_as_similarities_sharpen():
    model = _model()
    losses = []
    for log_s in (0.0, 2.0, 4.0):
        with torch.no_grad():
            model.log_s.fill_(log_s)
            losses.append(float(T.supervised_loss(model, _nets(2, 7), T.Augment(0.0, 0.0, 0.0),
                                                  torch.Generator().manual_seed(0), iters=20, tau=1.0)))
    # without augmentation the correct matching is the similarity maximum, so sharpening helps
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < torch.log(torch.tensor(6.0)).item()
