"""Interpretable conv filters (Zhang, Wu, Zhu, CVPR 2018): part templates, template masking and the
filter loss, as a module that wraps named layers of any CNN.

For a filter's ``h x w`` feature map ``x`` (after ReLU) there are ``h w`` positive templates, one per
position ``mu``, and one negative template::

    T_mu(p) = tau * max(1 - beta * d(p, mu), -1),    T^-(p) = -tau,
    d(p, mu) = |p_i - mu_i| / h + |p_j - mu_j| / w        (= ||p - mu||_1 / n on an n x n map)

with the paper's constants ``tau = 0.5 / (h w)``, ``beta = 4`` and priors ``p(T_mu) = alpha / (h w)``,
``p(T^-) = 1 - alpha``, ``alpha = h w / (1 + h w)``.

Forward pass (:func:`template_mask`): each map is multiplied by the (unscaled) template at its own
argmax ``mu_hat`` and clipped at zero, ``x_masked = max(x * T_mu_hat / tau, 0)``: only the
neighbourhood of the peak, ``d(p, mu_hat) < 1 / beta``, survives, weighted down linearly away from it.

Filter loss (:func:`filter_loss`): ``Loss_f = -MI(X; T)`` between the feature maps ``X`` of the images
in the batch and the template set ``T = {T^-, T_mu}``, with
``p(x | T) = exp(tr(x . T)) / Z_T`` normalised over the batch's images, ``p(x) = sum_T p(T) p(x | T)`` and
``MI = sum_T p(T) sum_x p(x | T) log(p(x | T) / p(x))``. It is an ordinary differentiable function of
the feature maps: autograd gives its gradient (the official MATLAB code and its PyTorch port write an
approximation of it by hand into the backward pass instead).

:func:`make_interpretable` swaps named submodules of any ``nn.Module`` for :class:`InterpretableLayer`
wrappers; :func:`filter_loss_of` collects their losses after a forward pass. Skip connections: wrap the
module whose OUTPUT the rest of the network reads, i.e. a whole residual block (its output is
``relu(skip + branch)``), not a conv inside the branch, whose masked map the skip path would bypass.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

#: beta of the paper: a template falls from 1 at its centre to 0 at L1 distance n / beta.
BETA = 4.0


def default_tau(h: int, w: int) -> float:
    """The paper's template scale ``tau = 0.5 / n^2`` (``0.5 / (h w)`` on an ``h x w`` map)."""
    return 0.5 / (h * w)


def default_alpha(h: int, w: int) -> float:
    """The paper's prior mass of the positive templates, ``alpha = n^2 / (1 + n^2)``."""
    return h * w / (1.0 + h * w)


@lru_cache(maxsize=64)
def _distances(h: int, w: int) -> torch.Tensor:
    """``(h w, h w)`` float64: ``D[mu, p] = |p_i - mu_i| / h + |p_j - mu_j| / w`` (positions row-major)."""
    i = torch.arange(h, dtype=torch.float64).repeat_interleave(w)
    j = torch.arange(w, dtype=torch.float64).repeat(h)
    return (i[:, None] - i[None, :]).abs() / h + (j[:, None] - j[None, :]).abs() / w


