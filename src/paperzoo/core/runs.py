"""Run folders: the one place a run's config, log, metrics and checkpoints live.

Layout of ``runs/<name>/``::

    config.yaml        method, preset, full config (validated on load), data root, versions
    log.csv            one row per epoch (rewritten atomically from the checkpointed history)
    metrics.json       final metrics, written once the run finishes
    failed.json        why the last attempt failed (removed when the run finishes)
    run.lock           held (flock) by the process training the run; stale once that process is gone
    checkpoints/       last.pt (full training state), best.pt (model weights for evaluation)
    run.log            the CLI's log

Every file is written atomically. Checkpoints load with ``torch.load(weights_only=True)`` and are
checked on load: an unreadable file or a tensor holding NaN/Inf raises a :class:`CheckpointError`
whose one-line message names the file (and tensor) and says what to do, which depends on whether
the run is being trained or evaluated (``RunDir.purpose``).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import platform
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from paperzoo.core import config as cfglib
from paperzoo.core import io

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used (truncated, corrupt, from another method, non-finite)."""

    def __init__(self, message: str, *, path: str | Path | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class CorruptCheckpointError(CheckpointError):
    """The checkpoint file cannot be read back (``reason`` says why, in a few words)."""

    def __init__(self, message: str, *, path: str | Path, reason: str):
        super().__init__(message, path=path)
        self.reason = reason


class NonFiniteCheckpointError(CheckpointError):
    """A floating-point tensor of the checkpoint holds NaN or Inf; ``key`` is its path in the state
    (e.g. ``model.conv1.weight``)."""

    def __init__(self, message: str, *, path: str | Path, key: str):
        super().__init__(message, path=path)
        self.key = key


class RunFailed(RuntimeError):
    """A run stopped on an error of its own making (divergence, a NaN score); the message names the run."""


class RunBusy(RuntimeError):
    """Another live process is training the run (it holds ``run.lock``)."""


class RunExistsError(FileExistsError):
    """The run folder already holds a run that a new ``paperzoo run`` must not overwrite."""


PURPOSES = ("run", "eval")
"""What a :class:`RunDir` is opened for: training (``run``, also ``--resume``) or ``paperzoo eval``."""


class RunDir:
    """A run folder. Create one with :meth:`create`, reopen an existing one with :meth:`open`.

    ``purpose`` (``"run"`` or ``"eval"``) only changes the advice of checkpoint errors: a run being
    trained can delete a bad checkpoint and train again, ``paperzoo eval`` cannot.
    """

    def __init__(self, path: str | Path, *, method: str, preset: str, config: Any,
                 data_root: str | None = None, purpose: str = "run"):
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
        self.path = Path(path)
        self.method = method
        self.preset = preset
        self.config = config
        self.data_root = data_root
        self.purpose = purpose

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

    @property
    def failure_path(self) -> Path:
        return self.path / "failed.json"

    @property
    def finished(self) -> bool:
        """Whether the run wrote its final metrics."""
        return self.metrics_path.exists()

    def has_training_state(self) -> bool:
        """Whether anything of training was saved yet (a checkpoint or ``log.csv``)."""
        return self.log_path.exists() or any(self.checkpoint_dir.glob("*.pt"))

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, method: str, preset: str, config: Any,
               data_root: str | None = None) -> RunDir:
        path = Path(path)
        if (path / "config.yaml").exists():
            raise FileExistsError(f"{path} already holds a run; pass --resume {path} to continue it, "
                                  f"or choose another --run-dir")
        run = cls(path, method=method, preset=preset, config=config, data_root=data_root)
        run.save_config()
        return run

    @classmethod
    def create_or_continue(cls, path: str | Path, *, method: str, preset: str, config: Any,
                           data_root: str | None = None) -> RunDir:
        """Create a run folder, or reopen the unfinished run that an earlier attempt left in it.

        The same ``paperzoo run`` command can thus be repeated after a failure (bad data, a killed
        process): an unfinished run of the same method, preset and config continues from its last
        checkpoint; one with no training state yet is restarted with the new preset and config. A
        finished run, another method's run, or an unfinished run with checkpoints and another config
        raise :class:`RunExistsError` with the command to use instead.
        """
        path = Path(path)
        if not (path / "config.yaml").exists():
            return cls.create(path, method=method, preset=preset, config=config, data_root=data_root)
        old = cls.open(path)
        if old.finished:
            raise RunExistsError(f"{path} already holds a finished {old.method} run; choose another "
                                 f"--run-dir (or train it further with `paperzoo run --resume {path} "
                                 f"--set epochs=N`)")
        if old.method != method:
            raise RunExistsError(f"{path} holds an unfinished {old.method} run, not {method}; continue it "
                                 f"with `paperzoo run --resume {path}`, or choose another --run-dir")
        changes = config_changes(old.config, config)
        if old.preset != preset:
            changes.insert(0, f"preset: {old.preset} -> {preset}")
        failure = old.read_failure()
        earlier = f" (it failed earlier: {failure['error']})" if failure else ""
        if not changes:
            log.info("continuing the unfinished run in %s%s", path, earlier)
            if data_root and data_root != old.data_root:
                old.data_root = data_root
                old.save_config()  # later `paperzoo eval` / --resume read the data from the same place
            return old
        if old.has_training_state():
            listed = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
            raise RunExistsError(f"{path} holds an unfinished {method} run with another config ({listed}); "
                                 f"continue it with `paperzoo run --resume {path}` (add --set KEY=VALUE to "
                                 f"change fields), or choose another --run-dir")
        log.info("restarting the run in %s, which saved no training state, with the new config (%s)%s",
                 path, "; ".join(changes), earlier)
        run = cls(path, method=method, preset=preset, config=config, data_root=data_root or old.data_root)
        run.save_config()
        return run

    @classmethod
    def open(cls, path: str | Path, *, data_root: str | None = None,
             overrides: Mapping[str, Any] | None = None, purpose: str = "run",
             config_cls: Callable[[str], type] | None = None) -> RunDir:
        """Reopen a run folder; its config is re-validated against the method's config class.

        ``config_cls`` maps the saved method name to its config class; by default the method is looked up
        in :mod:`paperzoo.registry` (imported only then: this module itself depends on no method).
        ``purpose="eval"`` tailors checkpoint errors to ``paperzoo eval`` (see :class:`RunDir`).
        """
        path = Path(path)
        cfg_path = path / "config.yaml"
        if not cfg_path.exists():
            raise FileNotFoundError(f"{path} is not a run folder: {cfg_path} is missing")
        try:
            saved = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise cfglib.ConfigError(f"{cfg_path}{where}: not valid YAML ({problem})") from None
        if not isinstance(saved, dict) or not {"method", "preset", "config"} <= set(saved):
            raise cfglib.ConfigError(f"{cfg_path}: expected keys method, preset, config")
        cls_of = config_cls or _registered_config_cls
        try:
            config_type = cls_of(saved["method"])
        except KeyError as exc:  # a method this installation does not know
            raise cfglib.ConfigError(f"{cfg_path}: {exc.args[0] if exc.args else exc}") from None
        try:
            config = cfglib.from_dict(config_type, saved["config"])
            if overrides:
                config = cfglib.from_dict(config_type, dict(overrides), base=config)
        except cfglib.ConfigError as exc:
            raise cfglib.ConfigError(f"{cfg_path}: {exc}") from None
        run = cls(path, method=saved["method"], preset=saved["preset"], config=config,
                  data_root=data_root or saved.get("data_root"), purpose=purpose)
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

    def finished_checkpoint(self, name: str = "best") -> dict[str, Any]:
        """The checkpoint ``name`` of a finished run (:meth:`load_checkpoint`); a missing one raises
        :class:`FileNotFoundError` saying the run did not finish."""
        state = self.load_checkpoint(name)
        if state is None:
            raise FileNotFoundError(f"{self.checkpoint_path(name)} is missing: the run did not finish")
        return state

    def load_checkpoint(self, name: str = "last") -> dict[str, Any] | None:
        """The checkpoint ``name``, or None if the run has none yet.

        Raises :class:`CorruptCheckpointError` for a file that cannot be read back, and
        :class:`NonFiniteCheckpointError` naming the first floating-point tensor holding NaN or Inf
        (nested dicts and lists are walked); both messages are one line with advice that suits
        :attr:`purpose`.
        """
        path = self.checkpoint_path(name)
        try:
            state = io.load_torch(path)
        except FileNotFoundError:
            return None
        except io.UnreadableFileError as exc:
            problem = "is truncated or corrupt" if exc.corrupt else "cannot be read"
            message = f"checkpoint {path} {problem} ({exc.reason}); {self.checkpoint_advice(name)}"
            raise CorruptCheckpointError(message, path=path, reason=exc.reason) from None
        if not isinstance(state, dict):
            reason = f"holds a {type(state).__name__}, not a paperzoo checkpoint"
            raise CorruptCheckpointError(f"checkpoint {path} is corrupt ({reason}); "
                                         f"{self.checkpoint_advice(name)}", path=path, reason=reason)
        if state.get("method") not in (None, self.method):
            raise CheckpointError(f"{path} belongs to method {state.get('method')!r}, not {self.method!r}",
                                  path=path)
        bad = find_nonfinite(state)
        if bad is not None:
            key, tensor = bad
            raise NonFiniteCheckpointError(
                f"run {self.path}: checkpoint {path} holds non-finite values in tensor {key} "
                f"({describe_nonfinite(tensor)}); {self.checkpoint_advice(name, nonfinite=True)}",
                path=path, key=key)
        return state

    def checkpoint_advice(self, name: str, *, nonfinite: bool = False) -> str:
        """What the user can do about an unusable checkpoint ``name``, for this folder's :attr:`purpose`."""
        if self.purpose == "eval":
            what = "finite weights in" if nonfinite else "a readable"
            return (f"`paperzoo eval` needs {what} {self.checkpoint_path(name)}: restore the file, "
                    f"or train the run again into another --run-dir")
        resume = f"`paperzoo run --resume {self.path}`"
        lower = " (diverged: consider a lower learning rate, --set lr=...)" if nonfinite else ""
        if name == "last":
            return f"delete it and run {resume} to train again from the start{lower}"
        if name.startswith("last"):  # one of several processes' training states (dist_gcn)
            return (f"delete {self.checkpoint_dir}/last*.pt and run {resume} to train again from the "
                    f"start{lower}")
        if name == "best":
            return f"delete {self.checkpoint_dir} and run {resume} to train again{lower}"
        return f"delete it and run {resume} to recompute it{lower}"

    # -- log -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def logging_to_file(self):
        """Copy every log record of the block into ``run.log`` (appended, so attempts accumulate)."""
        self.path.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.path / "run.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            yield
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()

    # -- exclusive use -----------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path / "run.lock"

    @contextlib.contextmanager
    def lock(self):
        """Hold the run folder for training: a second process that tries while this one holds it gets
        :class:`RunBusy` at once (no waiting), naming the holder. The lock is an ``flock`` on
        ``run.lock``, so the kernel releases it when the holder dies, however it dies: a killed run is
        never locked out. (Where ``fcntl`` does not exist, the folder is not locked.)"""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                raise RunBusy(f"{self.path} is being trained by {holder}; wait for it to finish (or stop it), "
                              f"then run the same command again") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    # -- failures ----------------------------------------------------------------------------
    def record_failure(self, exc: BaseException) -> None:
        """Write why the run failed to ``failed.json`` (read by ``paperzoo report`` and the next attempt).

        Never raises: a folder that cannot take the record (gone, read-only, disk full) is logged, so
        that the error being recorded is the one the caller sees.
        """
        try:
            io.write_json(self.failure_path, {
                "error": str(exc) or exc.__class__.__name__, "type": exc.__class__.__name__,
                "time": _dt.datetime.now().isoformat(timespec="seconds"),
                "retry": f"fix the cause, then run `paperzoo run --resume {self.path}`"})
        except OSError as err:
            log.warning("could not record the failure in %s: %s", self.failure_path, err)

    def read_failure(self) -> dict[str, Any] | None:
        """The recorded failure of the last attempt, or None (also for an unreadable ``failed.json``)."""
        try:
            failure = json.loads(self.failure_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return failure if isinstance(failure, dict) and "error" in failure else None

    def clear_failure(self) -> None:
        """Remove ``failed.json`` (the run finished)."""
        self.failure_path.unlink(missing_ok=True)

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


def finished_runs(run_dirs: list[RunDir]) -> list[tuple[RunDir, dict[str, Any]]]:
    """``(run, metrics)`` of every run in ``run_dirs`` that wrote ``metrics.json`` (a report section
    skips the others), in the given order."""
    out = []
    for rd in run_dirs:
        try:
            out.append((rd, rd.read_metrics()))
        except FileNotFoundError:
            continue
    return out


def _registered_config_cls(method: str) -> type:
    """The config class of a registered method (the registry is imported here, on first use, so that
    ``paperzoo.core.runs`` never imports it at import time: the registry imports the method contract)."""
    from paperzoo import registry

    return registry.get(method).config_cls


def find_nonfinite(state: Any, prefix: str = "") -> tuple[str, Any] | None:
    """The first floating-point (or complex) tensor of ``state`` holding NaN or Inf, as
    ``(key path, tensor)`` with dict keys and list indices joined by dots, or None."""
    import torch

    if isinstance(state, torch.Tensor):
        if (state.is_floating_point() or state.is_complex()) and not bool(torch.isfinite(state).all()):
            return prefix or "<tensor>", state
        return None
    if isinstance(state, Mapping):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = find_nonfinite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def describe_nonfinite(tensor: Any) -> str:
    """``"3 NaN, 1 Inf of 40 values"``."""
    import torch

    nan = int(torch.isnan(tensor).sum())
    inf = int(torch.isinf(tensor).sum())
    return f"{nan} NaN, {inf} Inf of {tensor.numel()} values"


def config_changes(old: Any, new: Any) -> list[str]:
    """``["epochs: 12 -> 2", ...]``: the top-level fields in which two configs differ."""
    a, b = cfglib.to_dict(old), cfglib.to_dict(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def nonfinite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics whose value is a float NaN or Inf."""
    return {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}


def _num(value: str) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
