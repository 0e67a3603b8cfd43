"""The ``paperzoo`` command line: list | show | run | eval | reproduce | sweep | tune | report | data, and the
methods' own commands: sky (sky_broker), dgp."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from paperzoo import registry

log = logging.getLogger("paperzoo")

EPILOG = """examples:
  paperzoo list
  paperzoo show conve --preset quick
  paperzoo run conve --preset tiny
  paperzoo run conve --preset paper_umls --set epochs=300 --set hidden_dropout=0.4 --run-dir runs/umls
  paperzoo run --resume runs/umls               # continue a killed run from its last checkpoint
  paperzoo eval runs/umls
  paperzoo reproduce --out reports/latest       # the main job: quick presets + report
  paperzoo data                                 # where each dataset was found
  paperzoo data audit-kg kinship                # inverse-relation leakage of a triple dataset
"""


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", metavar="DIR",
                   help="folder holding the datasets (default: $PAPERZOO_DATA, then ~/.cache/paperzoo/data)")


def _add_grid_run_args(p: argparse.ArgumentParser, *, seeds: str, out_help: str) -> None:
    """The arguments ``sweep`` and ``tune`` share: a method and preset, a crossed ``--grid``, ``--seeds``
    (the final runs' for ``tune``), ``--set`` overrides, the ``--out`` folder and the data root."""
    p.add_argument("method")
    p.add_argument("--preset", default="quick", help="preset (default: quick)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...", default=[],
                   help="a config field and its values (repeatable; combinations are crossed)")
    p.add_argument("--seeds", default=seeds, help=f"seeds: '0-4' or '0,3,7' (default: {seeds})")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override a config field in every run")
    p.add_argument("--out", required=True, metavar="DIR", help=out_help)
    _add_data_root(p)
    _add_backend_args(p)


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    """Where the runs of ``sweep``, ``tune`` and ``reproduce`` execute (see paperzoo.core.dispatch)."""
    g = p.add_argument_group(
        "backend", "Run the points here one after another (local), or one Ray task each on a Ray cluster. With "
                   "Ray the workers write the run folders themselves: --out must be on a filesystem every node "
                   "shares (true for a local Ray instance; on a remote cluster use shared storage such as NFS, "
                   "and install paperzoo on its nodes). A killed sweep resumes where it stopped when re-run.")
    g.add_argument("--backend", choices=("local", "ray"), default=None,
                   help="local (default) or ray (the default with --ray-address)")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="local (default: start Ray on this machine), auto (the cluster this machine joined), "
                        "HOST:PORT (a head's GCS port) or ray://HOST:PORT (Ray Client)")
    g.add_argument("--cpus-per-point", type=int, metavar="N",
                   help="CPUs each point reserves on Ray and torch threads it uses (default: 1 on Ray; "
                        "torch's default locally)")
    g.add_argument("--point-timeout", type=float, metavar="SECONDS",
                   help="Ray only: cancel a point running longer (it fails; a re-run resumes it)")
    g.add_argument("--ray-connect-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up connecting to --ray-address after this long (default: 30)")


