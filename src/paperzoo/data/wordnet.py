"""WordNet 3.0 nouns read straight from the database files, and class graphs built over them.

Only two files are read: ``data.noun`` (one synset per line) and ``index.noun`` (one lemma per line,
its synsets in sense order). Their format, as documented by Princeton (``wndb(5)``):

- ``data.noun``: ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt
  [ptr_symbol offset pos source/target ...] | gloss``. ``w_cnt`` and ``lex_id`` are hexadecimal,
  ``p_cnt`` is a three-digit decimal. The file opens with a licence header of lines that start
  with two spaces.
- ``index.noun``: ``lemma pos synset_cnt p_cnt [ptr_symbol ...] sense_cnt tagsense_cnt
  offset [offset ...]``, the offsets in sense order (most frequent sense first).

Hypernymy here is the union of the ``@`` (hypernym) and ``@i`` (instance hypernym) pointers, so
that instances such as ``einstein.n.01`` reach ``entity`` too. Synsets are named the way nltk
names them (``dog.n.01``: the synset's first lemma, lower-cased, and the synset's 1-based position
among that lemma's senses), so names can be copied between nltk and paperzoo.

Why not nltk's corpus reader: it wants its own data path layout and a ``lexnames`` file the
Debian/shared folder lacks, and it reads every part of speech; this reader parses the noun files
once (about 1-2 s) and caches the result per folder in the process.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from paperzoo.data import catalog
from paperzoo.data.roots import DatasetSource, locate
from paperzoo.data.text import WordVectors

log = logging.getLogger(__name__)

SOURCE: DatasetSource = catalog.get("wordnet")
"""``<data root>/wordnet/dict`` (or ``wordnet``), then Debian's ``/usr/share/wordnet``."""

HYPERNYM_POINTERS = ("@", "@i")
"""Pointer symbols followed upwards: hypernym and instance hypernym."""
_WNID = re.compile(r"n(\d{8})")
_NAME = re.compile(r"(.+)\.([a-z])\.(\d+)")
_MARKER = re.compile(r"\((?:a|p|ip)\)$")   # syntactic markers of adjectives, e.g. "galore(ip)"


class WordNetFormatError(ValueError):
    """A line of a WordNet database file is malformed; the message names the file and line."""


