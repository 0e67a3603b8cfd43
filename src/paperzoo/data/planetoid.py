"""Planetoid citation graphs (Cora, CiteSeer, PubMed) from the raw files PyG's ``Planetoid`` reads.

The folder ``<data root>/planetoid/<name>/raw/`` holds ``ind.<name>.{x,tx,allx,y,ty,ally,graph,
test.index}`` exactly as published by Yang, Cohen and Salakhutdinov (2016)
(https://github.com/kimiyoung/planetoid). The pickles are Python-2 pickles of numpy arrays, scipy
CSR matrices and a ``defaultdict`` adjacency list. They are read with a restricted unpickler that
resolves only the handful of globals those files name (numpy array reconstruction, ``dtype``,
``list``, ``defaultdict``, ``codecs.encode`` and ``scipy.sparse.csr_matrix``, which is rebuilt as a
plain record and densified with numpy), so a tampered file cannot run code and scipy is not needed.

The split is the standard public one (as in PyG): the first ``len(y)`` nodes are training nodes
(140 for Cora, 120 for CiteSeer), the next 500 validation, and the nodes of ``test.index`` (1,000)
test. CiteSeer's test index has gaps (15 isolated nodes without features or labels in the
release); as PyG does, the test block is widened to the full index range, the missing rows get
zero features and label 0, and they are in no split.
"""
from __future__ import annotations

import codecs
import collections
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paperzoo.data import catalog
from paperzoo.data.roots import DatasetSource, locate

NAMES = catalog.PLANETOID


def source(name: str) -> DatasetSource:
    """Where the raw files of ``name`` may live (``planetoid/<name>/raw`` under a data root)."""
    if name not in NAMES:
        raise KeyError(f"unknown Planetoid dataset {name!r}; known: {', '.join(NAMES)}")
    return catalog.DATASETS[name]


@dataclass(frozen=True)
class NodeGraph:
    """An undirected node-classification graph with a train/valid/test split."""

    name: str
    x: torch.Tensor
    """(num_nodes, num_features) float32 node features, as stored (not normalised)."""
    y: torch.Tensor
    """(num_nodes,) int64 class labels."""
    edge_index: torch.Tensor
    """(2, num_edges) int64, both directions of every undirected edge, sorted, no duplicates and
    no self-loops."""
    splits: dict[str, torch.Tensor]
    """``train``, ``valid``, ``test``: sorted int64 node indices."""

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1 if self.y.numel() else 0

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {v.numel()}" for k, v in self.splits.items())
        return (f"{self.name}: {self.num_nodes} nodes, {self.edge_index.shape[1] // 2} undirected edges, "
                f"{self.num_features} features, {self.num_classes} classes; {sizes}")


