"""``report.html`` as a user sees it: rendered by headless Chromium, every image loads and no section is
empty, also after the report folder was moved away from the runs it was written from.

Skipped, with the reason, where Chromium is not installed (``.ci/run`` installs Debian's ``chromium``).
"""
import json
import re
import shutil
import subprocess

import pytest

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install "
                                                          "chromium; .ci/run installs it): report.html not rendered")

# Injected into a copy of report.html beside it (the report itself has no script): once the page has loaded,
# the body records which images did not load and which sections hold nothing but their heading.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const empty = [...document.querySelectorAll("section")].filter(
      s => s.children.length < 2 || s.innerText.trim() === s.firstElementChild.innerText.trim());
  document.body.dataset.probe = JSON.stringify({
    images: images.map(i => i.getAttribute("src")),
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src")),
    sections: document.querySelectorAll("section").length,
    empty: empty.map(s => s.firstElementChild ? s.firstElementChild.innerText : "(no heading)")});
});
</script>"""


def render(report_dir, tmp_path) -> dict:
    """Load ``report_dir/report.html`` in headless Chromium and return what the probe recorded."""
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    probe = report_dir / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    probe.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, f"the page did not finish loading: {done.stdout[:500]}"
    import html

    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A report of tiny runs of three methods (their own figures included) written by the CLI."""
    import torch

    from paperzoo import cli

    base = tmp_path_factory.mktemp("html")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for method, extra in (("conve", ["--set", "epochs=3"]), ("sky_broker", []), ("subnet_laplace", [])):
            assert cli.main(["run", method, "--preset", "tiny", *extra, "--run-dir",
                             str(base / "runs" / method)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert cli.main(["report", str(base / "runs"), "--out", str(base / "report")]) == 0
    return base / "report"


def test_every_image_loads_and_no_section_is_empty(report_dir, tmp_path):
    seen = render(report_dir, tmp_path)
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert seen["broken"] == [] and seen["empty"] == []
    assert sorted(seen["images"]) == sorted(linked)  # the same pictures as report.md
    assert "plots/headline.png" in seen["images"]
    assert any(src.startswith("figures/") for src in seen["images"])  # the methods' own figures
    assert seen["sections"] >= 5  # summary, three methods, runs


def test_the_report_folder_renders_after_it_was_moved(report_dir, tmp_path):
    moved = tmp_path / "shared" / "report"
    moved.parent.mkdir()
    shutil.move(report_dir, moved)
    runs = report_dir.parent / "runs"
    runs.rename(runs.with_name("runs-hidden"))  # nothing may be read from the run folders any more
    try:
        seen = render(moved, tmp_path)
    finally:
        runs.with_name("runs-hidden").rename(runs)
        shutil.move(moved, report_dir)
    assert seen["broken"] == [] and len(seen["images"]) >= 4
    assert all(not src.startswith(("/", "file:")) for src in seen["images"])
