"""Where datasets are found: an explicit root, ``$PAPERZOO_DATA``, the user cache, then packages.

Search order for a dataset (first hit wins):

1. ``--data-root`` / ``data_root=`` given by the caller,
2. the ``PAPERZOO_DATA`` environment variable,
3. the user cache: ``$XDG_CACHE_HOME/paperzoo/data`` (default ``~/.cache/paperzoo/data``),
4. known system folders (e.g. Debian's ``/usr/share/wordnet``),
5. data shipped inside installed packages (e.g. the ``pykeen`` wheel carries umls, nations, kinships).

Nothing is downloaded here: a missing dataset raises :class:`DataNotFoundError`, whose message
lists every place that was tried and where to put the files.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "PAPERZOO_DATA"


class DataNotFoundError(FileNotFoundError):
    """A dataset is not in any of the searched locations."""


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "paperzoo" / "data"


def search_roots(data_root: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The data roots in search order, each with a label saying where it came from."""
    roots: list[tuple[str, Path]] = []
    if data_root:
        roots.append(("--data-root", Path(data_root).expanduser()))
    if os.environ.get(ENV_VAR):
        roots.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    roots.append(("user cache", user_cache()))
    return roots


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset may live, and which files prove it is there."""

    name: str
    relpaths: tuple[str, ...]
    """Folders relative to a data root, tried in order."""
    files: tuple[str, ...]
    """Files that must all exist inside the folder."""
    description: str = ""
    packages: tuple[tuple[str, str], ...] = ()
    """(top-level package, folder inside it) pairs that ship the data."""
    system: tuple[str, ...] = ()
    """Absolute folders a system package installs."""
    url: str = ""
    """Canonical download address, shown in the error message."""

    def candidates(self, data_root: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
        out = [(label, root / rel) for label, root in search_roots(data_root) for rel in self.relpaths]
        out += [("system", Path(p)) for p in self.system]
        for package, sub in self.packages:
            # find_spec of a top-level name locates the package without importing it
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.submodule_search_locations:
                for loc in spec.submodule_search_locations:
                    out.append((f"package {package}", Path(loc) / sub))
        return out


def locate(source: DatasetSource, data_root: str | os.PathLike | None = None) -> Path:
    """The first folder holding all of ``source.files``; otherwise a DataNotFoundError listing tries."""
    tried = []
    for label, folder in source.candidates(data_root):
        if all((folder / f).is_file() for f in source.files):
            return folder
        tried.append(f"  {folder}  ({label})")
    hint = f"Download it from {source.url} and " if source.url else ""
    raise DataNotFoundError(
        f"dataset {source.name!r} not found. Looked for {', '.join(source.files)} in:\n"
        + "\n".join(tried)
        + f"\n{hint}put the files in <data root>/{source.relpaths[0]}/, where <data root> is "
          f"--data-root, ${ENV_VAR} or {user_cache()}."
    )
