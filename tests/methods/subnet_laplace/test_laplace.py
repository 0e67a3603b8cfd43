"""SubnetLaplace against an independent brute-force Laplace (full Jacobians from
``torch.autograd.functional.jacobian``, GGN assembled by hand in float64), plus the subnetwork-only
Jacobian, the predictive links, prior tuning, persistence and input validation."""
import math
import time

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
from torch import nn

from paperzoo.methods.subnet_laplace import metrics
from paperzoo.methods.subnet_laplace.laplace import (
    NotFittedError,
    SubnetLaplace,
    SubnetworkJacobian,
    flat_parameters,
    mc_softmax,
    parameter_layout,
    probit_softmax,
    sample_gaussian,
    select_prior_precision,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}

# torch's first forward-mode AD call loads decompositions through torch.jit.script, which warns in 2.13
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


# -- 1. equivalence with the brute-force full Laplace ------------------------------------------------

@pytest.mark.parametrize("mode", ["jacrev", "jacfwd"])
def test_all_weights_classification_equals_brute_force(mode):
    model = make_classifier()
    x, y = make_data("classification")
    n_params = flat_parameters(model).numel()
    la = SubnetLaplace(model, "classification", torch.arange(n_params), prior_precision=0.7,
                       jacobian=mode).fit(make_loader(x, y))

    precision = full_ggn(model, x, "classification") + 0.7 * torch.eye(n_params, dtype=torch.float64)
    covariance = torch.linalg.inv(precision)
    torch.testing.assert_close(la.posterior_precision, precision, **TOL)
    torch.testing.assert_close(la.posterior_covariance, covariance, **TOL)

    xt = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    jac = full_jacobian(model, xt)
    f_var = jac @ covariance @ jac.transpose(1, 2)
    f_mean, la_var = la.predictive(xt)
    torch.testing.assert_close(f_mean, model(xt).detach(), **TOL)
    torch.testing.assert_close(la_var, f_var, **TOL)
    kappa = 1 / torch.sqrt(1 + math.pi / 8 * torch.diagonal(f_var, dim1=1, dim2=2))
    torch.testing.assert_close(la.predict(xt), torch.softmax(model(xt).detach() * kappa, -1), **TOL)


def test_all_weights_regression_equals_brute_force():
    model = make_regressor()
    x, y = make_data("regression")
    n_params = flat_parameters(model).numel()
    sigma, prior = 0.3, 2.0
    la = SubnetLaplace(model, "regression", torch.arange(n_params), prior_precision=prior,
                       sigma_noise=sigma).fit(make_loader(x, y))

    precision = full_ggn(model, x, "regression", sigma) + prior * torch.eye(n_params, dtype=torch.float64)
    covariance = torch.linalg.inv(precision)
    torch.testing.assert_close(la.posterior_precision, precision, **TOL)
    torch.testing.assert_close(la.posterior_covariance, covariance, **TOL)

    xt = torch.linspace(-4, 4, 7, dtype=torch.float64).unsqueeze(1)
    jac = full_jacobian(model, xt)
    f_var = jac @ covariance @ jac.transpose(1, 2)
    mean, var = la.predict(xt)
    torch.testing.assert_close(mean, model(xt).detach(), **TOL)
    torch.testing.assert_close(var, f_var[:, :, 0] + sigma ** 2, **TOL)


