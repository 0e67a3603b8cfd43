"""Run a registered method by name: the function behind ``paperzoo run`` and ``paperzoo.run``."""
from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from paperzoo import registry
from paperzoo.api import RunResult
from paperzoo.core import config as cfglib
from paperzoo.core.runs import RunDir

log = logging.getLogger(__name__)


def default_run_dir(method: str, preset: str, base: str | os.PathLike = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path(base) / f"{method}-{preset}-{stamp}"


def prepare(method: str | None = None, preset: str = "tiny", *, run_dir: str | os.PathLike | None = None,
            resume: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
            overrides: Mapping[str, Any] | None = None) -> RunDir:
    """Create (or reopen, with ``resume``) the run folder, validating the config on the way."""
    data_root = str(data_root) if data_root else None
    if resume:
        run = RunDir.open(resume, data_root=data_root, overrides=overrides)
        if method and method != run.method:
            raise ValueError(f"{resume} is a {run.method!r} run, not {method!r}")
        return run
    if not method:
        raise ValueError("name a method (or pass --resume RUN_DIR)")
    spec = registry.get(method)
    base_cfg = spec.preset(preset).config
    config = cfglib.from_dict(spec.config_cls, dict(overrides or {}), base=base_cfg)
    path = Path(run_dir) if run_dir else default_run_dir(method, preset)
    return RunDir.create(path, method=method, preset=preset, config=config, data_root=data_root)


def execute(run: RunDir) -> RunResult:
    """Run (or continue) the method in ``run`` and write ``metrics.json``."""
    spec = registry.get(run.method)
    log.info("running %s (preset %s) in %s", run.method, run.preset, run.path)
    result = spec.run(run.config, run)
    run.write_metrics(result.metrics)
    return result


def run(method: str | None = None, preset: str = "tiny", *, run_dir: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
        **overrides: Any) -> RunResult:
    """Train and evaluate ``method`` with ``preset`` (keyword arguments override config fields).

    >>> result = run("conve", preset="tiny", epochs=5)   # doctest: +SKIP
    """
    return execute(prepare(method, preset, run_dir=run_dir, resume=resume, data_root=data_root,
                           overrides=overrides))


def sweep_points(grid: Mapping[str, Sequence[Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Every combination of ``grid`` values (in the order given) crossed with ``seeds``."""
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        if not values:
            raise ValueError(f"grid field {key!r} has no values")
        points = [{**p, key: v} for p in points for v in values]
    return [{**p, "seed": s} for p in points for s in seeds]


def sweep_dir_name(point: Mapping[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in point.items()).replace("/", "_")


def sweep(method: str, preset: str, grid: Mapping[str, Sequence[Any]], seeds: Sequence[int],
          out: str | os.PathLike, *, data_root: str | os.PathLike | None = None,
          overrides: Mapping[str, Any] | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Run ``method``/``preset`` at every grid point and seed, one run folder each under ``out``.

    Restartable: finished points (``metrics.json`` present) are skipped, unfinished ones resume
    from their last checkpoint. A failing point is logged and recorded, the others still run.
    Returns the finished run folders and ``(folder, error)`` of the failures.
    """
    done, failures = [], []
    for point in sweep_points(grid, seeds):
        path = Path(out) / sweep_dir_name(point)
        if (path / "metrics.json").exists():
            done.append(path)
            continue
        try:
            if (path / "config.yaml").exists():
                run_ = prepare(resume=path, data_root=data_root)
            else:
                run_ = prepare(method, preset, run_dir=path, data_root=data_root,
                               overrides={**dict(overrides or {}), **point})
            execute(run_)
            done.append(path)
        except Exception as exc:  # one point failing must not lose the others
            log.error("%s failed: %s", path, exc)
            failures.append((str(path), f"{exc.__class__.__name__}: {exc}"))
    return done, failures
