"""sky_broker's report section: claim, a computed verdict, the placement table and non-empty bars."""
import importlib
import json

import pytest
from figure_checks import assert_drawn_png, drawn_axes

from paperzoo import runner
from paperzoo.api import VERDICTS
from paperzoo.core.runs import RunDir
from paperzoo.methods.sky_broker import SPEC

sky_run = importlib.import_module("paperzoo.methods.sky_broker.run")  # the module, not run()

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    rd = runner.prepare("sky_broker", "tiny", run_dir=tmp_path_factory.mktemp("sky") / "run",
                        overrides={"num_dags": 4})
    with drawn_axes() as seen:
        runner.execute(rd)
    assert all(n > 0 for fig in seen for n in fig), seen  # no empty axes in what the run draws
    return rd


def test_section_has_claim_verdict_table_and_drawn_bars(tiny_run):
    with drawn_axes() as seen:
        section = SPEC.report_section([tiny_run])
    assert len(seen) == 1 and all(n > 0 for n in seen[0]), seen  # the placement bars, no empty panel
    assert "2x" in section.claim
    assert section.verdict.startswith(VERDICTS)
    # the tiny catalog's plan saves nothing over one cloud: ordering, not the paper's saving
    assert section.verdict.startswith("ordering reproduced: the optimizer equals brute force on 4/4")
    plan = json.loads((tiny_run.path / "plan.json").read_text())["cost"]
    for task in plan["tasks"]:
        assert f"| {task['task']} | {task['cloud']}:" in section.markdown
    assert "| cost-optimal | " in section.markdown
    assert [f.path.name for f in section.figures] == ["placement.png"]
    for fig in section.figures:
        assert_drawn_png(fig.path)


def test_verdict_follows_the_metrics(tiny_run):
    m = tiny_run.read_metrics()
    assert sky_run._verdict([(tiny_run, {**m, "savings/single_cloud_best_x": 2.1})]).startswith("reproduced:")
    assert sky_run._verdict([(tiny_run, {**m, "agree/cost_frac": 0.75})]).startswith(
        "not reproduced: the optimizer missed the brute-force optimum on 1 of 4")
    assert sky_run._verdict([(tiny_run, {**m, "savings/data_region_x": 0.9})]).startswith("not reproduced")


@pytest.mark.parametrize("content", ["{not json", '{"cost": {"tasks": [{"task": "train"}]}}'])
def test_an_unreadable_plan_leaves_out_the_table_not_the_section(tiny_run, tmp_path, caplog, content):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_run.path, copy)
    (copy / "plan.json").write_text(content)
    section = SPEC.report_section([RunDir.open(copy)])
    assert section.verdict.startswith(VERDICTS) and "| cost-optimal | " in section.markdown
    assert "| task | placement |" not in section.markdown
    assert_drawn_png(section.figures[0].path)
    assert f"{copy / 'plan.json'}: not a plan written by sky_broker" in caplog.text
