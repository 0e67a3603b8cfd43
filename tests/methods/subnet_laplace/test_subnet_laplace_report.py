"""Subnetwork Laplace's report section: claim, the ordering verdict computed from test NLL, the method x
level table and the run's figures (predictive bands, shift curves, reliability), none of them empty."""
import importlib
from types import SimpleNamespace

from figure_checks import assert_drawn_png, drawn_axes

from paperzoo import runner
from paperzoo.api import VERDICTS
from paperzoo.methods.subnet_laplace import SPEC

sl_run = importlib.import_module("paperzoo.methods.subnet_laplace.run")  # the module, not run()


def _run(tmp_path, preset, **overrides):
    rd = runner.prepare("subnet_laplace", preset, run_dir=tmp_path / preset, overrides=overrides or None)
    with drawn_axes() as seen:
        runner.execute(rd)
    assert seen and all(n > 0 for fig in seen for n in fig), seen  # no empty axes in the run's figures
    return rd


def test_regression_section_shows_the_predictive_bands(tmp_path):
    rd = _run(tmp_path, "quick", epochs=3, passes_per_epoch=2, num_threads=1)
    section = SPEC.report_section([rd])
    assert "-2.93" in section.claim and "-3.43" in section.claim
    assert section.verdict.startswith(VERDICTS)
    m = rd.read_metrics()
    assert f"subnetwork {m['test/subnet/nll']:.3f} vs diagonal {m['test/diag/nll']:.3f}" in section.verdict
    assert "| subnet1300 | " in section.markdown and "gap NLL / RMSE" in section.markdown
    assert [f.path.name for f in section.figures] == ["predictive.png"]
    for fig in section.figures:
        assert_drawn_png(fig.path)


def test_classification_section_shows_shift_and_reliability(tmp_path):
    rd = _run(tmp_path, "tiny", methods=["map", "subnet"], epochs=10, num_threads=1)
    section = SPEC.report_section([rd])
    assert section.verdict.startswith(VERDICTS)
    assert [f.path.name for f in section.figures] == ["shift.png", "reliability-map.png",
                                                      "reliability-subnet40.png"]
    for fig in section.figures:
        assert_drawn_png(fig.path)


def test_verdict_follows_the_nll_ordering(tmp_path):
    run = SimpleNamespace(path=tmp_path, preset="quick", config=SimpleNamespace(experiment="regression_1d"))
    m = {"test/subnet/nll": 0.73, "test/diag/nll": 8.93, "test/map/nll": 14.37}
    assert sl_run.verdict(run, m).startswith("ordering reproduced on regression_1d: test NLL subnetwork 0.730")
    lost = sl_run.verdict(run, {**m, "test/subnet/nll": 9.5})
    assert lost.startswith("not reproduced in the quick preset on regression_1d") and "(above diagonal)" in lost
    assert "preset paper_regression_1d shows it" in lost
    assert sl_run.verdict(run, {**m, "test/subnet/nll": 9.2}).startswith("ordering")  # within 5% of 8.93
    rotated = SimpleNamespace(path=tmp_path, preset="paper_rotated_mnist",
                              config=SimpleNamespace(experiment="rotated_mnist"))
    paper = {"shift60/map/nll": 3.43, "shift60/subnet/nll": 2.93, "shift60/map/ece": 0.459,
             "shift60/subnet/ece": 0.423}
    assert sl_run.verdict(rotated, {**m, **paper}).startswith("reproduced on rotated_mnist")
    far = {**m, **paper, "shift60/subnet/nll": 2.0}
    assert sl_run.verdict(rotated, far).startswith("ordering reproduced") and "not reached" in sl_run.verdict(
        rotated, far)
