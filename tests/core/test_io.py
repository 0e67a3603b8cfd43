import pytest
import torch

from paperzoo.core import io


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "f.json"
    io.write_json(path, {"a": 1})
    io.write_json(path, {"a": 2})
    assert path.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":2}'
    assert [p.name for p in path.parent.iterdir()] == ["f.json"], "temporary files left behind"


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "f.txt"
    io.write_text(path, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_csv_columns_union(tmp_path):
    io.write_csv(tmp_path / "log.csv", [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4, "mrr": 0.3}])
    assert (tmp_path / "log.csv").read_text().splitlines() == ["epoch,loss,mrr", "1,0.5,", "2,0.4,0.3"]


def test_save_torch_loads_weights_only(tmp_path):
    io.save_torch(tmp_path / "c.pt", {"w": torch.ones(2)})
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.ones(2))
