"""Tiny test problems and brute-force Laplace references shared by the subnet_laplace tests.

A plain module beside the test files, imported by its name (``from subnet_laplace_problems import ...``):
``tests/`` has no ``__init__.py`` files, so pytest's default ``prepend`` import mode puts this folder on
``sys.path`` before it imports the test modules here. All those folders share one module namespace, hence
the long, unique name (a second ``problems.py`` elsewhere would shadow this one).
"""
import torch
from torch import nn
from torch.func import functional_call

from paperzoo.methods.subnet_laplace.laplace import flat_parameters, parameter_layout


def _mlp(n_in, n_hidden, n_out, seed, dropout, dtype):
    torch.manual_seed(seed)
    drop = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.Tanh(), *drop, nn.Linear(n_hidden, n_out)).to(dtype)


def make_classifier(seed=0, dropout=0.0, dtype=torch.float64):
    """2 inputs -> 8 tanh units (-> ``nn.Dropout`` at index 2 when ``dropout > 0``) -> 3 logits; 51
    weights, initialised from ``torch.manual_seed(seed)``."""
    return _mlp(2, 8, 3, seed, dropout, dtype)


def make_regressor(seed=0, dropout=0.0, dtype=torch.float64):
    """1 input -> 10 tanh units (-> dropout) -> 1 output; 31 weights."""
    return _mlp(1, 10, 1, seed, dropout, dtype)


def make_data(likelihood, n=24, seed=1, dtype=torch.float64):
    """``(x, y)``: 2-D Gaussian inputs with random labels in {0, 1, 2} (classification), or a noisy
    ``sin(2x)`` on ``[-2, 2]`` shaped ``(n, 1)`` (regression)."""
    g = torch.Generator().manual_seed(seed)
    if likelihood == "classification":
        x = torch.randn(n, 2, generator=g, dtype=dtype)
        y = torch.randint(0, 3, (n,), generator=g)
    else:
        x = torch.linspace(-2, 2, n, dtype=dtype).unsqueeze(1)
        y = torch.sin(2 * x) + 0.1 * torch.randn(n, 1, generator=g, dtype=dtype)
    return x, y


def make_loader(x, y, batch=10):
    """A list of ``(x, y)`` batches: any iterable of batches is a loader here."""
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]


def full_jacobian(model, x):
    """(B, C, P) in float64, by differentiating the model as a function of the flat parameter vector,
    input by input."""
    layout = parameter_layout(model)
    w = flat_parameters(model)

    def f(vec, xi):
        params = {s.name: vec[s.start:s.stop].view(s.shape) for s in layout}
        return functional_call(model, params, (xi.unsqueeze(0),)).squeeze(0)

    jacobians = [torch.autograd.functional.jacobian(lambda v, xi=xi: f(v, xi), w) for xi in x]
    return torch.stack(jacobians).double()


def full_ggn(model, x, likelihood, sigma=1.0):
    """``sum_n J_n^T Lambda_n J_n`` over all P weights, (P, P) float64, assembled input by input
    (``Lambda = diag(p) - p p^T``, or ``I / sigma^2`` for regression)."""
    jac = full_jacobian(model, x)
    with torch.no_grad():
        f = model(x).double()
    ggn = torch.zeros(jac.shape[-1], jac.shape[-1], dtype=torch.float64)
    for n in range(len(x)):
        if likelihood == "classification":
            p = torch.softmax(f[n], -1)
            lam = torch.diag(p) - torch.outer(p, p)
        else:
            lam = torch.eye(f.shape[1], dtype=torch.float64) / sigma ** 2
        ggn += jac[n].T @ lam @ jac[n]
    return ggn


def diag_laplace_variance(model, x, likelihood, prior, sigma=1.0):
    """The diagonal Laplace posterior variances ``1 / (diag(GGN) + prior)``, (P,) float64."""
    return 1.0 / (torch.diagonal(full_ggn(model, x, likelihood, sigma)) + prior)


class Twice(nn.Module):
    """One Linear applied twice in a forward pass."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 3)

    def forward(self, x):
        return self.layer(torch.tanh(self.layer(x)))
