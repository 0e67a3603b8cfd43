"""Subnetwork selection: which S weights get a full-covariance posterior.

Every strategy is a small object with one method (the :class:`SubnetworkSelection` protocol)::

    indices = strategy.select(model, train_loader, n=S)            # or fraction=0.01
    la = SubnetLaplace(model, "classification", indices).fit(train_loader)

``select`` returns the sorted flat indices (``parameters_to_vector`` order over the trainable
parameters, see :func:`~paperzoo.methods.subnet_laplace.laplace.parameter_layout`). Exactly one of ``n``
(a count) and ``fraction`` (of the candidate weights, rounded half up, at least one) is given.
``include`` / ``exclude`` (fnmatch patterns on ``model.named_parameters()`` names, e.g. ``"fc.*"``,
``"*.bias"``) restrict the candidates; a pattern that matches no trainable parameter is an error.

Scores and ties: a strategy scores each candidate and keeps the ``S`` highest scores. Ties are broken
deterministically by the smaller flat index (a stable sort of the scores in descending order over the
candidates in ascending order), so the top-``S`` set is exactly defined.

The paper's strategy (Daxberger et al., 2021, Sec. 4) prunes by the Wasserstein objective: for Gaussian
full and subnetwork posteriors with a diagonal covariance, the squared 2-Wasserstein distance between
the full posterior and one whose non-subnetwork weights are collapsed to point masses is the sum of the
marginal variances of the pruned weights, so it is minimised by keeping the S weights of *largest
marginal posterior variance* (:class:`LargestVariance`).

Validation comes before any Jacobian or SWAG work, and every message names the strategy: the subnetwork
size (``n`` / ``fraction``) against the number of candidate weights, and, for :class:`LargestVariance`
(the only strategy that uses the likelihood), the likelihood against the model and data on the first
training examples (:meth:`LargestVariance.check_data`): ``classification`` needs class logits ``(B, C)``
with ``C >= 2`` and integer labels in ``[0, C)``; ``regression`` needs targets with as many entries per
input as the model has outputs.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from fnmatch import fnmatch
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from paperzoo.data.batching import iter_batches
from paperzoo.methods.subnet_laplace.laplace import (
    SubnetworkJacobian,
    diagonal_ggn,
    flat_parameters,
    parameter_layout,
)

__all__ = [
    "LargestMagnitude",
    "LargestVariance",
    "LastLayer",
    "Random",
    "SubnetworkSelection",
    "candidate_indices",
    "subnetwork_size",
    "swag_diagonal",
    "top_scores",
]

Patterns = str | Sequence[str] | None


class SubnetworkSelection(Protocol):
    """A subnetwork selection strategy."""

    def select(self, model: nn.Module, train_loader: Iterable | None = None, n: int | None = None,
               fraction: float | None = None) -> Tensor:
        """Sorted flat indices (LongTensor) of the selected weights."""


def _patterns(patterns: Patterns) -> tuple[str, ...]:
    if patterns is None:
        return ()
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


def candidate_indices(model: nn.Module, include: Patterns = None, exclude: Patterns = None) -> Tensor:
    """Flat indices of the weights in trainable parameters whose names match ``include`` (any pattern;
    all parameters when None) and none of ``exclude``.

    Raises
    ------
    ValueError
        A pattern matches no trainable parameter, or no parameter is left.
    """
    layout = parameter_layout(model)
    if not layout:
        raise ValueError("the model has no trainable parameters (requires_grad=True)")
    names = [s.name for s in layout]
    include, exclude = _patterns(include), _patterns(exclude)
    for pattern in include + exclude:
        if not any(fnmatch(name, pattern) for name in names):
            raise ValueError(f"pattern {pattern!r} matches no trainable parameter; names: {', '.join(names)}")
    kept = [s for s in layout
            if (not include or any(fnmatch(s.name, p) for p in include))
            and not any(fnmatch(s.name, p) for p in exclude)]
    if not kept:
        raise ValueError(f"include={list(include)} and exclude={list(exclude)} leave no candidate weights")
    return torch.cat([torch.arange(s.start, s.stop) for s in kept])


def subnetwork_size(n: int | None, fraction: float | None, n_candidates: int) -> int:
    """The number of weights to select: ``n``, or ``fraction`` of the candidates (rounded half up, at
    least one). Exactly one of the two must be given."""
    if (n is None) == (fraction is None):
        raise ValueError("pass exactly one of n (a number of weights) or fraction (of the candidate weights)")
    if n is not None:
        if isinstance(n, bool) or int(n) != n or not 1 <= n <= n_candidates:
            raise ValueError(f"n must be an integer in [1, {n_candidates}] (the number of candidate "
                             f"weights), got {n!r}")
        return int(n)
    if isinstance(fraction, bool) or not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    return max(1, min(n_candidates, math.floor(fraction * n_candidates + 0.5)))


def _strategy_size(strategy: object, n: int | None, fraction: float | None, n_candidates: int) -> int:
    """:func:`subnetwork_size`, with the strategy named in the error."""
    try:
        return subnetwork_size(n, fraction, n_candidates)
    except ValueError as exc:
        raise ValueError(f"{strategy!r}: {exc}") from None


def _peek(loader: Iterable) -> tuple[Tensor, Tensor] | None:
    """Up to two ``(inputs, targets)`` of the loader's first examples, read without side effects: from a
    ``DataLoader``'s (map-style) dataset by index (its sampler and random state are not touched), or the
    first batch of a re-iterable (a list of batches). ``None`` when that is not possible (a one-shot
    iterator, an iterable dataset, batches that are not pairs): the data is then not pre-checked."""
    from torch.utils.data import DataLoader, IterableDataset

    try:
        if isinstance(loader, DataLoader):
            dataset = loader.dataset
            if isinstance(dataset, IterableDataset):
                return None
            items = [dataset[i] for i in range(min(2, len(dataset)))]  # type: ignore[arg-type]
            if not items or not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
                return None
            return (torch.stack([torch.as_tensor(it[0]) for it in items]),
                    torch.stack([torch.as_tensor(it[1]) for it in items]))
        if iter(loader) is loader:  # a one-shot iterator: peeking would consume a batch
            return None
        batch = next(iter(loader), None)
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            return None
        return torch.as_tensor(batch[0])[:2], torch.as_tensor(batch[1])[:2]
    except (TypeError, RuntimeError, IndexError):  # unsized datasets, ragged samples: not pre-checkable
        return None


def informed_scores(variances: Tensor, ggn_diagonal: Tensor) -> Tensor:
    """``variances`` with every weight of zero GGN diagonal (no training output depends on it) moved
    below all others (score ``-inf``), keeping the order within each group."""
    if variances.shape != ggn_diagonal.shape:
        raise ValueError(f"{variances.numel()} variances for {ggn_diagonal.numel()} GGN entries")
    floor = torch.tensor(-math.inf, dtype=torch.float64)
    return torch.where(ggn_diagonal > 0, variances.to(torch.float64), floor)


def top_scores(scores: Tensor, candidates: Tensor, k: int) -> Tensor:
    """The ``k`` candidates of highest score, returned in ascending index order.

    Ties go to the smaller flat index: ``candidates`` are ascending and the descending sort is stable.
    """
    if scores.shape != candidates.shape:
        raise ValueError(f"{scores.numel()} scores for {candidates.numel()} candidates")
    if torch.isnan(scores).any():
        raise ValueError("selection scores contain NaN")
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
    return candidates[order[:k]].sort().values


# --------------------------------------------------------------------------------------------------
# Largest marginal posterior variance (the paper's Wasserstein pruning)
# --------------------------------------------------------------------------------------------------

def swag_diagonal(model: nn.Module, loader: Iterable, likelihood: str, epochs: int = 10, lr: float = 1e-2,
                  momentum: float = 0.0, weight_decay: float = 0.0, collect_every: int | None = None,
                  seed: int = 0) -> Tensor:
    """Diagonal SWAG variances of all trainable weights, shape (P,), float64.

    SGD with a constant learning rate continues from the MAP on a *copy* of the model (``model`` is not
    touched) for ``epochs`` epochs, in train mode, on the mean cross-entropy (classification) or mean
    squared error (regression). The weights are collected after every ``collect_every`` optimisation
    steps (default: at the end of each epoch, as in SWAG) and the variance is ``E[w^2] - E[w]^2`` over
    the collected snapshots (Welford's update, clamped at zero). The CPU random stream (data order,
    dropout) is seeded with ``seed`` and restored afterwards.
    """
    if likelihood not in ("classification", "regression"):
        raise ValueError(f"likelihood must be 'classification' or 'regression', got {likelihood!r}")
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ValueError(f"SWAG epochs must be a positive integer, got {epochs!r}")
    if not (lr > 0):
        raise ValueError(f"SWAG learning rate must be positive, got {lr!r}")
    if collect_every is not None and (isinstance(collect_every, bool) or int(collect_every) != collect_every
                                      or collect_every < 1):
        raise ValueError(f"collect_every must be a positive integer or None, got {collect_every!r}")
    swa = copy.deepcopy(model).train()
    params = [p for p in swa.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    mean = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64)
    m2 = torch.zeros_like(mean)
    count, step = 0, 0

    def collect() -> None:
        nonlocal count
        w = flat_parameters(swa).to("cpu", torch.float64)
        count += 1
        delta = w - mean
        mean.add_(delta / count)
        m2.add_(delta * (w - mean))

    device = params[0].device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(int(epochs)):
            for x, y in iter_batches(loader):
                x, y = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)
                if x.is_floating_point():
                    x = x.to(params[0].dtype)
                out = swa(x)
                if likelihood == "classification":
                    loss = F.cross_entropy(out, y.long())
                else:
                    loss = F.mse_loss(out, y.to(out.dtype).reshape(out.shape))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if collect_every is not None and step % collect_every == 0:
                    collect()
            if collect_every is None:
                collect()
    if step == 0:
        raise ValueError("the training loader yielded no data")
    if count < 2:
        raise ValueError(f"SWAG collected {count} snapshot(s); at least two are needed for a variance "
                         "(more epochs or a smaller collect_every)")
    var = (m2 / count).clamp_min(0)
    if not torch.isfinite(var).all():
        raise ValueError("SWAG diverged (non-finite weights): lower the learning rate")
    return var


class LargestVariance:
    """Keep the weights of largest marginal posterior variance (the paper's Wasserstein pruning).

    ``diag="laplace"`` (default): a diagonal Laplace approximation over all candidate weights,

    .. math:: \\sigma_i^2 = 1 / (\\mathrm{diag}(G)_i / T + \\lambda),

    with the exact diagonal of the GGN ``G`` (``1/sigma_noise^2`` included for regression), computed from
    per-input Jacobian rows ``chunk_size`` inputs at a time (:func:`~.laplace.diagonal_ggn`).

    ``diag="swag"``: diagonal SWAG variances (:func:`swag_diagonal`) with ``epochs``, ``lr``,
    ``momentum``, ``weight_decay``, ``collect_every``, ``seed``.

    Parameters
    ----------
    diag : {"laplace", "swag"}
    likelihood : {"classification", "regression"}
    prior_precision, sigma_noise, temperature : float
        Of the diagonal Laplace (``diag="laplace"`` only).
    include, exclude : fnmatch patterns restricting the candidates.
    """

    def __init__(self, diag: str = "laplace", likelihood: str = "classification", *,
                 prior_precision: float = 1.0, sigma_noise: float = 1.0, temperature: float = 1.0,
                 chunk_size: int | None = None, epochs: int = 10, lr: float = 1e-2, momentum: float = 0.0,
                 weight_decay: float = 0.0, collect_every: int | None = None, seed: int = 0,
                 include: Patterns = None, exclude: Patterns = None):
        if diag not in ("laplace", "swag"):
            raise ValueError(f"diag must be 'laplace' or 'swag', got {diag!r}")
        if likelihood not in ("classification", "regression"):
            raise ValueError(f"likelihood must be 'classification' or 'regression', got {likelihood!r}")
        for name, value in (("prior_precision", prior_precision), ("sigma_noise", sigma_noise),
                            ("temperature", temperature)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")
        self.diag, self.likelihood = diag, likelihood
        if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) != chunk_size
                                       or chunk_size < 1):
            raise ValueError(f"{self!r}: chunk_size must be a positive integer or None, got {chunk_size!r}")
        if diag == "swag":
            if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
                raise ValueError(f"{self!r}: SWAG epochs must be a positive integer, got {epochs!r}")
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise ValueError(f"{self!r}: SWAG learning rate must be positive and finite, got {lr!r}")
            if collect_every is not None and (isinstance(collect_every, bool) or int(collect_every) != collect_every
                                              or collect_every < 1):
                raise ValueError(f"{self!r}: collect_every must be a positive integer or None, got "
                                 f"{collect_every!r}")
        self.prior_precision, self.sigma_noise, self.temperature = prior_precision, sigma_noise, temperature
        self.chunk_size = chunk_size
        self.swag = {"epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                     "collect_every": collect_every, "seed": seed}
        self.include, self.exclude = include, exclude

    def __repr__(self) -> str:
        return f"LargestVariance(diag={self.diag!r}, likelihood={self.likelihood!r})"

    def check_data(self, model: nn.Module, train_loader: Iterable | None) -> None:
        """Check, on the first (up to two) training examples, that the model and data fit the likelihood;
        no Jacobian is formed and the model's state is unchanged (one forward pass in eval mode).

        ``classification`` needs class logits ``(B, C)`` with ``C >= 2`` (with one output the softmax is
        constant, every GGN entry is zero and the ranking would be by index) and integer labels in
        ``[0, C)``; ``regression`` needs as many target entries per input as the model has outputs.

        Raises
        ------
        ValueError
            Naming the strategy, the likelihood and what does not fit.
        """
        if train_loader is None:
            raise ValueError(f"{self!r} needs the training loader to estimate posterior variances")
        sample = _peek(train_loader)
        if sample is None:
            return
        x, y = sample
        params = [p for p in model.parameters() if p.requires_grad]
        if params and x.is_floating_point():
            x = x.to(params[0].device, params[0].dtype)
        modes = {m: m.training for m in model.modules()}
        try:
            model.eval()
            with torch.no_grad():
                out = model(x)
        except Exception as exc:  # noqa: BLE001 - shape errors of any layer: report them in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{self!r}: the model fails on the training loader's first inputs "
                             f"{tuple(x.shape)}: {first}") from None
        finally:
            for module, mode in modes.items():
                module.train(mode)
        if not isinstance(out, Tensor):
            raise ValueError(  # noqa: TRY004 - a bad model for this likelihood: ValueError, shown in one line
                f"{self!r}: the model returns a {type(out).__name__}, not a tensor of outputs")
        if self.likelihood == "classification":
            if out.dim() != 2 or out.shape[1] < 2:
                raise ValueError(f"{self!r}: classification needs class logits (batch, classes >= 2), the model "
                                 f"outputs {tuple(out.shape)} for {len(x)} inputs; for real-valued outputs "
                                 "use likelihood='regression'")
            classes = out.shape[1]
            if y.dim() != 1 or (y.is_floating_point() and not bool(torch.equal(y, y.round()))):
                raise ValueError(f"{self!r}: classification needs integer class labels (batch,), the "
                                 f"training targets are {tuple(y.shape)} {y.dtype} (e.g. {y.flatten()[:3].tolist()}); "
                                 "for real-valued targets use likelihood='regression'")
            if bool(((y < 0) | (y >= classes)).any()):
                raise ValueError(f"{self!r}: class label {int(y[(y < 0) | (y >= classes)][0])} is outside "
                                 f"[0, {classes}) for a model with {classes} outputs")
        elif y.numel() != out.numel() or y.shape[:1] != out.shape[:1]:
            raise ValueError(f"{self!r}: regression needs targets with the model's outputs per input: "
                             f"outputs {tuple(out.shape)}, targets {tuple(y.shape)}; for class labels use "
                             "likelihood='classification'")

    def selection_scores(self, model: nn.Module, train_loader: Iterable,
                         candidates: Tensor | None = None) -> Tensor:
        """:meth:`marginal_variances`, with the weights the data leaves unconstrained ranked last.

        A weight whose GGN diagonal is zero (e.g. into or out of a ReLU unit that is dead on every
        training input) keeps its prior variance ``1/lambda``, the largest possible, but no training
        output depends on it: a posterior over such weights is the prior, invisible to the validation
        data that tunes it. Ranking them first would fill the subnetwork with them (with
        ``diag="swag"`` they have zero variance and rank last anyway)."""
        self.check_data(model, train_loader)
        if self.diag == "swag":
            return self.marginal_variances(model, train_loader, candidates)
        return informed_scores(*self._variances_and_ggn(model, train_loader, candidates))

    def marginal_variances(self, model: nn.Module, train_loader: Iterable,
                           candidates: Tensor | None = None) -> Tensor:
        """The estimated marginal posterior variance of each candidate weight (all trainable weights when
        ``candidates`` is None), float64."""
        self.check_data(model, train_loader)
        if candidates is None:
            candidates = torch.arange(flat_parameters(model).numel())
        if self.diag == "swag":
            return swag_diagonal(model, train_loader, self.likelihood, **self.swag)[candidates]
        return self._variances_and_ggn(model, train_loader, candidates)[0]

    def _variances_and_ggn(self, model: nn.Module, train_loader: Iterable,
                           candidates: Tensor | None) -> tuple[Tensor, Tensor]:
        if train_loader is None:
            raise ValueError(f"{self!r} needs the training loader to estimate posterior variances")
        if candidates is None:
            candidates = torch.arange(flat_parameters(model).numel())
        jacobian = SubnetworkJacobian(model, candidates, chunk_size=self.chunk_size)
        ggn = diagonal_ggn(jacobian, train_loader, self.likelihood)
        if self.likelihood == "regression":
            ggn = ggn / self.sigma_noise ** 2
        return (1.0 / (ggn / self.temperature + self.prior_precision)).cpu(), ggn.cpu()

    def select(self, model: nn.Module, train_loader: Iterable | None = None, n: int | None = None,
               fraction: float | None = None) -> Tensor:
        candidates = candidate_indices(model, self.include, self.exclude)
        k = _strategy_size(self, n, fraction, candidates.numel())
        return top_scores(self.selection_scores(model, train_loader, candidates), candidates, k)


# --------------------------------------------------------------------------------------------------
# Baseline masks
# --------------------------------------------------------------------------------------------------

class LargestMagnitude:
    """Keep the weights of largest absolute MAP value ``|w_i*|`` (magnitude pruning)."""

    def __init__(self, *, include: Patterns = None, exclude: Patterns = None):
        self.include, self.exclude = include, exclude

    def __repr__(self) -> str:
        return "LargestMagnitude()"

    def select(self, model: nn.Module, train_loader: Iterable | None = None, n: int | None = None,
               fraction: float | None = None) -> Tensor:
        candidates = candidate_indices(model, self.include, self.exclude)
        k = _strategy_size(self, n, fraction, candidates.numel())
        scores = flat_parameters(model).abs().cpu()[candidates]
        return top_scores(scores, candidates, k)


class Random:
    """A uniformly random subset of the candidates, fixed by ``seed`` (one uniform score per trainable
    weight from ``torch.Generator().manual_seed(seed)``, then the top ``S``)."""

    def __init__(self, seed: int = 0, *, include: Patterns = None, exclude: Patterns = None):
        self.seed = int(seed)
        self.include, self.exclude = include, exclude

    def __repr__(self) -> str:
        return f"Random(seed={self.seed})"

    def select(self, model: nn.Module, train_loader: Iterable | None = None, n: int | None = None,
               fraction: float | None = None) -> Tensor:
        candidates = candidate_indices(model, self.include, self.exclude)
        k = _strategy_size(self, n, fraction, candidates.numel())
        generator = torch.Generator().manual_seed(self.seed)
        scores = torch.rand(parameter_layout(model)[-1].stop, generator=generator, dtype=torch.float64)
        return top_scores(scores[candidates], candidates, k)


class LastLayer:
    """All weights of the last layer: the weight and bias of the last ``nn.Linear`` in ``model.modules()``
    (registration) order that has trainable parameters, or the parameters matching ``names`` (fnmatch
    patterns, e.g. ``["head.weight", "head.bias"]``).

    The subnetwork size is fixed by the architecture: ``n`` may be omitted or must equal it, and
    ``fraction`` is not accepted. ``train_loader`` is not used.
    """

    def __init__(self, names: Patterns = None):
        self.names = names

    def parameter_names(self, model: nn.Module) -> list[str]:
        """Names of the selected parameter tensors."""
        trainable = [s.name for s in parameter_layout(model)]
        if self.names is not None:
            patterns = _patterns(self.names)
            candidate_indices(model, include=patterns)  # reports patterns that match nothing
            return [name for name in trainable if any(fnmatch(name, p) for p in patterns)]
        last = None
        for module in model.modules():
            own = list(module.parameters(recurse=False))
            if isinstance(module, nn.Linear) and any(p.requires_grad for p in own):
                last = module
        if last is None:
            raise ValueError("the model has no nn.Linear layer with trainable parameters; pass the last "
                             "layer's parameter names, LastLayer(names=[...])")
        # by identity, not by name prefix: a tied weight is listed under the name it was first seen by
        own = {id(p) for p in last.parameters(recurse=False)}
        params = dict(model.named_parameters())
        return [name for name in trainable if id(params[name]) in own]

    def select(self, model: nn.Module, train_loader: Iterable | None = None, n: int | None = None,
               fraction: float | None = None) -> Tensor:
        names = set(self.parameter_names(model))
        layout = [s for s in parameter_layout(model) if s.name in names]
        indices = torch.cat([torch.arange(s.start, s.stop) for s in layout])
        if fraction is not None or (n is not None and n != indices.numel()):
            raise ValueError(f"LastLayer selects a fixed set of {indices.numel()} weights "
                             f"({', '.join(sorted(names))}); got n={n!r}, fraction={fraction!r}")
        return indices
