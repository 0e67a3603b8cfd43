"""The closed-form layerwise Jacobian rules (``jacobians.py``) against torch.func and brute force."""
import pytest
import torch
from subnet_laplace_problems import (
    Twice,
    full_ggn,
    full_jacobian,
    make_classifier,
    make_data,
    make_loader,
    make_regressor,
)
from torch import nn
from torch.nn import functional as F

from paperzoo.methods.subnet_laplace import laplace
from paperzoo.methods.subnet_laplace.laplace import (
    SubnetLaplace,
    SubnetworkJacobian,
    flat_parameters,
    parameter_layout,
)

EXACT = {"rtol": 0.0, "atol": 1e-10}

# torch's own note on padding="same" with an even kernel (the case is tested on purpose)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")


class Residual(nn.Module):
    """``x + block(x)``: a non-sequential module between the layers."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


def cnn(seed=0):
    """Conv2d with stride, padding, dilation, ``padding="same"`` with an even kernel, no-bias conv, in-place
    ReLU, pooling, a residual block, Flatten and Linear: 2x9x9 images -> 4 logits, float64."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(3, 4, 2, padding="same"), nn.Tanh(),
        Residual(nn.Conv2d(4, 4, 3, padding=2, dilation=2, bias=False)), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 4)).double()


def sequence_model(seed=0):
    """A Linear applied to every step of a ``(B, 5, 3)`` sequence (several positions per input)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Flatten(), nn.Linear(20, 2)).double()


def names_to_indices(model, names, every=1):
    """Every ``every``-th flat index of the named parameter tensors."""
    layout = {s.name: s for s in parameter_layout(model)}
    return torch.cat([torch.arange(layout[n].start, layout[n].stop, every) for n in names])


def random_indices(model, n, seed=0):
    n_params = flat_parameters(model).numel()
    return torch.randperm(n_params, generator=torch.Generator().manual_seed(seed))[:n]


def assert_layerwise_matches_jacrev(model, x, indices):
    layerwise = SubnetworkJacobian(model, indices, mode="layerwise")
    f, jac = layerwise(x)
    f_ref, jac_ref = SubnetworkJacobian(model, indices, mode="jacrev")(x)
    assert layerwise.method == "layerwise"
    torch.testing.assert_close(f, f_ref, **EXACT)
    torch.testing.assert_close(jac, jac_ref, **EXACT)
    assert jac.abs().max() > 0


CASES = {
    "mlp classification, all weights (dense)": (make_classifier, (6, 2), lambda m: torch.arange(51)),
    "mlp classification, random": (make_classifier, (6, 2), lambda m: random_indices(m, 17)),
    "mlp regression, random": (make_regressor, (6, 1), lambda m: random_indices(m, 9)),
    "mlp biases only": (make_classifier, (6, 2), lambda m: names_to_indices(m, ["0.bias", "2.bias"])),
    "cnn random across every layer": (cnn, (5, 2, 9, 9), lambda m: random_indices(m, 60)),
    "cnn whole conv tensors (dense) and biases": (
        cnn, (5, 2, 9, 9), lambda m: names_to_indices(m, ["0.weight", "0.bias", "2.bias", "4.block.weight"])),
    "cnn more than half of a conv (dense, indexed)": (
        cnn, (5, 2, 9, 9), lambda m: names_to_indices(m, ["2.weight"])[torch.arange(48) % 5 != 0]),
    "cnn conv weights, fewer than a row (gathered rows)": (
        cnn, (5, 2, 9, 9), lambda m: names_to_indices(m, ["2.weight"], 7)),
    "cnn conv weights, a row or more (whole rows)": (
        cnn, (5, 2, 9, 9), lambda m: names_to_indices(m, ["2.weight", "4.block.weight"], 3)),
    "linear over sequence positions, whole rows": (
        sequence_model, (4, 5, 3), lambda m: names_to_indices(m, ["0.weight", "3.weight"], 3)),
    "linear over sequence positions, gathered rows": (
        sequence_model, (4, 5, 3), lambda m: torch.tensor([1, 6, 16, 19, 30])),
}


@pytest.mark.parametrize("case", CASES)
def test_layerwise_jacobian_equals_jacrev(case):
    make_model, shape, select = CASES[case]
    model = make_model()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert_layerwise_matches_jacrev(model, x, select(model))


def test_auto_mode_uses_the_rules_and_they_equal_the_brute_force_jacobian():
    model = cnn()
    x = torch.randn(3, 2, 9, 9, dtype=torch.float64)
    indices = random_indices(model, 40, seed=1)
    jacobian = SubnetworkJacobian(model, indices, chunk_size=2)
    _, jac = jacobian(x)
    assert jacobian.method == "layerwise" and jacobian.fallback_reason is None
    torch.testing.assert_close(jac, full_jacobian(model, x)[:, :, indices.sort().values], **EXACT)


class TiedHead(nn.Module):
    """An output layer that reads the first layer's weight directly (tied weights)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 3)

    def forward(self, x):
        return F.linear(torch.tanh(self.inp(x)), self.inp.weight)


