"""Subnetwork linearized Laplace (Daxberger, Nalisnick, Allingham, Antoran, Hernandez-Lobato, ICML 2021).

Public API::

    from paperzoo.methods.subnet_laplace import SubnetLaplace, LargestVariance

    indices = LargestVariance("laplace", "classification").select(model, train_loader, n=1000)
    la = SubnetLaplace(model, "classification", indices).fit(train_loader)
    la.optimize_prior_precision(val_loader)
    probs = la.predict(x)                       # probit; link="mc" for Monte Carlo

``model`` is any trained ``nn.Module``; only the chosen weights get a (full-covariance) posterior, and
Jacobians are taken with respect to those weights only.
"""
from paperzoo.api import MethodSpec
from paperzoo.methods.subnet_laplace import metrics
from paperzoo.methods.subnet_laplace.baselines import (
    MAP,
    DeepEnsemble,
    DiagLaplace,
    LastLayerLaplace,
    MCDropout,
)
from paperzoo.methods.subnet_laplace.config import PRESETS, SubnetLaplaceConfig
from paperzoo.methods.subnet_laplace.laplace import SubnetLaplace, SubnetworkJacobian
from paperzoo.methods.subnet_laplace.run import evaluate, report_section, run
from paperzoo.methods.subnet_laplace.selection import LargestMagnitude, LargestVariance, LastLayer, Random

CITATION = """@inproceedings{daxberger2021subnetwork,
  title     = {Bayesian Deep Learning via Subnetwork Inference},
  author    = {Daxberger, Erik and Nalisnick, Eric and Allingham, James Urquhart and Antor{\\'a}n, Javier
               and Hern{\\'a}ndez-Lobato, Jos{\\'e} Miguel},
  booktitle = {Proceedings of the 38th International Conference on Machine Learning},
  pages     = {2510--2521},
  year      = {2021},
}"""

SPEC = MethodSpec(
    name="subnet_laplace",
    paper="Subnetwork linearized Laplace inference",
    citation=CITATION,
    url="https://arxiv.org/abs/2010.14689",
    config_cls=SubnetLaplaceConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test/nll",
    extras={"subnet": ("sklearn",)},
    variant_fields=("selection", "subnet_sizes", "methods"),
    table_metrics=("nll",),
    report_section=report_section,
)

__all__ = [
    "MAP",
    "SPEC",
    "DeepEnsemble",
    "DiagLaplace",
    "LargestMagnitude",
    "LargestVariance",
    "LastLayer",
    "LastLayerLaplace",
    "MCDropout",
    "Random",
    "SubnetLaplace",
    "SubnetLaplaceConfig",
    "SubnetworkJacobian",
    "evaluate",
    "metrics",
    "run",
]