@pytest.mark.parametrize("likelihood", ["classification", "regression"])
def test_random_subnetwork_is_the_sub_block_of_the_full_ggn(likelihood):
    model = make_classifier() if likelihood == "classification" else make_regressor()
    x, y = make_data(likelihood)
    n_params = flat_parameters(model).numel()
    indices = torch.randperm(n_params, generator=torch.Generator().manual_seed(3))[:11]  # unsorted on purpose
    la = SubnetLaplace(model, likelihood, indices, prior_precision=1.5, sigma_noise=0.5)
    la.fit(make_loader(x, y))

    ordered = indices.sort().values
    assert torch.equal(la.subnetwork_indices, ordered)
    block = full_ggn(model, x, likelihood, 0.5)[ordered][:, ordered]
    torch.testing.assert_close(la.ggn, block, **TOL)
    covariance = torch.linalg.inv(block + 1.5 * torch.eye(11, dtype=torch.float64))
    torch.testing.assert_close(la.posterior_covariance, covariance, **TOL)

    xt = x[:4]
    jac = full_jacobian(model, xt)[:, :, ordered]
    torch.testing.assert_close(la.predictive(xt)[1], jac @ covariance @ jac.transpose(1, 2), **TOL)
    torch.testing.assert_close(la.mean, flat_parameters(model)[ordered])


def test_float32_model_matches_float64_reference():
    model32 = make_classifier(dtype=torch.float32)
    x, y = make_data("classification", dtype=torch.float32)
    indices = torch.arange(0, 51, 3)
    la = SubnetLaplace(model32, "classification", indices).fit(make_loader(x, y))
    assert la.posterior_covariance.dtype == torch.float64
    model64 = make_classifier(dtype=torch.float64)
    block = full_ggn(model64, x.double(), "classification")[indices][:, indices]
    torch.testing.assert_close(la.ggn, block, rtol=1e-4, atol=1e-5)
    probs = la.predict(x[:3])
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def test_loss_and_number_of_data_points():
    model = make_classifier()
    x, y = make_data("classification")
    la = SubnetLaplace(model, "classification", [0, 1, 2]).fit(make_loader(x, y))
    assert la.n_data == len(x)
    assert la.loss == pytest.approx(float(nn.functional.cross_entropy(model(x).detach(), y, reduction="sum")))

    reg = make_regressor()
    xr, yr = make_data("regression")
    la = SubnetLaplace(reg, "regression", [0, 1], sigma_noise=0.4).fit(make_loader(xr, yr))
    nll = -torch.distributions.Normal(reg(xr).detach(), 0.4).log_prob(yr).sum()
    assert la.loss == pytest.approx(float(nll))


def test_log_marginal_likelihood_matches_the_laplace_formula():
    model = make_regressor()
    x, y = make_data("regression")
    n_params = flat_parameters(model).numel()
    la = SubnetLaplace(model, "regression", torch.arange(n_params), prior_precision=2.0, sigma_noise=0.5,
                       temperature=1.5).fit(make_loader(x, y))
    w = flat_parameters(model)
    precision = full_ggn(model, x, "regression", 0.5) / 1.5 + 2.0 * torch.eye(n_params, dtype=torch.float64)
    loglik = torch.distributions.Normal(model(x).detach(), 0.5).log_prob(y).sum()
    expected = (loglik / 1.5 - 0.5 * (2.0 * w.square().sum() + torch.logdet(precision)
                                      - n_params * math.log(2.0)))
    assert la.log_marginal_likelihood() == pytest.approx(float(expected), rel=1e-8)


# -- 2. the Jacobian is taken over the subnetwork only -----------------------------------------------

def test_jacobian_has_subnetwork_shape_and_touches_only_selected_tensors():
    model = make_classifier()
    layout = {s.name: s for s in parameter_layout(model)}
    indices = torch.tensor([layout["2.weight"].start + 4, layout["2.bias"].start + 1, 3])
    jac = SubnetworkJacobian(model, indices)
    f, J = jac(torch.randn(6, 2, dtype=torch.float64))
    assert f.shape == (6, 3) and J.shape == (6, 3, 3)
    assert jac.parameter_names() == ["0.weight", "2.weight", "2.bias"]
    assert jac.resolved_mode(3) == "jacrev" and jac.resolved_mode(4) == "jacfwd"
    f2, J2 = SubnetworkJacobian(model, indices, mode="jacfwd", chunk_size=4)(torch.randn(6, 2).double())
    assert f2.shape == (6, 3) and J2.shape == (6, 3, 3)


