"""paperzoo.core.dispatch without a Ray cluster: points, the local backend, address parsing and checks."""
import logging
import socket
import time

import pytest

from paperzoo.core import dispatch
from paperzoo.core.dispatch import (
    LocalBackend,
    Point,
    RayConnectError,
    open_backend,
    parse_address,
    run_point,
)
from paperzoo.runner import sweep_plan


def _point(tmp_path, name="p", **overrides):
    return Point(tmp_path / name, "conve", "tiny", {"epochs": 1, **overrides})


def test_parse_address_accepts_the_documented_forms_and_rejects_others():
    assert parse_address(None) == ("local", None) == parse_address("local") == parse_address(" ")
    assert parse_address("auto") == ("auto", None)
    assert parse_address("10.0.0.5:6379") == ("10.0.0.5:6379", ("10.0.0.5", 6379))
    assert parse_address("ray://head:10001") == ("ray://head:10001", ("head", 10001))
    assert parse_address("[::1]:6379")[1] == ("::1", 6379)
    for bad in ("head", "head:port", "http://head:8265", "head:0", ":6379", "head:70000"):
        with pytest.raises(ValueError, match="expected local, auto, HOST:PORT or ray://HOST:PORT"):
            parse_address(bad)


def test_probe_reports_a_refused_port_in_one_line_without_waiting():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        start = time.monotonic()
        with pytest.raises(RayConnectError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port} "
                                                  r"\(Connection refused"):
            dispatch.probe("127.0.0.1", port, timeout_s=5)
    assert time.monotonic() - start < 5
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        dispatch.probe(*server.getsockname(), timeout_s=5)  # listening: no error


def test_open_backend_rejects_inconsistent_options():
    assert isinstance(open_backend(), LocalBackend)
    with pytest.raises(ValueError, match="--backend 'slurm'"):
        open_backend("slurm")
    with pytest.raises(ValueError, match="needs --backend ray"):
        open_backend("local", address="auto")
    with pytest.raises(ValueError, match="--point-timeout needs --backend ray"):
        open_backend("local", point_timeout_s=10)
    with pytest.raises(ValueError, match="--cpus-per-point must be >= 1"):
        open_backend("local", cpus_per_point=0)


def test_cli_backend_flags_are_checked_before_anything_is_written(tmp_path, capsys):
    from paperzoo import cli

    out = tmp_path / "sw"
    assert cli.main(["sweep", "conve", "--preset", "tiny", "--grid", "model=conve", "--backend", "local",
                     "--ray-address", "auto", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "paperzoo sweep: error: --ray-address 'auto' needs --backend ray"
    assert cli.main(["reproduce", "conve", "--point-timeout", "5", "--out", str(out)]) == 2
    assert "--point-timeout needs --backend ray" in capsys.readouterr().err
    assert not out.exists()


def test_sweep_plan_gives_absolute_folders_and_point_overrides_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    points = sweep_plan("conve", "tiny", {"model": ["conve", "distmult"]}, [3], "out", data_root="data",
                        overrides={"epochs": 2, "model": "ignored"})
    assert [p.path for p in points] == [tmp_path / "out" / "model=conve-seed=3",
                                        tmp_path / "out" / "model=distmult-seed=3"]
    assert points[1].overrides == {"epochs": 2, "model": "distmult", "seed": 3}
    assert points[0].data_root == str(tmp_path / "data")


def test_local_backend_collects_failures_keeps_order_and_skips_finished(tmp_path, caplog):
    caplog.set_level(logging.INFO)  # as the CLI sets it
    good, bad, other = _point(tmp_path, "a"), _point(tmp_path, "b", lr=-1.0), _point(tmp_path, "c", seed=1)
    done, failures = LocalBackend().run([good, bad, other])
    assert done == [good.path, other.path]
    assert failures == [(str(bad.path), failures[0][1])] and "lr" in failures[0][1]
    stamp = (good.path / "metrics.json").stat().st_mtime_ns
    assert "running conve" in (good.path / "run.log").read_text()
    done, failures = dispatch.run_points([good, other])
    assert done == [good.path, other.path] and not failures
    assert (good.path / "metrics.json").stat().st_mtime_ns == stamp
    assert run_point(good) == good.path and (good.path / "metrics.json").stat().st_mtime_ns == stamp


def test_run_point_resumes_an_unfinished_folder_and_refuses_another_methods(tmp_path, crash_after_checkpoint):
    point = _point(tmp_path, epochs=2)
    undo = crash_after_checkpoint(1)
    with pytest.raises(KeyboardInterrupt):
        run_point(point)
    undo()
    assert (point.path / "checkpoints" / "last.pt").exists() and not point.finished
    assert run_point(point) == point.path and point.finished
    rows = (point.path / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header, the epoch before the crash, the resumed epoch: not run from scratch
    with pytest.raises(ValueError, match="is a 'conve' run, not 'hgt'"):
        run_point(Point(_unfinished(tmp_path), "hgt", "tiny"))


def _unfinished(tmp_path):
    from paperzoo import runner

    return runner.prepare("conve", "tiny", run_dir=tmp_path / "u").path


def test_run_point_sets_torch_threads_for_the_run_only(tmp_path, monkeypatch):
    import torch

    from paperzoo import runner

    seen = []
    monkeypatch.setattr(runner, "execute", lambda run: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    target = 2 if before != 2 else 3
    run_point(_point(tmp_path), threads=target)
    assert seen == [target] and torch.get_num_threads() == before
