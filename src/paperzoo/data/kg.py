"""Knowledge-graph triples in the standard format: ``train.txt`` / ``valid.txt`` / ``test.txt`` with
one ``head<TAB>relation<TAB>tail`` per line (FB15k-237, WN18RR, UMLS, Kinship, Nations, Countries).

Besides loading, this module holds the index structures both training and evaluation need:
reciprocal triples and a CSR map from a query ``(head, relation)`` to all its known tails.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from paperzoo.data import catalog
from paperzoo.data.roots import locate

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


class TripleFormatError(ValueError):
    """A line of a triple file is malformed; the message names the file and line."""


@dataclass
class KGSplits:
    """A link-prediction dataset with integer ids. Triples are ``(n, 3)`` int64 ``(head, rel, tail)``."""

    name: str
    entities: list[str]
    relations: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    source: str = ""
    unseen: dict[str, int] = field(default_factory=dict)
    """Per split, how many triples mention an entity or relation absent from ``train``."""

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; splits: {', '.join(SPLITS)}")
        return getattr(self, name)

    def all_triples(self) -> torch.Tensor:
        return torch.cat([self.train, self.valid, self.test])

    def summary(self) -> str:
        unseen = ", ".join(f"{k}: {v}" for k, v in self.unseen.items() if v) or "none"
        return (f"{self.name}: {self.num_entities} entities, {self.num_relations} relations, "
                f"{len(self.train)}/{len(self.valid)}/{len(self.test)} train/valid/test triples "
                f"(triples with entities unseen in train: {unseen})")


FIELDS = ("head", "relation", "tail")


def _numbered_triples(path: Path) -> list[tuple[int, tuple[str, str, str]]]:
    """``(line number, triple)`` of every non-blank line of ``path`` (see :func:`read_triples`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TripleFormatError(f"{path}: cannot read the file ({exc.strerror or type(exc).__name__})") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark is not part of the first name
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise TripleFormatError(f"{path}:{lineno}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column "
                                f"{column}); save the file as UTF-8") from None
    out = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts]
        if len(parts) != 3:
            raise TripleFormatError(f"{path}:{lineno}: expected 'head<TAB>relation<TAB>tail', "
                                    f"got {len(parts)} field(s): {line[:120]!r}")
        if not all(parts):
            empty = [name for name, p in zip(FIELDS, parts, strict=True) if not p]
            raise TripleFormatError(f"{path}:{lineno}: expected 'head<TAB>relation<TAB>tail', the {empty[0]} "
                                    f"field is empty: {line[:120]!r}")
        out.append((lineno, (parts[0], parts[1], parts[2])))
    return out


