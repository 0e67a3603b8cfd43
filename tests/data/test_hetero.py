import shutil
from pathlib import Path

import pytest
import torch

from paperzoo.data import catalog, hetero
from paperzoo.data.hetero import HeteroFormatError, HeteroGraph


def _hetero_dir(data_root: Path, name: str) -> Path:
    folder = data_root / "hetero" / name
    if not folder.is_dir():
        pytest.skip(f"{folder} missing")
    return folder


def _copy(src: Path, dst: Path) -> Path:
    """Writable copy of a read-only dataset folder (file contents only, no permissions)."""
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            shutil.copyfile(f, dst / f.name)
    return dst


def _check_splits(g: HeteroGraph):
    sets = {k: set(v.tolist()) for k, v in g.splits.items()}
    assert set(sets) == {"train", "valid", "test"}
    assert all(sets.values())
    assert not sets["train"] & sets["valid"]
    assert not sets["train"] & sets["test"]
    assert not sets["valid"] & sets["test"]
    for idx in g.splits.values():
        assert bool(g.labelled()[idx].all())


# ------------------------------------------------------------------------------ synthetic
def test_synthetic_invariants():
    g = hetero.synthetic_temporal(num_papers=120, seed=3)
    g.validate()
    assert g.node_types == ["paper", "author", "venue"]
    assert set(g.edge_types) == {("author", "writes", "paper"), ("paper", "cites", "paper"),
                                 ("paper", "published_in", "venue")}
    assert g.num_nodes["paper"] == 120
    years = g.node_time["paper"]
    assert years.shape == (120,) and int(years.min()) >= 2006 and int(years.max()) <= 2015
    cites = g.edges[("paper", "cites", "paper")]
    assert bool((years[cites[0]] >= years[cites[1]]).all()), "a paper cites only older-or-same papers"
    assert g.edges[("paper", "published_in", "venue")].shape[1] == 120
    assert g.target == "paper" and g.num_classes == 3
    assert set(g.y.tolist()) == {0, 1, 2}
    _check_splits(g)
    assert sum(len(v) for v in g.splits.values()) == 120


def test_synthetic_labels_need_time():
    """Within a venue the label changes with the era, so venue alone is ambiguous."""
    g = hetero.synthetic_temporal(num_papers=600, noise=0.0, seed=0)
    venue = g.edges[("paper", "published_in", "venue")][1]
    late = g.node_time["paper"] >= g.info["era_boundary"]
    for v in range(g.num_nodes["venue"]):
        early_labels = set(g.y[(venue == v) & ~late].tolist())
        late_labels = set(g.y[(venue == v) & late].tolist())
        assert len(early_labels) == 1 and len(late_labels) == 1
        assert early_labels != late_labels


def test_synthetic_deterministic():
    a = hetero.synthetic_temporal(num_papers=80, seed=7)
    b = hetero.synthetic_temporal(num_papers=80, seed=7)
    c = hetero.synthetic_temporal(num_papers=80, seed=8)
    for et in a.edges:
        assert torch.equal(a.edges[et], b.edges[et])
    assert torch.equal(a.y, b.y) and torch.equal(a.node_time["paper"], b.node_time["paper"])
    for k in a.splits:
        assert torch.equal(a.splits[k], b.splits[k])
    assert not all(torch.equal(a.edges[et], c.edges[et]) for et in a.edges if et in c.edges)


def test_add_reverse_edges():
    g = hetero.synthetic_temporal(num_papers=60, seed=1)
    r = g.add_reverse_edges()
    assert len(g.edges) == 3, "the original graph is untouched"
    assert len(r.edges) == 6
    for (s, rel, d), e in g.edges.items():
        rev = r.edges[(d, "rev_" + rel, s)]
        assert torch.equal(rev, e.flip(0))
    r.validate()
    assert len(r.add_reverse_edges().edges) == 6, "reversing twice adds nothing"
    assert "rev_cites" in r.summary()


def test_validate_catches_bad_index():
    g = hetero.synthetic_temporal(num_papers=40, seed=0)
    e = g.edges[("paper", "published_in", "venue")].clone()
    e[1, 5] = g.num_nodes["venue"]
    g.edges[("paper", "published_in", "venue")] = e
    with pytest.raises(ValueError, match=r"published_in.*target id 6 at column 5 .*'venue'"):
        g.validate()


