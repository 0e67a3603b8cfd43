"""The ImageNet zero-shot graph of GCNZ (Wang et al. 2018) and the ImageNet 21K test splits.

Files, in ``<data root>/zsl/imagenet`` (from JudyYe/zero-shot-gcn and the official DGP code):

- ``invdict_wordn.json``: the node order, a list of 32,297 wnids;
- ``imagenet_graph_edges.json``: ``{"num_nodes": 32297, "edges": [[i, j], ...]}``, 69,744 directed
  pairs that are 34,872 undirected edges, each given in both directions;
- ``imagenet-split.json``: ``train`` = the 1K seen ILSVRC-2012 wnids (the same list as ``1k.txt``);
- ``imagenet-testsets.json``: the official DGP test sets ``2-hops`` (1,549), ``3-hops`` (7,860)
  and ``all`` (20,842 wnids);
- ``words.txt``: ``wnid<TAB>words`` for 82,114 wnids.

What the files hold, checked against WordNet 3.0 (``tests/data/test_zsl.py``): 32,297 nodes,
32,295 of them WordNet noun synsets plus two ImageNet-only nodes, ``fall11`` (the root of
ImageNet's fall-2011 hierarchy, parent of 8 top-level categories and of ``fa11misc``) and
``fa11misc`` (a catch-all parent of 2,350 synsets). All 32,513 undirected edges between synsets are
WordNet hypernym (or instance-hypernym) links, so every one is oriented child -> parent by WordNet's
pointers and none is left unoriented; the 2,359 edges touching the two ImageNet-only nodes are
oriented towards them (``fa11misc`` -> ``fall11``), as in ImageNet's own tree. That gives 34,872
child -> parent edges. All 1,000 seen wnids, all 1,549 ``2-hops`` and all 7,860 ``3-hops`` wnids
are nodes; 29 of the 20,842 ``all`` wnids are not, and are left out of ``test_sets["all"]`` (listed
in ``absent``).

Word-vector inputs (:meth:`ImageNetGraph.node_vectors`, GloVe 6B 50-d, lemmas looked up
lower-cased): 2,214 of the 32,295 synsets have no known word (3,627 looking words up as written,
as the official code does), among them 11 of the 1K seen classes (kuvasz, komondor, pickelhaube,
...) and 74 of the 1,549 ``2-hops`` classes; they and the two ImageNet-only nodes get zero rows.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from paperzoo.data import catalog
from paperzoo.data.roots import DatasetSource, locate
from paperzoo.data.text import WordVectors
from paperzoo.data.wordnet import WordNet, embed_synsets

log = logging.getLogger(__name__)

NODES, EDGES, SPLIT, TESTSETS, WORDS = ("invdict_wordn.json", "imagenet_graph_edges.json", "imagenet-split.json",
                                        "imagenet-testsets.json", "words.txt")
SOURCE: DatasetSource = catalog.get("zsl_imagenet")
"""``<data root>/zsl/imagenet`` holding the five files above."""
TEST_SETS = ("2-hops", "3-hops", "all")
IMAGENET_ROOT = "fall11"
"""The root of ImageNet's own hierarchy; edges between two non-WordNet nodes point to it."""
_WNID = re.compile(r"n\d{8}")


class ImageNetGraphFormatError(ValueError):
    """A file of the ImageNet zero-shot data is malformed; the message names the file."""


