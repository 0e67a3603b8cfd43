"""Config dataclasses: field docstrings, validated construction from dicts/YAML and ``--set`` overrides.

A method's config is a frozen dataclass whose fields each carry a docstring (a string literal right
below the field, as in nerfstudio).  Those docstrings become ``paperzoo show`` / CLI help, and the
same code validates a saved ``config.yaml`` when a run is resumed or re-evaluated.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from functools import lru_cache
from typing import Any, Mapping


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the field."""


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a dataclass's fields, read from the string literal that follows each field."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # pragma: no cover - source not available (frozen app)
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def to_dict(cfg: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(cls: type, name: str, value: Any) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the declared type of field ``name``."""
    hints = _hints(cls)
    if name not in hints:
        raise ConfigError(f"{cls.__name__} has no field {name!r}; fields: {', '.join(hints)}")
    return _coerce(hints[name], value, f"{cls.__name__}.{name}")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Mapping[str, Any], base: Any | None = None) -> Any:
    """Build ``cls`` from a mapping; unknown keys and wrongly typed values raise :class:`ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping of fields, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {', '.join(map(repr, unknown))}; "
                          f"fields: {', '.join(sorted(known))}")
    values = to_dict(base) if base is not None else {}
    values.update(data)
    values = {k: coerce(cls, k, v) for k, v in values.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """``["lr=0.01", "epochs=5"]`` -> ``{"lr": "0.01", "epochs": "5"}`` (typed later by :func:`from_dict`)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def check(condition: bool, cls_name: str, name: str, message: str) -> None:
    """Validation helper for ``__post_init__``: raise a ConfigError naming the field."""
    if not condition:
        raise ConfigError(f"{cls_name}.{name}: {message}")


def describe(cfg: Any) -> str:
    """Human-readable table of fields, values and docstrings (``paperzoo show``)."""
    docs = field_docs(type(cfg))
    lines = []
    for f in dataclasses.fields(cfg):
        lines.append(f"  {f.name} = {getattr(cfg, f.name)!r}")
        doc = docs.get(f.name, "")
        for line in textwrap.wrap(doc, 90):
            lines.append(f"      {line}")
    return "\n".join(lines)
