"""The method contract: plain dataclasses shared by every method, the CLI and the report.

A method is a folder under ``paperzoo/methods/<name>/`` whose ``__init__`` exposes ``SPEC``, a
:class:`MethodSpec`.  Nothing else is required of it; there is no base class to inherit.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The contract imports nothing else of paperzoo: the registry imports it, and ``paperzoo.core.runs`` (which
# may look a method up in the registry) must not be imported back from here, not even for type checking.
# Where a signature below says ``RunDir`` it means a ``paperzoo.core.runs.RunDir``.
RunDir = Any


@dataclass(frozen=True)
class Published:
    """A number somebody else measured, kept next to the preset that reproduces it."""

    metrics: Mapping[str, float]
    """Metric name (in our naming, e.g. ``mrr``, ``hits@10``) to value."""
    source: str
    """Where the number comes from (paper table, official README, peer library run)."""


@dataclass(frozen=True)
class Preset:
    """A named, complete configuration of a method."""

    name: str
    config: Any
    """An instance of the method's config dataclass."""
    description: str
    dataset: str = "synthetic"
    """The dataset the preset trains on (``synthetic`` for generated data)."""
    paper: Published | None = None
    """The paper's (or official code's) published number for this dataset."""
    peers: Mapping[str, Published] = field(default_factory=dict)
    """Peer-library numbers for the same data, by library name."""


@dataclass(frozen=True)
class RunResult:
    """What ``run`` returns and what ``metrics.json`` stores."""

    metrics: Mapping[str, float]
    """Final metrics, flat ``name -> value`` (``test/mrr``, ``valid/mrr``, ``train_seconds``...)."""
    history: list[Mapping[str, float]] = field(default_factory=list)
    """One row per epoch/iteration, as written to ``log.csv``."""
    artifacts: Mapping[str, str] = field(default_factory=dict)
    """Files the run produced, relative to the run folder (plots, checkpoints)."""


@dataclass(frozen=True)
class Figure:
    """A picture a method contributes to the report (the report copies it next to itself)."""

    path: Path
    """The PNG, usually inside a run folder."""
    caption: str
    """One sentence: what the figure shows and what to look for."""


VERDICTS = ("reproduced", "ordering reproduced", "not reproduced")
"""How a report section judges a run against the paper (``not reproduced`` always says why)."""


def deferred(target: str) -> Callable[..., Any]:
    """A function that imports ``"package.module:function"`` on its first call and forwards to it: a
    method's ``__init__`` hands ``run`` / ``evaluate`` / ``report_section`` to its :class:`MethodSpec`
    without importing torch-heavy modules, so that ``paperzoo list`` and the CLI's parser stay light."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"deferred: target must be 'module:function', got {target!r}")

    def call(*args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module_name), attr)(*args, **kwargs)

    call.__name__ = call.__qualname__ = attr
    call.__doc__ = f"``{target}`` (imported on first call)."
    return call


def lazy_attributes(package: str, table: Mapping[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` (PEP 562): ``table`` maps a submodule to the public names
    it defines, which are imported on first access (``__getattr__ = lazy_attributes(__name__, {...})`` in the
    package's ``__init__``), so that importing a method package stays light."""
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__


def overall_verdict(verdicts: list[tuple[str, str]]) -> str:
    """One verdict line for several runs, from ``(run name, verdict)`` pairs: the strongest run's verdict
    (named) first, then the others', so that the line always starts with one of :data:`VERDICTS`."""
    if not verdicts:
        return "not reproduced: no finished run"
    if len(verdicts) == 1:
        return verdicts[0][1]

    def strength(item: tuple[str, str]) -> int:
        # "ordering reproduced" must not match "reproduced" first: try the longer words first
        for word in sorted(VERDICTS, key=len, reverse=True):
            if item[1].startswith(word):
                return VERDICTS.index(word)
        raise ValueError(f"verdict of {item[0]!r} starts with none of {VERDICTS}: {item[1]!r}")

    (name, best), *rest = sorted(verdicts, key=strength)
    return f"{best} ({name}); " + "; ".join(f"{n}: {v}" for n, v in rest)


@dataclass(frozen=True)
class ReportSection:
    """A method's part of the report, built from its finished runs (``MethodSpec.report_section``).

    The core report renders it to Markdown and HTML alike; it never names a method.
    """

    claim: str = ""
    """What the paper claims, in one or two sentences, with the paper's number."""
    verdict: str = ""
    """One line starting with one of :data:`VERDICTS`, e.g. ``ordering reproduced: ...`` or
    ``not reproduced: the quick preset trains 3 epochs; preset paper_x shows it (README)``."""
    markdown: str = ""
    """Body: tables and text (Markdown; keep to tables, lists, emphasis and code)."""
    figures: tuple[Figure, ...] = ()
    """The method's own figures (none rather than an empty or meaningless one)."""


@dataclass(frozen=True)
class MethodSpec:
    """Everything the CLI, the registry-driven tests and the report need to know about a method."""

    name: str
    paper: str
    """Short title of the paper."""
    citation: str
    """BibTeX entry."""
    url: str
    config_cls: type
    presets: Mapping[str, Preset]
    run: Callable[[Any, RunDir], RunResult]
    """Train (resuming from ``run_dir`` when it holds a checkpoint) and evaluate."""
    evaluate: Callable[[RunDir], Mapping[str, float]]
    """Re-evaluate a finished run folder from its saved config and best checkpoint."""
    headline: str
    """The metric the report leads with (e.g. ``test/mrr``)."""
    extras: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """pip extra name -> importable modules it provides; empty when the core is enough."""
    variant_fields: tuple[str, ...] = ()
    """Config fields that turn a run into a different model (e.g. a baseline): the paper's numbers
    are not shown next to runs that change them."""
    table_metrics: tuple[str, ...] = ()
    """Metrics (without the ``test/`` prefix) of the report's across-seeds table; default: the
    headline."""
    report_section: Callable[[list[RunDir]], ReportSection | str] | None = None
    """The method's section of reports that include its runs: a :class:`ReportSection` (claim,
    verdict, body, figures), or plain Markdown."""

    def __post_init__(self) -> None:
        if "tiny" not in self.presets:
            raise ValueError(f"method {self.name!r} must define a 'tiny' preset (the contract test runs it)")
        for key, preset in self.presets.items():
            if key != preset.name:
                raise ValueError(f"preset key {key!r} != preset.name {preset.name!r} in {self.name!r}")
            if not isinstance(preset.config, self.config_cls):
                raise TypeError(f"preset {key!r} of {self.name!r} is not a {self.config_cls.__name__}")

    def preset(self, name: str) -> Preset:
        try:
            return self.presets[name]
        except KeyError:
            raise KeyError(f"method {self.name!r} has no preset {name!r}; "
                           f"choose one of: {', '.join(self.presets)}") from None

    def missing_extras(self) -> list[str]:
        """Extras whose modules cannot be imported here."""
        import importlib.util

        return [extra for extra, modules in self.extras.items()
                if any(importlib.util.find_spec(m) is None for m in modules)]

    @property
    def readme(self) -> Path:
        import importlib

        module = importlib.import_module(f"paperzoo.methods.{self.name}")
        return Path(module.__file__).with_name("README.md")

