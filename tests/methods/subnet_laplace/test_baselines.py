"""The comparison methods: diagonal Laplace against a brute-force reference, last-layer Laplace as a
SubnetLaplace, MC dropout, deep ensembles and MAP by hand, all behind one predictive interface."""
import math

import pytest
import torch
from subnet_laplace_problems import (
    diag_laplace_variance,
    full_jacobian,
    make_classifier,
    make_data,
    make_loader,
    make_regressor,
)
from torch import nn

from paperzoo.methods.subnet_laplace import metrics
from paperzoo.methods.subnet_laplace.baselines import (
    MAP,
    DeepEnsemble,
    DiagLaplace,
    LastLayerLaplace,
    MCDropout,
)
from paperzoo.methods.subnet_laplace.laplace import NotFittedError, SubnetLaplace
from paperzoo.methods.subnet_laplace.selection import LastLayer

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.mark.parametrize("likelihood", ["classification", "regression"])
def test_diag_laplace_equals_brute_force(likelihood):
    model = make_classifier() if likelihood == "classification" else make_regressor()
    x, y = make_data(likelihood)
    sigma, prior = 0.5, 0.8
    la = DiagLaplace(model, likelihood, prior_precision=prior, sigma_noise=sigma, chunk_size=7)
    la.fit(make_loader(x, y))

    variance = diag_laplace_variance(model, x, likelihood, prior, sigma)
    torch.testing.assert_close(la.posterior_variance, variance, **TOL)

    xt = x[:5]
    jt = full_jacobian(model, xt)
    f_var = jt @ torch.diag(variance) @ jt.transpose(1, 2)
    torch.testing.assert_close(la.predictive(xt)[1], f_var, **TOL)
    if likelihood == "classification":
        kappa = 1 / torch.sqrt(1 + math.pi / 8 * torch.diagonal(f_var, dim1=1, dim2=2))
        torch.testing.assert_close(la.predict(xt), torch.softmax(model(xt).detach() * kappa, -1), **TOL)
    else:
        _, var = la.predict(xt)
        torch.testing.assert_close(var, f_var[:, :, 0] + sigma ** 2, **TOL)


def test_diag_laplace_is_the_diagonal_of_the_full_subnetwork_laplace():
    model = make_classifier()
    x, y = make_data("classification")
    full = SubnetLaplace(model, "classification", torch.arange(51)).fit(make_loader(x, y))
    diag = DiagLaplace(model, "classification").fit(make_loader(x, y))
    torch.testing.assert_close(1 / diag.posterior_variance - 1.0, torch.diagonal(full.ggn), **TOL)


@pytest.mark.parametrize("rule", ["min", "one_se"])
def test_diag_laplace_prior_tuning_applies_the_rule(rule):
    model = make_regressor()
    x, y = make_data("regression", n=40)
    la = DiagLaplace(model, "regression", sigma_noise=0.2).fit(make_loader(x[:24], y[:24]))
    grid = torch.logspace(-2, 3, 11, dtype=torch.float64)
    chosen = la.optimize_prior_precision(make_loader(x[24:], y[24:], batch=6), grid=grid, rule=rule)
    terms = []
    for lam in grid:
        la.prior_precision = float(lam)
        terms.append(metrics.gaussian_nll_terms(*la.predict(x[24:]), y[24:]))
    terms = torch.stack(terms)
    mean, se = terms.mean(1), terms.std(1) / math.sqrt(terms.shape[1])
    torch.testing.assert_close(la.prior_curve["nll"], mean, rtol=1e-8, atol=1e-10)
    best = int(mean.argmin())
    within = [float(g) for g, m in zip(grid, mean, strict=True) if m <= mean[best] + se[best]]
    assert chosen == (float(grid[best]) if rule == "min" else min(within))


def test_last_layer_laplace_is_subnet_laplace_on_the_last_layer():
    model = make_classifier()
    x, y = make_data("classification")
    la = LastLayerLaplace(model, "classification", prior_precision=2.0).fit(make_loader(x, y))
    assert isinstance(la, SubnetLaplace)
    assert torch.equal(la.subnetwork_indices, LastLayer().select(model))
    ref = SubnetLaplace(model, "classification", torch.arange(24, 51), prior_precision=2.0)
    ref.fit(make_loader(x, y))
    assert torch.equal(la.predict(x), ref.predict(x))


