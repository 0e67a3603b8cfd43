"""ConvE's report section: claim, a verdict computed from test MRR against the paper (or DistMult run
beside it), the score table, validation curves (none empty) and the leakage audit table."""
from types import SimpleNamespace

import pytest
from figure_checks import assert_drawn_png, drawn_axes

from paperzoo import runner
from paperzoo.api import VERDICTS
from paperzoo.methods.conve import SPEC, audit


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("conve")
    out = []
    for model in ("conve", "distmult"):
        rd = runner.prepare("conve", "tiny", run_dir=base / model, overrides={"model": model, "num_threads": 1})
        runner.execute(rd)
        out.append(rd)
    return out


def test_section_has_claim_verdict_tables_and_curves(runs, monkeypatch):
    monkeypatch.setattr(audit, "SUMMARY_DATASETS", ())  # the leakage table: test below
    with drawn_axes() as seen:
        section = SPEC.report_section(runs)
    assert seen and all(n > 0 for fig in seen for n in fig), seen
    assert ".94 on UMLS" in section.claim
    assert section.verdict.startswith(VERDICTS)
    ours, base = (rd.read_metrics()["test/mrr"] for rd in runs)
    expected = "ordering reproduced: ConvE test MRR" if ours >= base else "not reproduced in the tiny preset"
    assert section.verdict.startswith(expected)
    assert [line.split(" | ")[2] for line in section.markdown.splitlines()[2:4]] == ["conve", "distmult"]
    assert [f.path.name for f in section.figures] == ["validation.png", "validation.png"]
    for fig in section.figures:
        assert_drawn_png(fig.path)


def test_section_keeps_the_leakage_audit_of_the_runs_data_root(runs, monkeypatch, data_root):
    monkeypatch.setattr(audit, "SUMMARY_DATASETS", ("nations",))  # one small graph keeps it fast
    run = SimpleNamespace(**{k: getattr(runs[0], k) for k in ("path", "config", "preset", "read_metrics",
                                                              "read_history")}, data_root=str(data_root))
    section = SPEC.report_section([run])
    assert "| nations | 100.0% | 100.0% | 69 | 0.468 | 1.000 |" in section.markdown


def _run(dataset="umls", preset="quick", model="conve"):
    return SimpleNamespace(preset=preset, config=SimpleNamespace(model=model, dataset=dataset))


def test_verdict_follows_the_mrr():
    assert audit.verdict(_run(), {"test/mrr": 0.944, "epochs_run": 135}, {}).startswith(
        "reproduced: test MRR 0.944 on umls after 135 epochs vs paper 0.94")
    short = audit.verdict(_run(), {"test/mrr": 0.80}, {})
    assert short.startswith("not reproduced in the quick preset: test MRR 0.800 on umls vs paper 0.94")
    assert audit.verdict(_run(), {"test/mrr": 0.80}, {"distmult": 0.75}).startswith("ordering reproduced")
    assert audit.verdict(_run(), {"test/mrr": 0.70}, {"distmult": 0.75}).startswith("not reproduced")
    assert audit.verdict(_run(model="distmult"), {"test/mrr": 0.9}, {}).startswith("not reproduced: a distmult")