def read_triples(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """Parse one triple file (UTF-8, one ``head<TAB>relation<TAB>tail`` per line; without tabs, fields
    split on whitespace). Blank lines are skipped; a leading byte order mark is ignored.

    Raises:
        TripleFormatError: (a ``ValueError``) naming ``file:line`` and what is wrong: a field count other
            than three, an empty field, bytes that are not UTF-8, or an unreadable file.
    """
    return [triple for _, triple in _numbered_triples(Path(path))]


def load_folder(folder: str | os.PathLike, name: str | None = None,
                unseen: Literal["keep", "drop", "error"] = "keep") -> KGSplits:
    """Load ``train/valid/test.txt`` from ``folder``.

    Args:
        unseen: what to do with valid/test triples whose entity or relation never occurs in train.
            ``keep`` (the official ConvE code's choice: ids over all splits; such entities keep their
            random initial embedding), ``drop`` (PyKEEN's choice), or ``error`` (naming the file, line
            and name of the first such triple). Their number is always logged and stored in
            ``KGSplits.unseen``.

    Raises:
        FileNotFoundError: a split file is missing.
        TripleFormatError: a malformed line (``file:line``), an empty ``train.txt``, or, with
            ``unseen="error"``, an unseen entity or relation.
    """
    if unseen not in ("keep", "drop", "error"):
        raise ValueError(f"unseen must be 'keep', 'drop' or 'error', got {unseen!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder (expected train.txt, valid.txt, test.txt in it)")
    missing = [s for s in SPLITS if not (folder / f"{s}.txt").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a triple dataset: missing "
                                f"{', '.join(f'{s}.txt' for s in missing)}")
    numbered = {s: _numbered_triples(folder / f"{s}.txt") for s in SPLITS}
    raw = {s: [tr for _, tr in rows] for s, rows in numbered.items()}
    if not raw["train"]:
        raise TripleFormatError(f"{folder / 'train.txt'}: no triples")
    train_ents = {x for h, _, t in raw["train"] for x in (h, t)}
    train_rels = {r for _, r, _ in raw["train"]}

    def first_unseen(triple: tuple[str, str, str]) -> str | None:
        for kind, value, known in (("head entity", triple[0], train_ents), ("relation", triple[1], train_rels),
                                   ("tail entity", triple[2], train_ents)):
            if value not in known:
                return f"{kind} {value!r}"
        return None

    counts = {}
    for s in ("valid", "test"):
        bad = [(lineno, tr, what) for lineno, tr in numbered[s] if (what := first_unseen(tr)) is not None]
        counts[s] = len(bad)
        if bad:
            lineno, _, what = bad[0]
            msg = (f"{folder / (s + '.txt')}:{lineno}: {what} is not in train.txt ({len(bad)} of {len(raw[s])} "
                   f"triples of this file mention an entity or relation not in train.txt)")
            if unseen == "error":
                raise TripleFormatError(msg)
            if unseen == "drop":
                bad_set = {tr for _, tr, _ in bad}
                raw[s] = [tr for tr in raw[s] if tr not in bad_set]
                log.warning("%s; dropped", msg)
            else:
                log.warning("%s; kept (ids over all splits, as the official ConvE code)", msg)
    # ids: sorted names, so that ids do not depend on file order and match across tools
    ents = sorted({x for s in SPLITS for h, _, t in raw[s] for x in (h, t)})
    rels = sorted({r for s in SPLITS for _, r, _ in raw[s]})
    e_id = {e: i for i, e in enumerate(ents)}
    r_id = {r: i for i, r in enumerate(rels)}

    def encode(triples: list[tuple[str, str, str]]) -> torch.Tensor:
        if not triples:
            return torch.empty(0, 3, dtype=torch.long)
        return torch.tensor([(e_id[h], r_id[r], e_id[t]) for h, r, t in triples], dtype=torch.long)

    return KGSplits(name=name or folder.name, entities=ents, relations=rels, train=encode(raw["train"]),
                    valid=encode(raw["valid"]), test=encode(raw["test"]), source=str(folder),
                    unseen=counts)


def load(name: str, data_root: str | os.PathLike | None = None, **kwargs) -> KGSplits:
    """Load a named dataset (see :mod:`paperzoo.data.catalog`) or a folder path."""
    if name in catalog.DATASETS:
        folder = locate(catalog.get(name), data_root)
        return load_folder(folder, name=name, **kwargs)
    if Path(name).is_dir():
        return load_folder(name, **kwargs)
    raise KeyError(f"{name!r} is neither a known dataset ({', '.join(catalog.DATASETS)}) nor a folder")


# --------------------------------------------------------------------------------------------
# Index structures
# --------------------------------------------------------------------------------------------

def with_reciprocals(triples: torch.Tensor, num_relations: int) -> torch.Tensor:
    """Append ``(t, r + R, h)`` for every ``(h, r, t)``: head prediction becomes tail prediction."""
    inverse = torch.stack([triples[:, 2], triples[:, 1] + num_relations, triples[:, 0]], dim=1)
    return torch.cat([triples, inverse])


class QueryIndex:
    """CSR map from query ``(head, relation)`` to the sorted set of its known tails.

    Built once with sorting (no Python loop over triples); looked up for a batch of queries with
    ``searchsorted``. Used for 1-N training targets and for filtering at evaluation.
    """

    def __init__(self, triples: torch.Tensor, num_relations: int):
        self.num_relations = num_relations
        # one int64 key per triple; a 1-D unique is a fast sort (unique(dim=0) is not)
        span = int(triples[:, 2].max()) + 1 if len(triples) else 1
        flat = torch.unique((triples[:, 0] * num_relations + triples[:, 1]) * span + triples[:, 2])
        keys, self.tails = flat // span, flat % span  # sorted by (head, relation), then tail
        self.keys, counts = torch.unique_consecutive(keys, return_counts=True)
        self.offsets = torch.zeros(len(self.keys) + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(counts, 0)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def queries(self) -> torch.Tensor:
        """``(Q, 2)`` all distinct ``(head, relation)`` queries."""
        return torch.stack([self.keys // self.num_relations, self.keys % self.num_relations], dim=1)

    def positions(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """Row of each query in this index, or -1 if it has no known tail."""
        keys = heads * self.num_relations + relations
        pos = torch.searchsorted(self.keys, keys).clamp_(max=max(len(self.keys) - 1, 0))
        found = self.keys[pos] == keys if len(self.keys) else torch.zeros_like(keys, dtype=torch.bool)
        return torch.where(found, pos, torch.full_like(pos, -1))

    def coordinates(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch_row, tail)`` of every known tail of the queries at ``positions`` (-1 = none)."""
        valid = positions >= 0
        safe = positions.clamp(min=0)
        starts = self.offsets[safe]
        counts = torch.where(valid, self.offsets[safe + 1] - starts, torch.zeros_like(starts))
        rows = torch.repeat_interleave(torch.arange(len(positions)), counts)
        first = torch.cumsum(counts, 0) - counts
        within = torch.arange(int(counts.sum())) - torch.repeat_interleave(first, counts)
        return rows, self.tails[torch.repeat_interleave(starts, counts) + within]

    def lookup(self, heads: torch.Tensor, relations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.coordinates(self.positions(heads, relations))
