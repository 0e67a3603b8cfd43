"""Seeding and RNG state capture, so that a resumed run continues the same random stream."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh generator for data order (saved separately)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed + 1)
    return gen


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every RNG state a training loop touches, in a ``weights_only``-loadable form."""
    np_state = np.random.get_state()
    return {
        "python": list(_tuple_to_lists(random.getstate())),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    random.setstate(_lists_to_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    for key, gen in (generators or {}).items():
        gen.set_state(state["generators"][key])


def _tuple_to_lists(obj: Any) -> Any:
    return [_tuple_to_lists(x) for x in obj] if isinstance(obj, tuple) else obj


def _lists_to_tuple(obj: Any) -> Any:
    return tuple(_lists_to_tuple(x) for x in obj) if isinstance(obj, list) else obj
