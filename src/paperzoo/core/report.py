"""Reports: a Markdown table of ours vs the paper vs peer libraries, with matplotlib plots.

The report reads only run folders (``config.yaml``, ``metrics.json``, ``log.csv``), so it can be
rebuilt at any time with ``paperzoo report RUNS...`` and never needs the model code to re-run.
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from paperzoo import registry
from paperzoo.core import io
from paperzoo.core.runs import RunDir

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run: RunDir
    metrics: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def overrides(self) -> dict[str, Any]:
        """Config fields that differ from the run's preset."""
        import dataclasses

        preset = registry.get(self.run.method).presets.get(self.run.preset)
        if preset is None:
            return {}
        return {f.name: getattr(self.run.config, f.name) for f in dataclasses.fields(self.run.config)
                if getattr(self.run.config, f.name) != getattr(preset.config, f.name)}

    @property
    def label(self) -> str:
        return self._label(self.overrides)

    @property
    def group_label(self) -> str:
        """The label without the seed: runs that differ only in their seed share it."""
        return self._label({k: v for k, v in self.overrides.items() if k != "seed"})

    def _label(self, overrides: dict[str, Any]) -> str:
        changed = ", ".join(f"{k}={v}" for k, v in overrides.items())
        return f"{self.run.method}/{self.run.preset}" + (f" ({changed})" if changed else "")


def seed_table(summaries: Sequence[RunSummary]) -> list[str]:
    """Markdown rows 'mean +- std (n)' per group of runs that differ only in their seed; only
    groups with at least two runs. Std is the sample standard deviation."""
    groups: dict[str, list[RunSummary]] = {}
    for s in summaries:
        groups.setdefault(s.group_label, []).append(s)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    lines = ["| runs | dataset | seeds | metric | mean ± std | paper |", "|---|---|---|---|---|---|"]
    for label, runs in groups.items():
        spec = registry.get(runs[0].run.method)
        preset = spec.presets.get(runs[0].run.preset)
        variant = any(k in spec.variant_fields for k in runs[0].overrides)
        paper = preset.paper.metrics if preset and preset.paper and not variant else {}
        dataset = preset.dataset if preset else getattr(runs[0].run.config, "dataset", "?")
        for key in spec.table_metrics or (_headline_key(spec),):
            values = [v for v in (_lookup(r.metrics, key) for r in runs) if v is not None]
            if not values:
                continue
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            lines.append(f"| {label} | {dataset} | {len(values)} | {key} | {mean:.4f} ± {std:.4f} | "
                         f"{_fmt(paper.get(f'test/{key}', paper.get(key)))} |")
    return lines


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders among ``paths`` or below them (any folder holding a config.yaml)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "config.yaml").is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(c.parent for c in p.rglob("config.yaml")))
        else:
            raise FileNotFoundError(f"{p} is neither a run folder nor a folder of runs")
    return found


def _headline_key(spec) -> str:
    """The headline metric as the report's tables name it: without a leading ``test/`` (the default
    split of a report), any other prefix kept (e.g. ``plan/cost_usd``)."""
    return spec.headline.removeprefix("test/")


def _lookup(metrics: dict[str, Any], key: str) -> float | None:
    for candidate in (f"test/{key}", key):
        if candidate in metrics:
            return float(metrics[candidate])
    return None


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _rows(summary: RunSummary) -> list[list[str]]:
    spec = registry.get(summary.run.method)
    preset = spec.presets.get(summary.run.preset)
    dataset = preset.dataset if preset else getattr(summary.run.config, "dataset", "?")
    variant = any(k in spec.variant_fields for k in summary.overrides)
    paper = preset.paper.metrics if preset and preset.paper and not variant else {}
    peers = preset.peers if preset and not variant else {}
    keys = list(paper) or [_headline_key(spec)]
    rows = []
    for key in keys:
        ours = _lookup(summary.metrics, key)
        peer_cells = [f"{_fmt(p.metrics.get(key))} ({name})" for name, p in peers.items() if key in p.metrics]
        rows.append([summary.label, dataset, key, _fmt(ours), _fmt(paper.get(key)),
                     ", ".join(peer_cells) or "–"])
    return rows


