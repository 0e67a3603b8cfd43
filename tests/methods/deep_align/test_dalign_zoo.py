"""Batched zoo training, resumable sharded storage, splits, and config validation."""
import pytest
import torch

from paperzoo.core.config import ConfigError
from paperzoo.methods.deep_align import zoo as Z
from paperzoo.methods.deep_align.config import DeepAlignConfig
from paperzoo.methods.deep_align.nets import CNNArch, MLPArch


def _settings(arch, n=5, shard=2):
    return Z.ZooSettings(task="synthetic", arch=Z.arch_to_dict(arch), num_networks=n, shard_size=shard,
                         epochs=2, batch_size=64, lr=1e-2, seed=0)


def test_batched_training_learns_and_networks_differ():
    task = Z.synthetic_task(n_train=512, n_test=256)
    arch = MLPArch((16, 8, 4))
    params, meta = Z.train_shard(arch, task, 3, epochs=3, batch_size=64, lr=1e-2,
                                 generator=torch.Generator().manual_seed(0))
    assert all(m["test_acc"] > 0.5 for m in meta)  # 4 classes: chance is 0.25
    assert not torch.equal(params["layer0.weight"][0], params["layer0.weight"][1])


def test_zoo_resumes_by_shard_and_reloads_identically(tmp_path):
    task = Z.synthetic_task(n_train=256, n_test=64)
    arch = MLPArch((16, 6, 4))
    z1 = Z.build_zoo(tmp_path, arch, task, _settings(arch))
    assert len(z1) == 5 and sorted(p.name for p in tmp_path.glob("shard_*.pt")) == [
        "shard_0000.pt", "shard_0001.pt", "shard_0002.pt"]
    (tmp_path / "shard_0001.pt").unlink()  # a shard lost: only it is retrained
    stamp = (tmp_path / "shard_0000.pt").stat().st_mtime_ns
    z2 = Z.build_zoo(tmp_path, arch, task, _settings(arch))
    assert (tmp_path / "shard_0000.pt").stat().st_mtime_ns == stamp
    assert all(torch.equal(z1.params[k], z2.params[k]) for k in z1.params)
    assert [m["index"] for m in z2.meta] == list(range(5))


def test_zoo_refuses_other_settings(tmp_path):
    task = Z.synthetic_task(n_train=128, n_test=32)
    arch = MLPArch((16, 6, 4))
    Z.build_zoo(tmp_path, arch, task, _settings(arch, n=3, shard=3))
    with pytest.raises(Z.ZooError, match="other settings"):
        Z.build_zoo(tmp_path, arch, task, _settings(arch, n=4, shard=3))


def test_truncated_shard_is_reported(tmp_path):
    task = Z.synthetic_task(n_train=128, n_test=32)
    arch = MLPArch((16, 6, 4))
    Z.build_zoo(tmp_path, arch, task, _settings(arch, n=3, shard=3))
    (tmp_path / "shard_0000.pt").write_bytes(b"truncated")
    with pytest.raises(Z.ZooError, match="shard_0000"):
        Z.load_zoo(tmp_path)


def test_split_is_disjoint_and_complete():
    zoo = Z.Zoo(MLPArch((2, 2, 2)), {"x": torch.zeros(20)}, [{}] * 20)
    s = zoo.split((0.6, 0.1, 0.3), seed=0)
    assert sorted(s["train"] + s["val"] + s["test"]) == list(range(20))
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (12, 2, 6)
    assert zoo.split((0.6, 0.1, 0.3), seed=0) == s


def test_cnn_zoo_trains_batched():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    task = Z.Task("toy", x, y, x[:32], y[:32], 2)
    params, meta = Z.train_shard(CNNArch(3, (4, 6), 2), task, 2, epochs=2, batch_size=32, lr=1e-2, generator=g)
    assert params["conv0.weight"].shape == (2, 4, 3, 3, 3) and len(meta) == 2


@pytest.mark.parametrize("field,value", [("methods", ("nope",)), ("split", (0.5, 0.5, 0.5)),
                                         ("num_lambdas", 1), ("aug_dropout", 1.0), ("loss_weights", (0, 0, 0))])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        DeepAlignConfig(**{field: value})


def test_cnn_config_accepts_deep_align():
    assert "deep_align" in DeepAlignConfig(arch="cnn").methods
