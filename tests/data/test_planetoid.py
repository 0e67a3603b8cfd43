"""Planetoid loader: the public split, CiteSeer's isolated nodes, safe unpickling, clear errors."""
import pickle

import pytest
import torch

from paperzoo.data import planetoid
from paperzoo.data.roots import DataNotFoundError


@pytest.fixture
def planetoid_root(data_root):
    if not (data_root / "planetoid" / "cora" / "raw").is_dir():
        pytest.skip(f"{data_root / 'planetoid'} missing")
    return data_root


@pytest.mark.parametrize("name,nodes,edges,features,classes,train", [
    ("cora", 2708, 10556, 1433, 7, 140),
    ("citeseer", 3327, 9104, 3703, 6, 120),
])
def test_matches_pyg_statistics(planetoid_root, name, nodes, edges, features, classes, train):
    g = planetoid.load(name, planetoid_root)
    assert (g.num_nodes, g.edge_index.shape[1], g.num_features, g.num_classes) == (nodes, edges, features, classes)
    assert [g.splits[s].numel() for s in ("train", "valid", "test")] == [train, 500, 1000]
    assert torch.equal(g.splits["train"], torch.arange(train))
    assert torch.bincount(g.y[g.splits["train"]]).tolist() == [20] * classes
    src, dst = g.edge_index
    assert not (src == dst).any()
    # undirected: every edge appears in both directions
    codes = set((src * nodes + dst).tolist())
    assert all(int(d) * nodes + int(s) in codes for s, d in zip(src[:500], dst[:500]))
    assert not set(g.splits["test"].tolist()) & set(g.splits["valid"].tolist())


def test_citeseer_isolated_test_nodes_are_padded(planetoid_root):
    g = planetoid.load("citeseer", planetoid_root)
    in_test = torch.zeros(g.num_nodes, dtype=torch.bool)
    in_test[g.splits["test"]] = True
    lo, hi = int(g.splits["test"].min()), int(g.splits["test"].max())
    padded = (~in_test[lo:hi + 1]).nonzero().flatten() + lo
    assert padded.numel() == 15
    assert (g.x[padded].sum(1) == 0).all() and (g.y[padded] == 0).all()


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _write_release(folder, name, graph_obj=None):
    import collections

    import numpy as np

    folder.mkdir(parents=True)
    eye = np.eye(2, dtype=np.float32)
    for part, obj in {"x": eye, "tx": eye, "allx": np.concatenate([eye] * 3), "y": eye, "ty": eye,
                      "ally": np.concatenate([eye] * 3)}.items():
        (folder / f"ind.{name}.{part}").write_bytes(pickle.dumps(obj, protocol=2))
    graph = graph_obj if graph_obj is not None else collections.defaultdict(list, {0: [1], 1: [0], 6: [7]})
    (folder / f"ind.{name}.graph").write_bytes(pickle.dumps(graph, protocol=2))
    (folder / f"ind.{name}.test.index").write_text("7\n6\n")


def test_restricted_unpickler_refuses_code(tmp_path, capsys):
    _write_release(tmp_path / "planetoid" / "cora" / "raw", "cora", graph_obj=_Evil())
    with pytest.raises(ValueError, match=r"__builtin__\.print is not allowed"):
        planetoid.load("cora", tmp_path)
    assert "pwned" not in capsys.readouterr().out


def test_small_release_loads_with_test_reordering(tmp_path):
    _write_release(tmp_path / "planetoid" / "cora" / "raw", "cora")
    g = planetoid.load("cora", tmp_path)
    assert g.num_nodes == 8 and g.splits["test"].tolist() == [6, 7]
    assert g.edge_index.tolist() == [[0, 1, 6, 7], [1, 0, 7, 6]]
    # test.index lists 7 then 6: tx row 0 belongs to node 7
    assert g.y[7] == 0 and g.y[6] == 1


def test_missing_files_name_what_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match=r"ind\.cora\.x.*ind\.cora\.test\.index"):
        planetoid.load("cora", tmp_path)
