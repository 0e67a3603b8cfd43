"""Deep-Align's report section: claim, a verdict computed from the barriers, the method table and the
run's own figures (barrier curves, training curves), none of them empty."""
import importlib
import json
from types import SimpleNamespace

import pytest
from figure_checks import assert_drawn_png, drawn_axes

from paperzoo import runner
from paperzoo.api import VERDICTS
from paperzoo.methods.deep_align import SPEC

da_run = importlib.import_module("paperzoo.methods.deep_align.run")  # the module, not run()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    rd = runner.prepare("deep_align", "tiny", run_dir=tmp_path_factory.mktemp("da") / "run",
                        overrides={"epochs": 2, "steps_per_epoch": 2, "test_pairs": 3, "num_threads": 1,
                                   "methods": ["naive", "weight_matching", "deep_align"]})
    with drawn_axes() as seen:
        runner.execute(rd)
    assert seen and all(n > 0 for fig in seen for n in fig), seen  # no empty axes in the run's figures
    return rd


def test_section_has_claim_verdict_table_and_drawn_figures(tiny_run):
    with drawn_axes() as seen:
        section = SPEC.report_section([tiny_run])
    assert all(n > 0 for fig in seen for n in fig), seen
    assert ".005" in section.claim and ".047" in section.claim
    assert section.verdict.startswith(VERDICTS)
    m = tiny_run.read_metrics()
    assert f"Deep-Align {m['test/barrier/deep_align']:.3f} vs weight matching " \
           f"{m['test/barrier/weight_matching']:.3f} on 3 test pairs after 4 steps" in section.verdict
    assert [line.split(" | ")[0] for line in section.markdown.splitlines() if line.startswith("| ")][1:] == \
        ["| naive", "| weight_matching", "| deep_align"]
    assert [f.path.name for f in section.figures] == ["barrier_curves.png", "training.png"]
    for fig in section.figures:
        assert_drawn_png(fig.path)


def _fake_run(tmp_path, preset="quick"):
    return SimpleNamespace(path=tmp_path, preset=preset, config=SimpleNamespace(epochs=6, steps_per_epoch=25))


def test_verdict_follows_the_barriers(tmp_path):
    paper = {"barrier/deep_align": 0.005, "barrier/weight_matching": 0.047}
    m = {"test/barrier/deep_align": 0.70, "test/barrier/weight_matching": 0.14, "test/num_pairs": 8.0,
         "test/barrier_std/deep_align": 0.05, "test/barrier_std/weight_matching": 0.05, "epochs_run": 6}
    lost = da_run.verdict(_fake_run(tmp_path), m, paper)
    assert lost.startswith("not reproduced in the quick preset: Deep-Align 0.700 vs weight matching 0.140 "
                           "on 8 test pairs after 150 steps")
    assert lost.endswith("preset cpu_mnist_mlp reaches 0.124 vs 0.128 (README)")
    # a tie within one standard error of the paired difference keeps the ordering
    (tmp_path / "test_pairs.json").write_text(json.dumps(
        {"barrier": {"deep_align": [0.12, 0.14, 0.11], "weight_matching": [0.13, 0.12, 0.12]}}))
    tie = {**m, "test/barrier/deep_align": 0.123, "test/barrier/weight_matching": 0.123}
    assert da_run.verdict(_fake_run(tmp_path), tie, paper).startswith("ordering reproduced: ")
    near_paper = {**tie, "test/barrier/deep_align": 0.01}
    assert da_run.verdict(_fake_run(tmp_path), near_paper, paper).startswith("reproduced: ")


def test_an_unreadable_test_pairs_file_falls_back_to_the_means(tmp_path, caplog):
    (tmp_path / "test_pairs.json").write_text('{"barrier": {"deep_align": [0.1]}}')
    m = {"test/barrier/deep_align": 0.10, "test/barrier/weight_matching": 0.14, "test/num_pairs": 4.0,
         "test/barrier_std/deep_align": 0.03, "test/barrier_std/weight_matching": 0.04, "epochs_run": 6}
    line = da_run.verdict(_fake_run(tmp_path), m, {})
    assert line.startswith("ordering reproduced: ") and "(difference -0.040 ± 0.025)" in line
    assert f"{tmp_path / 'test_pairs.json'}: unreadable (KeyError" in caplog.text