@dataclass
class ImageNetGraph:
    """The GCNZ ImageNet graph with its seen classes and test sets (node indices into ``wnids``)."""

    wnids: list[str]
    """Node order of the graph (``invdict_wordn.json``)."""
    edges: torch.Tensor
    """(2, E) int64, row 0 the child node, row 1 the parent node."""
    seen: torch.Tensor
    """Node indices of the 1K seen wnids, in file order."""
    test_sets: dict[str, torch.Tensor]
    """``2-hops``, ``3-hops``, ``all``: node indices of the test wnids present in the graph."""
    names: list[str]
    """Class words per node (``words.txt``), e.g. ``"choker, collar, dog collar, neckband"``; the wnid
    where ``words.txt`` has none (the two ImageNet-only nodes)."""
    unoriented: int = 0
    """Undirected pairs that are no hypernym link either way (dropped from ``edges``)."""
    pseudo_nodes: list[str] = field(default_factory=list)
    """Nodes that are not WordNet synsets (``fall11``, ``fa11misc``)."""
    absent: dict[str, list[str]] = field(default_factory=dict)
    """Per split (``seen`` and each test set), the wnids that are not nodes of the graph."""

    @property
    def num_nodes(self) -> int:
        return len(self.wnids)

    @property
    def offsets(self) -> list[int | None]:
        """WordNet offset per node; ``None`` for the ImageNet-only nodes (``fall11``, ``fa11misc``)."""
        pseudo = set(self.pseudo_nodes)
        return [None if w in pseudo else int(w[1:]) for w in self.wnids]

    def node_vectors(self, wordnet: WordNet, vectors: WordVectors,
                     lowercase: bool = True) -> tuple[torch.Tensor, list[str]]:
        """Word-vector input of every node by :func:`~paperzoo.data.wordnet.embed_synsets` (rows
        L2-normalised); the ImageNet-only nodes have no lemmas, get zero rows and are listed in
        ``missing`` by wnid, after the synsets without a known word (by nltk name)."""
        offsets = self.offsets
        synset_rows = [i for i, o in enumerate(offsets) if o is not None]
        rows, missing = embed_synsets(wordnet, [offsets[i] for i in synset_rows], vectors, lowercase)
        out = torch.zeros(self.num_nodes, rows.size(1), dtype=rows.dtype)
        out[torch.tensor(synset_rows, dtype=torch.long)] = rows
        return out, missing + [w for w, o in zip(self.wnids, offsets) if o is None]

    def index(self, wnids: list[str]) -> torch.Tensor:
        """Node indices of wnids; KeyError naming the first one that is not a node."""
        position = {w: i for i, w in enumerate(self.wnids)}
        try:
            return torch.tensor([position[w] for w in wnids], dtype=torch.long)
        except KeyError as exc:
            raise KeyError(f"{exc.args[0]} is not a node of the ImageNet graph") from None


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImageNetGraphFormatError(f"{path}: not valid JSON ({exc})") from None


def _wnid_list(obj: Any, path: Path, what: str) -> list[str]:
    if not isinstance(obj, list) or not all(isinstance(w, str) for w in obj):
        raise ImageNetGraphFormatError(f"{path}: {what} should be a list of wnid strings")
    return obj


def _read_words(path: Path) -> dict[str, str]:
    words = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            wnid, tab, text = line.rstrip("\r\n").partition("\t")
            if not tab:
                if not line.strip():
                    continue
                raise ImageNetGraphFormatError(f"{path}:{lineno}: expected 'wnid<TAB>words', got {line[:60]!r}")
            words[wnid] = text
    return words


