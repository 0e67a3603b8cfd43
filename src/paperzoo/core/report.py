"""Reports: what each method's paper claims, our number vs the paper's vs a peer library's, the method's
own figures and a verdict, written twice from one content: ``report.md`` and a self-contained
``report.html``.

The report reads only run folders (``config.yaml``, ``metrics.json``, ``log.csv``) and the figures the
methods' ``report_section`` name, so it can be rebuilt at any time with ``paperzoo report RUNS...`` and
never needs the model code to re-run.

Content is a list of blocks (:class:`Heading`, :class:`Text`, :class:`Table`, :class:`Image`) that
:func:`render_markdown` and :func:`render_html` turn into the two files. Images are files beside the
report: the report's own plots in ``plots/``, the methods' figures COPIED into ``figures/``, and both files
link them by RELATIVE paths, so the whole report folder can be moved or shared (images are not embedded as
data URIs, which keeps ``report.html`` small and the PNGs usable on their own). The HTML needs no network
and no script: its CSS is inline.
"""
from __future__ import annotations

import datetime as _dt
import html
import logging
import math
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paperzoo import registry
from paperzoo.core import io
from paperzoo.core.runs import RunDir

log = logging.getLogger(__name__)

MIN_CURVE_POINTS = 3
"""A training curve is drawn only from at least this many epochs of one loss/metric."""

LOWER_IS_BETTER = ("nll", "barrier", "cost", "time", "seconds", "loss", "error", "ece", "rmse", "brier",
                   "_h", "usd", "instability")
"""Metric-name fragments of metrics where lower is better (said in the headline panel's title)."""


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


# ------------------------------------------------------------------------------------------ blocks
@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Text:
    """Markdown of the small subset methods use: paragraphs, tables, lists, headings, ``**bold**``,
    ``*emphasis*``, ```code```, links and images (relative to the report folder)."""

    markdown: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    """Cells are plain text (escaped by each renderer; inline Markdown such as ``code`` is kept)."""


@dataclass(frozen=True)
class Image:
    src: str
    """Path relative to the report folder."""
    caption: str