def _seeded(make):
    torch.manual_seed(0)
    return make().double()


FALLBACKS = {
    "batchnorm weight": (lambda: nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(),
                                               nn.Linear(5, 2)),
                         (6, 3), [20, 21, 23, 3, 30], "BatchNorm1d"),
    "embedding": (lambda: nn.Sequential(nn.Embedding(7, 3), nn.Flatten(), nn.Linear(6, 2)),
                  None, [2, 5, 22, 30], "Embedding"),
    "grouped conv": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(16, 2)),
                     (3, 2, 4, 4), [0, 9, 40], "grouped"),
    "tied weights read by other code": (TiedHead, (4, 3), [0, 4, 9], "uses on the way to the output"),
    "layer called twice": (Twice, (4, 3), [0, 4, 9, 11], "ran 2 times"),
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_unsupported_models_fall_back_to_torch_func_and_stay_exact(case):
    make_model, shape, indices, reason = FALLBACKS[case]
    model = _seeded(make_model)
    if shape is None:
        x = torch.randint(0, 7, (4, 2))
    else:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model(x)  # BatchNorm: leave the running statistics alone later (the Jacobian runs in eval mode)
    auto = SubnetworkJacobian(model, indices)
    _, jac = auto(x)
    assert auto.method == "jacrev" and reason in auto.fallback_reason
    model.eval()
    torch.testing.assert_close(jac, full_jacobian(model, x)[:, :, sorted(indices)], **EXACT)
    with pytest.raises(ValueError, match="'layerwise' does not apply"):
        SubnetworkJacobian(model, indices, mode="layerwise")(x)


@pytest.mark.parametrize("likelihood", ["classification", "regression"])
def test_subnet_laplace_with_the_rules_equals_brute_force_full_laplace(likelihood):
    make = make_classifier if likelihood == "classification" else make_regressor
    model = make()
    x, y = make_data(likelihood)
    indices = random_indices(model, 20, seed=2).sort().values
    la = SubnetLaplace(model, likelihood, indices, sigma_noise=0.3).fit(make_loader(x, y))
    assert la._jacobian.method == "layerwise"
    block = full_ggn(model, x, likelihood, sigma=0.3)[indices][:, indices]
    torch.testing.assert_close(la.ggn, block, rtol=1e-10, atol=1e-10)


def test_cnn_subnet_laplace_equals_brute_force_full_laplace():
    model = cnn()
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(12, 2, 9, 9, generator=g, dtype=torch.float64), torch.randint(0, 4, (12,), generator=g)
    indices = random_indices(model, 50, seed=3).sort().values
    la = SubnetLaplace(model, "classification", indices).fit(make_loader(x, y, batch=5))
    assert la._jacobian.method == "layerwise"
    block = full_ggn(model, x, "classification")[indices][:, indices]
    torch.testing.assert_close(la.ggn, block, rtol=1e-10, atol=1e-10)


def test_gram_accumulation_in_row_blocks_equals_one_product(monkeypatch):
    model = make_classifier()
    x, y = make_data("classification")
    indices = random_indices(model, 31, seed=4)
    whole = SubnetLaplace(model, "classification", indices).fit(make_loader(x, y)).ggn
    monkeypatch.setattr(laplace, "_GRAM_MIN_BLOCKED", 0)              # 8 blocks of 4 rows, the last of 3
    assert laplace._gram_rows(31) == 4
    blocked = SubnetLaplace(model, "classification", indices).fit(make_loader(x, y)).ggn
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(blocked, blocked.T, rtol=0.0, atol=0.0)
