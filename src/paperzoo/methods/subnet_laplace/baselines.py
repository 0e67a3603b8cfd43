"""The paper's comparison methods, behind :class:`~.laplace.SubnetLaplace`'s predictive interface.

Every method has ``fit(train_loader)`` (returns itself), ``optimize_prior_precision(val_loader)``
(returns the chosen value, or None when the method has no prior to tune) and ``predict(x, ...)``:
class probabilities ``(B, C)`` for classification, or the predictive mean and variance ``(B, C)`` each
for regression. So one evaluation loop runs them all::

    for method in (MAP(model, lik), DiagLaplace(model, lik), LastLayerLaplace(model, lik),
                   MCDropout(dropout_model, lik), DeepEnsemble(models, lik)):
        method.fit(train_loader).optimize_prior_precision(val_loader)
        probs = method.predict(x)

* :class:`MAP`: the point estimate, ``softmax(f(x, w*))`` / ``N(f(x, w*), sigma^2)``.
* :class:`DiagLaplace`: linearized Laplace over *all* weights with a diagonal posterior,
  ``Sigma = diag(1 / (diag(G) / T + lambda))``, ``f_var = J diag(Sigma) J^T``.
* :func:`LastLayerLaplace`: :class:`~.laplace.SubnetLaplace` over the last layer's weights.
* :class:`MCDropout`: dropout kept on at test time, averaged over forward passes (Gal & Ghahramani 2016).
* :class:`DeepEnsemble`: independently trained networks, averaged (Lakshminarayanan et al. 2017).

Regression methods whose networks output only a mean use a homoscedastic observation noise
``sigma_noise``; sampled predictions (MC dropout, ensembles) are a uniform Gaussian mixture with mean
``mean_m(mu_m)`` and variance ``sigma^2 + var_m(mu_m)`` (population variance over members/samples).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from paperzoo.methods.subnet_laplace.laplace import (
    NotFittedError,
    SubnetLaplace,
    SubnetworkJacobian,
    check_likelihood,
    check_prior_precision,
    check_tuning_args,
    diagonal_ggn,
    eval_mode,
    grid_search_prior_precision,
    positive_float,
    predict_with,
    validation_batches,
)
from paperzoo.methods.subnet_laplace.selection import LastLayer

__all__ = ["MAP", "DeepEnsemble", "DiagLaplace", "LastLayerLaplace", "MCDropout"]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _model_inputs(model: nn.Module, x: Tensor) -> Tensor:
    param = next(model.parameters(), None)
    x = torch.as_tensor(x)
    if param is None:
        return x
    return x.to(device=param.device, dtype=param.dtype) if x.is_floating_point() else x.to(param.device)


def _outputs(model: nn.Module, x: Tensor) -> Tensor:
    out = model(_model_inputs(model, x))
    if out.ndim != 2:
        raise ValueError(f"the model must map a batch (B, ...) to outputs (B, C), got shape "
                         f"{tuple(out.shape)}")
    return out


def _mixture(outputs: Tensor, likelihood: str, sigma_noise: float) -> Tensor | tuple[Tensor, Tensor]:
    """Predictive of equally weighted members ``outputs (M, B, C)``: mean softmax (classification), or the
    mean and variance of the Gaussian mixture ``(1/M) sum_m N(mu_m, sigma^2)`` (regression)."""
    if likelihood == "classification":
        return torch.softmax(outputs, dim=-1).mean(0)
    return outputs.mean(0), outputs.var(0, unbiased=False) + sigma_noise ** 2


class MAP:
    """The MAP network's own predictions (no weight uncertainty)."""

    def __init__(self, model: nn.Module, likelihood: str, sigma_noise: float = 1.0):
        self.model = model
        self.likelihood = check_likelihood(likelihood)
        self.sigma_noise = positive_float(sigma_noise, "sigma_noise")

    def fit(self, loader: Iterable | None = None) -> MAP:
        """Nothing to fit; present for the common interface."""
        return self

    def optimize_prior_precision(self, val_loader: Iterable | None = None, **kwargs) -> None:
        """No prior to tune; returns None."""

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        with eval_mode(self.model):
            return _mixture(_outputs(self.model, x).unsqueeze(0), self.likelihood, self.sigma_noise)


