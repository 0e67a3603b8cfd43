"""A malformed row in a real SkyPilot catalog, as a user meets it through ``paperzoo sky plan``:
exit 2 with one line naming the file and line, and quickly; a good catalog plans end to end."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("scipy")

FIXTURE = Path(__file__).resolve().parents[1] / "methods" / "sky_broker" / "skypilot_catalog"
JOB = """name: fault-job
tasks:
  - name: prep
    resources: {cpus: 4+}
    runtime_h: 1.0
    outputs: {size_gb: 10}
  - name: train
    depends_on: [prep]
    resources: {accelerators: {V100: 1}}
    runtime_h: 2.0
"""


def plan(job: Path, catalog: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "paperzoo.cli", "sky", "plan", str(job), "--catalog", str(catalog),
                          *extra], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out, time.perf_counter() - start


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    return path


@pytest.mark.parametrize("cloud, row, message", [
    ("aws", "m6i.large,,,2.0,8.0,,0.096,0.04", "expected 10 fields as in the header, got 8"),
    ("azure", "Standard_F8s_v2,,,8.0,16,,n/a,0.07,eastus,V2", "Price is not a number: 'n/a'"),
    ("gcp", "n1-standard-4,4.0,15.0,Tesla-V1OO,1,,us-central1,us-central1-a,0.19,0.04",
     "unknown accelerator 'Tesla-V1OO'"),
])
def test_malformed_catalog_row_is_one_error_line_naming_file_and_line(tmp_path, job, cloud, row, message):
    catalog = tmp_path / "catalog"
    shutil.copytree(FIXTURE, catalog)
    vms = catalog / cloud / "vms.csv"
    text = vms.read_text()
    vms.write_text(text + row + "\n")
    line = text.count("\n") + 1
    out, seconds = plan(job, catalog)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert lines == [f"paperzoo sky: error: {vms}:{line}: {lines[0].split(f'{vms}:{line}: ', 1)[-1]}"], out.stderr
    assert message in lines[0]
    assert seconds < 60, seconds


def test_skypilot_catalog_plans_end_to_end(job, data_root):
    out, _ = plan(job, FIXTURE, "--data-root", str(data_root), "--json")
    assert out.returncode == 0, out.stderr
    import json

    data = json.loads(out.stdout)
    assert data["optimal"] is True and data["mip_gap"] == 0.0
    train = next(t for t in data["tasks"] if t["task"] == "train")
    assert train["accelerator"] == "V100" and train["cloud"] in ("aws", "azure", "gcp")
