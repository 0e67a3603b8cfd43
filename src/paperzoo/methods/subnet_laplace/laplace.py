"""Subnetwork linearized Laplace approximation.

Daxberger, Nalisnick, Allingham, Antorán, Hernández-Lobato. "Bayesian Deep Learning via Subnetwork
Inference", ICML 2021. https://arxiv.org/abs/2010.14689

All weights ``w`` are first trained to a MAP estimate ``w*``. A full-covariance Gaussian is then fitted
post hoc to a *subnetwork* ``S`` (a set of flat indices into the trainable parameters); every other
weight stays at its MAP value::

    J_S(x)   = d f(x, w) / d w_S  at w = w*                         (C x S, C model outputs)
    Lambda   = diag(p) - p p^T,  p = softmax(f(x, w*))              (classification)
             = I / sigma^2                                          (regression, Gaussian noise sigma)
    G_S      = sum_n J_S(x_n)^T Lambda(x_n) J_S(x_n)                (generalized Gauss-Newton, S x S)
    P        = G_S / T + diag(lambda)                               (posterior precision)
    q(w_S)   = N(w_S*, Sigma),  Sigma = P^-1                        (via the Cholesky factor of P)
    f_lin(x) = f(x, w*) + J_S(x) (w_S - w_S*)                       (linearized model)
    f_lin(x) ~ N(f(x, w*), J_S(x) Sigma J_S(x)^T)                   (its predictive, per input)

``lambda`` is the precision of the prior ``w_S ~ N(0, diag(lambda)^-1)`` (a scalar or one value per
selected weight) and ``T`` a temperature: the likelihood is raised to ``1/T``.

Jacobians over the subnetwork only
----------------------------------
:class:`SubnetworkJacobian` never forms the Jacobian with respect to all P weights; its output is
``(B, C, S)`` per batch and the curvature ``(S, S)``. Methods (``mode``):

* ``"layerwise"``: closed-form rules for selected weights and biases of ``nn.Linear`` and ``nn.Conv2d``
  layers (:mod:`~paperzoo.methods.subnet_laplace.jacobians`): one forward pass records each such
  layer's input, ``C`` backward passes give the gradient of every output at the layer's output, and each
  selected weight's column is the product of the two, summed over output positions. Any modules may sit
  between and around these layers. Cost: one forward and ``C`` backward passes per batch, plus
  ``O(B C S)`` for the products.
* reverse mode (``"jacrev"``): the model is called through :func:`torch.func.functional_call` with every
  parameter tensor that holds selected weights replaced by ``p* + scatter(delta)``, where ``delta`` is an
  S-vector of zeros (parameters without selected weights are constants), and :func:`torch.func.jacrev` of
  one input's output with respect to ``delta`` is vectorised over the batch with :func:`torch.func.vmap`.
  Cost: C reverse sweeps per input. It forms, transiently, the per-input gradient of each *partially*
  selected parameter tensor before gathering its selected entries (``chunk_size x C x numel`` of the
  largest such tensor); ``chunk_size`` bounds it.
* forward mode (``"jacfwd"``): :func:`torch.func.jacfwd` of the whole batch's output with respect to the
  same ``delta``. Cost: S forward-mode sweeps per batch.
* ``"auto"`` (default) takes ``"layerwise"`` when every selected weight lies in a supported layer and a
  check on the first batch passes (:meth:`~.jacobians.LayerwiseJacobian.verify`: each such layer runs once
  per forward pass, batch-first, and its weights reach the output through it alone). Otherwise it takes
  reverse mode when ``C <= S`` (the usual case) and forward mode when the subnetwork is smaller than the
  output; :attr:`SubnetworkJacobian.fallback_reason` says why the rules did not apply. The check's verdict
  is remembered per model object (``jacobians.clear_verification_cache`` forgets it), so that refitting
  the same model, unchanged, skips it and its extra forward pass.

Memory: ``O(S^2)`` for the posterior plus ``O(B C S)`` for one batch's Jacobian; the layerwise rules add
``C B`` times the output size of each layer holding selected weights (see the ``jacobians`` module).
With fewer training inputs x outputs ``R`` than subnetwork weights (float64), the fit keeps the ``R x S``
whitened rows instead of ``G_S``; the predictive (Woodbury identity), prior tuning (eigenpairs from the
``R x R`` matrix ``M M^T``), sampling (Matheron's rule), the log evidence and save / load then work in
``O(R S + R^2)`` memory, and ``G_S`` is formed only if :attr:`~SubnetLaplace.ggn`, the posterior precision
or covariance is asked for (:meth:`SubnetLaplace.fit`).

Numerics
--------
Jacobians are computed in the model's dtype, and so is each batch's contribution ``M^T M`` to the curvature
(``M`` the Jacobian whitened by ``Lambda``; only the blocks on and below the diagonal are multiplied, see
:func:`_add_lower_gram`). The curvature ``G_S`` is accumulated over batches, and the precision, its
Cholesky factor and the covariance are stored, in ``dtype`` (float64 by default: sums over many batches
of ``S x S`` Gram matrices lose digits in float32, and the Cholesky factor needs them). Predictive moments
are computed in ``dtype`` and returned in the model's dtype.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacfwd, jacrev, vmap
from torch.nn import functional as F

from paperzoo.core.io import atomic_path, load_failure_reason
from paperzoo.data.batching import iter_batches
from paperzoo.methods.subnet_laplace import metrics
from paperzoo.methods.subnet_laplace.jacobians import (
    LayerwiseJacobian,
    LayerwiseUnsupported,
    recall_verdict,
    record_verdict,
)

__all__ = [
    "NotFittedError",
    "ParameterSlice",
    "SubnetLaplace",
    "SubnetworkJacobian",
    "check_subnetwork_indices",
    "check_tuning_args",
    "diagonal_ggn",
    "eval_mode",
    "flat_parameters",
    "grid_search_prior_precision",
    "mc_softmax",
    "parameter_layout",
    "predict_from_moments",
    "predict_with",
    "prior_grid_scores",
    "probit_softmax",
    "sample_gaussian",
    "select_prior_precision",
    "validation_batches",
]

LIKELIHOODS = ("classification", "regression")
JACOBIAN_MODES = ("auto", "layerwise", "jacrev", "jacfwd")
TUNING_METRICS = {"classification": ("nll", "brier"), "regression": ("nll",)}
PRIOR_RULES = ("min", "one_se")
_STATE_FORMAT = "paperzoo.subnet_laplace/1"


class NotFittedError(ValueError):
    """A posterior quantity was requested before ``fit`` (or ``load_state_dict``)."""


# --------------------------------------------------------------------------------------------------
# The flat parameter vector and subnetwork indices
# --------------------------------------------------------------------------------------------------

class ParameterSlice(NamedTuple):
    """Where one trainable parameter lives in the flat vector: entries ``[start, stop)``."""

    name: str
    start: int
    stop: int
    shape: torch.Size


def parameter_layout(model: nn.Module) -> list[ParameterSlice]:
    """The flat layout of the trainable parameters, in :func:`torch.nn.utils.parameters_to_vector` order
    over ``[p for p in model.parameters() if p.requires_grad]`` (shared parameters counted once)."""
    return _layout(_trainable_parameters(model))


def _trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the trainable parameters, in :func:`parameter_layout` order."""
    return [(name, param) for name, param in model.named_parameters() if param.requires_grad]


def _layout(named: list[tuple[str, nn.Parameter]]) -> list[ParameterSlice]:
    layout, start = [], 0
    for name, param in named:
        stop = start + param.numel()
        layout.append(ParameterSlice(name, start, stop, param.shape))
        start = stop
    return layout