class DiagLaplace:
    """Linearized Laplace over all trainable weights with a diagonal posterior.

    .. math:: \\Sigma = \\mathrm{diag}\\big(1 / (\\mathrm{diag}(G)/T + \\lambda)\\big), \\qquad
              f_{\\mathrm{var}}(x) = J(x)\\,\\Sigma\\,J(x)^T = \\sum_p \\Sigma_{pp} J_{:p} J_{:p}^T

    ``diag(G)`` is the exact GGN diagonal (:func:`~.laplace.diagonal_ggn`), stored for unit regression
    noise. Full Jacobians ``(chunk, C, P)`` are formed ``chunk_size`` inputs at a time and reduced to
    ``f_var`` at once; they are never kept for more than one chunk.

    Parameters are those of :class:`~.laplace.SubnetLaplace` (``prior_precision`` is a scalar or a
    ``(P,)`` vector).
    """

    def __init__(self, model: nn.Module, likelihood: str, prior_precision: float | Tensor = 1.0,
                 sigma_noise: float = 1.0, temperature: float = 1.0, *, jacobian: str = "auto",
                 chunk_size: int | None = None):
        self.model = model
        self.likelihood = check_likelihood(likelihood)
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self._jacobian = SubnetworkJacobian(model, torch.arange(n_params), jacobian, chunk_size)
        self.sigma_noise = positive_float(sigma_noise, "sigma_noise")
        self.temperature = positive_float(temperature, "temperature")
        self.prior_precision = prior_precision
        self._curvature: Tensor | None = None
        self.prior_curve: dict[str, Tensor] | None = None

    @property
    def prior_precision(self) -> float | Tensor:
        return float(self._prior) if self._prior.ndim == 0 else self._prior.clone()

    @prior_precision.setter
    def prior_precision(self, value: float | Tensor) -> None:
        self._prior = check_prior_precision(value, self._jacobian.n_params, "weight")

    def fit(self, loader: Iterable) -> DiagLaplace:
        self._curvature = diagonal_ggn(self._jacobian, loader, self.likelihood)
        self.prior_curve = None
        return self

    def _scaled_curvature(self) -> Tensor:
        """``diag(G) / T`` at the current noise."""
        if self._curvature is None:
            raise NotFittedError("DiagLaplace is not fitted: call fit(train_loader) first")
        noise = self.sigma_noise ** 2 if self.likelihood == "regression" else 1.0
        return self._curvature / (noise * self.temperature)

    @property
    def ggn_diagonal(self) -> Tensor:
        """The exact GGN diagonal over all weights, shape (P,), float64, for unit regression noise."""
        if self._curvature is None:
            raise NotFittedError("DiagLaplace is not fitted: call fit(train_loader) first")
        return self._curvature.clone()

    @property
    def posterior_variance(self) -> Tensor:
        """The diagonal of ``Sigma``, shape (P,), float64."""
        return 1.0 / (self._scaled_curvature() + self._prior.to(self._curvature.device))

    def _moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        var = self.posterior_variance
        means, variances = [], []
        for f, jac in self._jacobian.iter_chunks(x):
            jac = jac.to(var.dtype)
            means.append(f.to(var.dtype))
            variances.append((jac * var) @ jac.transpose(1, 2))
        return torch.cat(means), torch.cat(variances)

    def predictive(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``f(x, w*)`` ``(B, C)`` and ``f_var`` ``(B, C, C)``, in the model's dtype."""
        f_mean, f_var = self._moments(x)
        return f_mean.to(self._jacobian.dtype), f_var.to(self._jacobian.dtype)

    def predict(self, x: Tensor, link: str | None = None, n_samples: int = 100,
                generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """As :meth:`~.laplace.SubnetLaplace.predict`."""
        return predict_with(self._moments(x), self.likelihood, self.sigma_noise, link, n_samples, generator,
                            self._jacobian.dtype)

    def optimize_prior_precision(self, val_loader: Iterable, grid: Tensor | Sequence[float] | None = None,
                                 metric: str = "nll", link: str | None = None, n_samples: int = 100,
                                 generator: torch.Generator | None = None, rule: str = "min") -> float:
        """As :meth:`~.laplace.SubnetLaplace.optimize_prior_precision`: the posterior is already diagonal,
        so ``U = J`` and ``d = diag(G) / T`` in :func:`~.laplace.prior_grid_scores`."""
        curvature = self._scaled_curvature()
        grid = check_tuning_args(self.likelihood, grid, metric, link, rule)
        batches = validation_batches(self._jacobian, val_loader, lambda jac: jac.to(curvature.dtype),
                                     per_chunk=True)
        best, curve = grid_search_prior_precision(batches, curvature, grid, self.likelihood, self.sigma_noise,
                                                  metric, link, n_samples, generator, rule)
        self.prior_precision, self.prior_curve = best, curve
        return best


def LastLayerLaplace(model: nn.Module, likelihood: str, names: str | Sequence[str] | None = None,
                     **kwargs) -> SubnetLaplace:
    """Full-covariance linearized Laplace over the last layer: a :class:`~.laplace.SubnetLaplace` whose
    subnetwork is :class:`~.selection.LastLayer` (``names`` as there). A factory rather than a subclass,
    so there is one implementation; ``kwargs`` go to :class:`~.laplace.SubnetLaplace`."""
    return SubnetLaplace(model, likelihood, LastLayer(names).select(model), **kwargs)


class MCDropout:
    """Monte Carlo dropout: the network's ``nn.Dropout*`` modules stay active at test time and the
    prediction averages ``n_samples`` stochastic forward passes (every other module, e.g. BatchNorm, is
    in eval mode).

    Raises
    ------
    ValueError
        The model has no dropout module with ``p > 0`` (dropout applied functionally in ``forward`` is
        not detected).
    """

    def __init__(self, model: nn.Module, likelihood: str, n_samples: int = 100, sigma_noise: float = 1.0):
        self._dropout = [m for m in model.modules() if isinstance(m, _DROPOUT) and m.p > 0]
        if not self._dropout:
            raise ValueError("MCDropout needs a model with nn.Dropout modules (p > 0); this model has none")
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        self.model = model
        self.likelihood = check_likelihood(likelihood)
        self.n_samples = int(n_samples)
        self.sigma_noise = positive_float(sigma_noise, "sigma_noise")

    def fit(self, loader: Iterable | None = None) -> MCDropout:
        """Nothing to fit (the network is trained with dropout beforehand); present for the interface."""
        return self

    def optimize_prior_precision(self, val_loader: Iterable | None = None, **kwargs) -> None:
        """No prior to tune; returns None."""

    @torch.no_grad()
    def predict(self, x: Tensor, n_samples: int | None = None, seed: int | None = None
                ) -> Tensor | tuple[Tensor, Tensor]:
        """Average over ``n_samples`` (default: the constructor's) dropout masks. With ``seed``, the CPU
        random stream is seeded for the masks and restored afterwards."""
        n_samples = self.n_samples if n_samples is None else n_samples
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        with eval_mode(self.model), torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for module in self._dropout:
                module.train()
            outputs = torch.stack([_outputs(self.model, x) for _ in range(int(n_samples))])
        return _mixture(outputs, self.likelihood, self.sigma_noise)


class DeepEnsemble:
    """An ensemble of independently trained networks, each in eval mode, weighted equally."""

    def __init__(self, models: Sequence[nn.Module], likelihood: str, sigma_noise: float = 1.0):
        models = list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise ValueError("DeepEnsemble needs a non-empty sequence of nn.Module members")
        self.models = models
        self.likelihood = check_likelihood(likelihood)
        self.sigma_noise = positive_float(sigma_noise, "sigma_noise")

    def fit(self, loader: Iterable | None = None) -> DeepEnsemble:
        """Nothing to fit (members are trained beforehand); present for the common interface."""
        return self

    def optimize_prior_precision(self, val_loader: Iterable | None = None, **kwargs) -> None:
        """No prior to tune; returns None."""

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        outputs = []
        for model in self.models:
            with eval_mode(model):
                outputs.append(_outputs(model, x))
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) != 1:
            raise ValueError(f"ensemble members disagree on the output shape: {sorted(shapes)}")
        return _mixture(torch.stack(outputs), self.likelihood, self.sigma_noise)