class UnknownClassName(KeyError):
    """No noun synset has this name; the message lists close matches."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()):
        super().__init__(message)
        self.suggestions = list(suggestions)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class AmbiguousClassName(ValueError):
    """A plain word names several noun synsets; the message lists every candidate."""

    def __init__(self, message: str, candidates: Sequence[str] = ()):
        super().__init__(message)
        self.candidates = list(candidates)


@dataclass(frozen=True)
class Synset:
    """One noun synset: its byte offset in ``data.noun`` (the id), lemmas, hypernyms and gloss."""

    offset: int
    lemmas: tuple[str, ...]
    """As written in the file (``Canis_familiaris``): case and underscores kept, markers removed."""
    hypernyms: tuple[int, ...]
    """Offsets of the ``@`` and ``@i`` pointers to nouns, in file order."""
    gloss: str

    @property
    def wnid(self) -> str:
        """The ImageNet id, ``n`` + the 8-digit offset."""
        return f"n{self.offset:08d}"

    @property
    def words(self) -> tuple[str, ...]:
        """The lemmas with ``_`` turned into spaces."""
        return tuple(lemma.replace("_", " ") for lemma in self.lemmas)


def _parse_data_line(line: str, where: str) -> Synset:
    head, bar, gloss = line.partition("|")
    fields = head.split()
    if not bar or len(fields) < 6:
        raise WordNetFormatError(f"{where}: expected 'offset lex_filenum ss_type w_cnt word lex_id ... "
                                 f"p_cnt ... | gloss', got {line[:60]!r}")
    try:
        offset = int(fields[0])
        if fields[2] != "n":
            raise WordNetFormatError(f"{where}: synset type {fields[2]!r}, expected 'n' (a noun)")
        w_cnt = int(fields[3], 16)
        p_at = 4 + 2 * w_cnt
        if w_cnt < 1 or len(fields) <= p_at:
            raise WordNetFormatError(f"{where}: word count {fields[3]} does not match the {len(fields)} "
                                     "fields before the gloss")
        lemmas = tuple(_MARKER.sub("", w) if w.endswith(")") else w for w in fields[4:p_at:2])
        p_cnt = int(fields[p_at])
        if len(fields) != p_at + 1 + 4 * p_cnt:
            raise WordNetFormatError(f"{where}: pointer count {p_cnt} does not match the "
                                     f"{len(fields) - p_at - 1} fields after it (4 per pointer)")
        hypernyms = [int(fields[k + 1]) for k in range(p_at + 1, len(fields), 4)
                     if fields[k] in HYPERNYM_POINTERS and fields[k + 2] == "n"]
    except ValueError as exc:
        if isinstance(exc, WordNetFormatError):
            raise
        raise WordNetFormatError(f"{where}: {exc}") from None
    return Synset(offset, lemmas, tuple(dict.fromkeys(hypernyms)), gloss.strip())


def _parse_index_line(line: str, where: str) -> tuple[str, list[int]]:
    fields = line.split()
    try:
        if len(fields) < 7:
            raise WordNetFormatError(f"{where}: expected 'lemma pos synset_cnt p_cnt [ptr ...] sense_cnt "
                                     f"tagsense_cnt offset ...', got {line[:60]!r}")
        synset_cnt, p_cnt = int(fields[2]), int(fields[3])
        start = 4 + p_cnt + 2
        if len(fields) != start + synset_cnt:
            raise WordNetFormatError(f"{where}: {synset_cnt} synsets and {p_cnt} pointer symbols announced "
                                     f"but {len(fields)} fields found")
        return fields[0], [int(f) for f in fields[start:]]
    except ValueError as exc:
        if isinstance(exc, WordNetFormatError):
            raise
        raise WordNetFormatError(f"{where}: {exc}") from None


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a WordNet file without the licence header (lines starting with two spaces)."""
    with open(path, encoding="utf-8", errors="strict") as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.startswith("  ") and line.strip():
                    yield lineno, line
        except UnicodeDecodeError as exc:
            raise WordNetFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a "
                                     "read block)") from None


_CACHE: dict[Path, WordNet] = {}
_CACHE_LOCK = threading.Lock()