def load_imagenet_graph(data_root: str | os.PathLike | None = None,
                        wordnet: WordNet | None = None) -> ImageNetGraph:
    """The GCNZ ImageNet graph, its edges oriented child -> parent by WordNet (see the module docs).

    ``wordnet`` defaults to :meth:`WordNet.load` with the same ``data_root``. Raises
    :class:`ImageNetGraphFormatError` naming the file for malformed data."""
    folder = locate(SOURCE, data_root)
    wn = wordnet if wordnet is not None else WordNet.load(data_root)

    wnids = _wnid_list(_read_json(folder / NODES), folder / NODES, "the node list")
    if len(set(wnids)) != len(wnids):
        raise ImageNetGraphFormatError(f"{folder / NODES}: a wnid appears twice")
    graph = _read_json(folder / EDGES)
    if not isinstance(graph, dict) or not isinstance(graph.get("edges"), list):
        raise ImageNetGraphFormatError(f"{folder / EDGES}: expected {{'num_nodes': N, 'edges': [[i, j], ...]}}")
    if graph.get("num_nodes", len(wnids)) != len(wnids):
        raise ImageNetGraphFormatError(f"{folder / EDGES}: num_nodes {graph.get('num_nodes')} but {folder / NODES} "
                                       f"lists {len(wnids)} nodes")
    pairs = set()
    for k, edge in enumerate(graph["edges"]):
        if (not isinstance(edge, list) or len(edge) != 2 or not all(isinstance(v, int) for v in edge)
                or not all(0 <= v < len(wnids) for v in edge)):
            raise ImageNetGraphFormatError(f"{folder / EDGES}: edge {k} is {edge!r}, expected a pair of node "
                                           f"indices in [0, {len(wnids)})")
        if edge[0] != edge[1]:
            pairs.add((min(edge), max(edge)))

    offsets = [int(w[1:]) if _WNID.fullmatch(w) and int(w[1:]) in wn.synsets else None for w in wnids]
    pseudo = [w for w, o in zip(wnids, offsets) if o is None]
    oriented, unoriented = [], 0
    for a, b in sorted(pairs):
        oa, ob = offsets[a], offsets[b]
        if oa is None or ob is None:
            if oa is None and ob is None:   # between ImageNet-only nodes: towards the root
                oriented.append((b, a) if wnids[a] == IMAGENET_ROOT else (a, b))
            else:                          # a synset under an ImageNet-only node
                oriented.append((a, b) if ob is None else (b, a))
        elif ob in wn.synsets[oa].hypernyms:
            oriented.append((a, b))
        elif oa in wn.synsets[ob].hypernyms:
            oriented.append((b, a))
        else:
            unoriented += 1
    if unoriented:
        log.warning("ImageNet graph: %d of %d edges are no hypernym link in WordNet either way; dropped",
                    unoriented, len(pairs))
    edges = torch.tensor(oriented, dtype=torch.long).t().contiguous() if oriented else torch.zeros(2, 0, dtype=torch.long)

    position = {w: i for i, w in enumerate(wnids)}
    split = _read_json(folder / SPLIT)
    testsets = _read_json(folder / TESTSETS)
    if not isinstance(split, dict) or "train" not in split:
        raise ImageNetGraphFormatError(f"{folder / SPLIT}: expected a JSON object with a 'train' list")
    missing = [k for k in TEST_SETS if not isinstance(testsets, dict) or k not in testsets]
    if missing:
        raise ImageNetGraphFormatError(f"{folder / TESTSETS}: no test set {missing[0]!r} "
                                       f"(expected {', '.join(TEST_SETS)})")
    absent: dict[str, list[str]] = {}
    chosen: dict[str, torch.Tensor] = {}
    lists = {"seen": _wnid_list(split["train"], folder / SPLIT, "'train'")}
    lists.update({k: _wnid_list(testsets[k], folder / TESTSETS, repr(k)) for k in TEST_SETS})
    for key, group in lists.items():
        absent[key] = [w for w in group if w not in position]
        chosen[key] = torch.tensor([position[w] for w in group if w in position], dtype=torch.long)
        if absent[key]:
            log.warning("ImageNet graph: %d of %d %s wnids are not nodes of the graph (left out)",
                        len(absent[key]), len(group), key)
    seen = chosen.pop("seen")

    words = _read_words(folder / WORDS)
    no_words = [w for w, o in zip(wnids, offsets) if w not in words and o is not None]
    if no_words:
        log.warning("ImageNet graph: %d synsets have no entry in %s (named by their wnid), e.g. %s",
                    len(no_words), folder / WORDS, ", ".join(no_words[:3]))
    names = [words.get(w, w) for w in wnids]
    log.info("ImageNet graph: %d nodes, %d child->parent edges, %d seen, test sets %s", len(wnids),
             edges.size(1), len(seen), ", ".join(f"{k} {len(v)}" for k, v in chosen.items()))
    return ImageNetGraph(wnids, edges, seen, chosen, names, unoriented, pseudo, absent)