class _CSRRecord:
    """Stand-in for ``scipy.sparse.csr_matrix`` while unpickling: keeps the pickled attributes."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def to_dense(self, where: str) -> np.ndarray:
        try:
            rows, cols = (int(v) for v in self.__dict__["_shape"])
            data = np.asarray(self.__dict__["data"])
            indices = np.asarray(self.__dict__["indices"], dtype=np.int64)
            indptr = np.asarray(self.__dict__["indptr"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: malformed CSR matrix in pickle ({exc})") from None
        if indptr.shape != (rows + 1,) or indptr[-1] != len(indices) or len(indices) != len(data):
            raise ValueError(f"{where}: inconsistent CSR arrays (shape {rows}x{cols}, "
                             f"{len(indptr)} indptr, {len(indices)} indices, {len(data)} values)")
        if len(indices) and (indices.min() < 0 or indices.max() >= cols):
            raise ValueError(f"{where}: CSR column index out of range")
        dense = np.zeros((rows, cols), dtype=np.float32)
        row_of = np.repeat(np.arange(rows), np.diff(indptr))
        dense[row_of, indices] = data
        return dense


def _reconstruct() -> Any:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct(),
    ("__builtin__", "list"): list,
    ("builtins", "list"): list,
    ("collections", "defaultdict"): collections.defaultdict,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 protocol-2 pickles store bytes
    ("scipy.sparse.csr", "csr_matrix"): _CSRRecord,
    ("scipy.sparse._csr", "csr_matrix"): _CSRRecord,
    ("scipy.sparse", "csr_matrix"): _CSRRecord,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED``; anything else is refused before it is called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a Planetoid file") from None


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as fh:
        try:
            return _RestrictedUnpickler(fh, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: cannot read Planetoid pickle ({exc.__class__.__name__}: {exc})") from None


def _matrix(path: Path) -> np.ndarray:
    obj = _unpickle(path)
    if isinstance(obj, _CSRRecord):
        return obj.to_dense(str(path))
    if isinstance(obj, np.ndarray) and obj.ndim == 2:
        return obj.astype(np.float32)
    raise ValueError(f"{path}: expected a 2-d matrix, got {type(obj).__name__}")


def _test_index(path: Path) -> np.ndarray:
    values = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            values.append(int(line))
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected an integer node index, got {line!r}") from None
    return np.asarray(values, dtype=np.int64)


def _edges(graph: Any, num_nodes: int, path: Path) -> torch.Tensor:
    if not isinstance(graph, dict):
        raise ValueError(f"{path}: expected an adjacency dict, got {type(graph).__name__}")  # noqa: TRY004
    src, dst = [], []
    for key, neighbours in graph.items():
        src.extend([int(key)] * len(neighbours))
        dst.extend(int(v) for v in neighbours)
    edges = np.asarray([src + dst, dst + src], dtype=np.int64)  # symmetrise
    if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
        raise ValueError(f"{path}: node index out of range [0, {num_nodes})")
    edges = edges[:, edges[0] != edges[1]]  # no self-loops
    codes = np.unique(edges[0] * num_nodes + edges[1])  # sorted, deduplicated
    return torch.from_numpy(np.stack([codes // num_nodes, codes % num_nodes]))


def load(name: str, data_root: str | os.PathLike | None = None) -> NodeGraph:
    """Load Planetoid ``name`` (``cora``, ``citeseer``, ``pubmed``) with the public split.

    Raises :class:`~paperzoo.data.roots.DataNotFoundError` naming the files and folders tried.
    """
    folder = locate(source(name), data_root)
    files = {part: folder / f"ind.{name}.{part}" for part in catalog.PLANETOID_PARTS}
    _x, tx, allx = (_matrix(files[p]) for p in ("x", "tx", "allx"))
    y, ty, ally = (_matrix(files[p]) for p in ("y", "ty", "ally"))
    test_index = _test_index(files["test.index"])
    if tx.shape[0] != len(test_index) or ty.shape[0] != len(test_index):
        raise ValueError(f"{folder}: {len(test_index)} test indices but tx/ty have {tx.shape[0]}/{ty.shape[0]} rows")
    sorted_test = np.sort(test_index)
    lo, hi = int(sorted_test[0]), int(sorted_test[-1])
    if hi - lo + 1 != len(test_index):  # CiteSeer: isolated test nodes missing from the release
        tx_full = np.zeros((hi - lo + 1, tx.shape[1]), dtype=np.float32)
        ty_full = np.zeros((hi - lo + 1, ty.shape[1]), dtype=np.float32)
        tx_full[sorted_test - lo], ty_full[sorted_test - lo] = tx, ty
        tx, ty = tx_full, ty_full
    features = np.concatenate([allx, tx])
    labels = np.concatenate([ally, ty]).argmax(axis=1)
    features[test_index] = features[sorted_test]
    labels[test_index] = labels[sorted_test]
    num_nodes = features.shape[0]
    edge_index = _edges(_unpickle(files["graph"]), num_nodes, files["graph"])
    n_train = y.shape[0]
    splits = {"train": torch.arange(n_train), "valid": torch.arange(n_train, n_train + 500),
              "test": torch.from_numpy(sorted_test)}
    return NodeGraph(name=name, x=torch.from_numpy(np.ascontiguousarray(features)),
                     y=torch.from_numpy(labels.astype(np.int64)), edge_index=edge_index, splits=splits)