class WordNet:
    """The WordNet 3.0 noun hierarchy: synsets by offset, lemmas in sense order, hypernym walks.

    Build it with :meth:`load` (cached per folder). Keys accepted wherever a synset is named: a wnid
    (``"n02084071"``), an integer offset (``2084071``) or an nltk name (``"dog.n.01"``)."""

    def __init__(self, synsets: dict[int, Synset], index: dict[str, tuple[int, ...]], source: str = ""):
        self.synsets = synsets
        self.index = index
        """Lower-case lemma (``_`` for spaces) -> synset offsets in sense order."""
        self.source = source

    # -- loading --------------------------------------------------------------------------------------
    @classmethod
    def load(cls, data_root: str | os.PathLike | None = None) -> WordNet:
        """Parse ``data.noun`` and ``index.noun`` from the first folder :data:`SOURCE` finds.

        The result is cached per folder for the life of the process. Raises
        :class:`~paperzoo.data.roots.DataNotFoundError` when no folder has the files and
        :class:`WordNetFormatError` (naming ``file:line``) for a malformed line."""
        folder = locate(SOURCE, data_root).resolve()
        with _CACHE_LOCK:
            if folder not in _CACHE:
                _CACHE[folder] = cls.read(folder)
            return _CACHE[folder]

    @classmethod
    def read(cls, folder: str | os.PathLike) -> WordNet:
        """Parse the noun files of one folder, uncached (see :meth:`load`)."""
        folder = Path(folder)
        synsets: dict[int, Synset] = {}
        linenos: dict[int, int] = {}
        data = folder / "data.noun"
        for lineno, line in _read_lines(data):
            synset = _parse_data_line(line, f"{data}:{lineno}")
            if synset.offset in synsets:
                raise WordNetFormatError(f"{data}:{lineno}: offset {synset.offset:08d} appears twice (first "
                                         f"on line {linenos[synset.offset]})")
            synsets[synset.offset] = synset
            linenos[synset.offset] = lineno
        index: dict[str, tuple[int, ...]] = {}
        index_path = folder / "index.noun"
        for lineno, line in _read_lines(index_path):
            lemma, offsets = _parse_index_line(line, f"{index_path}:{lineno}")
            missing = [o for o in offsets if o not in synsets]
            if missing:
                raise WordNetFormatError(f"{index_path}:{lineno}: {lemma!r} lists offset {missing[0]:08d}, "
                                         f"which is not a synset of {data}")
            index[lemma] = tuple(offsets)
        for synset in synsets.values():
            for parent in synset.hypernyms:
                if parent not in synsets:
                    raise WordNetFormatError(f"{data}:{linenos[synset.offset]}: synset {synset.offset:08d} has "
                                             f"hypernym {parent:08d}, which is not a synset of the file")
        log.info("WordNet: %d noun synsets, %d lemmas from %s", len(synsets), len(index), folder)
        return cls(synsets, index, str(folder))

    # -- look-ups -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.synsets)

    def __contains__(self, key: object) -> bool:
        try:
            self._offset(key)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator[Synset]:
        return iter(self.synsets.values())

    def _offset(self, key: str | int) -> int:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"a synset key is a wnid, an offset or a name like 'dog.n.01', not {key!r}")
        if isinstance(key, int):
            if key in self.synsets:
                return key
            raise UnknownClassName(f"no noun synset at offset {key:08d} in {self.source}")
        text = key.strip()
        m = _WNID.fullmatch(text)
        if m:
            offset = int(m.group(1))
            if offset in self.synsets:
                return offset
            raise UnknownClassName(f"no noun synset {text!r} in {self.source}")
        m = _NAME.fullmatch(text.lower())
        if m:
            lemma, pos, sense = m.group(1).replace(" ", "_"), m.group(2), int(m.group(3))
            if pos != "n":
                raise UnknownClassName(f"{text!r} is not a noun synset (part of speech {pos!r}); only "
                                       "nouns are read")
            offsets = self.index.get(lemma, ())
            if 1 <= sense <= len(offsets):
                return offsets[sense - 1]
            have = f"it has {len(offsets)} noun senses" if offsets else "no noun has that lemma"
            raise UnknownClassName(f"no noun synset {text!r}: {have}")
        raise UnknownClassName(f"{text!r} is not a synset key: use a wnid (n02084071), an offset or a "
                               "name like dog.n.01")

    def synset(self, key: str | int) -> Synset:
        """The synset of a wnid, an offset or an nltk name; :class:`UnknownClassName` otherwise."""
        return self.synsets[self._offset(key)]

    def name(self, offset: int) -> str:
        """nltk's name of a synset: its first lemma, lower-cased, and its sense number for that lemma."""
        synset = self.synset(offset)
        lemma = synset.lemmas[0].lower()
        try:
            sense = self.index[lemma].index(synset.offset) + 1
        except (KeyError, ValueError):
            raise WordNetFormatError(f"{self.source}/index.noun: lemma {lemma!r} does not list synset "
                                     f"{synset.offset:08d}") from None
        return f"{lemma}.n.{sense:02d}"

    def lookup(self, word: str) -> list[Synset]:
        """The noun synsets of a word or phrase, in sense order (case-insensitive, spaces or ``_``)."""
        key = "_".join(word.strip().lower().split())
        return [self.synsets[o] for o in self.index.get(key, ())]

    def describe(self, offset: int, width: int = 60) -> str:
        """``dog.n.01 (dog, domestic_dog, Canis_familiaris): <gloss, cut to width>``."""
        synset = self.synset(offset)
        return f"{self.name(offset)} ({', '.join(synset.lemmas)}): {synset.gloss[:width]}"

    def resolve(self, name: str | int) -> Synset:
        """A user's class name to one synset.

        Accepts an nltk name (``dog.n.01``), a wnid, an offset, or a plain word or phrase. A word with
        one noun sense resolves to it; several raise :class:`AmbiguousClassName` listing every
        candidate; none raises :class:`UnknownClassName` with close matches from all lemmas."""
        if isinstance(name, int) or _WNID.fullmatch(name.strip()) or _NAME.fullmatch(name.strip().lower()):
            return self.synset(name)
        word = name.strip()
        if not word:
            raise UnknownClassName("empty class name")
        senses = self.lookup(word)
        if len(senses) == 1:
            return senses[0]
        if senses:
            names = [self.name(s.offset) for s in senses]
            raise AmbiguousClassName(
                f"class name {word!r} has {len(senses)} WordNet noun senses; name one of them: "
                + "; ".join(self.describe(s.offset) for s in senses), names)
        key = "_".join(word.lower().split())
        close = difflib.get_close_matches(key, self.index.keys(), n=5, cutoff=0.75)
        hint = f"; did you mean {', '.join(c.replace('_', ' ') for c in close)}?" if close else ""
        raise UnknownClassName(f"class name {word!r} is not a WordNet noun{hint}", close)

    # -- the hierarchy --------------------------------------------------------------------------------
    def ancestors(self, offset: str | int) -> dict[int, int]:
        """Every ancestor (via hypernym and instance-hypernym pointers) with its shortest hop distance;
        the synset itself is included at distance 0."""
        start = self._offset(offset)
        dist = {start: 0}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for parent in self.synsets[node].hypernyms:
                if parent not in dist:
                    dist[parent] = dist[node] + 1
                    queue.append(parent)
        return dist

    def closure(self, offsets: Sequence[str | int]) -> list[int]:
        """The given synsets (deduplicated, in order) followed by all their ancestors in breadth-first
        order (parents in file order), as in the official DGP ``induce_parents``."""
        nodes = list(dict.fromkeys(self._offset(o) for o in offsets))
        seen = set(nodes)
        queue = deque(nodes)
        while queue:
            for parent in self.synsets[queue.popleft()].hypernyms:
                if parent not in seen:
                    seen.add(parent)
                    nodes.append(parent)
                    queue.append(parent)
        return nodes

    def hypernym_edges(self, nodes: Sequence[int]) -> torch.Tensor:
        """Child -> parent edges among ``nodes``: a ``(2, E)`` LongTensor of indices into ``nodes``
        (row 0 the child, row 1 the parent), in node order then pointer order."""
        position = {o: i for i, o in enumerate(nodes)}
        pairs = [(i, position[p]) for i, o in enumerate(nodes)
                 for p in self.synsets[self._offset(o)].hypernyms if p in position]
        if not pairs:
            return torch.zeros(2, 0, dtype=torch.long)
        return torch.tensor(pairs, dtype=torch.long).t().contiguous()


