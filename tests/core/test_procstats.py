import sys
import time

import pytest

from paperzoo.core import procstats

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")
BLOB = 50 << 20  # 50 MiB


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


@linux_only
def test_rss_is_positive_and_grows_with_a_touched_allocation():
    before = procstats.rss_mib()
    assert before is not None and before > 0
    blob = b"\x01" * BLOB  # filled, so every page is resident (a zeroed buffer may not be)
    after = procstats.rss_mib()
    assert after - before > 40, (before, after)
    del blob


@linux_only
def test_peak_is_at_least_the_current_rss():
    rss = procstats.rss_mib()
    assert procstats.peak_rss_mib() >= rss
    assert procstats.peak_rss_mib(False) > 0  # ru_maxrss: the lifetime peak


@linux_only
def test_peak_after_reset_covers_a_freed_allocation():
    ok = procstats.reset_peak_rss()
    if not ok:
        pytest.skip("/proc/self/clear_refs not writable here")
    before = procstats.rss_mib()
    blob = b"\x01" * BLOB
    del blob
    assert procstats.peak_rss_mib(ok) - before > 40


def test_peak_falls_back_to_getrusage_without_proc(monkeypatch):
    monkeypatch.setattr(procstats, "status_kib", lambda key: None)
    assert procstats.rss_mib() is None
    peak = procstats.peak_rss_mib()
    if procstats.resource is None:
        assert peak is None
    else:
        assert peak is not None and peak > 0


def test_cpu_ticks_are_non_decreasing_over_a_busy_loop():
    try:
        busy0, total0 = procstats.cpu_ticks()
    except OSError:
        pytest.skip("no /proc/stat")
    _busy(0.05)
    busy1, total1 = procstats.cpu_ticks()
    assert all(isinstance(v, int) for v in (busy0, total0, busy1, total1))
    assert 0 <= busy0 <= total0 and busy1 <= total1
    assert busy1 >= busy0 and total1 >= total0


def test_other_load_is_a_share_or_none():
    load = procstats.OtherLoad()
    _busy(0.05)
    share = load.stop()
    assert share is None or 0.0 <= share <= 1.0
    if sys.platform.startswith("linux"):
        assert share is not None
    load.start()
    share = load.stop()
    assert share is None or 0.0 <= share <= 1.0


def test_other_load_is_none_without_proc_stat(monkeypatch):
    def missing():
        raise FileNotFoundError("/proc/stat")

    monkeypatch.setattr(procstats, "cpu_ticks", missing)
    assert procstats.OtherLoad().stop() is None


def test_cpu_name_is_a_non_empty_string():
    name = procstats.cpu_name()
    assert isinstance(name, str) and name.strip()


@linux_only
def test_wait_until_quiet_returns_once_quiet_or_at_the_deadline():
    share = procstats.wait_until_quiet(5.0, threshold=1.1, quiet_seconds=2, interval=0.01)  # always quiet
    assert share is not None and 0.0 <= share <= 1.0
    tic = time.monotonic()
    share = procstats.wait_until_quiet(0.05, threshold=-1.0, quiet_seconds=1, interval=0.01)  # never quiet
    assert share is not None and time.monotonic() - tic < 2.0


def test_versions_reads_package_metadata_without_importing():
    from paperzoo.core.procstats import versions

    v = versions("paperzoo", "no-such-distribution-xyz")
    assert v["python"].count(".") == 2 and v["torch"] and v["paperzoo"]
    assert v["no-such-distribution-xyz"] is None


def test_run_json_child_merges_the_last_json_line_and_reports_failures_without_raising():
    import sys

    from paperzoo.core.procstats import run_json_child

    code = "import json, os; print('noise'); print(json.dumps({'x': 1, 'threads': os.environ['OMP_NUM_THREADS']}))"
    out = run_json_child([sys.executable, "-c", code], threads=3, timeout=60)
    assert out["x"] == 1 and out["threads"] == "3" and out["child_wall_s"] > 0 and "other_cpu" in out
    failed = run_json_child([sys.executable, "-c", "import sys; sys.exit('boom')"], threads=1, timeout=60)
    assert failed["error"] == "boom"
    slow = run_json_child([sys.executable, "-c", "import time; time.sleep(30)"], threads=1, timeout=1)
    assert slow["error"].startswith("timed out")