def templates(h: int, w: int | None = None, *, beta: float = BETA, tau: float | None = None,
              dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """The template set of an ``h x w`` map as a ``(h w + 1, h, w)`` tensor: ``T_mu`` for every position
    ``mu`` (row-major: index ``mu_i * w + mu_j``), then the negative template ``T^-`` last."""
    w = h if w is None else w
    if h < 1 or w < 1:
        raise ValueError(f"templates need a feature map of at least 1 x 1, got {h} x {w}")
    tau = default_tau(h, w) if tau is None else tau
    pos = tau * torch.clamp(1.0 - beta * _distances(h, w), min=-1.0)
    neg = torch.full((1, h * w), -tau, dtype=torch.float64)
    return torch.cat([pos, neg]).reshape(h * w + 1, h, w).to(dtype=dtype, device=device)


@lru_cache(maxsize=64)
def _tables(h: int, w: int, beta: float, tau: float, dtype: torch.dtype,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h w, h w + 1)`` template matrix (one column per template, for ``x_flat @ T``) and the mask table
    (row ``mu`` is ``max(T_mu / tau, 0)``, the part of the template that survives the clip)."""
    t = templates(h, w, beta=beta, tau=tau, dtype=dtype, device=device).reshape(h * w + 1, h * w)
    mask = torch.clamp(1.0 - beta * _distances(h, w), min=0.0).to(dtype=dtype, device=device)
    return t.T.contiguous(), mask


def _check_maps(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what} needs feature maps of shape (batch, filters, h, w), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} needs floating-point feature maps, got {x.dtype}")


def template_mask(x: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """``max(x * T_mu_hat / tau, 0)``: each ``(h, w)`` map multiplied by its template at its own argmax
    ``mu_hat`` (first maximum in row-major order on ties) and clipped at zero. Differentiable in ``x``
    (``mu_hat`` is a constant of the forward pass, as in the paper)."""
    _check_maps(x, "template_mask")
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    _, mask_table = _tables(h, w, float(beta), 1.0, x.dtype, x.device)
    peak = flat.argmax(dim=2)  # (b, c)
    mask = mask_table[peak]  # (b, c, h w)
    # x >= 0 after ReLU and mask >= 0, so max(x * T / tau, 0) = x * max(T / tau, 0) for such x; the clamp
    # keeps the paper's definition for inputs that are not rectified.
    return torch.clamp(flat * mask, min=0.0).reshape(b, c, h, w)


def _log_priors(n: int, alpha: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """log p(T) for the ``n`` positive templates then the negative one."""
    pos = torch.full((n,), math.log(alpha / n), dtype=dtype, device=device)
    return torch.cat([pos, torch.tensor([math.log1p(-alpha)], dtype=dtype, device=device)])


def _log_likelihoods(x: torch.Tensor, beta: float, tau: float | None, alpha: float | None,
                     what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p(x | T)`` ``(batch, filters, n + 1)`` (normalised over the batch's images; the negative
    template last) and ``log p(T)`` ``(n + 1,)``."""
    _check_maps(x, what)
    b, c, h, w = x.shape
    n = h * w
    tau = default_tau(h, w) if tau is None else float(tau)
    alpha = default_alpha(h, w) if alpha is None else float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{what}: alpha must be in (0, 1), got {alpha}")
    t_mat, _ = _tables(h, w, float(beta), tau, x.dtype, x.device)  # (n, n + 1)
    scores = (x.reshape(b * c, n) @ t_mat).reshape(b, c, n + 1)  # tr(x . T) for every template
    log_px_t = scores - torch.logsumexp(scores, dim=0, keepdim=True)
    return log_px_t, _log_priors(n, alpha, x.dtype, x.device)


def filter_loss(x: torch.Tensor, *, beta: float = BETA, tau: float | None = None,
                alpha: float | None = None) -> torch.Tensor:
    """Per-filter ``-MI(X; T)`` over the images of the batch: a ``(filters,)`` tensor (sum it, or weight
    it, into the training loss).

    ``x`` holds the feature maps ``(batch, filters, h, w)`` after ReLU. ``tau`` and ``alpha`` default
    to the paper's ``0.5 / n^2`` and ``n^2 / (1 + n^2)``. ``p(x | T)`` is a softmax over the batch, so a
    batch of one image has zero mutual information (and zero gradient)."""
    log_px_t, log_prior = _log_likelihoods(x, beta, tau, alpha, "filter_loss")
    log_px = torch.logsumexp(log_px_t + log_prior, dim=2, keepdim=True)  # log p(x)
    mi = (log_prior.exp() * (log_px_t.exp() * (log_px_t - log_px)).sum(dim=0)).sum(dim=1)  # (c,)
    return -mi


def mutual_information_terms(x: torch.Tensor, *, beta: float = BETA, tau: float | None = None,
                             alpha: float | None = None) -> dict[str, torch.Tensor]:
    """The paper's decomposition ``MI = H(T) - H(T' | X) - sum_x p(T^+, x) H(T^+ | X = x)`` per filter
    (``T' = {T^-, T^+}``): ``H(T)``, ``H(T'|X)`` (does the filter fire on an image or not) and
    ``H(T+|X)`` (where it fires), each ``(filters,)``. Diagnostics, and a check of :func:`filter_loss`."""
    log_px_t, log_prior = _log_likelihoods(x, beta, tau, alpha, "mutual_information_terms")
    n = log_px_t.size(2) - 1
    joint = log_px_t + log_prior  # log p(x, T): (b, c, n + 1)
    log_px = torch.logsumexp(joint, dim=2, keepdim=True)
    post = joint - log_px  # log p(T | x)
    p_x = log_px.exp().squeeze(2)  # (b, c)
    h_t = -(log_prior.exp() * log_prior).sum().expand(x.size(1))
    # T' = {T^-, T^+}: p(T^+ | x) = sum over the positive templates
    log_pos = torch.logsumexp(post[..., :n], dim=2)
    log_neg = post[..., n]
    h_fire = -(p_x * (log_pos.exp() * log_pos + log_neg.exp() * log_neg)).sum(dim=0)
    # H(T^+ | X = x) over the positive templates given T^+, weighted by p(T^+, x) = p(x) p(T^+ | x)
    cond = post[..., :n] - log_pos[..., None]
    h_where = -(cond.exp() * cond).sum(dim=2)
    h_pos = (p_x * log_pos.exp() * h_where).sum(dim=0)
    return {"H(T)": h_t, "H(T'|X)": h_fire, "H(T+|X)": h_pos}


class InterpretableLayer(nn.Module):
    """Wraps a module whose output is a stack of conv feature maps ``(batch, filters, h, w)``.

    Forward: ``x = relu(module(...))``; in training mode with gradients on, ``self.loss`` is set to the
    per-filter :func:`filter_loss` of ``x``; the output is :func:`template_mask` of ``x``. The ReLU makes
    a bare ``nn.Conv2d`` wrappable (the paper's filters are rectified); on an output that is already
    rectified (a conv + ReLU block, a residual block) it changes nothing.

    ``loss_in_eval=True`` also computes the loss in eval mode (for monitoring)."""

    def __init__(self, module: nn.Module, *, beta: float = BETA, tau: float | None = None,
                 alpha: float | None = None, loss_in_eval: bool = False):
        super().__init__()
        self.module = module
        self.beta = float(beta)
        self.tau = tau
        self.alpha = alpha
        self.loss_in_eval = loss_in_eval
        self.loss: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"beta={self.beta}, tau={self.tau or 'paper'}, alpha={self.alpha or 'paper'}"

    def forward(self, *args, **kwargs) -> torch.Tensor:
        x = F.relu(self.module(*args, **kwargs))
        if (self.training and torch.is_grad_enabled()) or self.loss_in_eval:
            self.loss = filter_loss(x, beta=self.beta, tau=self.tau, alpha=self.alpha)
        else:
            self.loss = None
        return template_mask(x, self.beta)


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, str, nn.Module]:
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        module = parent.get_submodule(child)
    except AttributeError:
        known = ", ".join(n for n, _ in model.named_modules() if n) or "(none)"
        raise KeyError(f"make_interpretable: the model has no submodule {name!r}; its submodules: "
                       f"{known[:600]}") from None
    return parent, child, module


