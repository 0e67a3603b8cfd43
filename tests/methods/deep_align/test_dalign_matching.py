"""Weight matching, activation matching and Sinkhorn re-basin on planted permutations."""
import pytest
import torch

from paperzoo.methods.deep_align import matching
from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align.nets import CNNArch, MLPArch, stack, unbatch


def _planted(arch, seed):
    gen = torch.Generator().manual_seed(seed)
    a = unbatch(arch.init(1, gen, torch.float64), 0)
    g = P.random_perms(arch.spec().sizes(a), gen)
    return a, g, P.apply(arch.spec(), g, a)


def test_weight_matching_recovers_planted_permutation_exactly():
    arch = MLPArch((10, 12, 12, 12, 3))
    for seed in range(5):
        a, g, b = _planted(arch, seed)
        perms, info = matching.weight_matching(arch.spec(), a, b, generator=torch.Generator().manual_seed(seed))
        assert info.converged
        assert all(torch.equal(perms[k], P.invert(g)[k]) for k in g)


def test_weight_matching_recovers_planted_cnn_permutation():
    arch = CNNArch(3, (6, 8), 4)
    a, g, b = _planted(arch, 0)
    perms, _ = matching.weight_matching(arch.spec(), a, b, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(perms[k], P.invert(g)[k]) for k in g)


def test_weight_matching_from_correct_init_stops_after_one_sweep():
    arch = MLPArch((8, 6, 6, 2))
    a, g, b = _planted(arch, 1)
    perms, info = matching.weight_matching(arch.spec(), a, b, init=P.invert(g))
    assert info.iterations == 1 and all(torch.equal(perms[k], P.invert(g)[k]) for k in g)


def test_weight_matching_never_decreases_the_objective():
    arch = MLPArch((8, 10, 10, 2))
    gen = torch.Generator().manual_seed(4)
    a, b = unbatch(arch.init(1, gen, torch.float64), 0), unbatch(arch.init(1, gen, torch.float64), 0)
    spec = arch.spec()

    def inner(perms):
        bb = P.apply(spec, perms, b)
        return sum(float((a[k] * bb[k]).sum()) for k in a)

    perms, _ = matching.weight_matching(spec, a, b, generator=gen)
    assert inner(perms) >= inner(P.identity(spec.sizes(a))) - 1e-12


def test_activation_matching_recovers_planted_permutation():
    arch = MLPArch((5, 9, 9, 2))
    a, g, b = _planted(arch, 2)
    x = torch.randn(200, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def acts(p):
        return [h[0] for h in arch.activations(stack([p]), x)[:-1]]

    perms = matching.activation_matching(a, b, acts)
    assert all(torch.equal(perms[k], P.invert(g)[k]) for k in g)


def test_hungarian_and_sinkhorn():
    score = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.2, 0.1], [0.0, 0.3, 0.7]])
    assert matching.hungarian(score).tolist() == [1, 0, 2]
    ds = matching.log_sinkhorn(torch.randn(4, 5, 5), iters=50).exp()
    assert torch.allclose(ds.sum(-1), torch.ones(4, 5), atol=1e-4)
    assert torch.allclose(ds.sum(-2), torch.ones(4, 5), atol=1e-4)


def test_sinkhorn_rebasin_keeps_a_correct_initialisation_on_a_planted_pair():
    arch = MLPArch((5, 6, 6, 3))
    a, g, b = _planted(arch, 3)
    a = {k: v.float() for k, v in a.items()}
    b = {k: v.float() for k, v in b.items()}
    x = torch.randn(64, 5)
    y = arch.forward(stack([a]), x)[0].argmax(-1)

    def loss_of(p, lam, gen):
        return torch.nn.functional.cross_entropy(arch.forward(stack([p]), x)[0], y)

    perms, info = matching.sinkhorn_rebasin(arch.spec(), a, b, loss_of, steps=5, init=P.invert(g),
                                            init_scale=20.0, generator=torch.Generator().manual_seed(0))
    assert info.iterations == 5
    assert all(torch.equal(perms[k], P.invert(g)[k]) for k in g)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_implicit_sinkhorn_gradient_is_the_converged_unrolled_gradient(tau):
    # at the fixed point, differentiating the balanced matrix (implicit) and backpropagating through
    # enough iterations (unrolled) are the same derivative; 20 unrolled iterations are not yet
    g = torch.Generator().manual_seed(0)
    s = (2 * torch.randn(3, 6, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    up = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    for head in (lambda z: z, torch.exp):  # gradients on log P (supervised loss) and on P (soft apply)
        implicit, = torch.autograd.grad((head(matching.log_sinkhorn(s, 500, tau, implicit=True)) * up).sum(),
                                        s)
        unrolled, = torch.autograd.grad((head(matching.log_sinkhorn(s, 500, tau)) * up).sum(), s)
        torch.testing.assert_close(implicit, unrolled, rtol=0, atol=1e-10)
    short, = torch.autograd.grad((matching.log_sinkhorn(s, 20, tau) * up).sum(), s)
    assert (short - implicit).abs().max() > 1e-3
    forward = matching.log_sinkhorn(s, 500, tau, implicit=True)
    torch.testing.assert_close(forward, matching.log_sinkhorn(s, 500, tau), rtol=0, atol=0)


def test_implicit_sinkhorn_passes_gradcheck():
    s = torch.randn(2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: matching.log_sinkhorn(t, 1000, 1.0, implicit=True), (s,))


def test_implicit_sinkhorn_falls_back_to_unrolled_on_a_hard_permutation():
    # logits that saturate to an exact permutation in float32: the implicit system is singular, so that
    # matrix takes the unrolled gradient; the other matrix of the batch keeps the implicit one
    g = torch.Generator().manual_seed(0)
    hard = 300 * torch.eye(8)[torch.randperm(8, generator=g)] + torch.randn(8, 8, generator=g)
    s = torch.stack([hard, torch.randn(8, 8, generator=g)]).requires_grad_(True)
    up = torch.randn(2, 8, 8, generator=g)
    implicit, = torch.autograd.grad((matching.log_sinkhorn(s, 20, 1.0, implicit=True) * up).sum(), s)
    unrolled, = torch.autograd.grad((matching.log_sinkhorn(s, 20, 1.0) * up).sum(), s)
    assert torch.isfinite(implicit).all()
    torch.testing.assert_close(implicit[0], unrolled[0])
    converged, = torch.autograd.grad((matching.log_sinkhorn(s[1:], 500, 1.0) * up[1:]).sum(), s)
    torch.testing.assert_close(implicit[1], converged[1], rtol=0, atol=1e-3)