def test_mc_dropout_averages_seeded_dropout_passes():
    model = make_classifier(dropout=0.3)
    x, _ = make_data("classification")
    mcd = MCDropout(model, "classification", n_samples=16)
    probs = mcd.predict(x, seed=0)
    torch.manual_seed(0)
    model.train()
    manual = torch.stack([torch.softmax(model(x), -1) for _ in range(16)]).mean(0).detach()
    model.eval()
    torch.testing.assert_close(probs, manual)
    assert torch.equal(mcd.predict(x, seed=0), probs)
    assert not torch.allclose(probs, torch.softmax(model(x), -1))  # dropout is really on
    assert not model.training and not model[2].training            # and off again afterwards

    reg = MCDropout(make_regressor(dropout=0.2), "regression", n_samples=10, sigma_noise=0.1)
    mean, var = reg.predict(x[:, :1], seed=1)
    assert mean.shape == var.shape == (24, 1) and (var >= 0.1 ** 2).all()


def test_mc_dropout_requires_dropout():
    with pytest.raises(ValueError, match="nn.Dropout"):
        MCDropout(make_classifier(), "classification")
    zero_rate = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.0), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"p > 0"):
        MCDropout(zero_rate, "classification")


def test_deep_ensemble_averages_members():
    members = [make_classifier(seed=s) for s in range(3)]
    x, _ = make_data("classification")
    probs = DeepEnsemble(members, "classification").predict(x)
    expected = torch.stack([torch.softmax(m(x), -1) for m in members]).mean(0).detach()
    torch.testing.assert_close(probs, expected)

    regs = [make_regressor(seed=s) for s in range(4)]
    xr, _ = make_data("regression")
    mean, var = DeepEnsemble(regs, "regression", sigma_noise=0.3).predict(xr)
    mus = torch.stack([m(xr) for m in regs]).detach()
    torch.testing.assert_close(mean, mus.mean(0))
    # mixture of N(mu_m, 0.09): E[y^2] - E[y]^2
    torch.testing.assert_close(var, (mus.square() + 0.09).mean(0) - mus.mean(0).square())

    with pytest.raises(ValueError, match="non-empty"):
        DeepEnsemble([], "classification")
    with pytest.raises(ValueError, match="disagree"):
        DeepEnsemble([make_classifier(), nn.Linear(2, 4).double()], "classification").predict(x)


def test_map_predictions():
    model = make_classifier()
    x, _ = make_data("classification")
    torch.testing.assert_close(MAP(model, "classification").predict(x), torch.softmax(model(x), -1).detach())
    reg = make_regressor()
    mean, var = MAP(reg, "regression", sigma_noise=0.4).predict(x[:, :1])
    torch.testing.assert_close(mean, reg(x[:, :1]).detach())
    torch.testing.assert_close(var, torch.full_like(mean, 0.16))


def test_every_method_has_the_same_interface():
    x, y = make_data("classification", n=30)
    train, val = make_loader(x[:20], y[:20]), make_loader(x[20:], y[20:])
    methods = [MAP(make_classifier(), "classification"), DiagLaplace(make_classifier(), "classification"),
               LastLayerLaplace(make_classifier(), "classification"),
               SubnetLaplace(make_classifier(), "classification", torch.arange(0, 51, 5)),
               MCDropout(make_classifier(dropout=0.2), "classification", n_samples=4),
               DeepEnsemble([make_classifier(seed=s) for s in range(2)], "classification")]
    for method in methods:
        assert method.fit(train) is method
        method.optimize_prior_precision(val, grid=[0.1, 1.0])
        probs = method.predict(x[20:])
        assert probs.shape == (10, 3)
        torch.testing.assert_close(probs.sum(-1), torch.ones(10, dtype=torch.float64))


def test_diag_laplace_bad_inputs():
    with pytest.raises(ValueError, match="likelihood"):
        DiagLaplace(make_classifier(), "ordinal")
    la = DiagLaplace(make_classifier(), "classification")
    with pytest.raises(NotFittedError):
        la.predict(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="shape"):
        la.prior_precision = torch.ones(3)
