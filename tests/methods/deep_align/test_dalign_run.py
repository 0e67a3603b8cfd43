"""The evaluation harness on a toy CNN zoo (every method) and a slow real-data MNIST check."""
import json

import pytest
import torch

from paperzoo.methods.deep_align import zoo as Z
from paperzoo.methods.deep_align.config import DeepAlignConfig
from paperzoo.methods.deep_align.nets import CNNArch, MLPArch
from paperzoo.methods.deep_align.run import barrier_eval, build_model, pairs_of


def test_pairs_are_distinct_and_deterministic():
    pairs = pairs_of([3, 5, 8, 9], 4, seed=0)
    assert len(set(pairs)) == 4 and all(a < b for a, b in pairs)
    assert pairs == pairs_of([3, 5, 8, 9], 4, seed=0)


def test_cnn_zoo_barrier_table_with_every_method():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).long()
    task = Z.Task("toy", x, y, x[:64], y[:64], 2)
    arch = CNNArch(3, (6, 8), 2)
    params, meta = Z.train_shard(arch, task, 3, epochs=3, batch_size=32, lr=1e-2, generator=g)
    zoo = Z.Zoo(arch, params, meta)
    cfg = DeepAlignConfig(arch="cnn", eval_examples=64, am_examples=64, rebasin_steps=3, rebasin_batch=16,
                          num_lambdas=5)
    model = build_model(cfg, arch, zoo.params)  # untrained: any alignment will do for the table
    res, curves = barrier_eval(cfg, task, zoo, [(0, 1), (1, 2)], cfg.methods, model)
    for m in cfg.methods:
        assert res[f"barrier/{m}"] == pytest.approx(sum(c.barrier for c in curves[m]) / 2)
        assert res[f"auc/{m}"] == pytest.approx(sum(c.auc for c in curves[m]) / 2)
        assert res[f"auc/{m}"] <= res[f"barrier/{m}"] + 1e-12  # the area over [0, 1] of a curve below its max
    assert res["iterations/naive"] == 0 and res["iterations/weight_matching"] >= 1


@pytest.mark.slow
def test_weight_matching_lowers_the_mnist_barrier(data_root):
    """Real MNIST: two 784-64-64-10 MLPs from different seeds; aligning them shrinks the barrier."""
    task = Z.load_task("mnist", str(data_root), train_limit=10000, test_limit=1000)
    arch = MLPArch((784, 64, 64, 10))
    params, _ = Z.train_shard(arch, task, 4, epochs=1, batch_size=128, lr=1e-3,
                              generator=torch.Generator().manual_seed(0))
    zoo = Z.Zoo(arch, params, [{}] * 4)
    cfg = DeepAlignConfig(task="mnist", methods=("naive", "weight_matching", "activation_matching"),
                          eval_examples=1000)
    res, _ = barrier_eval(cfg, task, zoo, [(0, 1), (2, 3)], cfg.methods, None)
    assert res["barrier/weight_matching"] < 0.5 * res["barrier/naive"]
    assert res["barrier/activation_matching"] < 0.5 * res["barrier/naive"]


def test_run_writes_every_test_pairs_barrier(tmp_path):
    from paperzoo import runner

    result = runner.execute(runner.prepare("deep_align", "tiny", run_dir=tmp_path / "run",
                                           overrides={"epochs": 1, "steps_per_epoch": 2}))
    saved = json.loads((tmp_path / "run" / "test_pairs.json").read_text(encoding="utf-8"))
    assert len(saved["pairs"]) == result.metrics["test/num_pairs"]
    for method, barriers in saved["barrier"].items():
        assert len(barriers) == len(saved["pairs"])
        assert sum(barriers) / len(barriers) == pytest.approx(result.metrics[f"test/barrier/{method}"])
