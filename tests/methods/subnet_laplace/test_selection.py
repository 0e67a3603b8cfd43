"""Subnetwork selection: the largest-variance rule against a brute-force diagonal Laplace and a hand-run
SWAG, the baseline masks, candidate filters, tie-breaking and argument validation."""
import copy

import pytest
import torch
from subnet_laplace_problems import (
    diag_laplace_variance,
    make_classifier,
    make_data,
    make_loader,
    make_regressor,
)
from torch import nn

from paperzoo.methods.subnet_laplace.laplace import SubnetLaplace, flat_parameters, parameter_layout
from paperzoo.methods.subnet_laplace.selection import (
    LargestMagnitude,
    LargestVariance,
    LastLayer,
    Random,
    candidate_indices,
    subnetwork_size,
    swag_diagonal,
    top_scores,
)


@pytest.mark.parametrize("likelihood", ["classification", "regression"])
def test_largest_variance_picks_exactly_the_top_s_of_the_diagonal_laplace(likelihood):
    model = make_classifier() if likelihood == "classification" else make_regressor()
    x, y = make_data(likelihood, n=30)
    strategy = LargestVariance(likelihood=likelihood, prior_precision=0.5, sigma_noise=0.7, chunk_size=7)
    variances = diag_laplace_variance(model, x, likelihood, 0.5, 0.7)
    torch.testing.assert_close(strategy.marginal_variances(model, make_loader(x, y)), variances)

    for k in (1, 7, 20):
        picked = strategy.select(model, make_loader(x, y), n=k)
        assert picked.dtype == torch.long and torch.equal(picked, picked.sort().values)
        expected = set(torch.topk(variances, k).indices.tolist())
        assert set(picked.tolist()) == expected
        rest = [i for i in range(len(variances)) if i not in expected]
        assert variances[picked].min() >= variances[rest].max()


def test_largest_variance_with_filters_scores_only_the_candidates():
    model = make_classifier()
    x, y = make_data("classification", n=30)
    variances = diag_laplace_variance(model, x, "classification", 1.0)
    picked = LargestVariance(include="2.*").select(model, make_loader(x, y), n=5)
    layout = {s.name: s for s in parameter_layout(model)}
    start = layout["2.weight"].start
    expected = torch.topk(variances[start:], 5).indices + start
    assert torch.equal(picked, expected.sort().values)
    # the selected indices drive a SubnetLaplace directly
    la = SubnetLaplace(model, "classification", picked).fit(make_loader(x, y))
    assert la.posterior_covariance.shape == (5, 5)


def test_swag_variances_match_a_hand_run_sgd():
    model = make_classifier()
    before = flat_parameters(model).clone()
    x, y = make_data("classification", n=30)
    loader = make_loader(x, y)
    var = swag_diagonal(model, loader, "classification", epochs=2, lr=0.1, momentum=0.9, collect_every=1)
    assert torch.equal(flat_parameters(model), before)  # the model itself is not trained

    copy_ = copy.deepcopy(model)
    opt = torch.optim.SGD(copy_.parameters(), lr=0.1, momentum=0.9)
    snapshots = []
    for _ in range(2):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(copy_(xb), yb).backward()
            opt.step()
            snapshots.append(flat_parameters(copy_).clone())
    expected = torch.stack(snapshots).var(0, unbiased=False)
    torch.testing.assert_close(var, expected)

    per_epoch = swag_diagonal(model, loader, "classification", epochs=3, lr=0.1)
    # SWAG's default: plain SGD (no momentum), one snapshot at the end of every epoch
    copy_ = copy.deepcopy(model)
    opt = torch.optim.SGD(copy_.parameters(), lr=0.1)
    epoch_ends = []
    for _ in range(3):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(copy_(xb), yb).backward()
            opt.step()
        epoch_ends.append(flat_parameters(copy_).clone())
    torch.testing.assert_close(per_epoch, torch.stack(epoch_ends).var(0, unbiased=False))
    assert per_epoch.max() > 0
    strategy = LargestVariance("swag", epochs=2, lr=0.1, momentum=0.9, collect_every=1)
    picked = strategy.select(model, loader, n=6)
    assert set(picked.tolist()) == set(torch.topk(expected, 6).indices.tolist())


def test_swag_needs_two_snapshots():
    model = make_classifier()
    x, y = make_data("classification", n=30)
    with pytest.raises(ValueError, match="at least two"):
        swag_diagonal(model, make_loader(x, y), "classification", epochs=1)