def test_reverse_and_forward_mode_agree_with_chunks():
    model = make_classifier()
    x = torch.randn(7, 2, dtype=torch.float64)
    indices = torch.arange(5, 40, 2)
    f1, j1 = SubnetworkJacobian(model, indices, mode="jacrev")(x)
    f2, j2 = SubnetworkJacobian(model, indices, mode="jacfwd", chunk_size=3)(x)
    torch.testing.assert_close(f1, f2)
    torch.testing.assert_close(j1, j2)
    torch.testing.assert_close(j1, full_jacobian(model, x)[:, :, indices])


def test_million_weight_model_with_small_subnetwork_is_quick():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 1000), nn.Tanh(), nn.Linear(1000, 1000), nn.Tanh(),
                          nn.Linear(1000, 3))
    n_params = flat_parameters(model).numel()
    assert n_params > 1_000_000
    indices = torch.randperm(n_params, generator=torch.Generator().manual_seed(0))[:50]
    x, y = torch.randn(8, 10), torch.randint(0, 3, (8,))
    start = time.perf_counter()
    la = SubnetLaplace(model, "classification", indices, chunk_size=4).fit([(x, y)])
    _, jac = la.jacobian(x)
    probs = la.predict(x)
    assert time.perf_counter() - start < 30
    assert jac.shape == (8, 3, 50) and la.ggn.shape == (50, 50) and probs.shape == (8, 3)
    forward = SubnetLaplace(model, "classification", indices, jacobian="jacfwd").fit([(x, y)])
    torch.testing.assert_close(forward.ggn, la.ggn, rtol=1e-4, atol=1e-7)


def test_model_weights_and_training_flags_are_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 3)).double().train()
    before = flat_parameters(model).clone()
    x, y = make_data("classification")
    la = SubnetLaplace(model, "classification", torch.arange(10)).fit(make_loader(x, y))
    p1, p2 = la.predict(x[:4]), la.predict(x[:4])
    torch.testing.assert_close(p1, p2)  # eval mode: dropout off, deterministic
    assert model.training and model[1].training
    assert torch.equal(flat_parameters(model), before)


# -- 3. hyperparameters re-derive the posterior without refitting ------------------------------------

def test_changing_the_prior_rederives_the_posterior_without_refit():
    model = make_classifier()
    x, y = make_data("classification")
    la = SubnetLaplace(model, "classification", torch.arange(20)).fit(make_loader(x, y))
    ggn = la.ggn
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))  # counts any further pass over the model
    for prior in (0.01, 10.0, torch.linspace(0.5, 2.0, 20)):
        la.prior_precision = prior
        lam = torch.as_tensor(prior, dtype=torch.float64).expand(20)
        expected = ggn + torch.diag(lam)
        torch.testing.assert_close(la.posterior_precision, expected)
        torch.testing.assert_close(la.posterior_covariance, torch.linalg.inv(expected))
    la.temperature = 2.0
    torch.testing.assert_close(la.posterior_precision, ggn / 2 + torch.diag(lam))
    assert not calls


def test_regression_noise_scales_the_ggn():
    model = make_regressor()
    x, y = make_data("regression")
    la = SubnetLaplace(model, "regression", torch.arange(31), sigma_noise=1.0).fit(make_loader(x, y))
    unit = la.ggn
    la.sigma_noise = 0.25
    torch.testing.assert_close(la.ggn, unit / 0.25 ** 2)
    _, var = la.predict(x[:3])
    assert (var > 0.25 ** 2).all()


# -- 4. predictive links -----------------------------------------------------------------------------

