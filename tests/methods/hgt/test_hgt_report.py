"""HGT's report section: claim, a verdict computed against the best baseline of the same data (a run
beside it or the README's table) and the paper, the score table and validation curves, none empty."""
import importlib
from types import SimpleNamespace

import pytest
from figure_checks import assert_drawn_png, drawn_axes

from paperzoo import runner
from paperzoo.api import VERDICTS
from paperzoo.methods.hgt import SPEC

hgt_run = importlib.import_module("paperzoo.methods.hgt.run")  # the module, not run()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("hgt")
    out = []
    for model in ("hgt", "rgcn"):
        rd = runner.prepare("hgt", "tiny", run_dir=base / model, overrides={"model": model, "num_threads": 1})
        runner.execute(rd)
        out.append(rd)
    return out


def test_section_compares_hgt_with_the_baseline_beside_it(runs):
    with drawn_axes() as seen:
        section = SPEC.report_section(runs)
    assert seen and all(n > 0 for fig in seen for n in fig), seen
    assert ".911" in section.claim
    assert section.verdict.startswith(VERDICTS)
    ours, base = (rd.read_metrics()["test/macro_f1"] for rd in runs)
    assert f"HGT macro_f1 {ours:.3f} vs best baseline rgcn {base:.3f} (run beside it)" in section.verdict
    assert section.verdict.startswith("ordering reproduced" if ours >= base - 0.01 else "not reproduced")
    assert [line.split(" | ")[3] for line in section.markdown.splitlines()[2:]] == ["hgt", "rgcn"]
    assert [f.path.name for f in section.figures] == ["validation.png", "validation.png"]
    for fig in section.figures:
        assert_drawn_png(fig.path)


def test_no_curve_for_a_run_that_validated_twice(tmp_path):
    rd = runner.prepare("hgt", "tiny", run_dir=tmp_path / "short", overrides={"epochs": 2, "num_threads": 1})
    runner.execute(rd)
    section = SPEC.report_section([rd])
    assert section.figures == ()
    assert section.verdict.startswith("not reproduced: HGT macro_f1")  # synthetic: nothing to compare with


def _run(dataset="acm", preset="quick", model="hgt", imdb_task="magnn"):
    return SimpleNamespace(preset=preset, config=SimpleNamespace(model=model, task="node", dataset=dataset,
                                                                 imdb_task=imdb_task))


def test_verdict_follows_the_scores():
    acm = hgt_run.verdict(_run(), {"test/macro_f1": 0.81}, {})
    assert acm.startswith("not reproduced in the quick preset: HGT macro_f1 0.810 vs best baseline GCN 0.860")
    assert acm.endswith("the claim holds on AMiner (preset paper_aminer: HGT 0.893 vs R-GCN 0.836, README)")
    aminer = hgt_run.verdict(_run("aminer", "paper_aminer"), {"test/macro_f1": 0.89}, {})
    assert aminer.startswith("ordering reproduced: HGT macro_f1 0.890 vs best baseline R-GCN 0.836")
    # the quick preset's paper number is marked not comparable: never more than the ordering
    assert hgt_run.verdict(_run(), {"test/macro_f1": 0.91}, {"rgcn": 0.9}).startswith("ordering reproduced")
    hgb = _run("imdb", "paper_imdb_hgb", imdb_task="hgb")
    assert hgt_run.verdict(hgb, {"test/macro_f1": 0.62}, {"rgcn": 0.6}).startswith("reproduced: ")
    assert hgt_run.verdict(hgb, {"test/macro_f1": 0.62}, {}).startswith("not reproduced: HGT macro_f1 0.620, but")
