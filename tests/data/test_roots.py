import pytest

from paperzoo.data import catalog
from paperzoo.data.roots import DataNotFoundError, DatasetSource, locate, search_roots


def test_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    labels = [label for label, _ in search_roots(tmp_path / "explicit")]
    assert labels == ["--data-root", "$PAPERZOO_DATA", "user cache"]


def test_missing_dataset_lists_every_place_tried(monkeypatch, tmp_path):
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = DatasetSource("toy", ("kg/toy",), ("train.txt",), url="https://example.org/toy")
    with pytest.raises(DataNotFoundError) as err:
        locate(source, tmp_path / "explicit")
    message = str(err.value)
    for where in ("explicit/kg/toy", "env/kg/toy", "cache/paperzoo/data/kg/toy", "train.txt",
                  "https://example.org/toy"):
        assert where in message


def test_first_root_with_all_files_wins(monkeypatch, tmp_path):
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    for root in ("a", "b"):
        (tmp_path / root / "kg" / "toy").mkdir(parents=True)
    (tmp_path / "b" / "kg" / "toy" / "train.txt").write_text("x\ty\tz\n")
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path / "b"))
    source = DatasetSource("toy", ("kg/toy",), ("train.txt",))
    assert locate(source, tmp_path / "a") == tmp_path / "b" / "kg" / "toy"


def test_data_shipped_in_a_package_is_found(monkeypatch, tmp_path):
    """pykeen's wheel ships umls/nations/kinships; a package on sys.path is searched without importing it."""
    pkg = tmp_path / "site" / "pykeen" / "datasets" / "umls"
    pkg.mkdir(parents=True)
    (tmp_path / "site" / "pykeen" / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    for split in ("train", "valid", "test"):
        (pkg / f"{split}.txt").write_text("a\tr\tb\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert locate(catalog.get("umls")) == pkg


def test_unknown_dataset_name():
    with pytest.raises(KeyError, match="known"):
        catalog.get("yago3-10")
