"""Exact symmetries of the DWS encoder and of Deep-Align (float64), and the three losses."""
import pytest
import torch

from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align import train as T
from paperzoo.methods.deep_align.dws import DWSEncoder
from paperzoo.methods.deep_align.model import DeepAlign, split_mlp
from paperzoo.methods.deep_align.nets import MLPArch, unbatch
from paperzoo.methods.deep_align.zoo import synthetic_task

ARCH = MLPArch((12, 8, 7, 6, 3))


REDUCTIONS = pytest.mark.parametrize("reduction", ["mean", "max"])


def _model(seed=0, reduction="mean"):
    torch.manual_seed(seed)
    return DeepAlign(ARCH, hidden=6, depth=3, out_dim=10, input_proj=5, reduction=reduction).double()


def _nets(n, seed):
    return ARCH.init(n, torch.Generator().manual_seed(seed), torch.float64)


def _perms(seed):
    return P.random_perms(ARCH.spec().sizes(unbatch(_nets(1, 0), 0)), torch.Generator().manual_seed(seed))


@REDUCTIONS
def test_dws_encoder_is_equivariant(reduction):
    enc = DWSEncoder(ARCH.sizes, 5, 3, 4, input_proj=0, reduction=reduction).double()
    v = _nets(2, 1)
    g = _perms(2)
    out_w, out_b = enc(*split_mlp(v, ARCH.num_layers))
    gv = P.apply(ARCH.spec(), g, v, batched=True)
    out_gw, out_gb = enc(*split_mlp(gv, ARCH.num_layers))
    # permute the outputs with the same spec (feature axis last, network axis first)
    for m in range(ARCH.num_layers):
        w = out_w[m]
        if m < ARCH.num_layers - 1:
            w = w[:, g[f"P{m}"]]
        if m > 0:
            w = w[:, :, g[f"P{m - 1}"]]
        b = out_b[m][:, g[f"P{m}"]] if m < ARCH.num_layers - 1 else out_b[m]
        assert torch.allclose(w, out_gw[m], atol=1e-10)
        assert torch.allclose(b, out_gb[m], atol=1e-10)


@REDUCTIONS
def test_deep_align_equivariance_F_gv_gpv(reduction):
    model, v, w = _model(reduction=reduction), _nets(3, 1), _nets(3, 2)
    g, h = _perms(3), _perms(4)
    spec = ARCH.spec()
    base = model.similarity(v, w)
    moved = model.similarity(P.apply(spec, g, v, batched=True), P.apply(spec, h, w, batched=True))
    for lv, (s, s2) in enumerate(zip(base, moved)):
        gm, hm = P.as_matrix(g[f"P{lv}"], torch.float64), P.as_matrix(h[f"P{lv}"], torch.float64)
        assert torch.allclose(gm @ s @ hm.T, s2, atol=1e-10)


@REDUCTIONS
def test_deep_align_swap_symmetry(reduction):
    model, v, w = _model(reduction=reduction), _nets(2, 5), _nets(2, 6)
    for s, st in zip(model.similarity(v, w), model.similarity(w, v)):
        assert torch.allclose(s, st.transpose(1, 2), atol=1e-12)


def test_joint_encoder_pass_equals_separate_passes():
    model, v, w = _model(), _nets(3, 7), _nets(3, 8)
    separate = model.similarity(model.neuron_embeddings(v), model.neuron_embeddings(w))
    for s, s_sep in zip(model.similarity(v, w), separate, strict=True):
        assert torch.allclose(s, s_sep, atol=1e-12)


@REDUCTIONS
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deep_align_recovers_permutation_of_held_out_network(seed, reduction):
    model = _model(seed, reduction)  # untrained weights: recovery holds by construction
    v = _nets(2, 100 + seed)  # networks never seen
    g = _perms(10 + seed)
    aligned = model.align(v, P.apply(ARCH.spec(), g, v, batched=True))
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
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_soft_apply_mlp_matches_hard_permutation():
    v = _nets(2, 3)
    g = _perms(5)
    mats = [torch.stack([P.as_matrix(g[f"P{lv}"], torch.float64)] * 2) for lv in range(ARCH.num_layers - 1)]
    soft = T.soft_apply_mlp(mats, v, ARCH.num_layers)
    hard = P.apply(ARCH.spec(), g, v, batched=True)
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
