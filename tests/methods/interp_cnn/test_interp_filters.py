"""Templates, masking and the filter loss of interpretable CNNs (paperzoo.methods.interp_cnn.filters)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.methods.interp_cnn.filters import (
    InterpretableLayer,
    default_alpha,
    default_tau,
    filter_loss,
    filter_loss_of,
    interpretable_layers,
    make_interpretable,
    mutual_information_terms,
    template_mask,
    templates,
)
from paperzoo.methods.interp_cnn.models import TOP_LAYER, build_model


def test_templates_match_the_papers_formula_for_n_3():
    n = 3
    t = templates(n, dtype=torch.float64)
    assert t.shape == (n * n + 1, n, n)
    tau = 0.5 / n**2
    assert default_tau(n, n) == tau and default_alpha(n, n) == pytest.approx(9 / 10)
    # T_mu(i) = tau * max(1 - beta ||i - mu||_1 / n, -1), beta = 4, written out for mu = (0, 0) and (1, 1)
    corner = tau * torch.tensor([[1, 1 - 4 / 3, 1 - 8 / 3], [1 - 4 / 3, 1 - 8 / 3, -1], [1 - 8 / 3, -1, -1]],
                                dtype=torch.float64).clamp(min=-1)
    centre = tau * torch.tensor([[1 - 8 / 3, 1 - 4 / 3, 1 - 8 / 3], [1 - 4 / 3, 1, 1 - 4 / 3],
                                 [1 - 8 / 3, 1 - 4 / 3, 1 - 8 / 3]], dtype=torch.float64).clamp(min=-1)
    torch.testing.assert_close(t[0], corner)
    torch.testing.assert_close(t[4], centre)  # mu = (1, 1) is row-major index 4
    torch.testing.assert_close(t[-1], torch.full((3, 3), -tau, dtype=torch.float64))
    # every positive template peaks (tau) at its own position
    assert all(t[k].flatten().argmax() == k and t[k].max() == pytest.approx(tau) for k in range(n * n))


def test_rectangular_maps_scale_each_axis_by_its_own_size():
    t = templates(2, 4, beta=1.0, tau=1.0, dtype=torch.float64)
    # mu = (0, 0): d((1, 3)) = 1/2 + 3/4
    assert float(t[0, 1, 3]) == pytest.approx(1 - (0.5 + 0.75))


def test_mask_keeps_only_the_neighbourhood_of_the_argmax():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, 8, 8, generator=g, dtype=torch.float64)
    out = template_mask(x)  # beta = 4 on 8 x 8: weight max(1 - 4 * L1 / 8, 0), non-zero for L1 distance <= 1
    for b in range(3):
        for c in range(4):
            k = int(x[b, c].flatten().argmax())
            mi, mj = divmod(k, 8)
            ii, jj = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
            l1 = (ii - mi).abs() + (jj - mj).abs()
            expect = x[b, c] * (1 - 4 * l1 / 8).clamp(min=0)
            torch.testing.assert_close(out[b, c], expect)
            assert torch.all(out[b, c][l1 >= 2] == 0) and out[b, c, mi, mj] == x[b, c, mi, mj]


def test_mask_passes_gradient_to_the_kept_positions_only():
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 3.0
    x[0, 0, 0, 0] = 1.0
    x.requires_grad_(True)
    template_mask(x).sum().backward()
    assert x.grad[0, 0, 2, 2] == 1.0 and x.grad[0, 0, 0, 0] == 0.0 and x.grad[0, 0, 2, 3] == pytest.approx(1 - 4 / 5)


def test_filter_loss_gradient_equals_the_numerical_gradient():
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(5, 3, 4, 4, generator=g, dtype=torch.float64) * 20).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: filter_loss(t), (x,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda t: filter_loss(t, beta=2.0, alpha=0.5).sum(), (x,), eps=1e-6, atol=1e-6)


def test_filter_loss_is_minus_the_mutual_information_of_the_papers_decomposition():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 4, 5, 5, generator=g, dtype=torch.float64) * 40
    terms = mutual_information_terms(x)
    mi = terms["H(T)"] - terms["H(T'|X)"] - terms["H(T+|X)"]
    torch.testing.assert_close(filter_loss(x), -mi)
    # H(T) is the entropy of the priors alpha / n^2 (n^2 of them) and 1 - alpha
    n2, a = 25, 25 / 26
    h_t = -(a * math.log(a / n2) + (1 - a) * math.log(1 - a))
    torch.testing.assert_close(terms["H(T)"], torch.full((4,), h_t, dtype=torch.float64))
    assert torch.all(-filter_loss(x) >= -1e-12) and torch.all(-filter_loss(x) <= min(h_t, math.log(6)) + 1e-9)


def test_filter_loss_known_values_and_symmetry():
    # identical images carry no information about the templates: MI = 0 (also for a single image)
    same = torch.rand(1, 2, 4, 4, dtype=torch.float64).expand(5, 2, 4, 4)
    torch.testing.assert_close(filter_loss(same), torch.zeros(2, dtype=torch.float64))
    assert torch.all(filter_loss(torch.rand(1, 3, 4, 4)) == 0)
    # the loss is a function of the SET of images: permuting the batch changes nothing
    x = torch.rand(7, 3, 4, 4, dtype=torch.float64) * 30
    torch.testing.assert_close(filter_loss(x), filter_loss(x[torch.randperm(7)]))
    # filters are independent: the loss of a filter does not depend on the others
    torch.testing.assert_close(filter_loss(x)[1:], filter_loss(x[:, 1:]))


def test_part_like_filters_have_more_information_than_diffuse_ones():
    # a filter firing at one spot on half the images and silent on the others vs uniform noise of the same mass
    b, n = 8, 6
    part = torch.zeros(b, 1, n, n, dtype=torch.float64)
    part[: b // 2, 0, 2, 3] = 400.0
    diffuse = torch.full((b, 1, n, n), 400.0 / (2 * n * n), dtype=torch.float64)
    assert float(filter_loss(part)) < float(filter_loss(diffuse)) - 0.1


@pytest.mark.parametrize("batch", [1, 2, 3, 16])
def test_loss_and_mask_work_for_any_batch_size(batch):
    x = torch.rand(batch, 5, 6, 6, requires_grad=True)
    loss = filter_loss(x)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert template_mask(x).shape == x.shape


def test_bad_shapes_fail_with_one_clear_error():
    with pytest.raises(ValueError, match="batch, filters, h, w"):
        filter_loss(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="floating-point"):
        template_mask(torch.ones(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha"):
        filter_loss(torch.rand(2, 1, 2, 2), alpha=1.0)


def test_wrapper_applies_relu_mask_and_records_the_loss():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = InterpretableLayer(conv)
    x = torch.randn(2, 3, 6, 6)
    out = layer(x)
    torch.testing.assert_close(out, template_mask(F.relu(conv(x))))
    torch.testing.assert_close(layer.loss, filter_loss(F.relu(conv(x))))
    layer.eval()
    layer(x)
    assert layer.loss is None
    with torch.no_grad():
        layer.train()(x)
    assert layer.loss is None
    monitor = InterpretableLayer(conv, loss_in_eval=True).eval()
    with torch.no_grad():
        monitor(x)
    torch.testing.assert_close(monitor.loss, filter_loss(F.relu(conv(x))))


def test_make_interpretable_wraps_named_layers_of_any_module():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    (wrapper,) = make_interpretable(net, "2")
    assert net[2] is wrapper and [n for n, _ in interpretable_layers(net)] == ["2"]
    x = torch.randn(4, 3, 5, 5)
    logits = net(x)
    loss = F.cross_entropy(logits, torch.tensor([0, 1, 0, 1])) + 0.1 * filter_loss_of(net)
    loss.backward()
    assert torch.isfinite(net[2].module.weight.grad).all() and net[2].module.weight.grad.abs().sum() > 0
    with pytest.raises(KeyError, match="no submodule 'layer9'"):
        make_interpretable(net, "layer9")
    with pytest.raises(ValueError, match="already interpretable"):
        make_interpretable(net, "2")
    net.eval()
    net(x)
    with pytest.raises(RuntimeError, match="no loss from the last forward"):
        filter_loss_of(net)
    with pytest.raises(ValueError, match="no interpretable layer"):
        filter_loss_of(nn.Linear(2, 2))


def test_filter_loss_gradient_reaches_the_weights_only_through_the_wrapped_layer():
    net = build_model("vgg", 3, width=4, top_filters=6)
    x = torch.randn(5, 3, 32, 32)
    net(x)
    filter_loss_of(net).backward()
    assert net.top.module.weight.grad.abs().sum() > 0 and net.features[0].weight.grad.abs().sum() > 0
    assert net.fc.weight.grad is None  # the classifier is downstream of the loss


@pytest.mark.parametrize("backbone", ["vgg", "resnet"])
def test_backbones_with_and_without_the_interpretable_layer(backbone):
    torch.manual_seed(0)
    plain = build_model(backbone, 5, width=4, top_filters=8, interpretable=False)
    torch.manual_seed(0)
    interp = build_model(backbone, 5, width=4, top_filters=8, interpretable=True)
    # same parameters (the wrapper adds none), same initial values
    assert [p.shape for p in plain.parameters()] == [p.shape for p in interp.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), interp.parameters()))
    x = torch.randn(2, 3, 32, 32)
    assert plain(x).shape == interp(x).shape == (2, 5)
    top = interp.get_submodule(TOP_LAYER[backbone])
    assert isinstance(top, InterpretableLayer) and top.loss is not None and top.loss.shape == (8,)


def test_resnet_mask_acts_on_the_block_output_after_the_skip_sum():
    net = build_model("resnet", 3, width=4, top_filters=8)
    block = net.layer3[1]
    with torch.no_grad():
        block.module.gain.fill_(1.0)
    seen = {}
    block.register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
    net(torch.randn(2, 3, 32, 32))
    inner = block.module
    expect = template_mask(torch.relu(inner.skip(seen["inp"]) + inner.gain * inner.conv2(torch.relu(inner.conv1(seen["inp"])))))
    torch.testing.assert_close(seen["out"], expect)