def plot_curves(summary: RunSummary, path: Path) -> Path | None:
    """Training loss and every ``valid/*`` metric against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = summary.history
    if not hist or "epoch" not in hist[0]:
        return None
    valid_keys = [k for k in hist[0] if k.startswith("valid/")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [r["epoch"] for r in hist]
    if "loss" in hist[0]:
        axes[0].plot(epochs, [r["loss"] for r in hist], color="tab:blue")
        axes[0].set(xlabel="epoch", ylabel="training loss", title=f"{summary.label}: loss")
        axes[0].set_yscale("log")
    for key in valid_keys:
        pts = [(r["epoch"], r[key]) for r in hist if isinstance(r.get(key), float) and not math.isnan(r[key])]
        if pts:
            axes[1].plot(*zip(*pts), marker="o", markersize=3, label=key)
    axes[1].set(xlabel="epoch", title=f"{summary.label}: validation")
    if valid_keys:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_bars(summaries: Sequence[RunSummary], path: Path) -> Path | None:
    """Headline metric: ours vs the paper's number, one group per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ours, paper = [], [], []
    for s in summaries:
        spec = registry.get(s.run.method)
        key = _headline_key(spec)
        preset = spec.presets.get(s.run.preset)
        value = _lookup(s.metrics, key)
        if value is None:
            continue
        labels.append(f"{s.label}\n{key}")
        ours.append(value)
        variant = any(k in spec.variant_fields for k in s.overrides)
        ref = preset.paper.metrics.get(key) if preset and preset.paper and not variant else None
        paper.append(ref if ref is not None else float("nan"))
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.7 * len(labels)))
    ys = list(range(len(labels)))
    ax.barh([y - 0.2 for y in ys], ours, height=0.4, label="paperzoo")
    ax.barh([y + 0.2 for y in ys], paper, height=0.4, label="paper")
    ax.set_yticks(ys, [label.replace("\n", " · ") for label in labels], fontsize=8)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("headline metric: ours vs published")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def section_markdown(section: Any, out: Path) -> str:
    """A method's report section as Markdown: plain text as it is; a :class:`~paperzoo.api.ReportSection`
    as claim, verdict, body and its figures, each copied into ``out/figures`` and linked relatively."""
    if isinstance(section, str):
        return section
    import shutil

    parts = []
    if section.claim:
        parts.append(f"*Claim:* {section.claim}")
    if section.verdict:
        parts.append(f"**Verdict: {section.verdict}**")
    if section.markdown:
        parts.append(section.markdown)
    figures = out / "figures"
    for fig in section.figures:
        src = Path(fig.path)
        if not src.is_file():
            log.warning("figure %s does not exist; left out of the report", src)
            continue
        figures.mkdir(parents=True, exist_ok=True)
        dest = figures / f"{src.parent.name}-{src.name}"
        shutil.copyfile(src, dest)
        parts.append(f"![{fig.caption}](figures/{dest.name})\n\n*{fig.caption}*")
    return "\n\n".join(parts)


def write_report(run_dirs: Sequence[str | Path], out: str | Path,
                 failures: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``out/report.md`` (+ ``out/plots/*.png``) for the given run folders; returns its path."""
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    summaries = []
    for path in run_dirs:
        run = RunDir.open(path)
        try:
            metrics = run.read_metrics()
        except FileNotFoundError:
            failure = run.read_failure()  # failed.json: why the last attempt stopped
            if failure is None:
                log.warning("%s has no metrics.json (unfinished); skipped", path)
            elif str(path) not in {name for name, _ in failures}:
                failures = [*failures, (str(path), f"{failure.get('type', 'Error')}: {failure['error']}")]
            continue
        summaries.append(RunSummary(run, metrics, run.read_history()))

    lines = ["# paperzoo report", "",
             f"Generated {_dt.datetime.now().isoformat(timespec='seconds')}. Test-split metrics unless "
             f"named otherwise; 'paper' is the published number for the same dataset, 'peer' a peer library "
             f"on the same data (source in the method's README).", "",
             "| run | dataset | metric | ours | paper | peer |", "|---|---|---|---|---|---|"]
    for s in summaries:
        lines += ["| " + " | ".join(row) + " |" for row in _rows(s)]
    across = seed_table(summaries)
    if across:
        lines += ["", "## Across seeds", ""] + across
    lines += ["", "## Runs", "", "| run | folder | epochs | train time (s) | s/epoch |", "|---|---|---|---|---|"]
    for s in summaries:
        m = s.metrics
        lines.append(f"| {s.label} | `{s.run.path}` | {m.get('epochs_run', '–')} | "
                     f"{_fmt(m.get('train_seconds'))} | {_fmt(m.get('seconds_per_epoch'))} |")
    for method in dict.fromkeys(s.run.method for s in summaries):
        spec = registry.get(method)
        if spec.report_section is not None:
            try:
                section = spec.report_section([s.run for s in summaries if s.run.method == method])
            except Exception as exc:  # a broken extra must not lose the main table
                log.warning("report section of %s failed: %s", method, exc)
                section = f"(report section failed: {exc})"
            lines += ["", f"## {method}", "", section_markdown(section, out)]
    if failures:
        lines += ["", "## Failed", ""] + [f"- **{name}**: {msg}" for name, msg in failures]
    bars = plot_bars(summaries, plots / "headline.png")
    if bars:
        lines += ["", "## Plots", "", f"![headline metrics](plots/{bars.name})"]
    for s in summaries:
        png = plot_curves(s, plots / f"{s.run.path.name}-curves.png")
        if png:
            lines += ["", f"![{s.label} training curves](plots/{png.name})"]
    path = out / "report.md"
    io.write_text(path, "\n".join(lines) + "\n")
    return path