def test_magnitude_ties_go_to_the_smaller_index():
    model = make_classifier()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
        model[2].bias.fill_(-2.0)        # flat 48..50: the three largest magnitudes
        model[0].weight[3, 1] = 0.0      # flat 7: the smallest
    picked = LargestMagnitude().select(model, n=6)
    assert picked.tolist() == [0, 1, 2, 48, 49, 50]
    scores, candidates = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0]), torch.tensor([4, 5, 6, 7, 8])
    assert top_scores(scores, candidates, 2).tolist() == [5, 6]


def test_fraction_and_count_agree():
    model = make_classifier()
    a = LargestMagnitude().select(model, fraction=0.2)
    b = LargestMagnitude().select(model, n=10)          # round(0.2 * 51) = 10
    assert torch.equal(a, b)
    assert subnetwork_size(None, 0.01, 51) == 1         # at least one weight
    assert subnetwork_size(None, 1.0, 51) == 51
    assert subnetwork_size(None, 0.5, 51) == 26         # half up


def test_include_and_exclude_filters():
    model = make_classifier()
    layout = {s.name: s for s in parameter_layout(model)}
    biases = candidate_indices(model, include="*.bias")
    expected = torch.cat([torch.arange(layout[n].start, layout[n].stop) for n in ("0.bias", "2.bias")])
    assert torch.equal(biases, expected)
    no_first = candidate_indices(model, exclude=["0.*"])
    assert int(no_first.min()) == layout["2.weight"].start and no_first.numel() == 27
    picked = Random(seed=3, include="0.weight").select(model, n=5)
    assert ((picked >= 0) & (picked < 16)).all()
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        candidate_indices(model, include="encoder.*")
    with pytest.raises(ValueError, match="leave no candidate"):
        candidate_indices(model, include="0.*", exclude="0.*")


def test_random_selection_is_deterministic_under_a_seed():
    model = make_classifier()
    a = Random(seed=7).select(model, n=12)
    assert torch.equal(a, Random(seed=7).select(model, n=12))
    assert not torch.equal(a, Random(seed=8).select(model, n=12))
    assert a.unique().numel() == 12 and torch.equal(a, a.sort().values)


def test_last_layer_selects_the_last_linear_module():
    model = make_classifier()
    layout = {s.name: s for s in parameter_layout(model)}
    picked = LastLayer().select(model)
    assert torch.equal(picked, torch.arange(layout["2.weight"].start, layout["2.bias"].stop))
    assert torch.equal(LastLayer().select(model, n=27), picked)
    assert torch.equal(LastLayer(names=["0.bias"]).select(model), torch.arange(16, 24))
    with pytest.raises(ValueError, match="fixed set of 27"):
        LastLayer().select(model, n=5)

    frozen_head = make_classifier()
    frozen_head[2].requires_grad_(False)
    assert torch.equal(LastLayer().select(frozen_head), torch.arange(24))  # the last *trainable* Linear
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(ValueError, match="no nn.Linear"):
        LastLayer().select(conv)


def test_bad_selection_arguments():
    model = make_classifier()
    with pytest.raises(ValueError, match="exactly one of n"):
        LargestMagnitude().select(model)
    with pytest.raises(ValueError, match="exactly one of n"):
        LargestMagnitude().select(model, n=3, fraction=0.1)
    for n in (0, 52, 2.5, True):
        with pytest.raises(ValueError, match=r"n must be an integer in \[1, 51\]"):
            LargestMagnitude().select(model, n=n)
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction must be"):
            LargestMagnitude().select(model, fraction=fraction)
    with pytest.raises(ValueError, match="diag must be"):
        LargestVariance(diag="kfac")
    with pytest.raises(ValueError, match="prior_precision"):
        LargestVariance(prior_precision=0.0)
    with pytest.raises(ValueError, match="training loader"):
        LargestVariance().select(model, None, n=3)
    with pytest.raises(ValueError, match="yielded no data"):
        LargestVariance().select(model, [], n=3)
    with pytest.raises(ValueError, match="NaN"):
        top_scores(torch.tensor([1.0, float("nan")]), torch.tensor([0, 1]), 1)


def test_largest_variance_skips_weights_the_data_never_touches():
    # a ReLU unit dead on every input: its weights keep the prior variance (the largest), but no output
    # depends on them, so a subnetwork of them would be the prior and predict exactly like the MAP
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        model[0].bias[0] = -100.0
    x, y = make_data("classification", n=30)
    loader = make_loader(x, y)
    strategy = LargestVariance("laplace", "classification")
    dead = {0, 1, 8, 12, 16, 20}       # unit 0: input weights 0, 1, bias 8, output weights 12, 16, 20
    variances = strategy.marginal_variances(model, loader)
    assert all(float(variances[i]) == 1.0 for i in dead)          # prior variance 1/lambda
    chosen = set(strategy.select(model, loader, n=6).tolist())
    assert not chosen & dead
    # asked for more weights than the 21 informed ones, the uninformed come last
    chosen = set(strategy.select(model, loader, n=22).tolist())
    assert set(range(27)) - dead <= chosen and len(chosen & dead) == 1


