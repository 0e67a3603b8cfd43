"""dist_gcn's report section: claim, a verdict computed against the centralized GCN, the accuracy /
consensus / bytes table and each run's curves (drawn again from log.csv when missing), none empty."""
import importlib
from types import SimpleNamespace

import pytest
from figure_checks import assert_drawn_png, drawn_axes

from paperzoo import runner
from paperzoo.api import VERDICTS
from paperzoo.methods.dist_gcn import SPEC

dg_run = importlib.import_module("paperzoo.methods.dist_gcn.run")  # the module, not run()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("dgcn")
    out = []
    for algorithm in ("gt", "centralized"):
        rd = runner.prepare("dist_gcn", "tiny", run_dir=base / algorithm,
                            overrides={"algorithm": algorithm, "num_threads": 1})
        with drawn_axes() as seen:
            runner.execute(rd)
        assert seen and all(n > 0 for fig in seen for n in fig), seen
        out.append(rd)
    return out


def test_section_compares_with_the_centralized_run_beside_it(runs):
    gt, central = runs
    section = SPEC.report_section([gt, central])
    assert "centralized GCN's accuracy" in section.claim
    assert section.verdict.startswith(VERDICTS)
    acc, ref = gt.read_metrics()["test/accuracy"], central.read_metrics()["test/accuracy"]
    assert f"GT with 3 agents: test accuracy {acc:.3f} vs {ref:.3f} (centralized run beside it)" in section.verdict
    assert section.verdict.startswith("reproduced" if acc >= ref - 0.01 else "not reproduced")
    assert [line.split(" | ")[2] for line in section.markdown.splitlines()[2:]] == ["gt", "centralized"]
    assert [f.path.name for f in section.figures] == ["curves.png", "curves.png"]
    for fig in section.figures:
        assert_drawn_png(fig.path)


def test_curves_are_drawn_again_from_log_csv(runs):
    import matplotlib.image

    gt = runs[0]
    original = matplotlib.image.imread(gt.path / "curves.png")
    (gt.path / "curves.png").unlink()
    with drawn_axes() as seen:
        section = SPEC.report_section([gt])
    assert len(seen) == 1 and all(n > 0 for n in seen[0]), seen
    assert_drawn_png(section.figures[0].path)
    redrawn = matplotlib.image.imread(section.figures[0].path)
    # log.csv leaves the evaluation columns blank between evaluations: the same picture as the run's
    assert redrawn.shape == original.shape and abs(redrawn - original).mean() < 0.01
    assert section.verdict.startswith("not reproduced: no centralized accuracy for dataset 'sbm'")


def test_verdict_follows_accuracy_and_consensus():
    run = SimpleNamespace(preset="quick", config=SimpleNamespace(algorithm="gt", agents=4, dataset="cora"))
    m = {"test/accuracy": 0.82, "final/consensus_error": 3.6e-3}
    ref = (dg_run.CENTRALIZED_ACCURACY["cora"], "centralized GCN, README")
    assert dg_run.verdict(run, m, ref).startswith("reproduced: GT with 4 agents: test accuracy 0.820 vs 0.825")
    assert dg_run.verdict(run, {**m, "test/accuracy": 0.80}, ref).endswith("(more than 0.01 below)")
    assert "agents did not agree" in dg_run.verdict(run, {**m, "final/consensus_error": 0.3}, ref)


def test_several_runs_lead_with_the_strongest_verdict():
    line = dg_run.overall_verdict([("a", "not reproduced: x"), ("b", "reproduced: y"), ("c", "ordering reproduced: z")])
    assert line == "reproduced: y (b); c: ordering reproduced: z; a: not reproduced: x"
    assert dg_run.overall_verdict([]) == "not reproduced: no finished run"