def test_validate_catches_shape_labels_and_overlap():
    g = hetero.synthetic_temporal(num_papers=40, seed=0)
    bad = HeteroGraph(g.name, g.num_nodes, {("paper", "cites", "paper"): torch.zeros(3, 2, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        bad.validate()
    y = g.y.clone()
    y[0] = 9
    with pytest.raises(ValueError, match="labels y must lie"):
        HeteroGraph(g.name, g.num_nodes, g.edges, labels={**g.labels, "y": y}).validate()
    splits = dict(g.splits, valid=torch.cat([g.splits["valid"], g.splits["train"][:1]]))
    with pytest.raises(ValueError, match="both"):
        HeteroGraph(g.name, g.num_nodes, g.edges, labels=g.labels, splits=splits).validate()


def test_to_pyg_without_pyg_says_how_to_install():
    g = hetero.synthetic_temporal(num_papers=30, seed=0)
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install torch_geometric"):
            g.to_pyg()
    else:
        data = g.to_pyg()
        assert data["paper"].num_nodes == 30
        assert int(data["paper"].train_mask.sum()) == len(g.splits["train"])


def test_catalog_has_hetero_entries():
    for name in ("acm", "aminer", "imdb"):
        src = catalog.get(name)
        assert src.relpaths[0] == f"hetero/{name}"
    with pytest.raises(KeyError, match="unknown heterogeneous dataset"):
        hetero.load("fb15k237")


# ------------------------------------------------------------------------------ real data
def test_aminer(data_root):
    _hetero_dir(data_root, "aminer")
    g = hetero.load("aminer", data_root)
    assert g.num_nodes == {"paper": 21044, "author": 28646, "venue": 18}
    assert g.num_edges(("author", "writes", "paper")) == 69308
    assert g.num_edges(("paper", "cites", "paper")) == 34238
    assert g.num_edges(("paper", "published_in", "venue")) == 21044
    years = g.node_time["paper"]
    assert int(years.min()) == 2006 and int(years.max()) == 2015
    assert g.target == "author" and g.num_classes == 4
    assert int((g.y >= 0).sum()) == 11360
    _check_splits(g)
    assert len(g.splits["test"]) == 10235
    assert len(g.splits["train"]) + len(g.splits["valid"]) == 1125


def test_acm(data_root):
    _hetero_dir(data_root, "acm")
    g = hetero.load("acm", data_root)
    assert g.num_nodes == {"paper": 4019, "author": 7167, "subject": 60}
    assert g.num_edges(("author", "writes", "paper")) == 13407
    assert g.num_edges(("paper", "has_subject", "subject")) == 4019
    assert not g.node_time
    assert g.target == "paper" and g.num_classes == 3
    assert torch.bincount(g.y).tolist() == [1993, 965, 1061]
    _check_splits(g)
    assert sum(len(v) for v in g.splits.values()) == 4019
    assert abs(len(g.splits["train"]) / 4019 - 0.6) < 0.01


def test_imdb(data_root):
    _hetero_dir(data_root, "imdb")
    g = hetero.load("imdb", data_root)
    assert g.num_nodes == {"movie": 4177, "director": 2079, "actor": 5253, "keyword": 2668}
    assert g.num_edges(("director", "directs", "movie")) == 4177
    assert g.num_edges(("actor", "acts_in", "movie")) == 12527
    assert g.info["dropped"] == {"duplicate": 124, "no_director_or_actor": 109, "no_label": 630,
                                 "no_year": 3}
    years = g.node_time["movie"]
    assert int(years.min()) == 1916 and int(years.max()) == 2016
    assert g.classes == ["action", "comedy", "drama"]
    assert torch.bincount(g.y).tolist() == [1094, 1562, 1521]
    _check_splits(g)
    assert sum(len(v) for v in g.splits.values()) == 4177


def test_imdb_hgb_task(data_root):
    """HGB's IMDB task rebuilt from the CSV: its node counts come out within a few of HGB's
    (director 2,393, actor 6,124, keyword 7,971; HGB keeps the 124 duplicate rows we drop)."""
    _hetero_dir(data_root, "imdb")
    g = hetero.load("imdb", data_root, task="hgb")
    assert g.num_nodes == {"movie": 4806, "director": 2390, "actor": 6119, "keyword": 7970}
    assert g.multilabel and g.classes == ["action", "comedy", "drama", "romance", "thriller"]
    known = g.labelled()
    assert int(known.sum()) == 4460
    assert bool((g.y[~known] == -1).all()), "movies with none of the five genres stay, unlabelled"
    assert g.y[known].sum(0).tolist() == [1094, 1811, 2460, 1067, 1336]
    _check_splits(g)
    sizes = [len(g.splits[k]) for k in ("train", "valid", "test")]
    assert sizes == [1070, 268, 3122] and sum(sizes) == 4460
    x = g.node_features["movie"]
    assert x.shape == (4806, 3301) and set(x.unique().tolist()) == {0.0, 1.0}
    assert list(g.node_features) == ["movie"]
    # the single-label task is unchanged by the option
    assert not hetero.load("imdb", data_root).multilabel


def test_imdb_multilabel_rule_and_bag_of_words():
    assert hetero.imdb_multilabel("Action|Romance|Thriller") == [1, 0, 0, 1, 1]
    assert hetero.imdb_multilabel("Horror|Sci-Fi") == [0, 0, 0, 0, 0]
    x, vocab = hetero.keyword_bag_of_words([["alien invasion", "spaceship"], ["Alien", "love"],
                                            ["love triangle"]])
    assert vocab == ["alien", "love"]  # words of at least two movies, lower-cased
    assert x.tolist() == [[1, 0], [1, 1], [0, 1]]
    with pytest.raises(ValueError, match="unknown IMDB task 'imdb5'"):
        hetero.load_imdb(".", task="imdb5")


def test_multilabel_validation():
    y = torch.tensor([[1, 0], [0, 1], [-1, -1]])
    g = HeteroGraph("t", {"m": 3}, {}, labels={"node_type": "m", "y": y, "classes": ["a", "b"]},
                    splits={"train": torch.tensor([0]), "test": torch.tensor([1])})
    assert g.validate().multilabel and g.labelled().tolist() == [True, True, False]
    assert "multi-label" in g.summary()
    bad_y = torch.tensor([[1, 0], [2, 1], [0, 0]])
    bad = HeteroGraph("t", {"m": 3}, {}, labels={"node_type": "m", "y": bad_y, "classes": ["a", "b"]})
    with pytest.raises(ValueError, match="row 1 must be 0/1"):
        bad.validate()
    g.splits["valid"] = torch.tensor([2])
    with pytest.raises(ValueError, match="split 'valid' contains unlabelled nodes"):
        g.validate()


def test_imdb_label_rule():
    assert hetero.imdb_label("Action|Adventure|Comedy") == 0
    assert hetero.imdb_label("Comedy|Drama|Romance") == 1
    assert hetero.imdb_label("Crime|Drama") == 2
    assert hetero.imdb_label("Horror|Thriller") == -1


# ------------------------------------------------------------------------------ bad input
def test_malformed_acm_edge_line(data_root, tmp_path):
    src = _hetero_dir(data_root, "acm")
    dst = _copy(src, tmp_path / "acm")
    lines = (dst / "edge.txt").read_text().splitlines(keepends=True)
    lines[2] = "0\tfive\tp-a\t1\n"
    (dst / "edge.txt").write_text("".join(lines))
    with pytest.raises(HeteroFormatError, match=r"edge\.txt:3: target id 'five'"):
        hetero.load_acm(dst)
    assert issubclass(HeteroFormatError, ValueError)


def test_malformed_aminer_list_line(data_root, tmp_path):
    src = _hetero_dir(data_root, "aminer")
    dst = _copy(src, tmp_path / "aminer")
    f = dst / "p_p_cite_list_test.txt"
    lines = f.read_text().splitlines(keepends=True)
    lines[4] = "8874 402\n"
    f.write_text("".join(lines))
    with pytest.raises(HeteroFormatError, match=r"p_p_cite_list_test\.txt:5: expected 'id:id,id"):
        hetero.load_aminer(dst)


def test_malformed_lines_on_small_files(tmp_path):
    """The same checks without the shared data (always runs)."""
    (tmp_path / "edge.txt").write_text("0\t1\tp-a\t1\n0\t1\tp-x\t1\n")
    (tmp_path / "label.txt").write_text("p0\t0\n")
    with pytest.raises(HeteroFormatError, match=r"edge\.txt:2: unknown edge type 'p-x'"):
        hetero.load_acm(tmp_path)
    (tmp_path / "edge.txt").write_text("0\t1\tp-a\t1\n0\t0\tp-s\t1\n")
    (tmp_path / "label.txt").write_text("p0\t0\n\np1 0 extra\n")
    with pytest.raises(HeteroFormatError, match=r"label\.txt:3: expected 'p<id><TAB>class'"):
        hetero.load_acm(tmp_path)
    csv_dir = tmp_path / "imdb"
    csv_dir.mkdir()
    header = ("director_name,actor_1_name,actor_2_name,actor_3_name,genres,plot_keywords,"
              "title_year,movie_imdb_link,movie_title")
    (csv_dir / "movie_metadata.csv").write_text(
        header + "\nD,A,B,C,Action,k1|k2,2001,l1,M1\nD,A,B,C,Comedy,k1,abc,l2,M2\n")
    with pytest.raises(HeteroFormatError, match=r"movie_metadata\.csv:3: title_year 'abc'"):
        hetero.load_imdb(csv_dir)