# --------------------------------------------------------------------------------------------------
# Likelihood / model / data mismatches, caught before any Jacobian or SWAG work
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def no_curvature_work(monkeypatch):
    """Any Jacobian or SWAG work fails the test: validation must come first."""
    from paperzoo.methods.subnet_laplace import selection

    def forbidden(*args, **kwargs):
        raise AssertionError("Jacobian / SWAG work started before validation")

    for name in ("SubnetworkJacobian", "diagonal_ggn", "swag_diagonal"):
        monkeypatch.setattr(selection, name, forbidden)


@pytest.mark.parametrize("diag", ["laplace", "swag"])
def test_classification_on_a_single_output_model_names_strategy_and_likelihood(diag, no_curvature_work):
    x, y = make_data("regression", n=12)
    strategy = LargestVariance(diag, "classification")
    with pytest.raises(ValueError, match=rf"LargestVariance\(diag='{diag}', likelihood='classification'\): "
                                         r"classification needs class logits .* outputs \(2, 1\)"):
        strategy.select(make_regressor(), make_loader(x, y), n=3)


def test_classification_needs_integer_labels_in_range(no_curvature_work):
    model = make_classifier()
    x, _ = make_data("classification", n=12)
    strategy = LargestVariance("swag", "classification")
    # real-valued targets: cross_entropy(out, y.long()) used to truncate them silently
    with pytest.raises(ValueError, match=r"likelihood='classification'\): classification needs integer class "
                                         r"labels"):
        strategy.select(model, make_loader(x, torch.linspace(0.1, 1.9, 12)), n=3)
    with pytest.raises(ValueError, match=r"class label 5 is outside \[0, 3\) for a model with 3 outputs"):
        strategy.select(model, make_loader(x, torch.full((12,), 5)), n=3)
    with pytest.raises(ValueError, match=r"the model fails on the training loader's first inputs \(2, 5\)"):
        strategy.select(model, make_loader(torch.zeros(12, 5, dtype=torch.float64), torch.zeros(12)), n=3)


@pytest.mark.parametrize("diag", ["laplace", "swag"])
def test_regression_on_class_labels_names_strategy_and_likelihood(diag, no_curvature_work):
    x, y = make_data("classification", n=12)
    with pytest.raises(ValueError, match=rf"LargestVariance\(diag='{diag}', likelihood='regression'\): regression "
                                         r"needs targets .* outputs \(2, 3\), targets \(2,\)"):
        LargestVariance(diag, "regression").select(make_classifier(), make_loader(x, y), n=3)


def test_data_check_leaves_model_and_loader_state_alone():
    x, y = make_data("classification", n=20)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)).double().train()
    stats = model[1].running_mean.clone()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    state = loader.generator.get_state()
    LargestVariance().check_data(model, loader)
    assert model.training and model[1].training  # modes restored
    assert torch.equal(model[1].running_mean, stats)  # eval forward: no running-statistics update
    assert torch.equal(loader.generator.get_state(), state)  # the shuffle order of the real pass is unchanged
    # a one-shot iterator is not peeked at (that would drop its first batch from the fit)
    strategy = LargestVariance(chunk_size=4)
    model = make_classifier()
    expected = strategy.select(model, make_loader(x, y), n=5)
    assert torch.equal(strategy.select(model, iter(make_loader(x, y)), n=5), expected)


def test_invalid_parameters_name_the_strategy_before_any_work(no_curvature_work):
    model = make_classifier()
    x, y = make_data("classification", n=12)
    with pytest.raises(ValueError, match=r"LargestVariance\(diag='laplace', likelihood='classification'\): n must "
                                         r"be an integer in \[1, 51\]"):
        LargestVariance().select(model, make_loader(x, y), n=52)
    with pytest.raises(ValueError, match=r"Random\(seed=3\): fraction must be"):
        Random(3).select(model, fraction=2.0)
    with pytest.raises(ValueError, match=r"LargestMagnitude\(\): n must be an integer in \[1, 27\]"):
        LargestMagnitude(include="2.*").select(model, n=100)
    with pytest.raises(ValueError, match=r"likelihood='classification'\): SWAG epochs must be a positive integer"):
        LargestVariance("swag", epochs=0)
    with pytest.raises(ValueError, match=r"SWAG learning rate must be positive"):
        LargestVariance("swag", lr=-1.0)
    with pytest.raises(ValueError, match=r"chunk_size must be a positive integer"):
        LargestVariance(chunk_size=0)