@dataclass
class ClassGraph:
    """Classes and the full hypernym closure above them, with child -> parent edges.

    The first ``num_classes`` nodes are the classes, in the order given."""

    offsets: list[int]
    edges: torch.Tensor
    """(2, E) int64, row 0 the child index, row 1 the parent index."""
    num_classes: int
    wordnet: WordNet | None = field(default=None, repr=False, compare=False)

    @property
    def num_nodes(self) -> int:
        return len(self.offsets)

    @property
    def wnids(self) -> list[str]:
        return [f"n{o:08d}" for o in self.offsets]

    @property
    def names(self) -> list[str]:
        """nltk names (``dog.n.01``); wnids when the graph was built without a WordNet."""
        if self.wordnet is None:
            return self.wnids
        return [self.wordnet.name(o) for o in self.offsets]


def class_graph(wn: WordNet, classes: Sequence[str | int]) -> ClassGraph:
    """The classes (exact keys: nltk names, wnids or offsets) plus all their ancestors up to ``entity``."""
    offsets = [wn.synset(c).offset for c in classes]
    if len(set(offsets)) != len(offsets):
        dup = next(c for c, o in zip(classes, offsets) if offsets.count(o) > 1)
        raise ValueError(f"class {dup!r} is given twice (the same synset {wn.name(wn.synset(dup).offset)})")
    nodes = wn.closure(offsets)
    graph = ClassGraph(nodes, wn.hypernym_edges(nodes), len(offsets), wn)
    log.info("class graph: %d classes, %d nodes, %d hypernym edges", len(offsets), len(nodes),
             graph.edges.size(1))
    return graph


