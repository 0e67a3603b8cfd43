"""The low-rank form of SubnetLaplace: with fewer whitened Jacobian rows than subnetwork weights the fit
keeps the rows and the predictive uses the Woodbury identity; it must equal the dense posterior."""
import pytest
import torch
from subnet_laplace_problems import (
    full_ggn,
    full_jacobian,
    make_classifier,
    make_data,
    make_loader,
    make_regressor,
)

from paperzoo.methods.subnet_laplace.laplace import SubnetLaplace, flat_parameters

TOL = {"rtol": 1e-8, "atol": 1e-10}


def _dense_moments(la, x):
    """The same posterior's moments through the S x S covariance (forming it switches the path)."""
    assert la.posterior_covariance.shape == (la.n_subnetwork, la.n_subnetwork)
    return la.predictive(x)


@pytest.mark.parametrize("prior", [0.5, "vector"])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_woodbury_predictive_equals_brute_force_regression(prior, temperature):
    model = make_regressor()
    x, y = make_data("regression", n=12)
    n_params = flat_parameters(model).numel()                  # 31 weights > 12 rows
    if prior == "vector":
        prior = torch.linspace(0.2, 3.0, n_params, dtype=torch.float64)
    sigma = 0.3
    la = SubnetLaplace(model, "regression", torch.arange(n_params), prior_precision=prior, sigma_noise=sigma,
                       temperature=temperature).fit(make_loader(x, y, batch=5))
    assert la._rows is not None and la._rows.shape == (12, n_params) and la._gram is None

    xt = torch.linspace(-4, 4, 9, dtype=torch.float64).unsqueeze(1)
    f_mean, f_var = la.predictive(xt)                          # Woodbury, before any S x S matrix exists
    assert la._gram is None and la._cov is None
    lam = prior if isinstance(prior, torch.Tensor) else prior * torch.ones(n_params, dtype=torch.float64)
    precision = full_ggn(model, x, "regression", sigma) / temperature + torch.diag(lam)
    jac = full_jacobian(model, xt)
    torch.testing.assert_close(f_var, jac @ torch.linalg.inv(precision) @ jac.transpose(1, 2), **TOL)
    torch.testing.assert_close(f_mean, model(xt).detach(), **TOL)
    torch.testing.assert_close(la.posterior_precision, precision, **TOL)   # the GGN, formed on demand


def test_woodbury_follows_hyperparameter_changes_classification():
    model = make_classifier()
    x, y = make_data("classification", n=12)                  # 36 rows < 51 weights
    n_params = flat_parameters(model).numel()
    la = SubnetLaplace(model, "classification", torch.arange(n_params), prior_precision=1.0).fit(
        make_loader(x, y, batch=4))
    assert la._rows is not None
    xt = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    dense = SubnetLaplace(model, "classification", torch.arange(n_params)).fit(make_loader(x, y, batch=4))
    for prior, temp in [(1.0, 1.0), (0.05, 1.0), (20.0, 2.0)]:
        la.prior_precision, la.temperature = prior, temp
        dense.prior_precision, dense.temperature = prior, temp
        probs = la.predict(xt)                                  # probit, from the Woodbury moments
        assert la._cov is None
        torch.testing.assert_close(la.predictive(xt)[1], _dense_moments(dense, xt)[1], **TOL)
        torch.testing.assert_close(probs, dense.predict(xt), **TOL)


def test_rows_switch_to_the_gram_once_they_outnumber_the_weights():
    model = make_classifier()
    x, y = make_data("classification", n=24)                  # 72 rows > 51 weights: switches mid-fit
    n_params = flat_parameters(model).numel()
    la = SubnetLaplace(model, "classification", torch.arange(n_params)).fit(make_loader(x, y, batch=10))
    assert la._rows is None and la._gram is not None
    torch.testing.assert_close(la.ggn, full_ggn(model, x, "classification"), **TOL)


def test_float32_always_accumulates_the_gram():
    model = make_regressor(dtype=torch.float32)
    x, y = make_data("regression", n=12, dtype=torch.float32)
    la = SubnetLaplace(model, "regression", torch.arange(31), dtype=torch.float32).fit(make_loader(x, y))
    assert la._rows is None and la._gram is not None


def test_low_rank_posterior_saves_and_loads(tmp_path):
    model = make_regressor()
    x, y = make_data("regression", n=12)
    la = SubnetLaplace(model, "regression", torch.arange(31), prior_precision=0.7, sigma_noise=0.2).fit(
        make_loader(x, y))
    xt = torch.linspace(-3, 3, 5, dtype=torch.float64).unsqueeze(1)
    before = la.predictive(xt)[1]
    back = SubnetLaplace.load(la.save(tmp_path / "post.pt"), model)
    assert back._rows is not None and back._rows.shape == (12, 31) and back._gram is None   # saved as rows
    torch.testing.assert_close(back.predictive(xt)[1], before, **TOL)
    torch.testing.assert_close(back.log_marginal_likelihood(), la.log_marginal_likelihood(), rtol=1e-10, atol=1e-10)
    dense32 = SubnetLaplace.load(tmp_path / "post.pt", model, dtype=torch.float32)    # float32: forms G_S
    assert dense32._rows is None
    torch.testing.assert_close(dense32.ggn.double(), la.ggn, rtol=1e-5, atol=1e-6)


def _pair(likelihood, n=12, prior=0.5, temperature=1.0):
    """The same posterior twice: one kept low-rank, one with G_S formed (dense path everywhere)."""
    model = make_regressor() if likelihood == "regression" else make_classifier()
    x, y = make_data(likelihood, n=n)
    n_params = flat_parameters(model).numel()
    kw = {"prior_precision": prior, "temperature": temperature}
    if likelihood == "regression":
        kw["sigma_noise"] = 0.3
    low = SubnetLaplace(model, likelihood, torch.arange(n_params), **kw).fit(make_loader(x, y, batch=4))
    dense = SubnetLaplace(model, likelihood, torch.arange(n_params), **kw).fit(make_loader(x, y, batch=4))
    assert dense.ggn.shape == (n_params, n_params) and dense._gram is not None
    return model, low, dense


@pytest.mark.parametrize("likelihood", ["regression", "classification"])
def test_low_rank_tuning_and_evidence_equal_the_dense_ones(likelihood):
    _, low, dense = _pair(likelihood, temperature=0.7)
    xv, yv = make_data(likelihood, n=10, seed=5)
    grid = torch.logspace(-3, 3, 13)
    chosen = low.optimize_prior_precision([(xv, yv)], grid=grid, rule="one_se")
    assert dense.optimize_prior_precision([(xv, yv)], grid=grid, rule="one_se") == chosen
    metric = "nll"
    torch.testing.assert_close(low.prior_curve[metric], dense.prior_curve[metric], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(low.log_marginal_likelihood(), dense.log_marginal_likelihood(), rtol=1e-9, atol=1e-9)
    assert low._gram is None                           # tuning and the evidence never formed G_S


def test_matheron_samples_have_the_posterior_covariance():
    _, low, dense = _pair("regression", prior=2.0)
    draws = low.sample(40000, generator=torch.Generator().manual_seed(0)).double()
    assert low._gram is None
    centred = draws - low.mean.double()
    torch.testing.assert_close(centred.mean(0), torch.zeros(31, dtype=torch.float64), rtol=0, atol=0.02)
    emp = centred.T @ centred / len(draws)
    torch.testing.assert_close(emp, dense.posterior_covariance, rtol=0, atol=0.02)
