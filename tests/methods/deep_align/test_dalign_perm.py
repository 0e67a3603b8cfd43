"""Permutation specs, apply / compose / invert, and function preservation under permutation."""
import pytest
import torch

from paperzoo.methods.deep_align import interp
from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align.matching import soft_apply
from paperzoo.methods.deep_align.nets import CNNArch, MLPArch, stack, unbatch

MLP = MLPArch((6, 5, 4, 3, 2))
CNN = CNNArch(3, (4, 5), 3)


def _net(arch, seed=0):
    return unbatch(arch.init(1, torch.Generator().manual_seed(seed), torch.float64), 0)


@pytest.mark.parametrize("arch", [MLP, CNN])
def test_permuted_network_computes_the_same_function(arch):
    net = _net(arch)
    spec = arch.spec()
    g = P.random_perms(spec.sizes(net), torch.Generator().manual_seed(1))
    x = torch.randn(7, 6, dtype=torch.float64) if arch is MLP else torch.randn(7, 3, 8, 8, dtype=torch.float64)
    before = arch.forward(stack([net]), x)
    after = arch.forward(stack([P.apply(spec, g, net)]), x)
    assert torch.allclose(before, after, atol=1e-12)
    assert not torch.equal(P.apply(spec, g, net)["layer0.weight" if arch is MLP else "conv0.weight"],
                           net["layer0.weight" if arch is MLP else "conv0.weight"])


def test_mlp_spec_axes():
    spec = P.PermutationSpec.mlp(3)
    assert spec.axes_to_perm == {"layer0.weight": ("P0", None), "layer0.bias": ("P0",),
                                 "layer1.weight": ("P1", "P0"), "layer1.bias": ("P1",),
                                 "layer2.weight": (None, "P1"), "layer2.bias": (None,)}
    assert spec.perm_to_axes["P1"] == [("layer1.weight", 0), ("layer1.bias", 0), ("layer2.weight", 1)]


def test_cnn_spec_axes():
    spec = P.PermutationSpec.cnn(2)
    assert spec.axes_to_perm["conv1.weight"] == ("P1", "P0", None, None)
    assert spec.axes_to_perm["fc.weight"] == (None, "P1")


def test_invert_and_compose():
    gen = torch.Generator().manual_seed(0)
    sizes = {"P0": 9, "P1": 4}
    p, q = P.random_perms(sizes, gen), P.random_perms(sizes, gen)
    net = _net(MLPArch((3, 9, 4, 2)))
    spec = MLPArch((3, 9, 4, 2)).spec()
    both = P.apply(spec, q, P.apply(spec, p, net))
    assert all(torch.equal(both[k], P.apply(spec, P.compose(p, q), net)[k]) for k in net)
    undone = P.apply(spec, P.invert(p), P.apply(spec, p, net))
    assert all(torch.equal(undone[k], net[k]) for k in net)
    assert all(P.is_permutation(v) for v in P.compose(p, q).values())


def test_soft_apply_with_hard_matrices_equals_apply():
    net = _net(MLP)
    spec = MLP.spec()
    g = P.random_perms(spec.sizes(net), torch.Generator().manual_seed(3))
    mats = {k: P.as_matrix(v, torch.float64) for k, v in g.items()}
    hard, soft = P.apply(spec, g, net), soft_apply(spec, mats, net)
    assert all(torch.equal(hard[k], soft[k]) for k in net)


def test_sizes_rejects_inconsistent_axes():
    net = _net(MLP)
    net["layer1.weight"] = net["layer1.weight"][:, :3]
    with pytest.raises(ValueError, match="P0"):
        MLP.spec().sizes(net)


def test_barrier_and_auc_of_known_curve():
    lam = torch.linspace(0, 1, 5, dtype=torch.float64)
    losses = torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    curve = interp.Curve(lam, losses)
    assert curve.barrier == pytest.approx(2.0)
    assert curve.auc == pytest.approx(torch.trapezoid(losses - 1.0, lam).item())


def test_interpolation_end_points_and_plot(tmp_path):
    a, b = _net(MLP, 0), _net(MLP, 1)
    x = torch.randn(20, 6, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))

    def loss_of(p):
        return torch.nn.functional.cross_entropy(MLP.forward(p, x).transpose(1, 2),
                                                 y.expand(p["layer0.weight"].shape[0], -1),
                                                 reduction="none").mean(1)

    curve = interp.loss_curve(a, b, loss_of, num=6)
    assert curve.losses[0] == pytest.approx(float(loss_of(stack([b]))[0]))
    assert curve.losses[-1] == pytest.approx(float(loss_of(stack([a]))[0]))
    assert curve.barrier_curve[0] == pytest.approx(0.0, abs=1e-12)
    interp.plot_curves({"naive": [curve, curve]}, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