def _lemma_words(lemma: str, index: dict[str, int]) -> dict[int, float]:
    """A lemma's vector as weights over vocabulary rows: the lemma itself if it is a word, else the
    mean over its ``_``/space-separated terms, a term not in the vocabulary standing for the mean of
    its known ``-`` parts. Empty when nothing is known."""
    if lemma in index:
        return {index[lemma]: 1.0}
    terms = []
    for term in lemma.replace("_", " ").split(" "):
        if term in index:
            terms.append([index[term]])
        else:
            parts = [index[p] for p in term.split("-") if p in index]
            if parts:
                terms.append(parts)
    weights: dict[int, float] = {}
    for parts in terms:
        for row in parts:
            weights[row] = weights.get(row, 0.0) + 1.0 / (len(terms) * len(parts))
    return weights


def embed_synsets(wn: WordNet, offsets: Sequence[str | int], vectors: WordVectors,
                  lowercase: bool = True) -> tuple[torch.Tensor, list[str]]:
    """Word-vector inputs of synsets, as in the official DGP: each lemma is the mean vector of its
    known words (split on ``_``, spaces and ``-``), the synset is the mean over its lemmas that have
    one, and the row is L2-normalised.

    Returns ``(vectors (N, d), missing)``: a synset with no known word gets a zero row and its
    nltk name in ``missing``. ``lowercase`` looks lemmas up lower-cased (GloVe 6B is lower-case);
    the official code looks them up as written, so capitalised words (``Canis_familiaris``,
    ``Einstein``) are lost there: pass ``lowercase=False`` to reproduce that."""
    rows, cols, weights, missing = [], [], [], []
    for row, key in enumerate(offsets):
        synset = wn.synset(key)
        lemmas = [w for lemma in synset.lemmas if (w := _lemma_words(lemma.lower() if lowercase else lemma,
                                                                       vectors.index))]
        if not lemmas:
            missing.append(wn.name(synset.offset))
        for lemma in lemmas:
            for col, weight in lemma.items():
                rows.append(row)
                cols.append(col)
                weights.append(weight / len(lemmas))
    out = torch.zeros(len(offsets), vectors.dim, dtype=vectors.vectors.dtype)
    if rows:
        cols_t = torch.tensor(cols, dtype=torch.long)
        scaled = vectors.vectors[cols_t] * torch.tensor(weights, dtype=vectors.vectors.dtype).unsqueeze(1)
        out.index_add_(0, torch.tensor(rows, dtype=torch.long), scaled)
    out = torch.nn.functional.normalize(out, dim=1)
    log.info("synset embeddings: %d of %d synsets have no known word (zero rows)%s", len(missing),
             len(offsets), f", e.g. {', '.join(missing[:5])}" if missing else "")
    return out, missing
