"""Lazy method registry: names map to ``module:attribute`` strings, imported on first use.

Methods need different heavy extras (PyG, Ray, ...); importing them all up front would make
``paperzoo list`` fail or crawl on a machine that has only some installed.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

from paperzoo.api import MethodSpec

#: name -> "module:attribute" of its MethodSpec. Add one line per method.
METHODS: dict[str, str] = {
    "conve": "paperzoo.methods.conve:SPEC",
    "hgt": "paperzoo.methods.hgt:SPEC",
    "subnet_laplace": "paperzoo.methods.subnet_laplace:SPEC",
    "dist_gcn": "paperzoo.methods.dist_gcn:SPEC",
    "deep_align": "paperzoo.methods.deep_align:SPEC",
    "sky_broker": "paperzoo.methods.sky_broker:SPEC",
    "dgp": "paperzoo.methods.dgp:SPEC",
    "interp_cnn": "paperzoo.methods.interp_cnn:SPEC",
    "ban": "paperzoo.methods.ban:SPEC",
    "relight_avatar": "paperzoo.methods.relight_avatar:SPEC",
}


def names() -> list[str]:
    return list(METHODS)


@lru_cache(maxsize=None)
def get(name: str) -> MethodSpec:
    """Import and return the spec of ``name``; a clear error lists the known names."""
    try:
        target = METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None
    module_name, attr = target.split(":")
    spec = getattr(importlib.import_module(module_name), attr)
    if not isinstance(spec, MethodSpec) or spec.name != name:
        raise TypeError(f"{target} is not the MethodSpec of {name!r}")
    return spec
