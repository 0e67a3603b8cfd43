import re
from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from paperzoo.core import config as cfglib
from paperzoo.core.config import ConfigError


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    """Learning rate."""
    epochs: int = 3
    """How many epochs."""
    flag: bool = False
    """A switch."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""
    dims: tuple[int, ...] = (1, 2)
    """Layer sizes."""
    name: Optional[str] = None
    """An optional name."""

    def __post_init__(self):
        cfglib.check(self.epochs >= 1, "Cfg", "epochs", "must be >= 1")


def test_field_docs_are_read_from_the_source():
    assert cfglib.field_docs(Cfg) == {"lr": "Learning rate.", "epochs": "How many epochs.", "flag": "A switch.",
                                      "mode": "Which mode.", "dims": "Layer sizes.", "name": "An optional name."}


def test_overrides_are_typed():
    cfg = cfglib.from_dict(Cfg, cfglib.parse_overrides(
        ["lr=1e-3", "epochs=5", "flag=true", "mode=b", "dims=3,4", "name=none"]))
    assert cfg == Cfg(lr=1e-3, epochs=5, flag=True, mode="b", dims=(3, 4), name=None)


@pytest.mark.parametrize("pairs, message", [
    (["nope=1"], "no field(s) 'nope'"),
    (["epochs=1.5"], "Cfg.epochs: expected an integer"),
    (["flag=maybe"], "Cfg.flag: expected true/false"),
    (["mode=c"], "Cfg.mode: 'c' is not one of"),
    (["lr=fast"], "Cfg.lr: expected a number"),
    (["epochs=0"], "Cfg.epochs: must be >= 1"),
])
def test_bad_values_name_the_field(pairs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfglib.from_dict(Cfg, cfglib.parse_overrides(pairs))


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        cfglib.parse_overrides(["lr"])


def test_round_trip_and_base():
    base = Cfg(lr=0.5)
    assert cfglib.from_dict(Cfg, {"epochs": 7}, base=base) == Cfg(lr=0.5, epochs=7)
    assert cfglib.from_dict(Cfg, cfglib.to_dict(base)) == base
    assert "Learning rate." in cfglib.describe(base)
