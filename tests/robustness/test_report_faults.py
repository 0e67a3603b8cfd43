"""`paperzoo report` on bad input, as a user runs it: exit 2, one line naming the file (and line), and the
report written earlier into the same folder is kept as it was."""
import sys
import time

import pytest

from paperzoo import cli


@pytest.fixture
def earlier_report(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    for name in ("report.md", "report.html"):
        (out / name).write_text(f"earlier {name}\n")
    return out


@pytest.mark.parametrize("config, message", [
    ("method: conve\npreset: tiny\nconfig: {epochs: [1\n", "{cfg}:4: not valid YAML (expected ',' or ']'"),
    ("method: nosuch\npreset: tiny\nconfig: {}\n", "{cfg}: unknown method 'nosuch'; known methods: "),
    ("- just a list\n", "{cfg}: expected keys method, preset, config"),
])
def test_a_bad_run_folder_fails_in_one_line_and_keeps_the_earlier_report(tmp_path, earlier_report, capsys,
                                                                         config, message):
    run = tmp_path / "runs" / "bad"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config)
    start = time.monotonic()
    assert cli.main(["report", str(tmp_path / "runs"), "--out", str(earlier_report)]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("paperzoo report: error: " + message.format(cfg=run / "config.yaml"))
    assert (earlier_report / "report.md").read_text() == "earlier report.md\n"
    assert (earlier_report / "report.html").read_text() == "earlier report.html\n"


def test_a_missing_path_fails_in_one_line(tmp_path, capsys):
    import subprocess

    done = subprocess.run([sys.executable, "-m", "paperzoo.cli", "report", str(tmp_path / "nowhere"), "--out",
                           str(tmp_path / "rep")], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"paperzoo report: error: {tmp_path / 'nowhere'} is neither a run folder nor a folder of runs"]
    assert not (tmp_path / "rep").exists()