def make_interpretable(model: nn.Module, layers: str | Sequence[str], **kwargs) -> list[InterpretableLayer]:
    """Make the named submodules of ``model`` interpretable, in place: each is replaced by an
    :class:`InterpretableLayer` wrapping it (``kwargs`` go to it). Names are as in
    ``model.named_modules()`` (``"features.28"``, ``"layer4"``, ``"layer4.1"``). Returns the wrappers.

    The wrapped module's output must be ``(batch, filters, h, w)``; wrap the module whose output the
    rest of the network reads (a whole residual block rather than a conv inside it)."""
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("make_interpretable: name at least one layer")
    wrappers = []
    for name in names:
        parent, child, module = _resolve(model, name)
        if isinstance(module, InterpretableLayer):
            raise ValueError(f"make_interpretable: {name!r} is already interpretable")  # noqa: TRY004
        wrapper = InterpretableLayer(module, **kwargs)
        if isinstance(parent, (nn.Sequential, nn.ModuleList)) and child.isdigit():
            parent[int(child)] = wrapper
        else:
            setattr(parent, child, wrapper)
        wrappers.append(wrapper)
    return wrappers


def interpretable_layers(model: nn.Module) -> list[tuple[str, InterpretableLayer]]:
    """``(name, wrapper)`` of every interpretable layer of ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, InterpretableLayer)]


def filter_loss_of(model: nn.Module | Iterable[InterpretableLayer], reduction: str = "sum") -> torch.Tensor:
    """The filter loss of the last forward pass over every interpretable layer of ``model``: ``sum``
    over filters (the paper's ``sum_f Loss_f``) or ``mean``. Raises if a layer computed none (eval mode
    or no grad; see :class:`InterpretableLayer`)."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"filter_loss_of: reduction must be 'sum' or 'mean', got {reduction!r}")
    layers = ([m for _, m in interpretable_layers(model)] if isinstance(model, nn.Module) else list(model))
    if not layers:
        raise ValueError("filter_loss_of: the model has no interpretable layer (see make_interpretable)")
    parts = []
    for layer in layers:
        if layer.loss is None:
            raise RuntimeError("filter_loss_of: an interpretable layer has no loss from the last forward "
                               "pass (it runs in training mode with gradients on, or with loss_in_eval=True)")
        parts.append(layer.loss.sum() if reduction == "sum" else layer.loss.mean())
    return torch.stack(parts).sum()
