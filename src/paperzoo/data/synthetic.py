"""Synthetic data with known structure, for tests and ``tiny`` presets (seconds, no files needed)."""
from __future__ import annotations

import torch

from paperzoo.data.kg import KGSplits


def planted_kg(num_entities: int = 60, num_base_relations: int = 3, facts_per_relation: int = 120,
               valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> KGSplits:
    """A KG whose facts follow planted rules, so a link predictor can beat chance by a wide margin.

    Entities are split into communities; each *base* relation links entities to entities of a
    fixed "next" community. Every base relation ``b`` comes with two derived relations:
    ``b_inv`` (exact inverse: ``(t, b_inv, h)`` iff ``(h, b, t)``) and ``b_sym`` (a symmetric
    relation on the same pairs). The leakage audit must therefore find ``b``/``b_inv`` as
    near-inverses, and a model can predict held-out facts from their planted partners.
    """
    if num_entities < 8:
        raise ValueError("planted_kg needs at least 8 entities")
    gen = torch.Generator().manual_seed(seed)
    num_comm = 4
    community = torch.arange(num_entities) % num_comm
    facts = set()
    for b in range(num_base_relations):
        shift = b % (num_comm - 1) + 1
        added = 0
        attempts = 0
        while added < facts_per_relation and attempts < facts_per_relation * 50:
            attempts += 1
            h = int(torch.randint(num_entities, (1,), generator=gen))
            target_comm = (int(community[h]) + shift) % num_comm
            members = torch.nonzero(community == target_comm).flatten()
            t = int(members[torch.randint(len(members), (1,), generator=gen)])
            if h == t or (h, 3 * b, t) in facts:
                continue
            facts.update({(h, 3 * b, t), (t, 3 * b + 1, h), (h, 3 * b + 2, t), (t, 3 * b + 2, h)})
            added += 1
    triples = torch.tensor(sorted(facts), dtype=torch.long)
    triples = triples[torch.randperm(len(triples), generator=gen)]
    n_valid = int(len(triples) * valid_fraction)
    n_test = int(len(triples) * test_fraction)
    test, valid, train = (triples[:n_test], triples[n_test:n_test + n_valid], triples[n_test + n_valid:])
    return KGSplits(name="synthetic", entities=[f"e{i}" for i in range(num_entities)],
                    relations=[f"b{b}{suffix}" for b in range(num_base_relations)
                               for suffix in ("", "_inv", "_sym")],
                    train=train, valid=valid, test=test, source=f"planted_kg(seed={seed})",
                    unseen={"valid": 0, "test": 0})


def write_kg(splits: KGSplits, folder) -> None:
    """Write ``splits`` in the standard triple format (for tests of loaders and the audit CLI)."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "valid", "test"):
        rows = splits.split(name).tolist()
        text = "".join(f"{splits.entities[h]}\t{splits.relations[r]}\t{splits.entities[t]}\n" for h, r, t in rows)
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