def flat_parameters(model: nn.Module) -> Tensor:
    """The trainable parameters as one detached vector (the indexing space of a subnetwork)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=True)")
    return torch.nn.utils.parameters_to_vector(params).detach()


def check_subnetwork_indices(indices: Tensor | Sequence[int], n_params: int) -> Tensor:
    """Validate flat subnetwork indices and return them sorted, as a CPU LongTensor.

    Raises
    ------
    ValueError
        Not a 1-D integer sequence, empty, out of ``[0, n_params)``, or with duplicates.
    """
    indices = torch.as_tensor(indices)
    if indices.numel() == 0:
        raise ValueError("the subnetwork is empty: pass at least one weight index")
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        raise ValueError(f"subnetwork indices must be integers (flat positions), got dtype {indices.dtype}; "
                         "for a boolean mask pass mask.nonzero().flatten()")
    if indices.ndim != 1:
        raise ValueError(f"subnetwork indices must be a 1-D tensor, got shape {tuple(indices.shape)}")
    ordered = indices.detach().to("cpu", torch.long).sort().values
    lo, hi = int(ordered[0]), int(ordered[-1])
    if lo < 0 or hi >= n_params:
        raise ValueError(f"subnetwork indices must lie in [0, {n_params}) (the model's trainable "
                         f"parameters), got values from {lo} to {hi}")
    same = ordered[1:] == ordered[:-1]
    if same.any():
        repeated = ordered[1:][same].unique()
        raise ValueError(f"subnetwork indices contain {repeated.numel()} duplicated value(s), "
                         f"e.g. {repeated[:5].tolist()}")
    return ordered


def _subnetwork_parts(ordered: Tensor, named: list[tuple[str, nn.Parameter]], layout: list[ParameterSlice]
                      ) -> list[tuple[str, nn.Parameter, Tensor, int, int]]:
    """The sorted indices cut into one contiguous run per parameter tensor: ``(name, param, local, lo, hi)``
    says ``delta[lo:hi]`` are the selected entries of ``param``, at flat positions ``local`` inside it (on
    its device)."""
    bounds = torch.tensor([s.start for s in layout] + [layout[-1].stop])
    cuts = torch.searchsorted(ordered, bounds).tolist()
    return [(s.name, param, (ordered[lo:hi] - s.start).to(param.device), lo, hi)
            for s, (_, param), lo, hi in zip(layout, named, cuts[:-1], cuts[1:]) if hi > lo]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode (no dropout, BatchNorm running statistics), then restore each
    submodule's own ``training`` flag."""
    flags = [(module, module.training) for module in model.modules()]
    if any(training for _, training in flags):     # else every submodule is in eval mode already
        model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            if module.training != training:
                module.training = training