def test_probit_with_zero_variance_is_the_map_softmax():
    f = torch.randn(4, 3, dtype=torch.float64)
    zero = torch.zeros(4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(probit_softmax(f, zero), torch.softmax(f, -1))
    model = make_classifier()
    x, y = make_data("classification")
    la = SubnetLaplace(model, "classification", torch.arange(51), prior_precision=1e12).fit(make_loader(x, y))
    torch.testing.assert_close(la.predict(x), torch.softmax(model(x).detach(), -1), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(la.predict(x, link="mc", n_samples=8), torch.softmax(model(x).detach(), -1),
                               rtol=1e-5, atol=1e-6)


def test_monte_carlo_predictive_converges():
    model = make_classifier()
    x, y = make_data("classification")
    la = SubnetLaplace(model, "classification", torch.arange(51), prior_precision=0.5).fit(make_loader(x, y))
    xt = x[:5]
    f_mean, f_var = la.predictive(xt)
    samples = sample_gaussian(f_mean, f_var, 40_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples.mean(0), f_mean, rtol=0, atol=0.05)
    centred = samples - f_mean
    emp_cov = torch.einsum("nbc,nbd->bcd", centred, centred) / len(samples)
    torch.testing.assert_close(emp_cov, f_var, rtol=0.05, atol=0.05)

    mc = la.predict(xt, link="mc", n_samples=20_000, generator=torch.Generator().manual_seed(1))
    exact = torch.softmax(samples, -1).mean(0)  # an independent MC estimate of E[softmax(f)]
    torch.testing.assert_close(mc, exact, rtol=0, atol=0.01)
    torch.testing.assert_close(mc, la.predict(xt), rtol=0, atol=0.05)  # the probit approximation is close
    again = la.predict(xt, link="mc", n_samples=20_000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mc, again)


def test_mc_softmax_handles_a_singular_covariance():
    f = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
    v = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
    f_var = torch.outer(v, v).unsqueeze(0)  # rank one
    probs = mc_softmax(f, f_var, 2000, torch.Generator().manual_seed(0))
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, dtype=torch.float64))


def test_weight_samples_have_the_posterior_moments():
    model = make_regressor()
    x, y = make_data("regression")
    la = SubnetLaplace(model, "regression", torch.arange(0, 31, 3), prior_precision=3.0)
    la.fit(make_loader(x, y))
    draws = la.sample(50_000, torch.Generator().manual_seed(0))
    assert draws.shape == (50_000, 11)
    torch.testing.assert_close(draws.mean(0), la.mean, rtol=0, atol=0.02)
    torch.testing.assert_close(torch.cov(draws.T), la.posterior_covariance, rtol=0, atol=0.02)


# -- 5. prior tuning, persistence, validation --------------------------------------------------------

def _nll_terms_per_prior(la, grid, x, y):
    """Per-example NLL ``(G, N)`` at every grid value, computed independently of the one-pass search: set
    the prior, predict through the Cholesky path, score."""
    rows = []
    for lam in grid:
        la.prior_precision = float(lam)
        if la.likelihood == "classification":
            rows.append(metrics.nll_terms(la.predict(x), y))
        else:
            rows.append(metrics.gaussian_nll_terms(*la.predict(x), y))
    return torch.stack(rows)


