"""Atomic file writes: write a temporary file in the same folder, fsync, then rename over the target.

A reader (or a resumed run) therefore sees either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV, columns in order of first appearance."""
    import csv
    import io as _io

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class UnreadableFileError(RuntimeError):
    """A file exists but cannot be read back: truncated, corrupt, not what it should be, or not readable.

    ``path`` is the file and ``reason`` a short description of what is wrong (no OS error numbers), so
    that callers can phrase their own message and advice around them.
    """

    def __init__(self, path: str | os.PathLike, reason: str, *, corrupt: bool = True):
        self.path = Path(path)
        self.reason = reason
        self.corrupt = corrupt
        """True when the file's content is at fault, False when the file could not be opened."""
        what = "is truncated or corrupt" if corrupt else "cannot be read"
        super().__init__(f"{self.path} {what} ({reason})")


def load_torch(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU.

    Raises :class:`FileNotFoundError` if ``path`` does not exist and :class:`UnreadableFileError`
    (with a one-line ``reason``) for every other way the file can fail to load.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:  # a folder in its place, no permission, an I/O error
        raise UnreadableFileError(path, _os_reason(exc), corrupt=False) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises many types for bad files; all mean the same here
        raise UnreadableFileError(path, load_failure_reason(exc, path)) from None


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or exc.__class__.__name__).lower()


_MAX_REASON = 120


def _is_zip(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def load_failure_reason(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """A short one-line reason for a failed ``torch.load`` (torch's own messages run to paragraphs)."""
    text = str(exc)
    if isinstance(exc, EOFError) or "Ran out of input" in text:
        empty = path is not None and Path(path).is_file() and Path(path).stat().st_size == 0
        return "the file is empty" if empty else "the file ends early"
    if path is not None and not _is_zip(path):  # torch.save writes a zip archive
        return "not a torch.save file"
    if isinstance(exc, OSError):  # torch's zip reader reports some truncations as EINVAL
        return "damaged zip archive"
    if "PytorchStreamReader" in text:  # the zip container: truncated or overwritten
        text = text.split(". This is an internal miniz error")[0].replace("PytorchStreamReader ", "")
    elif "WeightsUnpickler error:" in text:  # garbled pickle, or objects weights_only refuses
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n")[0]
        detail = detail.split(". Please use")[0]
        text = f"not loadable with weights_only: {detail}"
    else:
        text = f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
    text = re.sub(r"\[Errno \d+\]\s*", "", " ".join(text.split()))
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3].rstrip() + "..."