def check_likelihood(likelihood: str) -> str:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def positive_float(value: Any, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def check_prior_precision(value: float | Tensor, n: int, per: str) -> Tensor:
    """A prior precision as a float64 CPU tensor: a scalar (shape ``()``) or one positive value per
    weight (shape ``(n,)``); ``per`` names what the ``n`` values belong to in the error message."""
    value = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if value.numel() == 1:
        value = value.reshape(())
    elif value.shape != (n,):
        raise ValueError(f"prior_precision must be a scalar or have shape ({n},) (one value per {per}), "
                         f"got shape {tuple(value.shape)}")
    if not torch.isfinite(value).all() or (value <= 0).any():
        raise ValueError("prior_precision must be positive and finite")
    return value


def _check_targets(y: Tensor, f: Tensor, likelihood: str) -> Tensor:
    """Targets as the likelihood expects them: class ids ``(B,)`` or values shaped like ``f`` ``(B, C)``."""
    batch, n_out = f.shape
    y = torch.as_tensor(y)
    if y.device != f.device:
        y = y.to(f.device)
    if likelihood == "classification":
        if y.is_floating_point() or y.shape != (batch,):
            raise ValueError(f"classification targets must be integer class ids of shape ({batch},), "
                             f"got dtype {y.dtype} and shape {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_out):
            raise ValueError(f"class ids must lie in [0, {n_out}) for a model with {n_out} outputs, got "
                             f"values from {int(y.min())} to {int(y.max())}")
        return y.long()
    if y.shape != f.shape:
        if y.shape == (batch,) and n_out == 1:
            y = y.unsqueeze(1)
        else:
            raise ValueError(f"regression targets must have the model output's shape {tuple(f.shape)}, "
                             f"got {tuple(y.shape)}")
    return y if y.dtype == f.dtype else y.to(f.dtype)


# --------------------------------------------------------------------------------------------------
# Jacobians with respect to the subnetwork only
# --------------------------------------------------------------------------------------------------

class SubnetworkJacobian:
    """Model outputs and per-input Jacobians with respect to a subset of the trainable weights.

    ``jac(x)`` returns ``f (B, C)`` and ``J (B, C, S)`` with ``J[b, c, s] = d f_c(x_b) / d w[indices[s]]``
    at the model's current weights, in eval mode. See the module docstring for how the Jacobian avoids
    the other ``P - S`` weights and for the choice of method.

    Parameters
    ----------
    model : nn.Module
        Maps a batch ``(B, ...)`` to outputs ``(B, C)``. Its weights are read, never modified.
    indices : LongTensor, shape (S,)
        Flat positions in :func:`parameter_layout` order; stored sorted.
    mode : {"auto", "layerwise", "jacrev", "jacfwd"}
        ``"layerwise"`` raises a ValueError when its rules do not apply to the model; ``"auto"`` then
        falls back to torch.func (:meth:`resolved_mode`). :attr:`method` says which method is in use.
    chunk_size : int, optional
        Inputs per Jacobian call (default: the whole batch). Bounds transient memory.

    Attributes
    ----------
    method : str or None
        The method in use, ``"layerwise"``, ``"jacrev"`` or ``"jacfwd"``; in modes ``"auto"`` and
        ``"layerwise"`` it is decided on the first batch (None until then).
    fallback_reason : str or None
        Why ``"auto"`` does not use the layerwise rules (None when it does or has not decided yet).
    """

    def __init__(self, model: nn.Module, indices: Tensor | Sequence[int], mode: str = "auto",
                 chunk_size: int | None = None):
        if mode not in JACOBIAN_MODES:
            raise ValueError(f"jacobian mode must be one of {JACOBIAN_MODES}, got {mode!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) != chunk_size
                                       or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        named = _trainable_parameters(model)
        layout = _layout(named)
        if not layout:
            raise ValueError("the model has no trainable parameters (requires_grad=True)")
        self.model = model
        self.mode = mode
        self.chunk_size = chunk_size
        self.n_params = layout[-1].stop
        self.indices = check_subnetwork_indices(indices, self.n_params)
        self._parts = _subnetwork_parts(self.indices, named, layout)
        first = named[0][1]
        self.dtype, self.device = first.dtype, first.device
        self._n_outputs: int | None = None
        self.method: str | None = None if mode in ("auto", "layerwise") else mode
        self.fallback_reason: str | None = None
        self._layerwise: LayerwiseJacobian | None = None
        if mode in ("auto", "layerwise"):
            try:
                self._layerwise = LayerwiseJacobian(model, self._parts, self.n_selected)
            except LayerwiseUnsupported as exc:
                self._reject_layerwise(exc)

    @property
    def n_selected(self) -> int:
        """S, the number of subnetwork weights."""
        return self.indices.numel()

    def parameter_names(self) -> list[str]:
        """Names of the parameter tensors that contain selected weights."""
        return [name for name, *_ in self._parts]

    def _parameters(self, delta: Tensor) -> dict[str, Tensor]:
        """``{name: p* + scatter(delta part)}`` for the tensors holding selected weights."""
        return {name: param.detach().reshape(-1).index_add(0, local, delta[lo:hi].to(param.dtype))
                .view_as(param) for name, param, local, lo, hi in self._parts}

    def _inputs(self, x: Tensor) -> Tensor:
        x = torch.as_tensor(x)
        if x.is_floating_point():
            if x.dtype == self.dtype and x.device == self.device:
                return x
            return x.to(device=self.device, dtype=self.dtype)
        return x if x.device == self.device else x.to(self.device)

    def resolved_mode(self, n_outputs: int) -> str:
        """The torch.func mode for a model with ``n_outputs`` outputs: ``mode`` when that is ``"jacrev"`` or
        ``"jacfwd"``, else reverse mode when ``C <= S`` and forward mode otherwise (what ``"auto"`` uses
        when the layerwise rules do not apply)."""
        if self.mode in ("jacrev", "jacfwd"):
            return self.mode
        return "jacrev" if n_outputs <= self.n_selected else "jacfwd"

    def _reject_layerwise(self, exc: LayerwiseUnsupported) -> None:
        """Record why the layerwise rules do not apply (``"auto"``), or raise (``"layerwise"``)."""
        if self.mode == "layerwise":
            raise ValueError(f"jacobian mode 'layerwise' does not apply to this model and subnetwork: "
                             f"{exc}; use mode 'auto', 'jacrev' or 'jacfwd'") from None
        self._layerwise, self.fallback_reason = None, str(exc)

    def _settle_method(self, x: Tensor) -> str:
        """The method for this model, decided on the first batch ``x`` (after :meth:`_check_output` on it):
        ``"layerwise"`` when :meth:`LayerwiseJacobian.verify` passes on it, else :meth:`resolved_mode`.

        The verdict and the output size are remembered per model object, under the rules' verification key
        (:meth:`LayerwiseJacobian.verification_key`: the model's modules and hooks, the selected parameter
        tensors, the input's shape, dtype and device), so that a new object for the same model and inputs
        (a refit) skips both checks and their forward passes; :func:`.jacobians.clear_verification_cache`
        forces them again."""
        if self.method is not None:
            self._check_output(x)
            return self.method
        layerwise, key, verdict = self._layerwise, None, None
        if layerwise is not None:
            key = layerwise.verification_key(x)
            verdict = recall_verdict(self.model, key)
        if verdict is not None:
            self._n_outputs, reason = verdict
        else:
            self._check_output(x)
            reason = None
            if layerwise is not None:
                try:
                    layerwise.verify(x)
                except LayerwiseUnsupported as exc:
                    reason = str(exc)
                record_verdict(self.model, key, (self._n_outputs, reason))
        if reason is not None:
            self._reject_layerwise(LayerwiseUnsupported(reason))
        self.method = "layerwise" if self._layerwise is not None else self.resolved_mode(self._n_outputs)
        return self.method

    def _check_output(self, x: Tensor) -> int:
        if self._n_outputs is None:
            out = self.model(x[:1])
            if out.ndim != 2 or out.shape[0] != 1:
                raise ValueError(f"the model must map a batch (B, ...) to outputs (B, C); a batch of one "
                                 f"input gave shape {tuple(out.shape)}")
            self._n_outputs = out.shape[1]
        return self._n_outputs

    def iter_chunks(self, x: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(f, J)`` for successive chunks of ``chunk_size`` inputs of ``x``."""
        x = self._inputs(x)
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"expected a non-empty batch of inputs (B, ...), got shape {tuple(x.shape)}")
        for chunk in ([x] if self.chunk_size is None else x.split(self.chunk_size)):
            yield self._chunk(chunk)

    def _chunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Eval mode is entered per chunk, never across a ``yield``, so the model's flags are restored
        # even when the caller abandons the iteration. no_grad keeps the module's own (constant)
        # parameters from recording an autograd graph; the torch.func transforms ignore an outer
        # no_grad, so the Jacobian itself is unaffected, and the layerwise rules turn autograd on for
        # their own forward and backward pass.
        with eval_mode(self.model), torch.no_grad():
            settled = self.method is not None and self._n_outputs is not None
            mode = self.method if settled else self._settle_method(x)
            if mode == "layerwise":
                return self._layerwise(x)
            delta = torch.zeros(self.n_selected, dtype=self.dtype, device=self.device)
            jac, out = self._jacrev(delta, x) if mode == "jacrev" else self._jacfwd(delta, x)
        return out, jac

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs ``(B, C)`` and Jacobian ``(B, C, S)`` for a batch ``x``."""
        outs, jacs = zip(*self.iter_chunks(x))
        return torch.cat(outs), torch.cat(jacs)

    def _jacrev(self, delta: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        def one_input(d: Tensor, xi: Tensor) -> tuple[Tensor, Tensor]:
            out = functional_call(self.model, self._parameters(d), (xi.unsqueeze(0),)).squeeze(0)
            return out, out

        return vmap(jacrev(one_input, has_aux=True), in_dims=(None, 0))(delta, x)

    def _jacfwd(self, delta: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        def whole_batch(d: Tensor) -> tuple[Tensor, Tensor]:
            out = functional_call(self.model, self._parameters(d), (x,))
            return out, out

        return jacfwd(whole_batch, has_aux=True)(delta)


def _whitened_jacobian(f: Tensor, jac: Tensor, likelihood: str) -> Tensor:
    """``M (B, C, S)`` with ``M_b^T M_b = J_b^T Lambda_b J_b`` for unit observation noise.

    Classification: ``Lambda = diag(p) - p p^T = L L^T`` with ``L = diag(sqrt p) - p sqrt(p)^T`` (this
    uses ``sum(p) = 1``), so ``M = L^T J``; the product is positive semi-definite by construction.
    Regression: ``Lambda = I`` and ``M = J`` (the ``1 / sigma^2`` is applied by the caller).
    """
    if likelihood == "regression":
        return jac
    p = torch.softmax(f.to(jac.dtype), dim=-1)
    s = p.sqrt()
    factor = torch.diag_embed(s) - p.unsqueeze(-1) * s.unsqueeze(-2)        # L, (B, C, C)
    return torch.einsum("bck,bcs->bks", factor, jac)


_GRAM_BLOCKS, _GRAM_MIN_BLOCKED = 8, 256


def _gram_rows(n: int) -> int:
    """Rows per block of :func:`_add_lower_gram` for an ``n x n`` Gram matrix: eight blocks (the lower
    triangle then costs 9/16 of the full product), one block below 256 columns."""
    return n if n < _GRAM_MIN_BLOCKED else -(-n // _GRAM_BLOCKS)


def _add_lower_gram(acc: Tensor, m: Tensor) -> None:
    """``acc += m^T m`` on and below the diagonal blocks: for every block of rows ``[i, j)`` (see
    :func:`_gram_rows`), the columns ``[0, j)``, as one in-place ``addmm_`` in ``acc``'s dtype (no
    ``S x S`` temporary; ``m`` is cast once, which costs ``B x S`` entries). Skipping the blocks above the
    diagonal saves 7/16 of the products. :func:`_mirror_lower` completes the symmetric matrix once all
    terms are in."""
    m = m.to(acc.dtype)
    n = m.shape[1]
    rows = _gram_rows(n)
    if rows == n:           # one block: the whole product
        acc.addmm_(m.T, m)
        return
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        acc[start:stop, :stop].addmm_(m[:, start:stop].T, m[:, :stop])


def _mirror_lower(acc: Tensor) -> None:
    """Make ``acc`` exactly symmetric from its lower triangle, in place: the blocks above the diagonal
    blocks of :func:`_add_lower_gram` are copied from those below, and each diagonal block's upper triangle
    from its lower one (a matrix product need not round ``a_i . a_j`` and ``a_j . a_i`` alike)."""
    n = acc.shape[0]
    rows = _gram_rows(n)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        if start:
            acc[:start, start:stop] = acc[start:stop, :start].T
        block = acc if rows == n else acc[start:stop, start:stop]
        strictly_lower = block.tril(-1)
        block.tril_()
        block += strictly_lower.T               # = block.tril() + block.tril(-1).T


def diagonal_ggn(jacobian: SubnetworkJacobian, loader: Iterable, likelihood: str,
                 dtype: torch.dtype = torch.float64) -> Tensor:
    """Exact diagonal of the GGN over ``jacobian.indices``, for unit observation noise.

    .. math:: \\mathrm{diag}(G)_s = \\sum_n \\sum_k (L_n^T J_n)_{ks}^2

    with ``L_n L_n^T = Lambda_n`` (see :func:`_whitened_jacobian`); divide by ``sigma^2`` for regression.
    Jacobians are formed ``chunk_size`` inputs at a time, never for the whole dataset.

    Returns
    -------
    Tensor, shape (S,), in ``dtype``.
    """
    likelihood = check_likelihood(likelihood)
    diag = torch.zeros(jacobian.n_selected, dtype=dtype, device=jacobian.device)
    seen = 0
    for x, y in iter_batches(loader):
        for f, jac in jacobian.iter_chunks(x):
            seen += f.shape[0]
            diag += _whitened_jacobian(f, jac.to(dtype), likelihood).square().sum((0, 1))
    if seen == 0:
        raise ValueError("the training loader yielded no data")
    if not torch.isfinite(diag).all():
        raise ValueError("the diagonal GGN has non-finite entries: the model's outputs or Jacobians "
                         "contain NaN/inf at these weights")
    return diag


# --------------------------------------------------------------------------------------------------
# Predictive distributions from function-space moments
# --------------------------------------------------------------------------------------------------

def probit_softmax(f_mean: Tensor, f_var: Tensor) -> Tensor:
    """Probit (mean-field) approximation of ``E[softmax(f)]`` for ``f ~ N(f_mean, f_var)``.

    .. math:: \\mathbb{E}[\\mathrm{softmax}(f)]_c \\approx \\mathrm{softmax}\\big(f_{\\mathrm{mean}}
              / \\sqrt{1 + \\tfrac{\\pi}{8}\\,\\mathrm{diag}(f_{\\mathrm{var}})}\\big)_c

    Parameters
    ----------
    f_mean : Tensor, shape (..., C)
    f_var : Tensor, shape (..., C, C); only its diagonal is used.
    """
    var = torch.diagonal(f_var, dim1=-2, dim2=-1).clamp_min(0)
    return torch.softmax(f_mean / torch.sqrt(1.0 + math.pi / 8.0 * var), dim=-1)


def _psd_factor(cov: Tensor) -> Tensor:
    """``A`` with ``A A^T = cov`` for symmetric PSD ``cov (..., C, C)``, also when it is singular (a
    subnetwork smaller than the output gives a rank-deficient ``f_var``). Via ``eigh`` in float64."""
    evals, evecs = torch.linalg.eigh(cov.to(torch.float64))
    return (evecs * evals.clamp_min(0).sqrt().unsqueeze(-2)).to(cov.dtype)


def sample_gaussian(mean: Tensor, cov: Tensor, n_samples: int, generator: torch.Generator | None = None,
                    noise: Tensor | None = None) -> Tensor:
    """Samples of ``N(mean, cov)``, shape ``(n_samples, *mean.shape)``.

    ``noise`` (standard normal, broadcastable to ``(n_samples, *mean.shape)``) replaces the draw: passing
    the same noise for several covariances gives common random numbers.
    """
    if noise is None:
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        noise = torch.randn((int(n_samples), *mean.shape), generator=generator, dtype=mean.dtype,
                            device=mean.device)
    return mean + (_psd_factor(cov) @ noise.unsqueeze(-1)).squeeze(-1)


def mc_softmax(f_mean: Tensor, f_var: Tensor, n_samples: int = 100, generator: torch.Generator | None = None,
               noise: Tensor | None = None) -> Tensor:
    """Monte Carlo ``E[softmax(f)]``, ``f ~ N(f_mean, f_var)``: the average of ``n_samples`` softmaxes."""
    return torch.softmax(sample_gaussian(f_mean, f_var, n_samples, generator, noise), dim=-1).mean(0)


def _check_link(likelihood: str, link: str | None) -> str | None:
    if likelihood == "regression":
        if link is not None:
            raise ValueError(f"link={link!r} applies to classification only; the regression predictive is "
                             "the closed-form Gaussian")
        return None
    link = "probit" if link is None else link
    if link not in ("probit", "mc"):
        raise ValueError(f"link must be 'probit' or 'mc', got {link!r}")
    return link


def predict_from_moments(f_mean: Tensor, f_var: Tensor, likelihood: str, sigma_noise: float = 1.0,
                         link: str | None = None, n_samples: int = 100,
                         generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """The predictive distribution of a linearized Gaussian ``f ~ N(f_mean, f_var)``.

    Classification: class probabilities ``(B, C)`` by ``link`` = ``"probit"`` (default,
    :func:`probit_softmax`) or ``"mc"`` (:func:`mc_softmax`). Regression: the closed form
    ``y ~ N(f_mean, f_var + sigma^2 I)``, returned as the mean ``(B, C)`` and the marginal variances
    ``diag(f_var) + sigma^2`` ``(B, C)``.
    """
    link = _check_link(likelihood, link)
    if likelihood == "regression":
        return f_mean, torch.diagonal(f_var, dim1=-2, dim2=-1) + sigma_noise ** 2
    if link == "probit":
        return probit_softmax(f_mean, f_var)
    return mc_softmax(f_mean, f_var, n_samples, generator)


def predict_with(moments: tuple[Tensor, Tensor], likelihood: str, sigma_noise: float, link: str | None,
                 n_samples: int, generator: torch.Generator | None,
                 out_dtype: torch.dtype) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`predict_from_moments` of ``moments = (f_mean, f_var)``, returned in ``out_dtype`` (the
    model's dtype): the ``predict`` of :class:`SubnetLaplace` and of :class:`~.baselines.DiagLaplace`."""
    f_mean, f_var = moments
    out = predict_from_moments(f_mean, f_var, likelihood, sigma_noise, link, n_samples, generator)
    if isinstance(out, tuple):
        return tuple(t.to(out_dtype) for t in out)
    return out.to(out_dtype)


def check_tuning_args(likelihood: str, grid: Tensor | Sequence[float] | None, metric: str,
                      link: str | None, rule: str = "min") -> Tensor:
    """Validate the arguments of a prior-precision search; returns the grid (default
    ``logspace(-4, 4, 50)``) as a float64 CPU vector."""
    check_likelihood(likelihood)
    if rule not in PRIOR_RULES:
        raise ValueError(f"rule must be one of {PRIOR_RULES}, got {rule!r}")
    if metric not in TUNING_METRICS[likelihood]:
        raise ValueError(f"metric for {likelihood} must be one of {TUNING_METRICS[likelihood]}, "
                         f"got {metric!r}")
    _check_link(likelihood, link)
    grid = torch.logspace(-4, 4, 50, dtype=torch.float64) if grid is None else torch.as_tensor(grid)
    grid = grid.detach().to("cpu", torch.float64).flatten()
    if grid.numel() == 0 or not torch.isfinite(grid).all() or (grid <= 0).any():
        raise ValueError("the prior-precision grid must be a non-empty set of positive, finite values")
    return grid


def prior_grid_scores(batches: Iterable[tuple[Tensor, Tensor, Tensor]], curvature: Tensor,
                      grid: Tensor | Sequence[float] | None,
                      likelihood: str, sigma_noise: float = 1.0, metric: str = "nll", link: str | None = None,
                      n_samples: int = 100, generator: torch.Generator | None = None, *,
                      return_se: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Mean validation score of the linearized predictive for every scalar prior precision in ``grid``.

    A Gaussian posterior whose precision is *diagonal in a known basis*, ``diag(d) + lambda I``, gives

    .. math:: f_{\\mathrm{var}}(\\lambda) = U\\,\\mathrm{diag}\\big(1 / (d + \\lambda)\\big)\\,U^T

    for per-input factors ``U``: with ``G_S / T = V diag(d) V^T`` (eigendecomposition) ``U = J_S V``;
    for a diagonal Laplace ``d`` is the diagonal GGN over ``T`` and ``U = J``. So one pass over the
    validation data scores the whole grid: no refit, no Jacobian cache.

    Parameters
    ----------
    batches : iterable of ``(f_mean (B, C), U (B, C, K), y)``
    curvature : Tensor, shape (K,)
        ``d``, already divided by the temperature.
    grid : Tensor, shape (G,), or None for ``logspace(-4, 4, 50)``
    metric : ``"nll"`` (both likelihoods) or ``"brier"`` (classification).
    link : classification predictive (``"probit"`` or ``"mc"``; Monte Carlo uses the same noise for every
        grid value, so the curve is smooth in lambda).

    Returns
    -------
    Tensor, shape (G,): the metric averaged over the validation inputs; with ``return_se`` also its
    standard error, ``std / sqrt(N)`` of the per-input scores (unbiased std), shape (G,).
    """
    grid = check_tuning_args(likelihood, grid, metric, link)
    link = _check_link(likelihood, link)
    score_fn = {"nll": metrics.nll_terms, "brier": metrics.brier_terms}[metric]
    grid = grid.to(curvature)
    total = torch.zeros(grid.numel(), dtype=torch.float64)
    total_sq = torch.zeros(grid.numel(), dtype=torch.float64)
    seen = 0
    for f_mean, factors, y in batches:
        y = _check_targets(y, f_mean, likelihood)
        f_mean = f_mean.to(factors.dtype)
        batch = f_mean.shape[0]
        noise = None
        if link == "mc":
            if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
                raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
            noise = torch.randn((int(n_samples), *f_mean.shape), generator=generator, dtype=f_mean.dtype,
                                device=f_mean.device)
        for g, lam in enumerate(grid):
            scaled = factors / (curvature + lam)
            f_var = scaled @ factors.transpose(1, 2)
            if likelihood == "regression":
                mean, var = predict_from_moments(f_mean, f_var, likelihood, sigma_noise)
                terms = metrics.gaussian_nll_terms(mean, var, y)
            else:
                probs = (probit_softmax(f_mean, f_var) if link == "probit"
                         else mc_softmax(f_mean, f_var, noise=noise))
                terms = score_fn(probs, y)
            total[g] += terms.sum().cpu()
            total_sq[g] += terms.square().sum().cpu()
        seen += batch
    if seen == 0:
        raise ValueError("the validation loader yielded no data")
    mean = total / seen
    if not return_se:
        return mean
    variance = (total_sq - seen * mean.square()).clamp_min(0) / max(seen - 1, 1)
    return mean, (variance / seen).sqrt()


def validation_batches(jacobian: SubnetworkJacobian, val_loader: Iterable,
                       project: Callable[[Tensor], Tensor], *,
                       per_chunk: bool) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The ``(f_mean, U, y)`` batches of :func:`prior_grid_scores` for a validation loader of ``(x, y)``,
    with ``U = project(J)`` for the Jacobian ``J`` of ``jacobian``.

    ``per_chunk=False``: one item per loader batch (its whole Jacobian at once), with the batch's targets
    as given. ``per_chunk=True``: one item per ``jacobian.chunk_size`` inputs, with the matching slice of
    the targets, so that only one chunk's Jacobian is alive at a time.
    """
    for x, y in iter_batches(val_loader):
        if not per_chunk:
            f, jac = jacobian(x)
            yield f, project(jac), y
            continue
        start = 0
        for f, jac in jacobian.iter_chunks(x):
            stop = start + f.shape[0]
            yield f, project(jac), torch.as_tensor(y)[start:stop]
            start = stop


def select_prior_precision(grid: Tensor, scores: Tensor, se: Tensor, rule: str = "min") -> int:
    """Index of the chosen grid value.

    ``"min"``: the lowest score (ties go to the first). ``"one_se"``: the one-standard-error rule
    (Hastie, Tibshirani & Friedman, *Elements of Statistical Learning*, 7.10): among the grid values whose
    score is within one standard error of the lowest, the *smallest* precision, i.e. the broadest
    posterior that the validation data cannot tell apart from the best one.
    """
    if rule not in PRIOR_RULES:
        raise ValueError(f"rule must be one of {PRIOR_RULES}, got {rule!r}")
    best = int(torch.argmin(scores))
    if rule == "min":
        return best
    within = torch.nonzero(scores <= scores[best] + se[best]).flatten()
    return int(within[torch.argmin(grid[within])])


def grid_search_prior_precision(batches: Iterable[tuple[Tensor, Tensor, Tensor]], curvature: Tensor,
                                grid: Tensor, likelihood: str, sigma_noise: float, metric: str,
                                link: str | None, n_samples: int, generator: torch.Generator | None,
                                rule: str = "min") -> tuple[float, dict[str, Tensor]]:
    """The grid value chosen by ``rule`` (:func:`select_prior_precision`) from :func:`prior_grid_scores`
    and the curve ``{"prior_precision": grid, metric: scores, "se": standard errors}``; arguments as
    there."""
    scores, se = prior_grid_scores(batches, curvature, grid, likelihood, sigma_noise, metric, link, n_samples,
                                   generator, return_se=True)
    chosen = select_prior_precision(grid, scores, se, rule)
    return float(grid[chosen]), {"prior_precision": grid, metric: scores, "se": se}


# --------------------------------------------------------------------------------------------------
# The subnetwork Laplace approximation
# --------------------------------------------------------------------------------------------------

class SubnetLaplace:
    """Post-hoc full-covariance Laplace approximation over a subnetwork, with a linearized predictive.

    Usage::

        la = SubnetLaplace(model, "classification", indices, prior_precision=1.0).fit(train_loader)
        la.optimize_prior_precision(val_loader)
        probs = la.predict(x)                      # probit; la.predict(x, link="mc", n_samples=100)

    Parameters
    ----------
    model : nn.Module
        The MAP network, mapping ``(B, ...)`` to ``(B, C)`` logits (classification) or means (regression).
        Never modified; Jacobians and predictions run it in eval mode.
    likelihood : {"classification", "regression"}
        Softmax cross-entropy, or a Gaussian with standard deviation ``sigma_noise``.
    subnetwork_indices : LongTensor, shape (S,)
        Flat positions in the trainable-parameter vector (:func:`parameter_layout` order), e.g. from
        :mod:`~paperzoo.methods.subnet_laplace.selection`. Stored sorted: the posterior mean, precision
        and covariance are indexed in ascending flat order.
    prior_precision : float or Tensor of shape (S,)
        ``lambda`` of ``w_S ~ N(0, diag(lambda)^-1)``. May be changed after :meth:`fit`.
    sigma_noise : float
        Observation noise of the regression likelihood. May be changed after :meth:`fit` (the GGN is
        stored for unit noise and rescaled).
    temperature : float
        ``T``; the posterior precision is ``G_S / T + diag(lambda)``.
    jacobian : {"auto", "layerwise", "jacrev", "jacfwd"}
        Differentiation mode (module docstring).
    chunk_size : int, optional
        Inputs per Jacobian call; bounds transient memory.
    dtype : torch.float64 or torch.float32
        Storage and arithmetic of the curvature and posterior (default float64).
    """

    def __init__(self, model: nn.Module, likelihood: str, subnetwork_indices: Tensor | Sequence[int],
                 prior_precision: float | Tensor = 1.0, sigma_noise: float = 1.0, temperature: float = 1.0,
                 *, jacobian: str = "auto", chunk_size: int | None = None,
                 dtype: torch.dtype = torch.float64):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.model = model
        self.likelihood = check_likelihood(likelihood)
        self._jacobian = SubnetworkJacobian(model, subnetwork_indices, jacobian, chunk_size)
        self.dtype = dtype
        self._gram: Tensor | None = None        # G_S = sum_n J^T Lambda J with unit regression noise, (S, S)
        self._rows: Tensor | None = None        # or its rows M (R, S), G_S = M^T M, while R < S (float64)
        self._woodbury: tuple[Tensor, Tensor] | None = None
        self._map_weights: Tensor | None = None
        self._data_loss = 0.0                   # sum of NLLs (classification) or squared errors (regression)
        self.n_data = 0
        self.n_outputs: int | None = None
        self.prior_curve: dict[str, Tensor] | None = None
        self._chol: Tensor | None = None
        self._cov: Tensor | None = None
        self.prior_precision = prior_precision
        self.sigma_noise = sigma_noise
        self.temperature = temperature

    # -- hyperparameters: changing one re-derives the posterior from the stored GGN -----------------

    @property
    def prior_precision(self) -> float | Tensor:
        """``lambda``: a float, or a float64 tensor of shape (S,) for a per-weight prior."""
        return float(self._prior) if self._prior.ndim == 0 else self._prior.clone()

    @prior_precision.setter
    def prior_precision(self, value: float | Tensor) -> None:
        self._prior = check_prior_precision(value, self.n_subnetwork, "subnetwork weight")
        self._invalidate()

    @property
    def sigma_noise(self) -> float:
        return self._sigma_noise

    @sigma_noise.setter
    def sigma_noise(self, value: float) -> None:
        self._sigma_noise = positive_float(value, "sigma_noise")
        self._invalidate()

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = positive_float(value, "temperature")
        self._invalidate()

    def _invalidate(self) -> None:
        self._chol = self._cov = self._woodbury = None

    @property
    def _curvature(self) -> Tensor | None:
        """``G_S`` for unit regression noise, ``(S, S)``; formed from the stored rows on first use when
        the fit kept the low-rank form (see :meth:`fit`)."""
        if self._gram is None and self._rows is not None:
            gram = torch.zeros(self.n_subnetwork, self.n_subnetwork, dtype=self.dtype, device=self._rows.device)
            _add_lower_gram(gram, self._rows)
            _mirror_lower(gram)
            self._gram = gram
        return self._gram

    @_curvature.setter
    def _curvature(self, value: Tensor) -> None:
        self._gram, self._rows = value, None

    # -- sizes and indices ---------------------------------------------------------------------------

    @property
    def subnetwork_indices(self) -> Tensor:
        """Sorted flat indices of the subnetwork, shape (S,)."""
        return self._jacobian.indices.clone()

    @property
    def n_subnetwork(self) -> int:
        return self._jacobian.n_selected

    @property
    def n_params(self) -> int:
        return self._jacobian.n_params

    @property
    def is_fitted(self) -> bool:
        return self._gram is not None or self._rows is not None

    def _require_fit(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("SubnetLaplace is not fitted: call fit(train_loader) or load a saved "
                                 "posterior first")

    # -- fitting -------------------------------------------------------------------------------------

    def jacobian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """MAP outputs ``(B, C)`` and subnetwork Jacobian ``(B, C, S)`` for inputs ``x``."""
        return self._jacobian(x)

    def fit(self, loader: Iterable) -> SubnetLaplace:
        """Accumulate ``G_S`` over ``loader`` (batches ``(x, y)``) at the model's current weights ``w*``.

        Also records the data negative log-likelihood at the MAP and the number of data points.

        Low-rank form: while the whitened Jacobian rows seen so far number ``R < S`` (fewer inputs x
        outputs than subnetwork weights, e.g. 150 points and S = 1,300) and ``dtype`` is float64, the
        rows ``M`` are kept instead of ``G_S = M^T M``; the predictive then uses the Woodbury identity
        (an ``R x R`` Cholesky factor instead of the ``S x S`` covariance), and so do tuning, sampling,
        the evidence and saving; ``G_S`` is formed only if something asks for it (:attr:`ggn`,
        :attr:`posterior_precision`, :attr:`posterior_covariance`). In float32 the Woodbury difference
        loses too many digits, so ``G_S`` is always accumulated.
        """
        n = self.n_subnetwork
        curvature: Tensor | None = None
        rows: list[Tensor] = []
        n_rows = 0
        low_rank = self.dtype == torch.float64
        data_loss, seen, n_outputs = 0.0, 0, None
        for x, y in iter_batches(loader):
            start = 0
            targets = torch.as_tensor(y)
            for f, jac in self._jacobian.iter_chunks(x):
                stop = start + f.shape[0]
                whole = start == 0 and targets.ndim > 0 and stop == targets.shape[0]
                target = _check_targets(targets if whole else targets[start:stop], f, self.likelihood)
                start, n_outputs = stop, f.shape[1]
                m = _whitened_jacobian(f, jac, self.likelihood).flatten(0, 1)
                if low_rank and n_rows + m.shape[0] < n:
                    rows.append(m.to(self.dtype))
                    n_rows += m.shape[0]
                else:
                    if curvature is None:          # the rows no longer pay: switch to the S x S sum
                        curvature = torch.zeros(n, n, dtype=self.dtype, device=self._jacobian.device)
                        for block in rows:
                            _add_lower_gram(curvature, block)
                        rows, low_rank = [], False
                    _add_lower_gram(curvature, m)
                if self.likelihood == "classification":
                    data_loss += float(F.cross_entropy(f, target, reduction="sum"))
                else:
                    data_loss += float((f - target).square().sum())
            if start != len(y):
                raise ValueError(f"a batch has {start} inputs but {len(y)} targets")
            seen += start
        if seen == 0:
            raise ValueError("the training loader yielded no data")
        if curvature is not None:
            _mirror_lower(curvature)
            # G_S = sum M^T M has a non-finite entry only if its diagonal has one (|M_ki M_kj| <= M_ki^2 + M_kj^2)
            finite = bool(torch.isfinite(curvature.diagonal()).all())
        else:
            if len(rows) == 1 and rows[0].is_contiguous():     # one chunk: its rows (a new tensor) as they are
                rows_all = rows[0]
            else:
                rows_all = (torch.cat(rows) if rows
                            else torch.zeros(0, n, dtype=self.dtype, device=self._jacobian.device))
            finite = bool(torch.isfinite(rows_all.sum()))      # a NaN/inf anywhere makes the sum non-finite
        if not finite:
            raise ValueError("the GGN G_S has non-finite entries: the model's outputs or Jacobians contain "
                             "NaN/inf (check the MAP weights and the inputs)")
        if curvature is not None:
            self._curvature = curvature
        else:
            self._gram, self._rows = None, rows_all
        self._data_loss, self.n_data, self.n_outputs = data_loss, seen, n_outputs
        self._map_weights = self._current_subnetwork_weights()          # a new tensor
        self.prior_curve = None
        self._invalidate()
        return self

    # -- the posterior -------------------------------------------------------------------------------

    @property
    def mean(self) -> Tensor:
        """``w_S*``, the MAP values of the subnetwork weights at fit time, shape (S,)."""
        self._require_fit()
        return self._map_weights.clone()

    def _ggn_scale(self) -> float:
        """``G_S = scale * stored curvature``: ``1 / sigma^2`` for regression, 1 for classification."""
        return 1.0 / self.sigma_noise ** 2 if self.likelihood == "regression" else 1.0

    @property
    def ggn(self) -> Tensor:
        """``G_S``, shape (S, S), in ``dtype`` (includes the ``1 / sigma^2`` of regression)."""
        self._require_fit()
        return self._curvature * self._ggn_scale()

    def _current_subnetwork_weights(self) -> Tensor:
        """``flat_parameters(model)[indices]``: the model's current values at the subnetwork (a new tensor)."""
        return flat_parameters(self.model)[self._jacobian.indices.to(self._jacobian.device)]

    def _prior_vector(self) -> Tensor:
        return self._prior.to(self.dtype, copy=True).expand(self.n_subnetwork).to(self._jacobian.device)

    @property
    def posterior_precision(self) -> Tensor:
        """``P = G_S / T + diag(lambda)``, shape (S, S) (one new S x S buffer)."""
        self._require_fit()
        precision = self._curvature * (self._ggn_scale() / self.temperature)
        precision.diagonal().add_(self._prior_vector())
        return precision

    @property
    def posterior_scale_tril(self) -> Tensor:
        """Lower Cholesky factor ``L`` of the posterior *precision*, ``P = L L^T``."""
        if self._chol is None:
            chol, info = torch.linalg.cholesky_ex(self.posterior_precision)
            if int(info) != 0:
                raise ValueError(f"the posterior precision is not positive definite (Cholesky failed at "
                                 f"leading minor {int(info)}); increase prior_precision or use "
                                 "dtype=torch.float64")
            self._chol = chol
        return self._chol

    @property
    def posterior_covariance(self) -> Tensor:
        """``Sigma = P^-1 = L^-T L^-1``, shape (S, S), from the Cholesky factor: one triangular solve and
        one product (``torch.cholesky_inverse`` gives the same matrix to 1e-18 but measured 1.2-15x
        slower on this project's CPU machine for S = 1,300-2,000)."""
        if self._cov is None:
            chol = self.posterior_scale_tril
            eye = torch.eye(chol.shape[0], dtype=chol.dtype, device=chol.device)
            inv = torch.linalg.solve_triangular(chol, eye, upper=False)          # L^-1
            self._cov = inv.T @ inv
        return self._cov

    @property
    def loss(self) -> float:
        """Negative log-likelihood of the training data at the MAP (a sum over data points), at the current
        ``sigma_noise`` for regression."""
        self._require_fit()
        if self.likelihood == "classification":
            return self._data_loss
        sigma2 = self.sigma_noise ** 2
        normaliser = 0.5 * self.n_data * self.n_outputs * math.log(2 * math.pi * sigma2)
        return 0.5 * self._data_loss / sigma2 + normaliser

    def log_marginal_likelihood(self) -> float:
        """Laplace estimate of the log evidence, for completeness only.

        .. math:: \\log p(D) \\approx \\tfrac{1}{T}\\log p(D \\mid w^*)
                  - \\tfrac12 \\big(w_S^{*T} \\Lambda_0 w_S^* + \\log\\det P - \\log\\det \\Lambda_0\\big),
                  \\quad \\Lambda_0 = \\mathrm{diag}(\\lambda)

        The whole log-likelihood is divided by ``T``, its Gaussian normaliser included (at ``T = 1``
        this equals laplace-torch's value; for ``T != 1`` laplace-torch tempers only the data-fit term).
        Over a subnetwork this is *not* a meaningful model-selection criterion (the other weights are
        point estimates and the prior over them is ignored); tune the prior with
        :meth:`optimize_prior_precision` on validation data instead.
        """
        prior = self._prior_vector()
        mean = self.mean.to(self.dtype)
        if self._gram is None:   # low-rank form: log det P = log det Lambda + R log c + log det K
            _, chol = self._woodbury_factors()
            c = self._ggn_scale() / self.temperature
            logdet_posterior = (torch.log(prior).sum() + chol.shape[0] * math.log(c)
                                + 2.0 * torch.log(torch.diagonal(chol)).sum())
        else:
            logdet_posterior = 2.0 * torch.log(torch.diagonal(self.posterior_scale_tril)).sum()
        complexity = (prior * mean.square()).sum() + logdet_posterior - torch.log(prior).sum()
        return float(-self.loss / self.temperature - 0.5 * complexity)

    def sample(self, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draws of the subnetwork weights ``w_S ~ N(w_S*, Sigma)``, shape (n_samples, S), model dtype.

        ``w_S* + L^{-T} z`` with ``z ~ N(0, I)`` and ``P = L L^T`` has covariance ``(L L^T)^{-1} = Sigma``.
        In the low-rank form (:meth:`fit`), Matheron's rule instead: ``z ~ N(0, D)``, ``e ~ N(0, I / c)``,
        ``z - D M^T (M D M^T + I / c)^-1 (M z + e)`` has covariance ``Sigma`` (Woodbury), with ``R x R``
        solves only.
        """
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        self._require_fit()
        if self._gram is None:   # low-rank form: Matheron's rule, no S x S factor
            md, chol = self._woodbury_factors()
            z = torch.randn(self.n_subnetwork, int(n_samples), generator=generator, dtype=self.dtype,
                            device=md.device) * (1.0 / self._prior_vector()).sqrt().unsqueeze(1)
            eps = torch.randn(md.shape[0], int(n_samples), generator=generator, dtype=self.dtype,
                              device=md.device) * math.sqrt(self.temperature / self._ggn_scale())
            delta = (z - md.T @ torch.cholesky_solve(self._rows @ z + eps, chol)).T
            return (self.mean.to(self.dtype) + delta).to(self._jacobian.dtype)
        chol = self.posterior_scale_tril
        z = torch.randn(self.n_subnetwork, int(n_samples), generator=generator, dtype=self.dtype,
                        device=chol.device)
        delta = torch.linalg.solve_triangular(chol.mT, z, upper=True).T
        return (self.mean.to(self.dtype) + delta).to(self._jacobian.dtype)

    # -- predictions ---------------------------------------------------------------------------------

    def _woodbury_factors(self) -> tuple[Tensor, Tensor]:
        """For the low-rank form ``P = c M^T M + D^-1`` (``c = scale / T``, ``D = diag(1 / lambda)``):
        ``M D`` ``(R, S)`` and the Cholesky factor ``K`` of ``I / c + M D M^T`` ``(R, R)``, so that
        ``Sigma = D - (M D)^T K^-T K^-1 (M D)`` (Woodbury)."""
        if self._woodbury is None:
            rows = self._rows
            md = rows * (1.0 / self._prior_vector())
            inner = md @ rows.T
            inner.diagonal().add_(self.temperature / self._ggn_scale())
            chol, info = torch.linalg.cholesky_ex(inner)
            if int(info) != 0:
                raise ValueError(f"the Woodbury inner matrix is not positive definite (Cholesky failed at "
                                 f"leading minor {int(info)})")
            self._woodbury = (md, chol)
        return self._woodbury

    def _low_rank_basis(self) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """The eigen-basis of ``G_S / T`` for :func:`prior_grid_scores` from the stored rows, without an
        ``S x S`` matrix: ``M M^T = U diag(e) U^T`` (``R x R``) gives the non-zero eigenpairs
        ``V = M^T U e^-1/2``, ``c e``; the rest of the space has eigenvalue 0, and its share of
        ``J_S (G_S / T + lambda)^-1 J_S^T``, ``(J J^T - J V V^T J^T) / lambda``, enters as ``C`` extra
        factor columns (a per-input square root of that ``C x C`` remainder) with curvature 0."""
        rows = self._rows
        e, u = torch.linalg.eigh(rows @ rows.T)
        keep = e > e.max().clamp_min(0) * 1e-12 * rows.shape[0]
        basis = rows.T @ (u[:, keep] / e[keep].sqrt())                      # (S, K), orthonormal columns
        c = self._ggn_scale() / self.temperature
        evals = torch.cat([e[keep] * c, torch.zeros(self.n_outputs, dtype=self.dtype, device=rows.device)])

        def project(jac: Tensor) -> Tensor:
            jac = jac.to(self.dtype)
            inside = jac @ basis                                              # (B, C, K)
            rest = jac @ jac.transpose(1, 2) - inside @ inside.transpose(1, 2)
            w, q = torch.linalg.eigh(0.5 * (rest + rest.transpose(1, 2)))
            return torch.cat([inside, q * w.clamp_min(0).sqrt().unsqueeze(1)], dim=-1)

        return evals, project

    def _moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``f(x, w*)`` and ``J_S Sigma J_S^T`` in ``dtype``: from the stored covariance, or, in the
        low-rank form (see :meth:`fit`) before anything formed it, by the Woodbury identity
        ``J D J^T - (K^-1 M D J^T)^T (K^-1 M D J^T)`` per input, which never forms an ``S x S`` matrix."""
        self._require_fit()
        low_rank = self._rows is not None and self._cov is None
        if low_rank:
            md, chol = self._woodbury_factors()
            prior_var = 1.0 / self._prior_vector()
        else:
            cov = self.posterior_covariance
        means, variances = [], []
        for f, jac in self._jacobian.iter_chunks(x):
            jac = jac.to(self.dtype)
            means.append(f.to(self.dtype))
            if not low_rank:
                variances.append((jac @ cov) @ jac.transpose(1, 2))
                continue
            batch, n_out, _ = jac.shape
            first = (jac * prior_var) @ jac.transpose(1, 2)                       # J D J^T
            a = torch.linalg.solve_triangular(chol, md @ jac.flatten(0, 1).T, upper=False)   # (R, B C)
            a = a.T.reshape(batch, n_out, -1)
            variances.append(first - a @ a.transpose(1, 2))
        return torch.cat(means), torch.cat(variances)

    def predictive(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The linearized predictive in function space: ``f_mean = f(x, w*)`` ``(B, C)`` and
        ``f_var = J_S(x) Sigma J_S(x)^T`` ``(B, C, C)``, in the model's dtype."""
        f_mean, f_var = self._moments(x)
        return f_mean.to(self._jacobian.dtype), f_var.to(self._jacobian.dtype)

    def predict(self, x: Tensor, link: str | None = None, n_samples: int = 100,
                generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Predictive distribution: class probabilities ``(B, C)`` (classification) or the mean and the
        variance ``diag(f_var) + sigma^2`` ``(B, C)`` each (regression). See :func:`predict_from_moments`.
        """
        return predict_with(self._moments(x), self.likelihood, self.sigma_noise, link, n_samples, generator,
                            self._jacobian.dtype)

    # -- prior precision -----------------------------------------------------------------------------

    def optimize_prior_precision(self, val_loader: Iterable, grid: Tensor | Sequence[float] | None = None,
                                 metric: str = "nll", link: str | None = None, n_samples: int = 100,
                                 generator: torch.Generator | None = None, rule: str = "min") -> float:
        """Choose the scalar prior precision by a validation score of the predictive.

        Grid search (default ``logspace(-4, 4, 50)``) scored in one pass over ``val_loader`` through
        the eigendecomposition ``G_S / T = V diag(d) V^T`` (see :func:`prior_grid_scores`). ``rule="min"``
        takes the lowest score (ties go to the smallest grid value); ``"one_se"`` the smallest precision
        within one standard error of it (:func:`select_prior_precision`). Sets :attr:`prior_precision`,
        stores the curve in :attr:`prior_curve` (``{"prior_precision": grid, metric: scores, "se": ...}``)
        and returns the chosen value.
        """
        self._require_fit()
        grid = check_tuning_args(self.likelihood, grid, metric, link, rule)
        if self._gram is None:
            evals, project = self._low_rank_basis()
        else:
            evals, evecs = torch.linalg.eigh(self._curvature)     # G_S / T has the same eigenvectors
            evals = evals * (self._ggn_scale() / self.temperature)

            def project(jac: Tensor) -> Tensor:
                return jac.to(self.dtype) @ evecs
        batches = validation_batches(self._jacobian, val_loader, project, per_chunk=False)
        best, curve = grid_search_prior_precision(batches, evals.clamp_min(0), grid, self.likelihood,
                                                  self.sigma_noise, metric, link, n_samples, generator, rule)
        self.prior_precision, self.prior_curve = best, curve
        return best

    # -- persistence ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the posterior for the same model: plain tensors, numbers and
        strings only, so ``torch.load(..., weights_only=True)`` reads it back."""
        self._require_fit()
        state: dict[str, Any] = {
            "format": _STATE_FORMAT,
            "likelihood": self.likelihood,
            "n_params": self.n_params,
            "subnetwork_indices": self.subnetwork_indices,
            "map_weights": self._map_weights.detach().cpu().clone(),
            "prior_precision": self._prior.clone(),
            "sigma_noise": self.sigma_noise,
            "temperature": self.temperature,
            "data_loss": self._data_loss,
            "n_data": self.n_data,
            "n_outputs": self.n_outputs,
        }
        if self._gram is None:     # low-rank form: the R x S rows, G_S = rows^T rows
            state["rows"] = self._rows.detach().cpu().clone()
        else:
            state["curvature"] = self._gram.detach().cpu().clone()
        if self.prior_curve is not None:
            state["prior_curve"] = {k: v.clone() for k, v in self.prior_curve.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a posterior saved by :meth:`state_dict` for this model and subnetwork.

        Raises
        ------
        ValueError
            The state is malformed, or was fitted to a different model, subnetwork or likelihood, or the
            model's weights at the subnetwork are no longer the MAP values the posterior was fitted at.
        """
        required = ("format", "likelihood", "n_params", "subnetwork_indices", "map_weights",
                    "prior_precision", "sigma_noise", "temperature", "data_loss", "n_data", "n_outputs")
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError(f"not a SubnetLaplace state (expected format {_STATE_FORMAT!r})")
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"SubnetLaplace state is missing {', '.join(missing)}")
        if state["likelihood"] != self.likelihood:
            raise ValueError(f"the saved posterior is for {state['likelihood']!r}, this one for "
                             f"{self.likelihood!r}")
        if int(state["n_params"]) != self.n_params:
            raise ValueError(f"the saved posterior was fitted to a model with {int(state['n_params'])} "
                             f"trainable weights, this model has {self.n_params}")
        indices = torch.as_tensor(state["subnetwork_indices"])
        ours = self._jacobian.indices
        if indices.shape != ours.shape or not torch.equal(indices.long(), ours):
            raise ValueError("the saved posterior's subnetwork indices differ from this SubnetLaplace's")
        n = self.n_subnetwork
        if ("curvature" in state) == ("rows" in state):
            raise ValueError("SubnetLaplace state needs exactly one of 'curvature' (S x S) or 'rows' (R x S)")
        map_weights = state["map_weights"]
        if "curvature" in state:
            curvature, rows = state["curvature"], None
            if not (isinstance(curvature, Tensor) and curvature.shape == (n, n)):
                raise ValueError(f"saved curvature must be a ({n}, {n}) tensor")
            if not torch.isfinite(curvature).all():
                raise ValueError("saved curvature contains NaN/inf")
        else:
            curvature, rows = None, state["rows"]
            if not (isinstance(rows, Tensor) and rows.ndim == 2 and rows.shape[1] == n and rows.shape[0] < n):
                raise ValueError(f"saved rows must be an (R, {n}) tensor with R < {n}")
            if not torch.isfinite(rows).all():
                raise ValueError("saved rows contain NaN/inf")
            if self.dtype != torch.float64:
                curvature, rows = rows.T.double() @ rows.double(), None   # the low-rank form is float64 only
        if not (isinstance(map_weights, Tensor) and map_weights.shape == (n,)):
            raise ValueError(f"saved MAP weights must be a ({n},) tensor")
        current = self._current_subnetwork_weights().to("cpu", torch.float64)
        if not torch.allclose(current, map_weights.to(torch.float64), rtol=1e-5, atol=1e-6):
            raise ValueError("the model's weights at the subnetwork differ from the MAP weights this "
                             "posterior was fitted at: load the matching model checkpoint first")
        self.prior_precision = state["prior_precision"]
        self.sigma_noise = state["sigma_noise"]
        self.temperature = state["temperature"]
        if curvature is not None:
            self._curvature = curvature.to(self._jacobian.device, self.dtype)
        else:
            self._gram, self._rows = None, rows.to(self._jacobian.device, self.dtype)
        self._map_weights = map_weights.to(self._jacobian.device, self._jacobian.dtype)
        self._data_loss, self.n_data = float(state["data_loss"]), int(state["n_data"])
        self.n_outputs = None if state["n_outputs"] is None else int(state["n_outputs"])
        curve = state.get("prior_curve")
        self.prior_curve = None if curve is None else {k: v.clone() for k, v in curve.items()}
        self._invalidate()

    def save(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` to ``path`` atomically (temporary file, then rename)."""
        path = Path(path)
        state = self.state_dict()
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, model: nn.Module, **kwargs: Any) -> SubnetLaplace:
        """Rebuild a saved posterior for ``model`` (the MAP network it was fitted to).

        ``kwargs`` (``jacobian``, ``chunk_size``, ``dtype``) configure the new object.

        Raises
        ------
        ValueError
            The file is not a readable SubnetLaplace checkpoint, or does not fit ``model``.
        """
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # truncated or foreign files raise assorted unpickling errors
            raise ValueError(f"{path}: not a readable SubnetLaplace checkpoint "
                             f"({load_failure_reason(exc, path)})") from None
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError(f"{path}: not a SubnetLaplace checkpoint (expected format {_STATE_FORMAT!r})")
        layout = parameter_layout(model)
        n_params = layout[-1].stop if layout else 0
        if int(state.get("n_params", -1)) != n_params:
            raise ValueError(f"{path}: fitted to a model with {state.get('n_params')} trainable weights, "
                             f"the given model has {n_params}")
        try:
            indices = check_subnetwork_indices(state.get("subnetwork_indices", []), n_params)
        except ValueError as exc:
            raise ValueError(f"{path}: the saved subnetwork does not fit the model: {exc}") from None
        try:
            la = cls(model, state.get("likelihood"), indices, **kwargs)
            la.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return la
