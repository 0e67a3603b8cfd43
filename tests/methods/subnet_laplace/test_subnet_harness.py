"""The experiment harness: data levels, selection reuse, metrics keys, report section."""
import math

import torch

from paperzoo.core.runs import RunDir
from paperzoo.methods.subnet_laplace import DiagLaplace, LargestVariance
from paperzoo.methods.subnet_laplace.config import PRESETS, SubnetLaplaceConfig
from paperzoo.methods.subnet_laplace.run import Batches, load_experiment, report_section, run
from paperzoo.methods.subnet_laplace.selection import informed_scores, top_scores


def test_diag_laplace_variances_rank_like_largest_variance():
    cfg = SubnetLaplaceConfig(hidden=8, train_limit=60)
    exp = load_experiment(cfg)
    torch.manual_seed(0)
    model = exp.build(0.0)
    fit = Batches(*exp.train, 32)
    n = sum(p.numel() for p in model.parameters())
    diag = DiagLaplace(model, "classification", prior_precision=7.0).fit(fit)
    for k in (5, 20, 60):
        assert torch.equal(top_scores(informed_scores(diag.posterior_variance, diag.ggn_diagonal),
                                      torch.arange(n), k),
                           LargestVariance("laplace", "classification").select(model, fit, n=k))


def test_regression_1d_levels_split_the_grid():
    exp = load_experiment(SubnetLaplaceConfig(experiment="regression_1d", test_limit=300))
    toy = exp.info["toy"]
    x_gap, _ = exp.levels["gap"]
    x_data, _ = exp.levels["data"]
    assert bool(toy.in_gap(x_gap).all()) and len(x_gap) > 10
    assert not bool(toy.in_gap(x_data).any())
    assert not bool(toy.in_gap(exp.train[0]).any())          # no training input in the gap
    assert len(exp.levels["test"][0]) == 300


def test_tiny_run_metrics_keys_and_report(tmp_path):
    cfg = PRESETS["tiny"].config
    rd = RunDir.create(tmp_path / "r", method="subnet_laplace", preset="tiny", config=cfg)
    res = run(cfg, rd)
    m = res.metrics
    for method in ("map", "subnet40", "full", "diag", "last_layer"):
        for level in ("test", "shift2", "shift4"):
            assert f"{level}/{method}/ece" in m
            # three Gaussian blobs: a uniform predictor has accuracy 1/3, NLL log 3 and Brier 2/3;
            # measured accuracy .95-.96, NLL .12-.17, Brier .06-.07 for every method and level
            assert m[f"{level}/{method}/accuracy"] > 0.9, (level, method)
            assert m[f"{level}/{method}/nll"] < 0.3 * math.log(3), (level, method)
            assert m[f"{level}/{method}/brier"] < 0.15, (level, method)
    assert m["test/nll"] == m["test/subnet40/nll"] == m["test/subnet/nll"]
    assert (rd.path / "posteriors" / "subnet40.pt").is_file()
    assert (rd.path / "plots" / "shift.png").is_file()
    rd.write_metrics(m)
    section = report_section([RunDir.open(tmp_path / "r")])
    assert "| subnet40 |" in section.markdown and "shift4 NLL / ECE" in section.markdown
