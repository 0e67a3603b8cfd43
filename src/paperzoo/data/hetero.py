"""Heterogeneous (typed, optionally timed) graphs for HGT and friends: a framework-free container,
loaders for AMiner, ACM and IMDB, and a small synthetic temporal generator for ``tiny`` presets.

:class:`HeteroGraph` holds plain int64 tensors: node counts per type, edge indices per
``(src_type, relation, dst_type)`` with ids local to each type, optional node years, labels of one
target node type (``-1`` = unlabelled) and train/valid/test node indices. ``to_pyg()`` converts to
``torch_geometric.data.HeteroData`` (PyG is imported only there). Loaders keep ONE direction per
relation; call :meth:`HeteroGraph.add_reverse_edges` to add ``rev_<relation>`` types for message
passing in both directions.

No text features ship with any of these datasets (HetGNN's title/abstract embeddings, MAGNN's
bag-of-keywords and OpenHINE's features are not in the data root): models use learnable
per-node embeddings or structural features (degrees, one-hot types) and must say so. IMDB's plot
keywords are text, though: ``load_imdb(..., word_vectors=load_glove())`` turns them into movie and
keyword attributes (``HeteroGraph.node_features``), our stand-in for MAGNN's keyword bags.

Datasets (sizes measured on the shared data root)
-------------------------------------------------
``aminer`` (chuxuzhang/KDD2019_HetGNN, ``data/academic``)
    nodes: paper 21,044 / author 28,646 / venue 18.
    edges: (author, writes, paper) 69,308 from ``p_a_list_{train,test}.txt`` (one ``paper:authors``
    list per line; the train/test files partition the papers by year, 2006-2011 vs 2012-2015);
    (paper, cites, paper) 34,238 from ``p_p_cite_list_{train,test}.txt`` (``p_p_citation_list.txt``
    is a subset of their union; a citing paper is never older than the cited one);
    (paper, published_in, venue) 21,044 from ``p_v.txt``.
    time: paper years ``2005 + p_time`` = 2006..2015.
    labels: author, 4 classes from ``a_class_{train,test}.txt`` (``author,class``); 11,360 labelled.
    HetGNN does not name the classes here (its paper describes four research areas), so they are
    ``area0..area3``.
    split: the dataset's own: test = ``a_class_test`` (10,235); train = ``a_class_train`` minus a
    seeded stratified 20 % validation carve-out (900 train / 225 valid).
    The ``a_a_*``, ``a_p_cite_*`` and ``a_v_*`` files are HetGNN's link-prediction samples
    (with negatives) and derived lists; they are not read.
``acm`` (BUPT-GAMMA/OpenHINE, ``dataset/acm``)
    nodes: paper 4,019 / author 7,167 / subject 60.
    edges: (author, writes, paper) 13,407; (paper, has_subject, subject) 4,019. ``edge.txt`` lines are
    ``src<TAB>dst<TAB>type<TAB>weight`` with type-local ids and types ``p-a``, ``a-p``, ``p-s``,
    ``s-p`` (each relation is stored in both directions; they are merged and deduplicated).
    time: none.
    labels: paper, 3 classes from ``label.txt`` (``p<id><TAB>class``), all 4,019 labelled
    (1,993 / 965 / 1,061). The README names the areas Database, Wireless Communication and Data
    Mining but not which id is which, so the classes are ``class0..class2``.
    split: none ships; seeded stratified 60/20/20 (2,412 / 804 / 803).
``imdb`` (IMDB 5000, ``movie_metadata.csv`` as used by HAN/MAGNN)
    Rows: 5,043. Dropped, in this order: duplicate ``movie_imdb_link`` (124, first kept, as in later
    MAGNN preprocessing); no ``director_name`` or ``actor_1_name`` (MAGNN's rule; 109); genres with
    none of Action/Comedy/Drama (MAGNN's rule; 630); no ``title_year`` (our addition, HGT needs times;
    3). 4,177 movies remain. (MAGNN's rule alone, without dedup and year filter, keeps 4,278 movies
    and 2,081 directors: the counts MAGNN reports, which confirms the rule.)
    label rule (MAGNN): scan the ``|``-separated genres in order and take the first of Action (0),
    Comedy (1), Drama (2); the CSV lists genres alphabetically, so Action beats Comedy beats Drama.
    nodes: movie 4,177 / director 2,079 / actor 5,253 / keyword 2,668.
    edges: (director, directs, movie) 4,177; (actor, acts_in, movie) 12,527 (actor_1..3, deduplicated);
    (movie, has_keyword, keyword) 15,602. Keywords are whole ``plot_keywords`` phrases used by at least
    two kept movies (MAGNN used ``min_df=2`` word counts as features; here they are nodes).
    time: movie ``title_year`` 1916..2016.
    labels: movie, 1,094 action / 1,562 comedy / 1,521 drama, all labelled.
    split: MAGNN uses a random 400 / 400 / 3,478 split; our movie set differs (dedup, year filter),
    so we use a seeded stratified 60/20/20 (2,506 / 835 / 836).
``imdb`` with ``task="hgb"`` (HGB's IMDB node classification, Lv et al. 2021)
    The same CSV and the same dedup / director-actor / year rules, but movies with none of HGB's
    five genres stay in the graph unlabelled (4 rows without a year dropped).
    nodes: movie 4,806 / director 2,390 / actor 6,119 / keyword 7,970 (every plot-keyword phrase);
    HGB lists 4,932 / 2,393 / 6,124 / 7,971 (it keeps the 124 duplicate rows).
    labels: multi-label 0/1 over Action, Comedy, Drama, Romance, Thriller; 4,460 labelled
    (1,094 / 1,811 / 2,460 / 1,067 / 1,336), unlabelled rows are -1.
    movie attributes: binary bag of words of the plot keywords (words of >= 2 movies: 3,301).
    split: seeded random 24/6/70 of the labelled movies (1,070 / 268 / 3,122), HGB's ratios.

Split rule where none ships: per class, shuffle with ``torch.Generator().manual_seed(seed)`` and
take the first 60 % (rounded) for train, the next 20 % for valid, the rest for test.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from paperzoo.data import catalog
from paperzoo.data.roots import locate

log = logging.getLogger(__name__)

EdgeType = tuple[str, str, str]
SPLITS = ("train", "valid", "test")
REV = "rev_"


class HeteroFormatError(ValueError):
    """A line of a heterogeneous-graph file is malformed; the message names the file and line."""


# ----------------------------------------------------------------------------------- container
@dataclass
class HeteroGraph:
    """A heterogeneous graph with ids local to each node type.

    Attributes
    ----------
    name: dataset name.
    num_nodes: node count per node type.
    edges: ``(src_type, relation, dst_type) -> LongTensor (2, E)``; row 0 source ids, row 1 targets.
    node_time: optional per-type LongTensor of years (one per node of that type).
    labels: ``{"node_type": str, "y": LongTensor, "classes": list[str]}``. Single-label graphs
        have ``y`` of shape ``(num_nodes[node_type],)`` with ``-1`` marking unlabelled nodes;
        multi-label graphs (HGB's IMDB task) have a 0/1 matrix ``(num_nodes[node_type], C)`` with
        rows of ``-1`` marking unlabelled nodes. Empty dict when the graph has no labels.
    splits: ``{"train" | "valid" | "test": LongTensor}`` of target-type node indices.
    info: free-form notes (split rule, dropped rows, ...).
    node_features: optional per-type float tensors ``(num_nodes[type], d)`` of fixed node
        attributes (e.g. IMDB's word vectors of plot keywords); types without attributes are absent.
    """

    name: str
    num_nodes: dict[str, int]
    edges: dict[EdgeType, torch.Tensor]
    node_time: dict[str, torch.Tensor] = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    splits: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    node_features: dict[str, torch.Tensor] = field(default_factory=dict)

    # convenience views -------------------------------------------------------------------
    @property
    def node_types(self) -> list[str]:
        return list(self.num_nodes)

    @property
    def edge_types(self) -> list[EdgeType]:
        return list(self.edges)

    @property
    def target(self) -> str | None:
        return self.labels.get("node_type")

    @property
    def y(self) -> torch.Tensor | None:
        return self.labels.get("y")

    @property
    def classes(self) -> list[str]:
        return list(self.labels.get("classes", []))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def multilabel(self) -> bool:
        """True when a node may carry several classes at once (``y`` is a 0/1 matrix)."""
        y = self.y
        return y is not None and y.dim() == 2

    def labelled(self) -> torch.Tensor:
        """Boolean mask over the target type: which nodes carry labels."""
        y = self.y
        return (y >= 0).all(1) if y.dim() == 2 else y >= 0

    def num_edges(self, edge_type: EdgeType | None = None) -> int:
        if edge_type is not None:
            return int(self.edges[edge_type].shape[1])
        return sum(int(e.shape[1]) for e in self.edges.values())

    def summary(self) -> str:
        lines = [f"{self.name}: {sum(self.num_nodes.values())} nodes, {self.num_edges()} edges"]
        for nt, n in self.num_nodes.items():
            t = self.node_time.get(nt)
            years = f", years {int(t.min())}..{int(t.max())}" if t is not None and t.numel() else ""
            x = self.node_features.get(nt)
            attrs = f", {x.size(1)} attributes" if x is not None else ""
            lines.append(f"  node {nt}: {n}{years}{attrs}")
        for et, e in self.edges.items():
            lines.append(f"  edge {et[0]} -{et[1]}-> {et[2]}: {e.shape[1]}")
        if self.labels:
            y, known = self.labels["y"], self.labelled()
            counts = (y[known].sum(0) if self.multilabel
                      else torch.bincount(y[known], minlength=self.num_classes)).tolist()
            kind = "multi-label, " if self.multilabel else ""
            lines.append(f"  labels on {self.target}: {int(known.sum())} labelled, {kind}classes "
                         + ", ".join(f"{c}={n}" for c, n in zip(self.classes, counts)))
        if self.splits:
            lines.append("  splits: " + " / ".join(f"{k} {len(v)}" for k, v in self.splits.items()))
        return "\n".join(lines)

    # transforms --------------------------------------------------------------------------
    def add_reverse_edges(self) -> HeteroGraph:
        """A new graph with ``(dst, rev_<rel>, src)`` added for every edge type not already reversed.

        Self-relations (``paper -cites-> paper``) get a reverse type too (``rev_cites`` = cited by),
        so direction stays distinguishable. Tensors are shared with ``self``, not copied.
        """
        edges = dict(self.edges)
        for (s, r, d), e in self.edges.items():
            if r.startswith(REV):
                continue
            key = (d, REV + r, s)
            if key in self.edges:
                continue
            edges[key] = e.flip(0)
        return HeteroGraph(self.name, dict(self.num_nodes), edges, dict(self.node_time),
                           dict(self.labels), dict(self.splits), dict(self.info), dict(self.node_features))

    def to_pyg(self):
        """A ``torch_geometric.data.HeteroData`` with ``num_nodes``, ``edge_index``, ``time`` (years),
        ``y`` and ``train_mask``/``val_mask``/``test_mask`` on the target type."""
        try:
            from torch_geometric.data import HeteroData
        except ImportError as e:
            raise ImportError("HeteroGraph.to_pyg() needs PyTorch Geometric: "
                              "pip install torch_geometric (or paperzoo's hgt extra)") from e
        data = HeteroData()
        for nt, n in self.num_nodes.items():
            data[nt].num_nodes = n
            if nt in self.node_time:
                data[nt].time = self.node_time[nt]
            if nt in self.node_features:
                data[nt].x = self.node_features[nt]
        for et, e in self.edges.items():
            data[et].edge_index = e
        if self.labels:
            t = self.target
            data[t].y = self.labels["y"]
            for split, attr in zip(SPLITS, ("train_mask", "val_mask", "test_mask")):
                if split in self.splits:
                    mask = torch.zeros(self.num_nodes[t], dtype=torch.bool)
                    mask[self.splits[split]] = True
                    data[t][attr] = mask
        return data

    # checks ------------------------------------------------------------------------------
    def validate(self) -> HeteroGraph:
        """Check shapes, dtypes and index ranges; raise ValueError naming the offending part."""
        where = f"HeteroGraph {self.name!r}"
        for nt, n in self.num_nodes.items():
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"{where}: num_nodes[{nt!r}] must be a non-negative int, got {n!r}")
        for et, e in self.edges.items():
            if not (isinstance(et, tuple) and len(et) == 3):
                raise ValueError(f"{where}: edge type {et!r} is not a (src, relation, dst) tuple")
            s, _, d = et
            for nt in (s, d):
                if nt not in self.num_nodes:
                    raise ValueError(f"{where}: edge type {et} uses unknown node type {nt!r}")
            if not isinstance(e, torch.Tensor) or e.dim() != 2 or e.shape[0] != 2:
                shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
                raise ValueError(f"{where}: edges[{et}] must be a (2, E) tensor, got {shape}")
            if e.dtype != torch.long:
                raise ValueError(f"{where}: edges[{et}] must be int64, got {e.dtype}")
            for row, nt in ((0, s), (1, d)):
                ids = e[row]
                if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_nodes[nt]):
                    bad = int(((ids < 0) | (ids >= self.num_nodes[nt])).nonzero()[0, 0])
                    raise ValueError(f"{where}: edges[{et}] {'source' if row == 0 else 'target'} id "
                                     f"{int(ids[bad])} at column {bad} is outside "
                                     f"[0, {self.num_nodes[nt]}) for node type {nt!r}")
        for nt, t in self.node_time.items():
            if nt not in self.num_nodes:
                raise ValueError(f"{where}: node_time for unknown node type {nt!r}")
            if t.shape != (self.num_nodes[nt],):
                raise ValueError(f"{where}: node_time[{nt!r}] has shape {tuple(t.shape)}, "
                                 f"expected ({self.num_nodes[nt]},)")
        for nt, x in self.node_features.items():
            if nt not in self.num_nodes:
                raise ValueError(f"{where}: node_features for unknown node type {nt!r}")
            if x.dim() != 2 or x.size(0) != self.num_nodes[nt] or not x.is_floating_point():
                raise ValueError(f"{where}: node_features[{nt!r}] must be a float ({self.num_nodes[nt]}, d) "
                                 f"tensor, got {x.dtype} {tuple(x.shape)}")
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{where}: node_features[{nt!r}] has non-finite values")
        if self.labels:
            for key in ("node_type", "y", "classes"):
                if key not in self.labels:
                    raise ValueError(f"{where}: labels lacks {key!r}")
            t, y, c = self.target, self.labels["y"], len(self.classes)
            if t not in self.num_nodes:
                raise ValueError(f"{where}: label node type {t!r} is not a node type")
            if y.dtype != torch.long:
                raise ValueError(f"{where}: labels y must be int64, got {y.dtype}")
            if y.dim() == 2:
                if y.shape != (self.num_nodes[t], c):
                    raise ValueError(f"{where}: multi-label y has shape {tuple(y.shape)}, "
                                     f"expected ({self.num_nodes[t]}, {c})")
                rows_ok = ((y == 0) | (y == 1)).all(1) | (y == -1).all(1)
                if not bool(rows_ok.all()):
                    bad = int((~rows_ok).nonzero()[0, 0])
                    raise ValueError(f"{where}: multi-label y row {bad} must be 0/1 (or all -1 for "
                                     f"an unlabelled node), got {y[bad].tolist()}")
            elif y.shape != (self.num_nodes[t],):
                raise ValueError(f"{where}: labels y has shape {tuple(y.shape)}, "
                                 f"expected ({self.num_nodes[t]},) or ({self.num_nodes[t]}, {c})")
            elif y.numel() and (int(y.min()) < -1 or int(y.max()) >= c):
                raise ValueError(f"{where}: labels y must lie in [-1, {c}), "
                                 f"got range {int(y.min())}..{int(y.max())}")
            known = self.labelled()
            seen: dict[int, str] = {}
            for split, idx in self.splits.items():
                if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_nodes[t]):
                    raise ValueError(f"{where}: split {split!r} has indices outside "
                                     f"[0, {self.num_nodes[t]})")
                if idx.numel() and not bool(known[idx].all()):
                    raise ValueError(f"{where}: split {split!r} contains unlabelled nodes")
                for i in idx.tolist():
                    if i in seen:
                        raise ValueError(f"{where}: node {i} is in both {seen[i]!r} and {split!r}")
                    seen[i] = split
        elif self.splits:
            raise ValueError(f"{where}: splits given without labels")
        return self


# ------------------------------------------------------------------------------------ helpers
def _edge_tensor(pairs) -> torch.Tensor:
    """Sorted, deduplicated (2, E) int64 tensor from an iterable of (src, dst) pairs."""
    pairs = sorted(set(pairs))
    if not pairs:
        return torch.empty(2, 0, dtype=torch.long)
    return torch.tensor(pairs, dtype=torch.long).t().contiguous()


def _int(tok: str, path: Path, lineno: int, line: str, what: str) -> int:
    try:
        return int(tok.strip())
    except ValueError:
        raise HeteroFormatError(f"{path}:{lineno}: {what} {tok.strip()!r} is not an integer "
                                f"in {line[:120]!r}") from None


def _lines(path: Path):
    """(lineno, stripped line) for every non-blank line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line


def read_id_lists(path: str | os.PathLike) -> dict[int, list[int]]:
    """HetGNN adjacency lists: ``id:id,id,...`` per line (a trailing comma is allowed)."""
    path = Path(path)
    out: dict[int, list[int]] = {}
    for lineno, line in _lines(path):
        head, sep, rest = line.partition(":")
        if not sep:
            raise HeteroFormatError(f"{path}:{lineno}: expected 'id:id,id,...', got {line[:120]!r}")
        key = _int(head, path, lineno, line, "id")
        toks = [t for t in rest.split(",") if t.strip()]
        if not toks:
            raise HeteroFormatError(f"{path}:{lineno}: empty neighbour list in {line[:120]!r}")
        out.setdefault(key, []).extend(_int(t, path, lineno, line, "neighbour id") for t in toks)
    return out


def read_pairs(path: str | os.PathLike, sep: str | None = None) -> list[tuple[int, int]]:
    """Two integers per line, separated by ``sep`` (``None``: any whitespace)."""
    path = Path(path)
    out = []
    for lineno, line in _lines(path):
        parts = line.split(sep)
        if len(parts) != 2:
            raise HeteroFormatError(f"{path}:{lineno}: expected 2 fields separated by "
                                    f"{sep or 'whitespace'!r}, got {len(parts)}: {line[:120]!r}")
        out.append((_int(parts[0], path, lineno, line, "field 1"),
                    _int(parts[1], path, lineno, line, "field 2")))
    return out


def _shuffle_and_cut(members: torch.Tensor, fractions, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffle ``members`` with ``gen`` and cut them into ``len(fractions)`` consecutive parts (each
    ``round(f * n)`` long, the last one takes the rest)."""
    members = members[torch.randperm(len(members), generator=gen)]
    parts, start = [], 0
    for k, f in enumerate(fractions):
        stop = len(members) if k == len(fractions) - 1 else start + int(round(f * len(members)))
        parts.append(members[start:stop])
        start = stop
    return parts


def stratified_split(y: torch.Tensor, fractions=(0.6, 0.2, 0.2), seed: int = 0,
                     candidates: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per class, shuffle (seeded) and cut into ``len(fractions)`` parts named train/valid/test.

    ``candidates`` restricts the split to those node indices (default: all labelled nodes).
    """
    gen = torch.Generator().manual_seed(seed)
    idx = (y >= 0).nonzero().flatten() if candidates is None else candidates
    names = SPLITS if len(fractions) == 3 else SPLITS[:len(fractions)]
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for c in torch.unique(y[idx]).tolist():
        for n, part in zip(names, _shuffle_and_cut(idx[y[idx] == c], fractions, gen)):
            parts[n].append(part)
    return {n: torch.cat(p).sort().values if p else torch.empty(0, dtype=torch.long)
            for n, p in parts.items()}


def random_split(candidates: torch.Tensor, fractions=(0.24, 0.06, 0.70), seed: int = 0
                 ) -> dict[str, torch.Tensor]:
    """Shuffle ``candidates`` (seeded) and cut them into train/valid/test by ``fractions`` (for
    multi-label targets, where a per-class stratification is not defined)."""
    parts = _shuffle_and_cut(candidates, fractions, torch.Generator().manual_seed(seed))
    return {n: part.sort().values for n, part in zip(SPLITS, parts)}


def _max_id(pairs, col) -> int:
    return max((p[col] for p in pairs), default=-1)


# ------------------------------------------------------------------------------------ loaders
def load_aminer(folder: str | os.PathLike, valid_fraction: float = 0.2, seed: int = 0) -> HeteroGraph:
    """AMiner from HetGNN's ``data/academic`` files (see the module docstring)."""
    folder = Path(folder)
    writes: set[tuple[int, int]] = set()
    for f in ("p_a_list_train.txt", "p_a_list_test.txt"):
        for p, authors in read_id_lists(folder / f).items():
            writes.update((a, p) for a in authors)
    cites: set[tuple[int, int]] = set()
    for f in ("p_p_cite_list_train.txt", "p_p_cite_list_test.txt"):
        for p, cited in read_id_lists(folder / f).items():
            cites.update((p, q) for q in cited)
    venue = read_pairs(folder / "p_v.txt", sep=",")
    ptime = read_pairs(folder / "p_time.txt", sep=None)

    n_paper = max(_max_id(ptime, 0), _max_id(venue, 0), _max_id(writes, 1),
                  _max_id(cites, 0), _max_id(cites, 1)) + 1
    n_author = _max_id(writes, 0) + 1
    n_venue = _max_id(venue, 1) + 1
    years = torch.full((n_paper,), -1, dtype=torch.long)
    for p, t in ptime:
        years[p] = 2005 + t
    if bool((years < 0).any()):
        missing = (years < 0).nonzero().flatten()[:5].tolist()
        raise HeteroFormatError(f"{folder / 'p_time.txt'}: no year for papers {missing}...")

    y = torch.full((n_author,), -1, dtype=torch.long)
    official: dict[str, list[int]] = {}
    for split, f in (("train", "a_class_train.txt"), ("test", "a_class_test.txt")):
        rows = read_pairs(folder / f, sep=",")
        for a, c in rows:
            if not 0 <= a < n_author:
                raise HeteroFormatError(f"{folder / f}: author {a} is not in the graph "
                                        f"(authors 0..{n_author - 1})")
            if c < 0:
                raise HeteroFormatError(f"{folder / f}: negative class {c} for author {a}")
            y[a] = c
        official[split] = sorted({a for a, _ in rows})
    if set(official["train"]) & set(official["test"]):
        raise HeteroFormatError(f"{folder}: a_class_train and a_class_test share authors")
    num_classes = int(y.max()) + 1
    train = torch.tensor(official["train"], dtype=torch.long)
    carve = stratified_split(y, (1 - valid_fraction, valid_fraction), seed=seed, candidates=train)
    splits = {"train": carve["train"], "valid": carve["valid"],
              "test": torch.tensor(official["test"], dtype=torch.long)}
    g = HeteroGraph(
        name="aminer",
        num_nodes={"paper": n_paper, "author": n_author, "venue": n_venue},
        edges={("author", "writes", "paper"): _edge_tensor(writes),
               ("paper", "cites", "paper"): _edge_tensor(cites),
               ("paper", "published_in", "venue"): _edge_tensor(venue)},
        node_time={"paper": years},
        labels={"node_type": "author", "y": y, "classes": [f"area{i}" for i in range(num_classes)]},
        splits=splits,
        info={"source": str(folder),
              "split": f"HetGNN a_class_train/a_class_test; valid = seeded ({seed}) stratified "
                       f"{valid_fraction:.0%} of a_class_train"},
    )
    return g.validate()


_ACM_TYPES = {"p-a": ("author", "writes", "paper", True), "a-p": ("author", "writes", "paper", False),
              "p-s": ("paper", "has_subject", "subject", False),
              "s-p": ("paper", "has_subject", "subject", True)}


def load_acm(folder: str | os.PathLike, seed: int = 0) -> HeteroGraph:
    """ACM from OpenHINE's ``edge.txt`` + ``label.txt`` (see the module docstring)."""
    folder = Path(folder)
    path = folder / "edge.txt"
    rel: dict[EdgeType, set[tuple[int, int]]] = {}
    for lineno, line in _lines(path):
        parts = line.split()
        if len(parts) != 4:
            raise HeteroFormatError(f"{path}:{lineno}: expected 'src dst type weight', "
                                    f"got {len(parts)} field(s): {line[:120]!r}")
        src = _int(parts[0], path, lineno, line, "source id")
        dst = _int(parts[1], path, lineno, line, "target id")
        if parts[2] not in _ACM_TYPES:
            raise HeteroFormatError(f"{path}:{lineno}: unknown edge type {parts[2]!r} "
                                    f"(known: {', '.join(_ACM_TYPES)})")
        try:
            float(parts[3])
        except ValueError:
            raise HeteroFormatError(f"{path}:{lineno}: weight {parts[3]!r} is not a number") from None
        if src < 0 or dst < 0:
            raise HeteroFormatError(f"{path}:{lineno}: negative id in {line[:120]!r}")
        s, r, d, flip = _ACM_TYPES[parts[2]]
        rel.setdefault((s, r, d), set()).add((dst, src) if flip else (src, dst))

    lpath = folder / "label.txt"
    labels: dict[int, int] = {}
    for lineno, line in _lines(lpath):
        parts = line.split()
        if len(parts) != 2 or not parts[0].startswith("p"):
            raise HeteroFormatError(f"{lpath}:{lineno}: expected 'p<id><TAB>class', got {line[:120]!r}")
        p = _int(parts[0][1:], lpath, lineno, line, "paper id")
        c = _int(parts[1], lpath, lineno, line, "class")
        if c < 0:
            raise HeteroFormatError(f"{lpath}:{lineno}: negative class {c}")
        labels[p] = c

    writes = rel.get(("author", "writes", "paper"), set())
    subj = rel.get(("paper", "has_subject", "subject"), set())
    n_paper = max(_max_id(writes, 1), _max_id(subj, 0), max(labels, default=-1)) + 1
    num_nodes = {"paper": n_paper, "author": _max_id(writes, 0) + 1, "subject": _max_id(subj, 1) + 1}
    y = torch.full((n_paper,), -1, dtype=torch.long)
    for p, c in labels.items():
        y[p] = c
    g = HeteroGraph(
        name="acm", num_nodes=num_nodes,
        edges={("author", "writes", "paper"): _edge_tensor(writes),
               ("paper", "has_subject", "subject"): _edge_tensor(subj)},
        labels={"node_type": "paper", "y": y,
                "classes": [f"class{i}" for i in range(int(y.max()) + 1)]},
        splits=stratified_split(y, seed=seed),
        info={"source": str(folder), "split": f"seeded ({seed}) stratified 60/20/20"},
    )
    return g.validate()


IMDB_GENRES = ("Action", "Comedy", "Drama")
HGB_IMDB_GENRES = ("Action", "Comedy", "Drama", "Romance", "Thriller")
IMDB_TASKS = ("magnn", "hgb")


def imdb_label(genres: str) -> int:
    """MAGNN's rule: the first of Action/Comedy/Drama among the ``|``-separated genres, else -1."""
    for genre in genres.split("|"):
        genre = genre.strip()
        if genre in IMDB_GENRES:
            return IMDB_GENRES.index(genre)
    return -1


def imdb_multilabel(genres: str) -> list[int]:
    """HGB's labels: a 0/1 flag for each of Action, Comedy, Drama, Romance, Thriller."""
    present = {genre.strip() for genre in genres.split("|")}
    return [int(genre in present) for genre in HGB_IMDB_GENRES]


def keyword_bag_of_words(keyword_lists: list[list[str]], min_movies: int = 2):
    """Binary bag of words of each movie's plot keywords: the vocabulary is every lower-cased word
    (split on whitespace) that occurs in the keywords of at least ``min_movies`` movies (MAGNN's
    ``CountVectorizer(min_df=2)`` on the keyword text). Returns ``(features (M, V), vocabulary)``."""
    words = [{w for k in kws for w in k.lower().split()} for kws in keyword_lists]
    df: dict[str, int] = {}
    for ws in words:
        for w in ws:
            df[w] = df.get(w, 0) + 1
    vocab = sorted(w for w, n in df.items() if n >= min_movies)
    col = {w: i for i, w in enumerate(vocab)}
    x = torch.zeros(len(words), len(vocab))
    for i, ws in enumerate(words):
        idx = [col[w] for w in ws if w in col]
        if idx:
            x[i, idx] = 1.0
    return x, vocab


def load_imdb(folder: str | os.PathLike, min_keyword_movies: int | None = None, seed: int = 0,
              word_vectors=None, task: str = "magnn") -> HeteroGraph:
    """IMDB from ``movie_metadata.csv``: movie/director/actor/keyword nodes (see the module docstring).

    ``task="magnn"`` (default): single-label Action/Comedy/Drama (MAGNN's rule), keyword nodes for
    phrases of at least ``min_keyword_movies`` (default 2) movies, stratified 60/20/20 split.
    ``task="hgb"``: HGB's task. Multi-label over Action/Comedy/Drama/Romance/Thriller (movies
    with none of them stay in the graph, unlabelled), every keyword phrase is a node (``min_keyword_movies``
    default 1, as HGB's 7,971 keywords), movies carry a binary bag of words of their plot
    keywords as attributes (:func:`keyword_bag_of_words`, HGB's movie features), and a seeded
    random 24/6/70 split (HGB's ratios).

    ``word_vectors`` (a :class:`paperzoo.data.text.WordVectors`, e.g. GloVe): also attach text
    attributes, the counterpart of MAGNN's and HGB's plot-keyword features. A movie gets the mean
    vector of the words of ALL its ``plot_keywords`` (also those too rare to be keyword nodes), a
    keyword node the mean vector of its phrase; each gets one more column, 1 if any word was in
    the vocabulary (else the vector is zero). Directors and actors get none."""
    if task not in IMDB_TASKS:
        raise ValueError(f"unknown IMDB task {task!r}; known: {', '.join(IMDB_TASKS)}")
    hgb = task == "hgb"
    if min_keyword_movies is None:
        min_keyword_movies = 1 if hgb else 2
    path = Path(folder) / "movie_metadata.csv"
    need = ("director_name", "actor_1_name", "actor_2_name", "actor_3_name", "genres",
            "plot_keywords", "title_year", "movie_imdb_link", "movie_title")
    dropped = {"duplicate": 0, "no_director_or_actor": 0, "no_label": 0, "no_year": 0}
    movies = []
    seen_links: set[str] = set()
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise HeteroFormatError(f"{path}: empty file")
        header = [h.strip() for h in header]
        missing = [c for c in need if c not in header]
        if missing:
            raise HeteroFormatError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
        col = {c: header.index(c) for c in need}
        for row in reader:
            lineno = reader.line_num
            if not any(f.strip() for f in row):
                continue
            if len(row) != len(header):
                raise HeteroFormatError(f"{path}:{lineno}: expected {len(header)} fields, "
                                        f"got {len(row)}")
            get = {c: row[i].strip() for c, i in col.items()}
            link = get["movie_imdb_link"] or f"row{lineno}"
            if link in seen_links:
                dropped["duplicate"] += 1
                continue
            seen_links.add(link)
            if not get["director_name"] or not get["actor_1_name"]:
                dropped["no_director_or_actor"] += 1
                continue
            if hgb:  # movies with none of the five genres stay in the graph, unlabelled
                label = imdb_multilabel(get["genres"])
                label = label if any(label) else [-1] * len(label)
            else:
                label = imdb_label(get["genres"])
                if label < 0:
                    dropped["no_label"] += 1
                    continue
            if not get["title_year"]:
                dropped["no_year"] += 1
                continue
            try:
                year = float(get["title_year"])
            except ValueError:
                raise HeteroFormatError(f"{path}:{lineno}: title_year {get['title_year']!r} "
                                        f"is not a number") from None
            if not math.isfinite(year) or year != int(year):
                raise HeteroFormatError(f"{path}:{lineno}: title_year {get['title_year']!r} "
                                        f"is not a whole year")
            actors = [get[c] for c in ("actor_1_name", "actor_2_name", "actor_3_name") if get[c]]
            keywords = sorted({k.strip() for k in get["plot_keywords"].split("|") if k.strip()})
            movies.append((get["movie_title"], int(year), label, get["director_name"], actors, keywords))

    directors = sorted({m[3] for m in movies})
    actors = sorted({a for m in movies for a in m[4]})
    kw_count: dict[str, int] = {}
    for m in movies:
        for k in m[5]:
            kw_count[k] = kw_count.get(k, 0) + 1
    keywords = sorted(k for k, n in kw_count.items() if n >= min_keyword_movies)
    did = {d: i for i, d in enumerate(directors)}
    aid = {a: i for i, a in enumerate(actors)}
    kid = {k: i for i, k in enumerate(keywords)}
    directs, acts, has_kw = set(), set(), set()
    for i, (_, _, _, d, acs, kws) in enumerate(movies):
        directs.add((did[d], i))
        acts.update((aid[a], i) for a in acs)
        has_kw.update((i, kid[k]) for k in kws if k in kid)
    log.info("imdb: kept %d movies, dropped %s", len(movies), dropped)
    features = {}
    if hgb:
        features["movie"], vocab = keyword_bag_of_words([m[5] for m in movies])
        log.info("imdb: movie bag of words over %d keyword words", len(vocab))
    if word_vectors is not None:
        for nt, texts in (("movie", [m[5] for m in movies]), ("keyword", keywords)):
            vec, known = word_vectors.embed(texts)
            vec = torch.cat([vec, (known > 0).float().unsqueeze(1)], 1)
            features[nt] = torch.cat([features[nt], vec], 1) if nt in features else vec
            log.info("imdb: %s text attributes, %d of %d without a known word", nt,
                     int((known == 0).sum()), len(texts))
    y = torch.tensor([m[2] for m in movies], dtype=torch.long)
    g = HeteroGraph(
        name="imdb",
        num_nodes={"movie": len(movies), "director": len(directors), "actor": len(actors),
                   "keyword": len(keywords)},
        edges={("director", "directs", "movie"): _edge_tensor(directs),
               ("actor", "acts_in", "movie"): _edge_tensor(acts),
               ("movie", "has_keyword", "keyword"): _edge_tensor(has_kw)},
        node_time={"movie": torch.tensor([m[1] for m in movies], dtype=torch.long)},
        labels={"node_type": "movie", "y": y,
                "classes": [genre.lower() for genre in (HGB_IMDB_GENRES if hgb else IMDB_GENRES)]},
        splits=(random_split((y >= 0).all(1).nonzero().flatten(), seed=seed) if hgb
                else stratified_split(y, seed=seed)),
        info={"source": str(path), "task": task, "dropped": dropped, "titles": [m[0] for m in movies],
              "directors": directors, "actors": actors, "keywords": keywords,
              "split": f"seeded ({seed}) random 24/6/70" if hgb else f"seeded ({seed}) stratified 60/20/20",
              **({"text_attributes": f"mean word vectors of plot keywords ({word_vectors.source})"}
                 if word_vectors is not None else {})},
        node_features=features,
    )
    return g.validate()


LOADERS = {"acm": load_acm, "aminer": load_aminer, "imdb": load_imdb}


def load(name: str, data_root: str | os.PathLike | None = None, **kwargs) -> HeteroGraph:
    """Find dataset ``name`` (acm, aminer, imdb) under the data roots and load it."""
    if name not in LOADERS:
        raise KeyError(f"unknown heterogeneous dataset {name!r}; known: {', '.join(LOADERS)}")
    folder = locate(catalog.get(name), data_root)
    return LOADERS[name](folder, **kwargs)


# ---------------------------------------------------------------------------------- synthetic
def synthetic_temporal(num_papers: int = 300, num_authors: int | None = None, num_venues: int = 6,
                       num_classes: int = 3, years: tuple[int, int] = (2006, 2015),
                       cites_per_paper: int = 3, authors_per_paper: int = 2, noise: float = 0.05,
                       seed: int = 0) -> HeteroGraph:
    """A small academic graph whose paper labels need structure AND time.

    Nodes: paper, author, venue. Edges: (author, writes, paper), (paper, cites, paper) toward
    older-or-same-year papers, (paper, published_in, venue). Each venue's topic shifts halfway
    through the period: topic(v, year) = (v + [year >= middle]) mod C, and a paper's label is its
    venue's topic in its year (flipped to a random class with probability ``noise``). So the
    venue alone is ambiguous (two topics, one per era) and only venue + year resolves it. Authors
    have a home topic and mostly write papers of it; citations mostly go to papers of the same
    label, so neighbourhoods also carry signal. Deterministic under ``seed``. Split: seeded
    stratified 60/20/20 of the papers.
    """
    if num_papers < 2 * num_classes or num_venues < 1 or num_classes < 2:
        raise ValueError("synthetic_temporal needs num_papers >= 2*num_classes, num_venues >= 1, "
                         "num_classes >= 2")
    gen = torch.Generator().manual_seed(seed)
    num_authors = num_authors or max(num_classes, num_papers // 2)
    y0, y1 = years
    middle = (y0 + y1 + 1) // 2
    paper_year = torch.randint(y0, y1 + 1, (num_papers,), generator=gen).sort().values
    venue = torch.randint(0, num_venues, (num_papers,), generator=gen)
    label = (venue + (paper_year >= middle).long()) % num_classes
    flip = torch.rand(num_papers, generator=gen) < noise
    label = torch.where(flip, torch.randint(0, num_classes, (num_papers,), generator=gen), label)

    author_topic = torch.arange(num_authors) % num_classes
    by_topic = [(author_topic == c).nonzero().flatten() for c in range(num_classes)]
    writes, cites = set(), set()
    for p in range(num_papers):
        c = int(label[p])
        for _ in range(authors_per_paper):
            pool = by_topic[c] if float(torch.rand(1, generator=gen)) < 0.8 else torch.arange(num_authors)
            writes.add((int(pool[torch.randint(0, len(pool), (1,), generator=gen)]), p))
        older = (paper_year[:p] <= paper_year[p]).nonzero().flatten()  # papers are sorted by year
        if len(older) == 0:
            continue
        same = older[label[older] == c]
        for _ in range(cites_per_paper):
            pool = same if len(same) and float(torch.rand(1, generator=gen)) < 0.7 else older
            cites.add((p, int(pool[torch.randint(0, len(pool), (1,), generator=gen)])))
    g = HeteroGraph(
        name=f"synthetic_temporal(n={num_papers},seed={seed})",
        num_nodes={"paper": num_papers, "author": num_authors, "venue": num_venues},
        edges={("author", "writes", "paper"): _edge_tensor(writes),
               ("paper", "cites", "paper"): _edge_tensor(cites),
               ("paper", "published_in", "venue"): _edge_tensor(zip(range(num_papers), venue.tolist()))},
        node_time={"paper": paper_year},
        labels={"node_type": "paper", "y": label, "classes": [f"topic{i}" for i in range(num_classes)]},
        splits=stratified_split(label, seed=seed),
        info={"split": f"seeded ({seed}) stratified 60/20/20", "era_boundary": middle},
    )
    return g.validate()


# ----------------------------------------------------------------------------- link prediction
# HetGNN's labelled link files (``data/academic``): file stem, source node type, target node type.
# Measured on the shared data root (every file is ``src, dst, label`` with ", " separators, exactly
# balanced 1:1 positives:negatives):
#   a_a_list_train  194,282 pairs (97,141 positive), a_a_list_test  27,862 (13,931 positive);
#   a_p_cite_list_train 90,508 (45,254 positive), a_p_cite_list_test 62,954 (31,477 positive).
# Train positives are exactly the co-author (resp. author-cites-paper) pairs of the train-period
# papers (p_a_list_train, years 2006-2011), listed in both orders for a_a; test positives are NEW
# pairs formed by the test-period papers (2012-2015): none of them is a train-period co-author
# (resp. citation) pair, and both ends of every test positive are authors of train-period papers
# (cited papers are all train-period). The negatives are drawn from all nodes: about 30 % of the
# a_a negatives (train and test alike) involve an author without any train-period paper, and about
# 37 % of the a_p_cite negatives a test-period paper, so "has no train-period edge" alone marks a
# negative (see the HGT README's link-prediction notes).
AMINER_LINK_FILES = {"collab": ("a_a_list", "author", "author"),
                     "cite": ("a_p_cite_list", "author", "paper")}


@dataclass
class LinkPairs:
    """Labelled node pairs for link prediction.

    Attributes
    ----------
    name: task name (e.g. ``aminer-collab``).
    src_type, dst_type: node types of the pairs' two ends (ids local to each type).
    pairs: ``split -> LongTensor (N, 3)`` with columns source id, target id, label (1 = link, 0 = not),
        in file order (duplicates and both orders of a symmetric pair are kept as listed).
    split_time: the last time (year) of the training period: the message graph may hold nothing
        later (see :func:`time_slice`); None where the split is not temporal.
    info: free-form notes (source files, counts).
    """

    name: str
    src_type: str
    dst_type: str
    pairs: dict[str, torch.Tensor]
    split_time: int | None = None
    info: dict = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{s} {len(p)} ({int(p[:, 2].sum())} positive)" for s, p in self.pairs.items()]
        cut = f", train period <= {self.split_time}" if self.split_time is not None else ""
        return f"{self.name}: {self.src_type}-{self.dst_type} pairs: " + " / ".join(parts) + cut


def read_labelled_pairs(path: str | os.PathLike, sep: str | None = ",",
                        num_src: int | None = None, num_dst: int | None = None) -> list[tuple[int, int, int]]:
    """``src<sep>dst<sep>label`` per line, label 0 or 1; ids checked against ``num_src``/``num_dst``
    when given. Errors name ``file:line``."""
    path = Path(path)
    out = []
    for lineno, line in _lines(path):
        parts = line.split(sep)
        if len(parts) != 3:
            raise HeteroFormatError(f"{path}:{lineno}: expected 3 fields 'src{sep or ' '}dst{sep or ' '}label' "
                                    f"separated by {sep or 'whitespace'!r}, got {len(parts)}: {line[:120]!r}")
        src = _int(parts[0], path, lineno, line, "source id")
        dst = _int(parts[1], path, lineno, line, "target id")
        label = _int(parts[2], path, lineno, line, "label")
        if label not in (0, 1):
            raise HeteroFormatError(f"{path}:{lineno}: label must be 0 or 1, got {label} in {line[:120]!r}")
        for value, limit, what in ((src, num_src, "source"), (dst, num_dst, "target")):
            if value < 0 or (limit is not None and value >= limit):
                bound = f"[0, {limit})" if limit is not None else ">= 0"
                raise HeteroFormatError(f"{path}:{lineno}: {what} id {value} is outside {bound} "
                                        f"in {line[:120]!r}")
        out.append((src, dst, label))
    return out


def aminer_split_year(folder: str | os.PathLike) -> int:
    """The last paper year of HetGNN's train period: papers of ``p_a_list_train.txt`` must all be
    older than those of ``p_a_list_test.txt`` (checked); returns the newest train-paper year."""
    folder = Path(folder)
    years = {p: 2005 + t for p, t in read_pairs(folder / "p_time.txt", sep=None)}
    span = {}
    for split in ("train", "test"):
        f = folder / f"p_a_list_{split}.txt"
        papers = list(read_id_lists(f))
        missing = [p for p in papers if p not in years]
        if missing:
            raise HeteroFormatError(f"{f}: papers {missing[:5]} have no year in p_time.txt")
        span[split] = (min(years[p] for p in papers), max(years[p] for p in papers))
    if span["train"][1] >= span["test"][0]:
        raise HeteroFormatError(f"{folder}: train papers (years {span['train']}) and test papers "
                                f"(years {span['test']}) are not split by time")
    return span["train"][1]


def load_aminer_links(folder: str | os.PathLike, link_type: str = "collab",
                      num_nodes: dict[str, int] | None = None) -> LinkPairs:
    """HetGNN's labelled link pairs of AMiner (``collab``: ``a_a_list_{train,test}.txt``,
    ``cite``: ``a_p_cite_list_{train,test}.txt``), with the dataset's own train/test split and its
    split year (see ``AMINER_LINK_FILES`` above for what the files hold). ``num_nodes`` (the
    graph's node counts) makes out-of-range ids an error naming the file and line."""
    if link_type not in AMINER_LINK_FILES:
        raise KeyError(f"unknown AMiner link type {link_type!r}; known: {', '.join(AMINER_LINK_FILES)}")
    folder = Path(folder)
    stem, src_type, dst_type = AMINER_LINK_FILES[link_type]
    num_nodes = num_nodes or {}
    pairs = {}
    for split in ("train", "test"):
        rows = read_labelled_pairs(folder / f"{stem}_{split}.txt", ",", num_nodes.get(src_type),
                                   num_nodes.get(dst_type))
        pairs[split] = (torch.tensor(rows, dtype=torch.long) if rows
                        else torch.empty(0, 3, dtype=torch.long))
    return LinkPairs(name=f"aminer-{link_type}", src_type=src_type, dst_type=dst_type, pairs=pairs,
                     split_time=aminer_split_year(folder),
                     info={"source": str(folder), "files": f"{stem}_{{train,test}}.txt"})


def time_slice(graph: HeteroGraph, until: int) -> HeteroGraph:
    """The graph as it stood at time ``until``: an edge is kept iff every timed end of it has time
    ``<= until`` (untimed ends do not restrict it). All nodes stay (ids stay aligned with pair
    files), so later nodes become isolated; their times are clamped to ``until`` so that no time
    after ``until`` reaches a model either. Labels and node splits are dropped (the slice is a
    message graph, not a node-classification dataset)."""
    keep_edges = {}
    for (s, r, d), e in graph.edges.items():
        keep = torch.ones(e.size(1), dtype=torch.bool)
        for row, nt in ((0, s), (1, d)):
            if nt in graph.node_time:
                keep &= graph.node_time[nt][e[row]] <= until
        keep_edges[(s, r, d)] = e[:, keep]
    times = {nt: t.clamp(max=until) for nt, t in graph.node_time.items()}
    info = dict(graph.info, time_slice=f"edges with every timed end <= {until}; later nodes isolated, "
                                       f"times clamped to {until}")
    return HeteroGraph(f"{graph.name}<={until}", dict(graph.num_nodes), keep_edges, times, {}, {},
                       info, dict(graph.node_features)).validate()


def link_pairs_from_graph(graph: HeteroGraph, link_type: str, until: int,
                          seed: int = 0) -> LinkPairs:
    """HetGNN-style labelled pairs built from a timed academic graph (paper/author/...):
    ``collab``: (author, author) co-authors of a paper; ``cite``: (author, paper) where a paper of
    the author cites the paper. Train positives come from papers of time ``<= until``; test
    positives are the pairs first formed by later papers. Each positive of a split is matched by
    one negative: a random pair that is never positive in either period (seeded). Collaboration
    pairs are listed once (smaller id first). Used for the synthetic link task."""
    if link_type not in AMINER_LINK_FILES:
        raise KeyError(f"unknown link type {link_type!r}; known: {', '.join(AMINER_LINK_FILES)}")
    _, src_type, dst_type = AMINER_LINK_FILES[link_type]
    year = graph.node_time["paper"]
    writes = graph.edges[("author", "writes", "paper")]
    authors_of: dict[int, list[int]] = {}
    for a, p in writes.t().tolist():
        authors_of.setdefault(p, []).append(a)
    formed: dict[tuple[int, int], int] = {}  # pair -> first time it is formed
    if link_type == "collab":
        for p, authors in authors_of.items():
            for a in authors:
                for b in authors:
                    if a < b:
                        key = (a, b)
                        formed[key] = min(formed.get(key, 10 ** 9), int(year[p]))
    else:
        for p, q in graph.edges[("paper", "cites", "paper")].t().tolist():
            for a in authors_of.get(p, []):
                formed[(a, q)] = min(formed.get((a, q), 10 ** 9), int(year[p]))
    positives = {"train": sorted(k for k, t in formed.items() if t <= until),
                 "test": sorted(k for k, t in formed.items() if t > until)}
    gen = torch.Generator().manual_seed(seed)
    n_src, n_dst = graph.num_nodes[src_type], graph.num_nodes[dst_type]
    taken = set(formed)
    pairs = {}
    for split, pos in positives.items():
        neg = []
        while len(neg) < len(pos):
            a = int(torch.randint(0, n_src, (1,), generator=gen))
            b = int(torch.randint(0, n_dst, (1,), generator=gen))
            if link_type == "collab":
                if a == b:
                    continue
                a, b = min(a, b), max(a, b)
            if (a, b) in taken:
                continue
            taken.add((a, b))
            neg.append((a, b))
        rows = [(a, b, 1) for a, b in pos] + [(a, b, 0) for a, b in neg]
        pairs[split] = (torch.tensor(rows, dtype=torch.long) if rows
                        else torch.empty(0, 3, dtype=torch.long))
    return LinkPairs(name=f"{graph.name}-{link_type}", src_type=src_type, dst_type=dst_type,
                     pairs=pairs, split_time=until,
                     info={"negatives": f"one random never-linked pair per positive (seed {seed})"})


def synthetic_links(num_papers: int = 300, link_type: str = "collab", seed: int = 0,
                    authors_per_paper: int = 3) -> tuple[HeteroGraph, LinkPairs]:
    """A small temporal link-prediction task: :func:`synthetic_temporal` (authors mostly write
    papers of their home topic, so future co-authors and cited papers are predictable from the
    neighbourhood) and :func:`link_pairs_from_graph` with the split at the middle of its period
    (train = papers up to the year before the era boundary). Deterministic under ``seed``."""
    g = synthetic_temporal(num_papers=num_papers, authors_per_paper=authors_per_paper, seed=seed)
    until = int(g.info["era_boundary"]) - 1
    return g, link_pairs_from_graph(g, link_type, until, seed=seed)
