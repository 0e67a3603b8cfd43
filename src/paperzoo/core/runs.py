"""Run folders: the one place a run's config, log, metrics and checkpoints live.

Layout of ``runs/<name>/``::

    config.yaml        method, preset, full config (validated on load), data root, versions
    log.csv            one row per epoch (rewritten atomically from the checkpointed history)
    metrics.json       final metrics, written once the run finishes
    checkpoints/       last.pt (full training state), best.pt (model weights for evaluation)
    run.log            the CLI's log

Every file is written atomically, and checkpoints load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import platform
from pathlib import Path
from typing import Any, Mapping

import yaml

from paperzoo.core import config as cfglib
from paperzoo.core import io

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, corrupt, or from another method)."""


class RunDir:
    """A run folder. Create one with :meth:`create`, reopen an existing one with :meth:`open`."""

    def __init__(self, path: str | Path, *, method: str, preset: str, config: Any,
                 data_root: str | None = None):
        self.path = Path(path)
        self.method = method
        self.preset = preset
        self.config = config
        self.data_root = data_root

    # -- files -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.path / "log.csv"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_path(self, name: str = "last") -> Path:
        return self.checkpoint_dir / f"{name}.pt"

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, method: str, preset: str, config: Any,
               data_root: str | None = None) -> "RunDir":
        path = Path(path)
        if (path / "config.yaml").exists():
            raise FileExistsError(f"{path} already holds a run; pass --resume {path} to continue it, "
                                  f"or choose another --run-dir")
        run = cls(path, method=method, preset=preset, config=config, data_root=data_root)
        run.save_config()
        return run

    @classmethod
    def open(cls, path: str | Path, *, data_root: str | None = None,
             overrides: Mapping[str, Any] | None = None) -> "RunDir":
        """Reopen a run folder; its config is re-validated against the method's config class."""
        from paperzoo import registry

        path = Path(path)
        cfg_path = path / "config.yaml"
        if not cfg_path.exists():
            raise FileNotFoundError(f"{path} is not a run folder: {cfg_path} is missing")
        try:
            saved = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise cfglib.ConfigError(f"{cfg_path}: not valid YAML ({exc})") from None
        if not isinstance(saved, dict) or not {"method", "preset", "config"} <= set(saved):
            raise cfglib.ConfigError(f"{cfg_path}: expected keys method, preset, config")
        spec = registry.get(saved["method"])
        try:
            config = cfglib.from_dict(spec.config_cls, saved["config"])
            if overrides:
                config = cfglib.from_dict(spec.config_cls, dict(overrides), base=config)
        except cfglib.ConfigError as exc:
            raise cfglib.ConfigError(f"{cfg_path}: {exc}") from None
        run = cls(path, method=saved["method"], preset=saved["preset"], config=config,
                  data_root=data_root or saved.get("data_root"))
        if overrides:
            run.save_config()
        return run

    def save_config(self) -> None:
        import torch

        from paperzoo import __version__

        io.write_yaml(self.config_path, {
            "method": self.method,
            "preset": self.preset,
            "config": cfglib.to_dict(self.config),
            "data_root": self.data_root,
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "versions": {"paperzoo": __version__, "torch": str(torch.__version__),
                         "python": platform.python_version()},
        })

    # -- state -------------------------------------------------------------------------------
    def save_checkpoint(self, state: Mapping[str, Any], name: str = "last") -> None:
        io.save_torch(self.checkpoint_path(name), dict(state))

    def load_checkpoint(self, name: str = "last") -> dict[str, Any] | None:
        """The checkpoint ``name``, or None if the run has none yet."""
        import torch

        path = self.checkpoint_path(name)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for truncated/corrupt files
            raise CheckpointError(f"cannot read checkpoint {path}: {exc.__class__.__name__}: {exc}. "
                                  f"Delete it to restart the run from scratch.") from None
        if state.get("method") not in (None, self.method):
            raise CheckpointError(f"{path} belongs to method {state.get('method')!r}, not {self.method!r}")
        return state

    def write_history(self, rows: list[Mapping[str, Any]]) -> None:
        io.write_csv(self.log_path, [dict(r) for r in rows])

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        io.write_json(self.metrics_path, dict(metrics))

    def read_metrics(self) -> dict[str, Any]:
        if not self.metrics_path.exists():
            raise FileNotFoundError(f"{self.metrics_path} does not exist: the run has not finished")
        return json.loads(self.metrics_path.read_text(encoding="utf-8"))

    def read_history(self) -> list[dict[str, float]]:
        import csv

        if not self.log_path.exists():
            return []
        with open(self.log_path, newline="", encoding="utf-8") as fh:
            return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, method={self.method!r}, preset={self.preset!r})"


def _num(value: str) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