@dataclass(frozen=True)
class Section:
    """A ``<section>`` of the HTML page (a heading and its blocks); Markdown just concatenates them."""

    heading: Heading
    blocks: tuple[Any, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------------------ tables
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of a non-empty sequence."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0


def mean_std_cell(values: Sequence[float] | None, scale: float = 1.0, digits: int = 3) -> str:
    """A table cell over runs: ``mean ± std`` of the finite values times ``scale``, the value alone for one
    run, a dash for none."""
    values = [v for v in (values or ()) if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    mu, sd = mean_std(values)
    return f"{scale * mu:.{digits}f} ± {scale * sd:.{digits}f}" if len(values) > 1 else f"{scale * mu:.{digits}f}"


def seed_table(summaries: Sequence[RunSummary]) -> list[str]:
    """Markdown rows 'mean +- std (n)' per group of runs that differ only in their seed; only
    groups with at least two runs. Std is the sample standard deviation."""
    table = _seed_table(summaries)
    return _markdown_table(table) if table else []


def _seed_table(summaries: Sequence[RunSummary]) -> Table | None:
    groups: dict[str, list[RunSummary]] = {}
    for s in summaries:
        groups.setdefault(s.group_label, []).append(s)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return None
    rows = []
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
            mean, std = mean_std(values)
            rows.append((label, dataset, str(len(values)), key, f"{mean:.4f} ± {std:.4f}",
                         _fmt(paper.get(f"test/{key}", paper.get(key)))))
    return Table(("runs", "dataset", "seeds", "metric", "mean ± std", "paper"), tuple(rows))


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
            try:
                return float(metrics[candidate])
            except (TypeError, ValueError):
                return None
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


@dataclass(frozen=True)
class Comparison:
    """One metric of one run: ours, the paper's and the peers' numbers, and the data they were measured on."""

    label: str
    dataset: str
    key: str
    ours: float | None
    paper: float | None
    peers: dict[str, float]
    paper_source: str = ""

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.key)


def lower_is_better(key: str) -> bool:
    """Whether smaller values of metric ``key`` are better (NLL, barrier, cost, time, ...)."""
    name = key.lower()
    return any(part in name for part in LOWER_IS_BETTER)


def comparisons(summary: RunSummary) -> list[Comparison]:
    """The run's numbers next to the paper's and the peers' for the same dataset (none for variant runs)."""
    spec = registry.get(summary.run.method)
    preset = spec.presets.get(summary.run.preset)
    dataset = preset.dataset if preset else getattr(summary.run.config, "dataset", "?")
    variant = any(k in spec.variant_fields for k in summary.overrides)
    paper = preset.paper.metrics if preset and preset.paper and not variant else {}
    source = preset.paper.source if preset and preset.paper and not variant else ""
    peers = preset.peers if preset and not variant else {}
    keys = list(paper) or [_headline_key(spec)]
    return [Comparison(summary.label, dataset, key, _lookup(summary.metrics, key), paper.get(key),
                       {name: p.metrics[key] for name, p in peers.items() if key in p.metrics}, source)
            for key in keys]


def _rows(summary: RunSummary) -> list[list[str]]:
    return [[c.label, c.dataset, c.key, _fmt(c.ours), _fmt(c.paper),
             ", ".join(f"{_fmt(v)} ({name})" for name, v in c.peers.items()) or "–"]
            for c in comparisons(summary)]


COMPARISON_HEADER = ("run", "dataset", "metric", "ours", "paper", "peer")


# ------------------------------------------------------------------------------------------ plots
def pyplot():
    """matplotlib's pyplot on the headless Agg backend (figures are only ever written to files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    plt = pyplot()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def _series(hist: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["epoch"]), float(r[key])) for r in hist
            if isinstance(r.get(key), float) and math.isfinite(r[key]) and isinstance(r.get("epoch"), float)]


def plot_curves(summary: RunSummary, path: Path) -> Path | None:
    """Training loss and every ``valid/*`` metric against epoch; a panel only for a series of at least
    :data:`MIN_CURVE_POINTS` epochs, and no figure at all when no series has that many (no empty axes)."""
    hist = summary.history
    if not hist or "epoch" not in hist[0]:
        return None
    loss = _series(hist, "loss")
    valid = {k: pts for k in hist[0] if k.startswith("valid/") and len(pts := _series(hist, k)) >= MIN_CURVE_POINTS}
    panels = (["loss"] if len(loss) >= MIN_CURVE_POINTS else []) + (["valid"] if valid else [])
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "loss":
            ax.plot(*zip(*loss), color="tab:blue")
            ax.set(xlabel="epoch", ylabel="training loss", title=f"{summary.label}: loss")
            if all(v > 0 for _, v in loss):
                ax.set_yscale("log")
        else:
            for key, pts in valid.items():
                ax.plot(*zip(*pts), marker="o", markersize=3, label=key)
            ax.set(xlabel="epoch", title=f"{summary.label}: validation")
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


@dataclass(frozen=True)
class Panel:
    """One panel of the headline figure: a run's comparisons that share one unit."""

    title: str
    ylabel: str
    comps: tuple[Comparison, ...]

    @property
    def lower_is_better(self) -> bool:
        return self.comps[0].lower_is_better


_UNIT = re.compile(r"(_usd|_h|_s|_ms|seconds|_bytes|%)$")


def _family(key: str) -> tuple[str, str]:
    """``("barrier", "")`` for ``barrier/deep_align``; ``("plan", "_usd")`` for ``plan/cost_usd``: keys of one
    family (same prefix, same unit suffix) are numbers of one kind that can share an axis."""
    key = key.removeprefix("test/")
    prefix = key.rsplit("/", 1)[0] if "/" in key else key
    unit = _UNIT.search(key)
    return prefix, unit.group(1) if unit else ""


def headline_panels(summaries: Sequence[RunSummary]) -> list[Panel]:
    """One panel per run: its headline metric, with the other metrics of the same family (e.g. every
    method's ``barrier/*``) beside it, each next to the paper's and the peers' number for the same data."""
    panels = []
    for s in summaries:
        head = _headline_key(registry.get(s.run.method))
        comps = comparisons(s)
        family = _family(head)
        same = [c for c in comps if _family(c.key) == family and "/" in head.removeprefix("test/")
                or c.key.removeprefix("test/") == head]
        if not same:
            same = [Comparison(s.label, comps[0].dataset if comps else "?", head, _lookup(s.metrics, head),
                               None, {})]
        same = [c for c in same if c.ours is not None and math.isfinite(c.ours)]
        if same:
            ylabel = family[0] if len(same) > 1 else same[0].key.removeprefix("test/")
            panels.append(Panel(f"{s.label} on {same[0].dataset}", ylabel, tuple(same)))
    return panels


def plot_headline(panels: Sequence[Panel], path: Path) -> Path | None:
    """Small multiples, one panel per run, each on its own scale: our numbers vs the paper's vs the peers',
    the metric as the axis label; panels of metrics where lower is better say so."""
    fig = headline_figure(panels)
    return None if fig is None else save_figure(fig, path)


def headline_figure(panels: Sequence[Panel]):
    """The matplotlib figure of :func:`plot_headline`, or None without panels."""
    if not panels:
        return None
    plt = pyplot()
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        sources = ["ours", *(["paper"] if any(c.paper is not None for c in panel.comps) else []),
                   *dict.fromkeys(name for c in panel.comps for name in c.peers)]
        colors = {"ours": "tab:blue", "paper": "tab:orange"}
        width = 0.8 / len(sources)
        for j, source in enumerate(sources):
            xs, values = [], []
            for i, c in enumerate(panel.comps):
                v = c.ours if source == "ours" else c.paper if source == "paper" else c.peers.get(source)
                if v is not None and math.isfinite(v):
                    xs.append(i + (j - (len(sources) - 1) / 2) * width)
                    values.append(v)
            bars = ax.bar(xs, values, width=width, label=source, color=colors.get(source, "tab:gray"))
            for bar, v in zip(bars, values):
                ax.annotate(_fmt(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=6)
        names = [c.key.removeprefix("test/").removeprefix(panel.ylabel + "/") for c in panel.comps]
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=30 if len(names) > 2 else 0,
                      ha="right" if len(names) > 2 else "center")
        ax.set_ylabel(panel.ylabel, fontsize=8)
        better = "lower is better" if panel.lower_is_better else "higher is better"
        ax.set_title(f"{panel.title}\n{better}", fontsize=8)
        ax.margins(y=0.15)
        if len(sources) > 1:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.remove()
    fig.tight_layout()
    return fig


def plot_bars(summaries: Sequence[RunSummary], path: Path) -> Path | None:
    """The headline figure for ``summaries`` (see :func:`plot_headline`)."""
    return plot_headline(headline_panels(summaries), path)


# ------------------------------------------------------------------------------------------ sections
class _Figures:
    """Copies images into ``out/figures`` under unique names; same source, same copy."""

    def __init__(self, out: Path):
        self.out = out
        self.copied: dict[Path, str] = {}

    def copy(self, src: str | Path) -> str | None:
        """The copy's path relative to the report folder, or None (logged) for a missing file."""
        src = Path(src).resolve()
        if src in self.copied:
            return self.copied[src]
        if not src.is_file():
            log.warning("figure %s does not exist; left out of the report", src)
            return None
        folder = self.out / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        stem, n = _figure_name(src), 1
        rel = f"figures/{stem}{src.suffix}"
        while rel in self.copied.values():  # another file of the same name
            n += 1
            rel = f"figures/{stem}-{n}{src.suffix}"
        shutil.copyfile(src, self.out / rel)
        self.copied[src] = rel
        return rel


def _figure_name(src: Path) -> str:
    """``<run folder>-<path inside it>`` (``deep_align-quick-plots-barrier_curves``) for a file inside a run
    folder, else ``<parent>-<stem>``; without the suffix."""
    for parent in src.parents:
        if (parent / "config.yaml").is_file():
            return "-".join((parent.name, *src.relative_to(parent).with_suffix("").parts))
    return f"{src.parent.name}-{src.stem}"


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def _copy_linked_images(markdown: str, figures: _Figures) -> str:
    """Images a plain-Markdown section links by a path outside the report are copied beside it."""

    def replace(m: re.Match) -> str:
        alt, target = m.group(1), m.group(2)
        if re.match(r"^[a-z]+:", target) or not Path(target).is_absolute():
            return m.group(0)  # a URL or already relative: left as it is
        rel = figures.copy(target)
        return f"![{alt}]({rel})" if rel else f"*({alt}: figure missing)*"

    return _IMAGE.sub(replace, markdown)


def section_blocks(section: Any, figures: _Figures) -> list[Any]:
    """Blocks of a method's report section: plain Markdown as it is (linked images copied beside the
    report); a :class:`~paperzoo.api.ReportSection` as claim, body, figures (copied) and the verdict in bold."""
    if section is None:
        return []
    if isinstance(section, str):
        return [Text(_copy_linked_images(section, figures))] if section.strip() else []
    blocks: list[Any] = []
    if section.claim:
        blocks.append(Text(f"*Claim:* {section.claim}"))
    if section.markdown:
        blocks.append(Text(_copy_linked_images(section.markdown, figures)))
    for fig in section.figures:
        rel = figures.copy(fig.path)
        if rel:
            blocks.append(Image(rel, fig.caption))
    if section.verdict:
        blocks.append(Text(f"**Verdict: {section.verdict}**"))
    return blocks


def section_markdown(section: Any, out: Path) -> str:
    """A method's report section as Markdown: plain text as it is; a :class:`~paperzoo.api.ReportSection`
    as claim, verdict, body and its figures, each copied into ``out/figures`` and linked relatively."""
    if isinstance(section, str):
        return section
    return render_markdown(section_blocks(section, _Figures(Path(out)))).strip("\n")


# ------------------------------------------------------------------------------------------ renderers
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_table(table: Table) -> list[str]:
    return (["| " + " | ".join(map(_md_cell, table.header)) + " |", "|" + "---|" * len(table.header)]
            + ["| " + " | ".join(map(_md_cell, row)) + " |" for row in table.rows])


def render_markdown(blocks: Sequence[Any]) -> str:
    """The blocks as Markdown (GitHub flavour)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Section):
            out.append(render_markdown([block.heading, *block.blocks]).rstrip("\n"))
        elif isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Text):
            out.append(block.markdown.strip("\n"))
        elif isinstance(block, Table):
            out.append("\n".join(_markdown_table(block)))
        elif isinstance(block, Image):
            out.append(f"![{block.caption}]({block.src})\n\n*{block.caption}*")
        else:
            raise TypeError(f"not a report block: {block!r}")
    return "\n\n".join(out) + "\n"


_INLINE = re.compile(r"`([^`]+)`|!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)|\*\*(.+?)\*\*|\*([^*\s][^*]*?)\*")


def inline_html(text: str) -> str:
    """Inline Markdown (```code```, ``**bold**``, ``*emphasis*``, links, images) as escaped HTML."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, alt, src, label, href, bold, em = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif src is not None:
            out.append(f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">')
        elif href is not None:
            out.append(f'<a href="{html.escape(href)}">{inline_html(label)}</a>')
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        else:
            out.append(f"<em>{inline_html(em)}</em>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|") if line.strip() != "|" else "")
    return [c.strip().replace("\\|", "|") for c in cells]


_LIST = re.compile(r"^\s*([-*+]|\d+[.)])\s+(.*)$")


def markdown_html(markdown: str) -> str:
    """The Markdown subset of :class:`Text` as HTML: headings, tables, lists, fenced code, paragraphs."""
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.strip().startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            level = min(6, len(m.group(1)) + 1)  # a section's headings sit below the section's own
            out.append(f"<h{level}>{inline_html(m.group(2))}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            rows = [_split_row(r) for r in lines[i:j]]
            if len(rows) > 1 and all(re.fullmatch(r":?-+:?", c) for c in rows[1] if c):
                out.append(_html_table(rows[0], rows[2:], inline=True))
            else:
                out.append(_html_table(None, rows, inline=True))
            i = j
        elif _LIST.match(line):
            ordered = _LIST.match(line).group(1)[0].isdigit()
            items = []
            while i < len(lines) and (m := _LIST.match(lines[i])):
                items.append(f"<li>{inline_html(m.group(2))}</li>")
                i += 1
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>" + "".join(items) + f"</{tag}>")
        else:
            j = i
            while (j < len(lines) and lines[j].strip() and not lines[j].lstrip().startswith(("|", "#", "```"))
                   and not _LIST.match(lines[j])):
                j += 1
            out.append("<p>" + inline_html(" ".join(s.strip() for s in lines[i:j])) + "</p>")
            i = j
    return "\n".join(out)


def _html_table(header: Sequence[str] | None, rows: Sequence[Sequence[str]], *, inline: bool) -> str:
    cell = inline_html if inline else html.escape
    head = ("<thead><tr>" + "".join(f"<th>{cell(h)}</th>" for h in header) + "</tr></thead>") if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd}section{margin:1.5em 0;padding-top:.2em;border-top:1px solid #eee}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left}th{background:#f4f4f4}tbody tr:nth-child(even){background:#fafafa}
code{background:#f2f2f2;padding:0 .2em;border-radius:3px}pre{background:#f6f6f6;padding:.6em;overflow:auto}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
"""


def render_html(blocks: Sequence[Any], title: str = "paperzoo report") -> str:
    """The blocks as one self-contained HTML page (inline CSS; images by their relative paths)."""

    def render(items: Sequence[Any]) -> list[str]:
        out = []
        for block in items:
            if isinstance(block, Section):
                out.append("<section>\n" + "\n".join(render([block.heading, *block.blocks])) + "\n</section>")
            elif isinstance(block, Heading):
                out.append(f"<h{block.level}>{inline_html(block.text)}</h{block.level}>")
            elif isinstance(block, Text):
                out.append(markdown_html(block.markdown))
            elif isinstance(block, Table):
                out.append(_html_table(block.header, block.rows, inline=True))
            elif isinstance(block, Image):
                out.append(f'<figure><img src="{html.escape(block.src)}" alt="{html.escape(block.caption)}">'
                           f"<figcaption>{inline_html(block.caption)}</figcaption></figure>")
            else:
                raise TypeError(f"not a report block: {block!r}")
        return out

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(render(blocks)) + "\n</body></html>\n")


# ------------------------------------------------------------------------------------------ the report
def format_seconds(seconds: float) -> str:
    """``"41 s"``, ``"12 min 5 s"``, ``"1 h 3 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def build_report(run_dirs: Sequence[str | Path], out: str | Path, failures: Sequence[tuple[str, str]] = (),
                 total_seconds: float | None = None) -> list[Any]:
    """The report's blocks for the given run folders; its plots and copied figures are written under ``out``.

    Per method: the paper's claim, a table of ours vs the paper vs the peers with the dataset each was
    measured on, the method's figures, and the verdict. Generic training curves (:func:`plot_curves`) are
    drawn only for methods whose section brings no figures of its own. A failing
    ``report_section`` is logged and noted, never losing the rest of the report.
    """
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    figures = _Figures(out)
    summaries: list[RunSummary] = []
    failures = list(failures)
    for path in run_dirs:
        run = RunDir.open(path)
        try:
            metrics = run.read_metrics()
        except FileNotFoundError:
            failure = run.read_failure()  # failed.json: why the last attempt stopped
            if failure is None:
                log.warning("%s has no metrics.json (unfinished); skipped", path)
            elif str(path) not in {name for name, _ in failures}:
                failures.append((str(path), f"{failure.get('type', 'Error')}: {failure['error']}"))
            continue
        summaries.append(RunSummary(run, metrics, run.read_history()))

    intro = (f"Generated {_dt.datetime.now().isoformat(timespec='seconds')}. Test-split metrics unless named "
             f"otherwise; 'paper' is the published number for the same dataset, 'peer' a peer library on the "
             f"same data (source in the method's README).")
    if total_seconds is not None:
        intro += f" **Total time: {format_seconds(total_seconds)}** ({total_seconds:.0f} s wall)."
    blocks: list[Any] = [Heading(1, "paperzoo report"), Text(intro)]
    comps = {id(s): comparisons(s) for s in summaries}
    overview: list[Any] = [Table(COMPARISON_HEADER, tuple(tuple(r) for s in summaries for r in _rows(s)))]
    headline = plot_bars(summaries, plots / "headline.png")
    if headline:
        overview.append(Image(f"plots/{headline.name}", "Each method on its own scale: our number (blue) vs "
                              "the paper's (orange) vs peer libraries' (gray) on the same dataset."))
    if summaries:
        blocks.append(Section(Heading(2, "Summary"), tuple(overview)))

    for method in dict.fromkeys(s.run.method for s in summaries):
        spec = registry.get(method)
        mine = [s for s in summaries if s.run.method == method]
        body: list[Any] = [Text(f"*{spec.paper}* ([paper]({spec.url}))")]
        section: Any = None
        if spec.report_section is not None:
            try:
                section = spec.report_section([s.run for s in mine])
            except Exception as exc:  # noqa: BLE001 -- a broken extra must not lose the main table
                log.warning("report section of %s failed: %s", method, exc)
                section = f"(report section failed: {exc})"
        extra = section_blocks(section, figures)
        claim = [b for b in extra if isinstance(b, Text) and b.markdown.startswith("*Claim:*")]
        verdict = [b for b in extra if isinstance(b, Text) and b.markdown.startswith("**Verdict:")]
        rest = [b for b in extra if b not in claim and b not in verdict]
        body += claim
        body.append(Table(COMPARISON_HEADER, tuple(tuple(r) for s in mine for r in _rows(s))))
        sources = dict.fromkeys(c.paper_source for s in mine for c in comps[id(s)] if c.paper_source)
        if sources:
            body.append(Text("Paper numbers: " + "; ".join(sources) + "."))
        body += rest
        owns_figures = bool(getattr(section, "figures", ()))  # a method that draws its own curves gets no generic ones
        for s in [] if owns_figures else mine:
            png = plot_curves(s, plots / f"{s.run.path.name}-curves.png")
            if png:
                body.append(Image(f"plots/{png.name}", f"{s.label}: training loss and validation metrics "
                                                         f"per epoch."))
        body += verdict
        blocks.append(Section(Heading(2, method), tuple(body)))

    across = _seed_table(summaries)
    if across:
        blocks.append(Section(Heading(2, "Across seeds"), (across,)))
    if summaries:
        blocks.append(Section(Heading(2, "Runs"), (Table(
            ("run", "folder", "epochs", "train time (s)", "s/epoch"),
            tuple((s.label, f"`{s.run.path}`", str(s.metrics.get("epochs_run", "–")),
                   _fmt(s.metrics.get("train_seconds")), _fmt(s.metrics.get("seconds_per_epoch")))
                  for s in summaries)),)))
    if failures:
        blocks.append(Section(Heading(2, "Failed"),
                              (Text("\n".join(f"- **{name}**: {msg}" for name, msg in failures)),)))
    return blocks


def write_report(run_dirs: Sequence[str | Path], out: str | Path, failures: Sequence[tuple[str, str]] = (),
                 total_seconds: float | None = None) -> Path:
    """Write ``out/report.md`` and ``out/report.html`` (+ ``out/plots/``, ``out/figures/``) for the given run
    folders from the same content (:func:`build_report`); returns the Markdown file's path."""
    out = Path(out)
    blocks = build_report(run_dirs, out, failures, total_seconds)
    io.write_text(out / "report.html", render_html(blocks))
    path = out / "report.md"
    io.write_text(path, render_markdown(blocks))
    return path