@pytest.mark.parametrize("rule", ["min", "one_se"])
@pytest.mark.parametrize("likelihood", ["classification", "regression"])
def test_prior_tuning_scores_the_grid_and_applies_the_rule(likelihood, rule):
    model = make_classifier() if likelihood == "classification" else make_regressor()
    x, y = make_data(likelihood, n=60)
    la = SubnetLaplace(model, likelihood, torch.arange(1, 31, 3), sigma_noise=0.3)
    la.fit(make_loader(x[:30], y[:30]))
    grid = torch.logspace(-3, 3, 13, dtype=torch.float64)
    chosen = la.optimize_prior_precision(make_loader(x[30:], y[30:], batch=7), grid=grid, rule=rule)

    terms = _nll_terms_per_prior(la, grid, x[30:], y[30:])
    mean, se = terms.mean(1), terms.std(1) / math.sqrt(terms.shape[1])
    torch.testing.assert_close(la.prior_curve["nll"], mean, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(la.prior_curve["se"], se, rtol=1e-6, atol=1e-10)
    assert torch.equal(la.prior_curve["prior_precision"], grid)
    best = int(mean.argmin())
    if rule == "min":
        assert chosen == float(grid[best])
    else:  # the broadest posterior (smallest precision) within one standard error of the best
        expected = min(float(g) for g, m in zip(grid, mean, strict=True) if m <= mean[best] + se[best])
        assert chosen == expected <= float(grid[best])


def test_select_prior_precision_rules():
    grid = torch.tensor([0.1, 1.0, 10.0, 100.0], dtype=torch.float64)
    scores = torch.tensor([0.50, 0.31, 0.30, 0.35], dtype=torch.float64)
    se = torch.full((4,), 0.02, dtype=torch.float64)
    assert select_prior_precision(grid, scores, se, "min") == 2
    assert select_prior_precision(grid, scores, se, "one_se") == 1     # 0.31 <= 0.30 + 0.02
    assert select_prior_precision(grid, scores, torch.zeros(4, dtype=torch.float64), "one_se") == 2
    # the grid need not be sorted: the smallest *precision* within the band wins, not the first index
    assert select_prior_precision(grid.flip(0), scores.flip(0), se, "one_se") == 2
    with pytest.raises(ValueError, match="rule"):
        select_prior_precision(grid, scores, se, "median")


def test_prior_tuning_with_monte_carlo_and_brier_is_deterministic():
    model = make_classifier()
    x, y = make_data("classification", n=40)
    la = SubnetLaplace(model, "classification", torch.arange(40)).fit(make_loader(x[:24], y[:24]))
    val = make_loader(x[24:], y[24:])
    grid = torch.logspace(-2, 2, 9)
    a = la.optimize_prior_precision(val, grid, metric="brier", link="mc", n_samples=50,
                                    generator=torch.Generator().manual_seed(0))
    curve = la.prior_curve["brier"]
    b = la.optimize_prior_precision(val, grid, metric="brier", link="mc", n_samples=50,
                                    generator=torch.Generator().manual_seed(0))
    assert a == b and torch.equal(curve, la.prior_curve["brier"])
    assert la.prior_precision == float(la.prior_curve["prior_precision"][int(curve.argmin())])


def test_save_and_load_round_trip(tmp_path):
    model = make_classifier()
    x, y = make_data("classification")
    la = SubnetLaplace(model, "classification", torch.arange(3, 50, 4)).fit(make_loader(x, y))
    la.optimize_prior_precision(make_loader(x, y), grid=[0.1, 1.0, 10.0])
    path = la.save(tmp_path / "posterior.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posterior.pt"]  # no temporary file left

    state = torch.load(path, weights_only=True)
    assert torch.equal(state["subnetwork_indices"], la.subnetwork_indices)
    loaded = SubnetLaplace.load(path, model)
    assert loaded.prior_precision == la.prior_precision and loaded.n_data == la.n_data
    assert torch.equal(loaded.predict(x), la.predict(x))
    assert torch.equal(loaded.prior_curve["nll"], la.prior_curve["nll"])
    g = torch.Generator()
    assert torch.equal(loaded.sample(3, g.manual_seed(0)), la.sample(3, g.manual_seed(0)))


def test_load_rejects_a_checkpoint_that_does_not_fit(tmp_path):
    model = make_classifier()
    x, y = make_data("classification")
    la = SubnetLaplace(model, "classification", torch.arange(32, 51)).fit(make_loader(x, y))
    path = la.save(tmp_path / "a.pt")

    small = nn.Sequential(nn.Linear(2, 3)).double()
    with pytest.raises(ValueError, match="trainable weights"):
        SubnetLaplace.load(path, small)
    with pytest.raises(ValueError, match="differ from the MAP"):
        SubnetLaplace.load(path, make_classifier(seed=5))
    state = torch.load(path, weights_only=True)
    state["subnetwork_indices"] = torch.arange(40, 59)
    torch.save(state, tmp_path / "b.pt")
    with pytest.raises(ValueError, match=r"does not fit the model.*\[0, 51\)"):
        SubnetLaplace.load(tmp_path / "b.pt", model)
    (tmp_path / "c.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="c.pt: not a readable"):
        SubnetLaplace.load(tmp_path / "c.pt", model)
    torch.save({"weights": torch.ones(2)}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="not a SubnetLaplace checkpoint"):
        SubnetLaplace.load(tmp_path / "d.pt", model)


def test_bad_inputs_raise_one_clear_error():
    model = make_classifier()
    x, y = make_data("classification")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        SubnetLaplace(model, "poisson", [0])
    with pytest.raises(ValueError, match=r"\[0, 51\)"):
        SubnetLaplace(model, "classification", [0, 51])
    with pytest.raises(ValueError, match=r"\[0, 51\)"):
        SubnetLaplace(model, "classification", [-1, 3])
    with pytest.raises(ValueError, match="duplicated"):
        SubnetLaplace(model, "classification", [4, 2, 4])
    for empty in (torch.tensor([], dtype=torch.long), []):
        with pytest.raises(ValueError, match="empty"):
            SubnetLaplace(model, "classification", empty)
    with pytest.raises(ValueError, match="integers"):
        SubnetLaplace(model, "classification", torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        SubnetLaplace(model, "classification", torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="jacobian mode"):
        SubnetLaplace(model, "classification", [0], jacobian="finite-differences")
    with pytest.raises(ValueError, match="prior_precision"):
        SubnetLaplace(model, "classification", [0, 1], prior_precision=-1.0)
    with pytest.raises(ValueError, match="shape"):
        SubnetLaplace(model, "classification", [0, 1], prior_precision=torch.ones(3))

    la = SubnetLaplace(model, "classification", [0, 1, 2])
    with pytest.raises(NotFittedError, match="not fitted"):
        la.predict(x)
    with pytest.raises(ValueError, match="not fitted"):  # NotFittedError is a ValueError
        la.save("unused.pt")
    with pytest.raises(ValueError, match="yielded no data"):
        la.fit([])
    with pytest.raises(ValueError, match="class ids"):
        la.fit([(x, y + 3)])
    assert model.training  # the flags are restored although fit stopped half-way
    with pytest.raises(ValueError, match="class ids"):
        la.fit([(x, y.double())])
    la.fit(make_loader(x, y))
    with pytest.raises(ValueError, match="link must be"):
        la.predict(x, link="laplace-bridge")
    with pytest.raises(ValueError, match="metric"):
        la.optimize_prior_precision(make_loader(x, y), metric="accuracy")
    with pytest.raises(ValueError, match="grid"):
        la.optimize_prior_precision(make_loader(x, y), grid=[1.0, -1.0])

    broken = make_classifier()
    with torch.no_grad():
        broken[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        SubnetLaplace(broken, "classification", torch.arange(51)).fit(make_loader(x, y))

    reg = SubnetLaplace(make_regressor(), "regression", [0, 1]).fit(make_loader(*make_data("regression")))
    with pytest.raises(ValueError, match="classification only"):
        reg.predict(torch.zeros(2, 1, dtype=torch.float64), link="probit")
    with pytest.raises(ValueError, match="output's shape"):
        SubnetLaplace(make_regressor(), "regression", [0]).fit([(torch.zeros(3, 1), torch.zeros(3, 2))])
    with pytest.raises(ValueError, match=r"outputs \(B, C\)"):
        SubnetLaplace(nn.Linear(2, 3), "classification", [0]).jacobian(torch.zeros(2, 2, 2))