def _open_backend(args):
    from paperzoo.core import dispatch

    return dispatch.open_backend(args.backend or ("ray" if args.ray_address else "local"),
                                 address=args.ray_address, cpus_per_point=args.cpus_per_point,
                                 point_timeout_s=args.point_timeout, connect_timeout_s=args.ray_connect_timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paperzoo", description="Faithful, fast, tested implementations of research systems.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("list", help="methods, their papers, presets and whether their extras are installed",
                   description="Table of registered methods: paper, presets, extras installed or missing.")

    p = sub.add_parser("show", help="a method's citation, presets and every config field with its doc",
                       description="Print a method's citation, presets with their published numbers, and "
                                   "the config of a preset, one documented field per line.")
    p.add_argument("method", help="method name (see `paperzoo list`)")
    p.add_argument("--preset", default="tiny", help="preset whose config to show (default: tiny)")

    p = sub.add_parser(
        "run", help="train and evaluate a method",
        description="Train and evaluate METHOD with a preset. Writes config.yaml, log.csv, metrics.json and "
                    "checkpoints to the run folder; --resume continues a killed run from its last checkpoint "
                    "(optimizer, scheduler and RNG state included).",
        epilog="example: paperzoo run conve --preset quick --set epochs=50 --run-dir runs/umls",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", nargs="?", help="method name (optional with --resume)")
    p.add_argument("--preset", default="tiny", help="preset name (default: tiny; see `paperzoo show METHOD`)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override a config field (repeatable), e.g. --set lr=0.001")
    p.add_argument("--run-dir", metavar="DIR", help="run folder to create (default: runs/<method>-<preset>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--nprocs", type=int, metavar="N",
                   help="methods that distribute (dist_gcn): run N real processes over torch.distributed on "
                        "this machine (sets the config fields nprocs=N and num_agents=N)")
    _add_data_root(p)

    p = sub.add_parser("eval", help="re-evaluate a finished run from its config and best checkpoint",
                       description="Rebuild data and model from RUN_DIR/config.yaml, load the best checkpoint "
                                   "(weights_only) and print its metrics as JSON.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    _add_data_root(p)

    p = sub.add_parser(
        "reproduce", help="run each method's preset and write a report (the main job)",
        description="Run METHODs (default: all) with --preset (default: quick), then write a Markdown report "
                    "with plots comparing our numbers to the papers' and peer libraries'. Finished runs are "
                    "reused, unfinished ones resumed; --backend ray runs the methods in parallel on Ray.")
    p.add_argument("methods", nargs="*", metavar="METHOD", help="methods to run (default: all registered)")
    p.add_argument("--preset", default="quick", help="preset to run for every method (default: quick)")
    p.add_argument("--out", default="reports/latest", metavar="DIR",
                   help="report folder; runs go to DIR/runs (default: reports/latest)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override a config field of every method run")
    _add_data_root(p)
    _add_backend_args(p)

    p = sub.add_parser(
        "sweep", help="run a preset over a grid of settings and seeds, then report",
        description="Run METHOD/--preset at every combination of --grid values and --seeds, one run folder "
                    "per point under --out (finished points are skipped, unfinished ones resumed), then write "
                    "a report whose 'Across seeds' table gives mean and std per grid point.",
        epilog="example: paperzoo sweep hgt --preset paper_acm --grid model=hgt,rgcn,gcn,gat,mlp --seeds 0-4 "
               "--out runs/hgt/acm",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_grid_run_args(p, seeds="0", out_help="folder for the run folders")
    p.add_argument("--report", metavar="DIR", help="report folder (default: DIR/report)")

    p = sub.add_parser(
        "tune", help="tune each model (or other group) on validation, then run its choice over seeds",
        description="Fair comparison protocol: every value of --per (e.g. each model) gets the same --grid "
                    "search at --search-seeds under DIR/search; per group the settings with the best mean "
                    "--select metric are chosen (DIR/selected.json) and run at --seeds under DIR/final, then "
                    "reported. Restartable: finished runs are skipped.",
        epilog="example: paperzoo tune hgt --preset paper_acm --per model=hgt,rgcn,gcn,gat --grid lr=0.001,0.005 "
               "--grid dropout=0.2,0.5 --select valid/macro_f1 --out runs/hgt/tune/acm",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_grid_run_args(p, seeds="0-4", out_help="folder for search/, final/, selected.json")
    p.add_argument("--per", action="append", metavar="KEY=V1,V2,...", default=[],
                   help="a field whose values are tuned separately (repeatable)")
    p.add_argument("--select", required=True, metavar="METRIC",
                   help="metric of metrics.json to select on, e.g. valid/macro_f1 (never a test metric)")
    p.add_argument("--minimize", action="store_true", help="lower --select is better (e.g. a loss)")
    p.add_argument("--search-seeds", default="100", help="seeds of the search runs (default: 100)")

    p = sub.add_parser("report", help="write a report from finished run folders",
                       description="Collect RUNS (run folders, or folders containing run folders) into a "
                                   "Markdown report with plots.")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", default="reports/latest", metavar="DIR", help="report folder (default: reports/latest)")

    from paperzoo.methods.sky_broker import cli as sky_cli  # no heavy imports (scipy, Ray, torch) here

    sky_cli.add_parser(sub)
    from paperzoo.methods.dgp import cli as dgp_cli  # argparse only

    dgp_cli.add_parser(sub)

    p = sub.add_parser("data", help="where each dataset was found; dataset tools",
                       description="Without a subcommand: list every known dataset and where it was found "
                                   "(or every place that was tried).")
    _add_data_root(p)
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    a = dsub.add_parser(
        "audit-kg", help="inverse-relation / test-leakage audit of a triple dataset",
        description="Audit a link-prediction dataset (a name such as nations, or a folder with "
                    "train/valid/test.txt) for test leakage: duplicates and reversed pairs of test triples in "
                    "train, near-inverse relation pairs, and the filtered MRR/Hits of the rule-based inverse "
                    "model of Dettmers et al. (2018).")
    a.add_argument("dataset", help="dataset name or folder")
    a.add_argument("--threshold", type=float, default=0.8,
                   help="overlap at which two relations count as inverses (default: 0.8, as the ConvE code)")
    a.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    _add_data_root(a)
    return parser


def cmd_list(args) -> int:
    rows = [("method", "paper", "presets", "extras")]
    for name in registry.names():
        try:
            spec = registry.get(name)
        except ImportError as exc:
            rows.append((name, f"(cannot import: {exc})", "", ""))
            continue
        missing = spec.missing_extras()
        extras = ", ".join(f"{e} ({'missing' if e in missing else 'installed'})" for e in spec.extras) or "-"
        rows.append((name, spec.paper, ", ".join(spec.presets), extras))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_show(args) -> int:
    from paperzoo.core.config import describe

    spec = registry.get(args.method)
    preset = spec.preset(args.preset)
    print(f"{spec.name}: {spec.paper}\n{spec.url}\n\n{spec.citation}\n\npresets:")
    for p in spec.presets.values():
        paper = f"  [paper: {', '.join(f'{k} {v}' for k, v in p.paper.metrics.items())}]" if p.paper else ""
        print(f"  {p.name:<16} {p.description}{paper}")
    print(f"\nconfig of preset {preset.name!r} (override with --set KEY=VALUE):")
    print(describe(preset.config))
    return 0


def cmd_run(args) -> int:
    from paperzoo import runner
    from paperzoo.core.config import parse_overrides

    overrides = parse_overrides(args.overrides)
    if args.nprocs is not None:
        if args.nprocs < 1:
            raise ValueError(f"--nprocs must be >= 1, got {args.nprocs}")
        overrides.update(nprocs=args.nprocs, num_agents=args.nprocs)
    run = runner.prepare(args.method, args.preset, run_dir=args.run_dir, resume=args.resume,
                         data_root=args.data_root, overrides=overrides)
    with run.logging_to_file():
        try:
            result = runner.execute(run)
        except Exception:
            log.info("%s keeps what the run saved and why it failed (failed.json); once the cause is fixed, "
                     "`paperzoo run --resume %s` (or the same command) continues it", run.path, run.path)
            raise
    print(json.dumps(dict(result.metrics), indent=2, sort_keys=True))
    print(f"run folder: {run.path}", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from paperzoo import runner

    metrics = runner.evaluate(args.run_dir, data_root=args.data_root)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def cmd_reproduce(args) -> int:
    from paperzoo.core import dispatch, report
    from paperzoo.core.config import parse_overrides

    methods = args.methods or registry.names()
    for name in methods:
        registry.get(name)  # an unknown name fails before anything runs
    overrides = parse_overrides(args.overrides)
    out = Path(args.out)
    root = str(Path(args.data_root).absolute()) if args.data_root else None
    points = [dispatch.Point((out / "runs" / f"{name}-{args.preset}").absolute(), name, args.preset,
                             overrides, root) for name in methods]
    for point in points:
        if point.finished:
            log.info("%s: %s already finished, reusing it", point.method, point.path)
    started = time.monotonic()
    done, failed = [], []
    with _open_backend(args) as backend:
        if backend.name == "local":  # one point at a time: a progress line as each starts and ends
            for i, point in enumerate(points, 1):
                reused = point.finished
                if not reused:
                    print(f"[{i}/{len(points)}] {point.method} {point.preset}: running", flush=True)
                t0 = time.monotonic()
                ok, bad = backend.run([point])
                done += ok
                failed += bad
                print(_progress_line(i, len(points), point, time.monotonic() - t0, bad, reused=reused),
                      flush=True)
        else:  # the cluster runs them side by side: one line per point once all are back
            for i, point in enumerate(points, 1):
                print(f"[{i}/{len(points)}] {point.method} {point.preset}: submitted", flush=True)
            done, failed = backend.run(points)
            for i, point in enumerate(points, 1):
                bad = [f for f in failed if f[0] == str(point.path)]
                print(_progress_line(i, len(points), point, None, bad), flush=True)
    total = time.monotonic() - started
    by_path = {str(p.path): p.method for p in points}
    failures = [(by_path[path], error) for path, error in failed]
    path = report.write_report(done, out, failures=failures, total_seconds=total)
    print(f"total time: {report.format_seconds(total)} for {len(points)} method(s)"
          f"{f', {len(failures)} failed' if failures else ''}")
    print(f"report: {path} (and {path.with_suffix('.html')})")
    return 1 if failures else 0


def _progress_line(i: int, n: int, point, seconds: float | None, failed: list, *, reused: bool = False) -> str:
    """``[2/6] hgt quick: done in 41 s (test/macro_f1 .83)``. ``seconds`` is the wall time of the point; where
    it is not known (Ray) the run's own ``train_seconds`` is given instead."""
    from paperzoo.core import report

    head = f"[{i}/{n}] {point.method} {point.preset}"
    if failed:
        return f"{head}: FAILED ({failed[0][1]})"
    try:
        metrics = json.loads((point.path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    key = registry.get(point.method).headline
    value = metrics.get(key)
    score = f" ({key} {report._fmt(float(value))})" if isinstance(value, (int, float)) else ""
    trained = metrics.get("train_seconds")
    if reused:
        when = f"reused, trained in {report.format_seconds(trained)}" if trained is not None else "reused"
        return f"{head}: {when}{score}"
    if seconds is None:
        return f"{head}: done, trained in {report.format_seconds(trained or 0.0)}{score}"
    return f"{head}: done in {report.format_seconds(seconds)}{score}"


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' -> [0, 3, 7]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected e.g. '0-4' or '0,3,7'") from None
    return seeds


def parse_grid(items: list[str], flag: str) -> dict[str, list[str]]:
    """['lr=0.1,0.01', ...] -> {'lr': ['0.1', '0.01'], ...} (values are typed by the config loader)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"{flag} {item!r}: expected KEY=V1,V2,...")
        grid[key.strip()] = [v.strip() for v in values.split(",")]
    return grid


def cmd_sweep(args) -> int:
    from paperzoo import runner
    from paperzoo.core import report
    from paperzoo.core.config import parse_overrides

    grid = parse_grid(args.grid, "--grid")
    seeds, overrides = parse_seeds(args.seeds), parse_overrides(args.overrides)
    with _open_backend(args) as backend:
        done, failures = runner.sweep(args.method, args.preset, grid, seeds, args.out,
                                      data_root=args.data_root, overrides=overrides, backend=backend)
    path = report.write_report(done, Path(args.report or Path(args.out) / "report"), failures=failures)
    print(f"report: {path}")
    return 1 if failures else 0


def cmd_tune(args) -> int:
    from paperzoo import runner
    from paperzoo.core import report
    from paperzoo.core.config import parse_overrides

    if args.select.startswith("test/"):
        raise ValueError(f"--select {args.select!r}: selecting on a test metric leaks the test set; "
                         f"select on a validation metric")
    per, search = parse_grid(args.per, "--per"), parse_grid(args.grid, "--grid")
    if not per or not search:
        raise ValueError("tune needs at least one --per field and one --grid field")
    search_seeds, final_seeds = parse_seeds(args.search_seeds), parse_seeds(args.seeds)
    overrides = parse_overrides(args.overrides)
    with _open_backend(args) as backend:
        choices, done, failures = runner.tune(
            args.method, args.preset, per, search, args.out, metric=args.select, maximize=not args.minimize,
            search_seeds=search_seeds, final_seeds=final_seeds, data_root=args.data_root,
            overrides=overrides, backend=backend)
    print(f"selected on {args.select} (mean over search seeds {args.search_seeds}):")
    for c in choices:
        group = ", ".join(f"{k}={v}" for k, v in c.group.items())
        chosen = ", ".join(f"{k}={v}" for k, v in c.settings.items())
        print(f"  {group}: {chosen}  ({c.score:.4f}; {len(c.ranking)} points searched)")
    path = report.write_report(done, Path(args.out) / "report", failures=failures)
    print(f"report: {path}")
    return 1 if failures else 0


def cmd_report(args) -> int:
    from paperzoo.core import report

    path = report.write_report(report.find_runs(args.runs), Path(args.out))
    print(f"report: {path} (and {path.with_suffix('.html')})")
    return 0


def cmd_data(args) -> int:
    if args.data_command == "audit-kg":
        from paperzoo.methods.conve import audit

        result = audit.audit_path(args.dataset, data_root=args.data_root, threshold=args.threshold)
        print(json.dumps(result.to_dict(), indent=2) if args.json else result.to_markdown())
        return 0
    from paperzoo.data import catalog
    from paperzoo.data.roots import DataNotFoundError, locate, search_roots

    print("data roots searched, in order:")
    for label, root in search_roots(args.data_root):
        print(f"  {root}  ({label}{', exists' if root.is_dir() else ', missing'})")
    print()
    missing = 0
    for name, source in catalog.DATASETS.items():
        try:
            print(f"  found    {name:<14} {locate(source, args.data_root)}")
        except DataNotFoundError as exc:
            missing += 1
            print(f"  MISSING  {name:<14} tried:")
            for line in str(exc).splitlines()[1:]:
                print(f"           {line.strip()}")
    print(f"\n{len(catalog.DATASETS) - missing} of {len(catalog.DATASETS)} datasets found")
    return 0




COMMANDS = {"list": cmd_list, "show": cmd_show, "run": cmd_run, "eval": cmd_eval, "reproduce": cmd_reproduce,
            "sweep": cmd_sweep, "tune": cmd_tune, "report": cmd_report, "data": cmd_data}


_INTERRUPT_HINTS = {"run": "; resume with `paperzoo run --resume RUN_DIR`",
                    **dict.fromkeys(("reproduce", "sweep", "tune"),
                                    "; run the same command again to continue")}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "sky":
            from paperzoo.methods.sky_broker import cli as sky_cli

            code = sky_cli.main(args)
        elif args.command == "dgp":
            from paperzoo.methods.dgp import cli as dgp_cli

            code = dgp_cli.main(args)
        else:
            code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except KeyboardInterrupt:
        print(f"interrupted{_INTERRUPT_HINTS.get(args.command, '')}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`paperzoo sky plan ... | head`): stop quietly, like a command killed by
        # SIGPIPE, and keep Python from failing again while it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (OSError, KeyError, ValueError, RuntimeError, ArithmeticError) as exc:
        if args.verbose:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"paperzoo {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
