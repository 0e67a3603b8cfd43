"""The report finds each method's headline metric, whatever prefix it carries."""
import types

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
