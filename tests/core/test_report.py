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
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # nor under TYPE_CHECKING: the contract names no paperzoo module at all
    import ast

    import paperzoo.api

    tree = ast.parse(open(paperzoo.api.__file__, encoding="utf-8").read())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("paperzoo")], imported
