"""The report finds each method's headline metric, whatever prefix it carries."""
import types
from pathlib import Path

import pytest

from paperzoo.core import report


@pytest.mark.parametrize("headline, metrics, expected", [
    ("test/mrr", {"test/mrr": 0.5, "valid/mrr": 0.4}, 0.5),                # the usual test split
    ("plan/cost_usd", {"plan/cost_usd": 12.5, "plan/time_h": 3.0}, 12.5),  # a method without splits
    ("test/barrier/deep_align", {"test/barrier/deep_align": 0.3}, 0.3),     # nested names
])
def test_headline_metric_is_found(headline, metrics, expected):
    spec = types.SimpleNamespace(headline=headline)
    assert report._lookup(metrics, report._headline_key(spec)) == expected


def test_a_report_section_object_renders_with_its_figures_copied_beside_the_report(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paperzoo.api import Figure, ReportSection
    from paperzoo.core.report import section_markdown

    png = tmp_path / "run" / "barriers.png"
    png.parent.mkdir()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(png)
    plt.close(fig)
    out = tmp_path / "report"
    text = section_markdown(ReportSection(claim="C", verdict="reproduced: x", markdown="| a |\n|---|",
                                          figures=(Figure(png, "barrier curves"),)), out)
    assert text.splitlines()[0] == "*Claim:* C" and "**Verdict: reproduced: x**" in text
    assert "![barrier curves](figures/run-barriers.png)" in text
    assert (out / "figures" / "run-barriers.png").read_bytes() == png.read_bytes()
    assert section_markdown("plain", out) == "plain"


IMPORTS = """
import dataclasses, sys
loaded = lambda: sorted(m for m in sys.modules if m.startswith("paperzoo"))
import paperzoo.api
assert "paperzoo.core.runs" not in sys.modules, loaded()      # the contract does not import run folders
from paperzoo.core.runs import RunDir
assert "paperzoo.registry" not in sys.modules, loaded()       # run folders do not import the registry
@dataclasses.dataclass
class Cfg:
    epochs: int = 1
RunDir.create(sys.argv[1], method="toy", preset="tiny", config=Cfg(3))
again = RunDir.open(sys.argv[1], config_cls={"toy": Cfg}.__getitem__, overrides={"epochs": "4"})
assert again.config == Cfg(4), again.config
assert "paperzoo.registry" not in sys.modules, loaded()
"""


def test_no_import_circle_between_run_folders_the_registry_and_the_contract(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", IMPORTS, str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # nor under TYPE_CHECKING: the contract names no paperzoo module at all
    import ast

    import paperzoo.api

    tree = ast.parse(Path(paperzoo.api.__file__).read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("paperzoo")], imported


# -- the report: one content, two renderings ---------------------------------------------------------
def fake_run(path, method, metrics, history=(), preset="tiny"):
    """A finished run folder of ``method``'s preset without training: config, metrics and log only."""
    from paperzoo import registry
    from paperzoo.core.runs import RunDir

    run = RunDir.create(path, method=method, preset=preset, config=registry.get(method).presets[preset].config)
    run.write_history([dict(r) for r in history])
    run.write_metrics(metrics)
    return run


def png(path, *, width_in=2.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(width_in, 1.5))
    ax.plot([0, 1], [1, 0])
    fig.savefig(path, dpi=50)
    plt.close(fig)
    return path


def png_width(path) -> int:
    import struct

    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def test_training_curves_only_where_they_mean_something(tmp_path):
    one = fake_run(tmp_path / "one", "conve", {"test/mrr": 0.5}, [{"epoch": 1, "loss": 0.9, "valid/mrr": 0.3}])
    summary = report.RunSummary(one, one.read_metrics(), one.read_history())
    assert report.plot_curves(summary, tmp_path / "one.png") is None  # one epoch: no curve, no empty axes
    assert not (tmp_path / "one.png").exists()
    rows = [{"epoch": e, "loss": 1.0 / e, "valid/mrr": float("nan")} for e in range(1, 5)]
    four = fake_run(tmp_path / "four", "conve", {"test/mrr": 0.5}, rows)
    summary = report.RunSummary(four, four.read_metrics(), four.read_history())
    path = report.plot_curves(summary, tmp_path / "four.png")
    assert path is not None and png_width(path) == 500  # the loss panel alone: no empty validation panel
    rows = [{**r, "valid/mrr": 0.1 * r["epoch"]} for r in rows]
    both = fake_run(tmp_path / "both", "conve", {"test/mrr": 0.5}, rows)
    summary = report.RunSummary(both, both.read_metrics(), both.read_history())
    assert png_width(report.plot_curves(summary, tmp_path / "both.png")) == 1000


def test_headline_figure_puts_each_run_on_its_own_axes_with_the_published_numbers(tmp_path):
    barriers = {"test/barrier/naive": 1.5, "test/barrier/weight_matching": 0.2, "test/barrier/deep_align": 0.1}
    align = fake_run(tmp_path / "align", "deep_align", barriers, preset="quick")
    hgt = fake_run(tmp_path / "hgt", "hgt", {"test/macro_f1": 0.85, "test/micro_f1": 0.86}, preset="quick")
    sky = fake_run(tmp_path / "sky", "sky_broker", {"plan/cost_usd": 12.5, "plan/time_h": 3.0})
    none = fake_run(tmp_path / "none", "conve", {"test/hits@1": 0.5})  # no headline number: no panel
    runs = [report.RunSummary(r, r.read_metrics(), []) for r in (align, hgt, sky, none)]
    panels = report.headline_panels(runs)
    assert [p.ylabel for p in panels] == ["barrier", "macro_f1", "plan/cost_usd"]  # never two units on one axis
    barrier = {c.key: (c.ours, c.paper) for c in panels[0].comps}  # every method's barrier beside Deep-Align's
    assert barrier["barrier/deep_align"] == (0.1, 0.005) and barrier["barrier/weight_matching"] == (0.2, 0.047)
    assert "barrier/sinkhorn" not in barrier  # no number of ours: not drawn
    assert [(c.ours, c.paper) for c in panels[1].comps] == [(0.85, 0.9112)]  # HGT's published number on ACM
    assert [(c.ours, c.paper) for c in panels[2].comps] == [(12.5, None)]
    fig = report.headline_figure(panels)
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == ["barrier", "macro_f1", "plan/cost_usd"]
    assert "lower is better" in axes[0].get_title() and "mnist" in axes[0].get_title()
    assert "higher is better" in axes[1].get_title() and "lower is better" in axes[2].get_title()
    assert sorted(p.get_height() for p in axes[0].patches) == sorted([1.5, 0.2, 0.1, 2.007, 0.047, 0.005])
    assert [p.get_height() for p in axes[1].patches] == [0.85, 0.9112]  # ours, paper
    assert report.headline_figure([]) is None


def test_markdown_subset_renders_to_escaped_html():
    text = ("Intro with **bold**, *em*, `a<b>` and [a link](https://x.org/?a=1&b=2).\n\n"
            "| method | NLL |\n|---|---|\n| <script> | 0.5 |\n\n- one\n- two **2**\n\n1. first\n\n### Sub")
    out = report.markdown_html(text)
    assert ("<p>Intro with <strong>bold</strong>, <em>em</em>, <code>a&lt;b&gt;</code> and "
            '<a href="https://x.org/?a=1&amp;b=2">a link</a>.</p>') in out
    assert "<thead><tr><th>method</th><th>NLL</th></tr></thead>" in out
    assert "<td>&lt;script&gt;</td><td>0.5</td>" in out and "<script>" not in out
    assert "<ul><li>one</li><li>two <strong>2</strong></li></ul>" in out and "<ol><li>first</li></ol>" in out
    assert "<h4>Sub</h4>" in out


def _with_sections(monkeypatch, sections):
    """Give methods the report sections ``{method: function}`` for this test."""
    import dataclasses

    from paperzoo import registry

    real = registry.get

    def get(name):
        spec = real(name)
        return dataclasses.replace(spec, report_section=sections[name]) if name in sections else spec

    monkeypatch.setattr(registry, "get", get)


def test_report_md_and_html_share_one_content_and_copy_every_figure(tmp_path, monkeypatch):
    from paperzoo.api import Figure, ReportSection

    rows = [{"epoch": e, "loss": 1.0 / e} for e in range(1, 5)]
    conve = fake_run(tmp_path / "runs" / "conve", "conve", {"test/mrr": 0.25, "train_seconds": 3.0}, rows)
    sky = fake_run(tmp_path / "runs" / "sky", "sky_broker", {"plan/cost_usd": 12.5}, rows)
    curve = png(conve.path / "plots" / "barriers.png")
    loose = png(tmp_path / "elsewhere" / "placement.png")
    _with_sections(monkeypatch, {
        "conve": lambda runs: ReportSection(claim="ConvE beats <DistMult> & co", verdict="reproduced: yes",
                                            markdown="| a | b |\n|---|---|\n| 1 | 2 |",
                                            figures=(Figure(curve, "barrier curves"),)),
        "sky_broker": lambda runs: f"plain section\n\n![placement]({loose.resolve()})"})
    out = tmp_path / "report"
    md_path = report.write_report([conve.path, sky.path], out, total_seconds=75)
    md, page = md_path.read_text(), (out / "report.html").read_text()
    assert "**Total time: 1 min 15 s**" in md and "<strong>Total time: 1 min 15 s</strong>" in page
    for text in ("| conve/tiny | synthetic | mrr | 0.250 | – | – |", "*Claim:* ConvE beats <DistMult> & co",
                 "**Verdict: reproduced: yes**", "plain section", "## conve", "## sky_broker"):
        assert text in md, text
    for text in ("<td>conve/tiny</td><td>synthetic</td><td>mrr</td><td>0.250</td>",
                 "ConvE beats &lt;DistMult&gt; &amp; co", "<strong>Verdict: reproduced: yes</strong>",
                 "<td>1</td><td>2</td>", "<p>plain section</p>", "<h2>conve</h2>", "<h2>sky_broker</h2>"):
        assert text in page, text
    section = md[md.index("## conve"):md.index("## sky_broker")]  # per method: claim, numbers, figures, verdict
    assert section.index("*Claim:*") < section.index("| conve/tiny |") < section.index("barriers.png") \
        < section.index("**Verdict")
    # every image is beside the report, linked relatively, in both renderings
    images = {"plots/headline.png", "plots/sky-curves.png", "figures/conve-plots-barriers.png",
              "figures/elsewhere-placement.png"}
    for rel in images:
        assert (out / rel).is_file() and f"]({rel})" in md and f'src="{rel}"' in page, rel
    assert (out / "figures" / "conve-plots-barriers.png").read_bytes() == curve.read_bytes()
    assert md.count("](") == page.count("<img ") + md.count("[paper](")  # no other image links
    assert not (out / "plots" / "conve-curves.png").exists()  # conve brings its own figures: no generic curves
    assert str(loose.parent) not in md and str(loose.parent) not in page


def test_a_broken_report_section_loses_nothing_else(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "conve", "conve", {"test/mrr": 0.25})

    def broken(runs):
        raise ValueError("no plots today")

    _with_sections(monkeypatch, {"conve": broken})
    md = report.write_report([run.path], tmp_path / "report").read_text()
    assert "(report section failed: no plots today)" in md and "| conve/tiny | synthetic | mrr | 0.250 |" in md


def test_reproduce_prints_a_line_per_method_and_the_total_time(tmp_path, monkeypatch, capsys):
    import re

    from paperzoo import cli
    from paperzoo.core import dispatch

    def fake_point(point, *, threads=None):
        if point.method == "sky_broker":
            raise RuntimeError("broker down")
        fake_run(point.path, point.method, {"test/mrr": 0.5, "train_seconds": 2.0})
        return point.path

    monkeypatch.setattr(dispatch, "run_point", fake_point)
    _with_sections(monkeypatch, {"conve": lambda runs: "section"})  # not the leakage audit: a fast test
    out = tmp_path / "rep"
    assert cli.main(["reproduce", "conve", "sky_broker", "--preset", "tiny", "--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[1/2] conve tiny: running"
    assert re.fullmatch(r"\[1/2\] conve tiny: done in \d+ s \(test/mrr 0\.500\)", lines[1]), lines[1]
    assert lines[2] == "[2/2] sky_broker tiny: running"
    assert lines[3] == "[2/2] sky_broker tiny: FAILED (RuntimeError: broker down)"
    assert re.fullmatch(r"total time: \d+ s for 2 method\(s\), 1 failed", lines[4]), lines[4]
    assert "**Total time: " in (out / "report.md").read_text() and (out / "report.html").is_file()
    assert cli.main(["reproduce", "conve", "--preset", "tiny", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "[1/1] conve tiny: reused, trained in 2 s (test/mrr 0.500)"


def test_reproduce_on_a_cluster_backend_submits_all_points_at_once(tmp_path, monkeypatch, capsys):
    from paperzoo import cli
    from paperzoo.core import dispatch

    calls = []

    class Cluster(dispatch.Backend):  # stands in for RayBackend: every point in one call
        name = "ray"

        def _run(self, points):
            calls.append([p.method for p in points])
            for point in points:
                fake_run(point.path, point.method, {"test/mrr": 0.25, "train_seconds": 61.0})
            return []

    monkeypatch.setattr(cli, "_open_backend", lambda args: Cluster())
    _with_sections(monkeypatch, {"conve": lambda runs: "section", "hgt": lambda runs: "section"})
    assert cli.main(["reproduce", "conve", "hgt", "--preset", "tiny", "--out", str(tmp_path / "rep")]) == 0
    assert calls == [["conve", "hgt"]]
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == ["[1/2] conve tiny: submitted", "[2/2] hgt tiny: submitted",
                         "[1/2] conve tiny: done, trained in 1 min 1 s (test/mrr 0.250)",
                         "[2/2] hgt tiny: done, trained in 1 min 1 s"]  # hgt's headline is macro_f1


def test_mean_std_cell_formats_runs_and_skips_missing_values():
    from paperzoo.core.report import mean_std, mean_std_cell

    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert mean_std_cell([0.5, 0.7], scale=100, digits=1) == "60.0 ± 14.1"
    assert mean_std_cell([0.25, float("nan")]) == "0.250"
    assert mean_std_cell([]) == mean_std_cell(None) == "–"
