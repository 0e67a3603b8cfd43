"""Progress bars (tqdm) that stay quiet when output is not a terminal or PAPERZOO_PROGRESS=0."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    flag = os.environ.get("PAPERZOO_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, **kwargs) -> tqdm:
    kwargs.setdefault("disable", not enabled())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
