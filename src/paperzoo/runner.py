"""Run a registered method by name: the function behind ``paperzoo run`` and ``paperzoo.run``."""
from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paperzoo import registry
from paperzoo.api import RunResult
from paperzoo.core import config as cfglib
from paperzoo.core import io
from paperzoo.core.dispatch import Backend, Point, run_points
from paperzoo.core.runs import RunDir, RunFailed, nonfinite_metrics

log = logging.getLogger(__name__)


def default_run_dir(method: str, preset: str, base: str | os.PathLike = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path(base) / f"{method}-{preset}-{stamp}"


def prepare(method: str | None = None, preset: str = "tiny", *, run_dir: str | os.PathLike | None = None,
            resume: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
            overrides: Mapping[str, Any] | None = None) -> RunDir:
    """Create (or reopen, with ``resume``) the run folder, validating the config on the way.

    A ``run_dir`` left unfinished by an earlier attempt of the same method and config is reopened to
    continue (see :meth:`RunDir.create_or_continue`), so a failed command can simply be repeated.
    """
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
    return RunDir.create_or_continue(path, method=method, preset=preset, config=config, data_root=data_root)


def execute(run: RunDir) -> RunResult:
    """Run (or continue) the method in ``run`` and write ``metrics.json``.

    A method's ``num_threads`` setting applies to its run only: torch's intra-op thread count is put back
    afterwards, so runs in one process (a sweep, a test session, a notebook) do not inherit it.

    A failure is recorded in ``failed.json`` (a new attempt removes the last one's) and re-raised; arithmetic
    failures (a diverged loss, a NaN score) and a NaN headline metric become :class:`RunFailed`, one
    line naming the run folder. Other non-finite metrics are written but logged as a warning.

    The run folder is held for the whole run (:meth:`RunDir.lock`): a second process asked to train the
    same folder meanwhile (a repeated command, a sweep re-run while an orphaned worker still trains a
    point) fails at once with :class:`~paperzoo.core.runs.RunBusy` instead of training it twice.
    """
    with run.lock():  # RunBusy at once if another live process trains this folder
        return _execute_locked(run)


def _execute_locked(run: RunDir) -> RunResult:
    import torch

    spec = registry.get(run.method)
    log.info("running %s (preset %s) in %s", run.method, run.preset, run.path)
    run.clear_failure()  # from here on failed.json describes this attempt (a killed one leaves none)
    threads = torch.get_num_threads()
    try:
        try:
            result = spec.run(run.config, run)
        finally:
            torch.set_num_threads(threads)
        bad = nonfinite_metrics(result.metrics)
        if spec.headline in bad and math.isnan(bad[spec.headline]):
            raise RunFailed(f"run {run.path}: the headline metric {spec.headline} is nan "
                            f"(non-finite metrics: {_fmt_metrics(bad)})")
    except ArithmeticError as exc:
        failure = RunFailed(f"run {run.path}: {exc}")
        run.record_failure(failure)
        raise failure from exc
    except Exception as exc:
        run.record_failure(exc)
        raise
    if bad:
        log.warning("run %s: non-finite metrics %s", run.path, _fmt_metrics(bad))
    run.write_metrics(result.metrics)
    return result


def evaluate(run_dir: str | os.PathLike, *, data_root: str | os.PathLike | None = None) -> dict[str, float]:
    """Re-evaluate the run in ``run_dir`` from its saved config and best checkpoint (``paperzoo eval``).

    Checkpoint errors carry advice for evaluation (no ``--resume``); arithmetic failures become
    :class:`RunFailed` naming the run, and non-finite metrics are logged as a warning.
    """
    import torch

    run = RunDir.open(run_dir, data_root=str(data_root) if data_root else None, purpose="eval")
    threads = torch.get_num_threads()
    try:
        metrics = dict(registry.get(run.method).evaluate(run))
    except ArithmeticError as exc:
        raise RunFailed(f"run {run.path}: evaluation failed: {exc}") from exc
    finally:
        torch.set_num_threads(threads)
    bad = nonfinite_metrics(metrics)
    if bad:
        log.warning("run %s: non-finite metrics %s", run.path, _fmt_metrics(bad))
    return metrics


def _fmt_metrics(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v}" for k, v in metrics.items())


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


def sweep_plan(method: str, preset: str, grid: Mapping[str, Sequence[Any]], seeds: Sequence[int],
               out: str | os.PathLike, *, data_root: str | os.PathLike | None = None,
               overrides: Mapping[str, Any] | None = None) -> list[Point]:
    """The runs of a sweep: one :class:`~paperzoo.core.dispatch.Point` per grid point and seed, each in
    its own folder ``out/<key=value-...>`` (absolute, so that Ray workers write to the same place)."""
    out = Path(out).absolute()
    root = str(Path(data_root).absolute()) if data_root else None
    return [Point(out / sweep_dir_name(point), method, preset, {**dict(overrides or {}), **point}, root)
            for point in sweep_points(grid, seeds)]


def sweep(method: str, preset: str, grid: Mapping[str, Sequence[Any]], seeds: Sequence[int],
          out: str | os.PathLike, *, data_root: str | os.PathLike | None = None,
          overrides: Mapping[str, Any] | None = None,
          backend: Backend | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Run ``method``/``preset`` at every grid point and seed, one run folder each under ``out``.

    Restartable: finished points (``metrics.json`` present) are skipped, unfinished ones resume
    from their last checkpoint. A failing point is logged and recorded, the others still run.
    ``backend`` runs the points (default: here, one after another; see :mod:`paperzoo.core.dispatch`
    for Ray). Returns the finished run folders and ``(folder, error)`` of the failures.
    """
    return run_points(sweep_plan(method, preset, grid, seeds, out, data_root=data_root,
                                 overrides=overrides), backend)


@dataclass
class Choice:
    """The search point picked for one group of a :func:`tune` run."""

    group: dict[str, Any]
    """The values of the ``per`` fields that define the group (e.g. ``{"model": "gat"}``)."""
    settings: dict[str, Any]
    """The chosen values of the searched fields."""
    score: float
    """Mean selection metric of the chosen point over the search seeds."""
    ranking: list[tuple[dict[str, Any], float, int]]
    """Every search point of the group as ``(settings, mean score, seeds finished)``, best first."""


def select_best(points: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], per: Sequence[str],
                metric: str, *, maximize: bool = True) -> list[Choice]:
    """Pick, within each group of points that share their ``per`` values, the settings whose runs
    have the best mean ``metric`` over seeds.

    ``points`` are ``(point, metrics)`` pairs, ``point`` holding the ``per`` fields, the searched fields
    and ``seed``. Ties keep the earlier point (grid order). A group whose points all lack ``metric``
    raises: selecting on a metric that no run reports would silently pick the first point.
    """
    groups: dict[tuple, dict[tuple, list[float]]] = {}
    settings_of: dict[tuple, dict[str, Any]] = {}
    for point, metrics in points:
        group = tuple((k, point[k]) for k in per)
        settings = {k: v for k, v in point.items() if k not in per and k != "seed"}
        key = tuple(settings.items())
        settings_of[key] = settings
        scores = groups.setdefault(group, {}).setdefault(key, [])
        value = metrics.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            scores.append(float(value))
    choices = []
    sign = 1.0 if maximize else -1.0
    for group, by_settings in groups.items():
        ranking = [(settings_of[key], sum(s) / len(s), len(s)) for key, s in by_settings.items() if s]
        if not ranking:
            raise ValueError(f"no run of group {dict(group)} reports {metric!r}; "
                             f"pick a metric from the runs' metrics.json")
        ranking.sort(key=lambda r: -sign * r[1])  # stable: ties keep grid order
        best = ranking[0]
        choices.append(Choice(dict(group), dict(best[0]), best[1], ranking))
    return choices


def tune(method: str, preset: str, per: Mapping[str, Sequence[Any]], search: Mapping[str, Sequence[Any]],
         out: str | os.PathLike, *, metric: str, maximize: bool = True, search_seeds: Sequence[int] = (100,),
         final_seeds: Sequence[int] = (0, 1, 2, 3, 4), data_root: str | os.PathLike | None = None,
         overrides: Mapping[str, Any] | None = None,
         backend: Backend | None = None) -> tuple[list[Choice], list[Path], list[tuple[str, str]]]:
    """Tune each group separately on a validation metric, then re-run its choice over fresh seeds.

    The protocol of fair baseline comparisons (e.g. the HGB benchmark): every value of the ``per``
    fields (typically ``model``) gets the same ``search`` grid, run with ``search_seeds`` under
    ``out/search``; the settings with the best mean ``metric`` (a validation metric) are chosen per
    group, written to ``out/selected.json``, and run with ``final_seeds`` under ``out/final``. Use
    search seeds disjoint from the final seeds, so that no final run is one the selection saw.
    Restartable like :func:`sweep`; ``backend`` runs both the search and the final runs (all groups'
    final runs at once). Returns the choices, the finished final run folders and failures.
    """
    overlap = set(search_seeds) & set(final_seeds)
    if overlap:
        raise ValueError(f"search seeds and final seeds overlap ({sorted(overlap)}): the final runs must "
                         f"not include runs the selection saw")
    clash = set(per) & set(search)
    if clash:
        raise ValueError(f"fields {sorted(clash)} are both grouped (--per) and searched (--grid)")
    grid = {**per, **search}
    search_dir = Path(out) / "search"
    done, failures = sweep(method, preset, grid, search_seeds, search_dir, data_root=data_root,
                           overrides=overrides, backend=backend)
    finished = {p.name for p in done}
    points = []
    for point in sweep_points(grid, search_seeds):
        name = sweep_dir_name(point)
        if name in finished:
            points.append((point, RunDir.open(search_dir / name).read_metrics()))
    choices = select_best(points, list(per), metric, maximize=maximize)
    io.write_json(Path(out) / "selected.json", {
        "method": method, "preset": preset, "metric": metric, "maximize": maximize,
        "search_seeds": list(search_seeds), "final_seeds": list(final_seeds),
        "choices": [{"group": c.group, "settings": c.settings, "score": c.score,
                     "ranking": [{"settings": s, "score": m, "seeds": n} for s, m, n in c.ranking]}
                    for c in choices]})
    final = [point for choice in choices
             for point in sweep_plan(method, preset,
                                     {k: [v] for k, v in {**choice.group, **choice.settings}.items()},
                                     final_seeds, Path(out) / "final", data_root=data_root, overrides=overrides)]
    final_done, failed = run_points(final, backend)
    return choices, final_done, failures + failed
