"""The zero-shot pipeline's parts: ranking with ties, Hit@k, the generalized metrics, the CNN's frozen
classifier, augmentation, the stated splits, and the synthetic ImageNet-mode weights."""

import pytest
import torch

from paperzoo.methods.dgp import cnn as cnnlib
from paperzoo.methods.dgp import pipeline as pl
from paperzoo.methods.dgp.config import SYNSETS, UNSEEN_SPLITS, DGPConfig


def test_ranks_count_ties_against_the_true_class():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2], [0.0, 1.0, 2.0]])
    labels = torch.tensor([0, 1, 0])
    assert pl.ranks(scores, labels).tolist() == [1, 3, 3]
    h = pl.hits(scores, labels, ks=(1, 2, 3))
    assert h == {"hit@1": pytest.approx(1 / 3), "hit@2": pytest.approx(1 / 3), "hit@3": pytest.approx(1.0)}


def _toy_task(seen=(0, 1), unseen=(2, 3)):
    n = 5
    return pl.Task("toy", torch.eye(n), torch.tensor([[0, 1, 2, 3], [4, 4, 4, 4]]), [str(i) for i in range(n)],
                   torch.tensor(seen), torch.tensor(unseen), ["a", "b"], ["c", "d"])


def test_zero_shot_metrics_on_perfect_and_on_seen_biased_weights():
    task = _toy_task()
    pred = torch.eye(5)  # node i's row is e_i: a feature e_c scores 1 on its own class only
    fs, ys = torch.eye(5)[[0, 1, 1]], torch.tensor([0, 1, 1])
    fu, yu = torch.eye(5)[[2, 3]], torch.tensor([0, 1])
    m = pl.zero_shot_metrics(pred, task, fs, ys, fu, yu)
    assert m["hit@1"] == 1.0 and m["gzsl_seen"] == 1.0 and m["gzsl_unseen"] == 1.0 and m["gzsl_H"] == 1.0
    # unseen images that look like seen class 0 more than like their own class: zero-shot still ranks
    # among unseen classes only (right), the generalized setting sends them to class 0 (wrong)
    fu2 = torch.stack([torch.tensor([1.0, 0, 0.5, 0, 0]), torch.tensor([1.0, 0, 0, 0.5, 0])])
    m2 = pl.zero_shot_metrics(pred, task, fs, ys, fu2, yu)
    assert m2["hit@1"] == 1.0
    assert m2["gzsl_unseen"] == 0.0 and m2["gzsl_H"] == 0.0 and m2["gzsl_seen"] == 1.0
    assert m2["gzsl_hit@2"] == 1.0  # the true class is second after seen class 0


def test_zero_shot_metrics_normalise_predicted_rows():
    task = _toy_task()
    pred = torch.eye(5)
    pred[3] *= 100.0  # a long row must not win by its norm
    fu = torch.tensor([[0, 0, 1.0, 0.5, 0]])
    m = pl.zero_shot_metrics(pred, task, torch.eye(5)[[0]], torch.tensor([0]), fu, torch.tensor([0]))
    assert m["hit@1"] == 1.0


def test_stated_splits_partition_the_classes():
    for dataset, splits in UNSEEN_SPLITS.items():
        held_out = [c for split in splits for c in split]
        assert len(held_out) == len(set(held_out)), f"{dataset}: a class is unseen in two splits"
        for i in range(3):
            seen, unseen = pl.split_classes(DGPConfig(dataset=dataset, split=i))
            assert sorted(seen + unseen) == list(range(len(SYNSETS[dataset])))
            assert len(unseen) == 3


def test_frozen_classifier_stays_fixed_while_features_train():
    torch.manual_seed(0)
    net = cnnlib.ConvNet(1, 3, width=4, feature_dim=8)
    rows = torch.nn.functional.normalize(torch.randn(3, 9), dim=1)
    net.set_classifier(rows)
    before = [p.clone() for p in net.features.parameters()]
    x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 3, (16,))
    cnnlib.fit(net, x, y, epochs=2, lr=0.1, batch_size=8, generator=torch.Generator().manual_seed(0),
               augment=False, params=net.features.parameters())
    assert torch.equal(net.classifier_rows(), rows)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.features.parameters()))
    with pytest.raises(ValueError, match=r"\(classes, 9\)"):
        net.set_classifier(torch.zeros(3, 5))


def test_features_append_the_bias_column_and_score_like_the_classifier():
    torch.manual_seed(0)
    net = cnnlib.ConvNet(3, 4, width=4, feature_dim=8).eval()
    x = torch.randn(5, 3, 16, 16)
    f = cnnlib.features(net, x, batch_size=2)
    assert f.shape == (5, 9) and torch.all(f[:, -1] == 1) and torch.all(f[:, :-1] >= 0)
    torch.testing.assert_close(f @ net.classifier_rows().T, net(x).detach())


def test_synthetic_weights_resemble_ancestors_more_than_strangers():
    # two families under a root: 0,1 children of 2; 3,4 children of 5; 2 and 5 children of 6
    edges = torch.tensor([[0, 1, 3, 4, 2, 5], [2, 2, 5, 5, 6, 6]])
    task = pl.Task("toy", torch.zeros(7, 2), edges, [str(i) for i in range(7)], torch.tensor([0, 3]),
                   torch.tensor([1, 4]), [], [])
    w = pl.synthetic_weights(task, 64, torch.Generator().manual_seed(0))
    torch.testing.assert_close(w.norm(dim=1), torch.ones(7))
    sim = w @ w.T
    assert sim[0, 1] > sim[0, 3] and sim[3, 4] > sim[3, 1]
    f, y = pl.synthetic_features(w, task.unseen_nodes, 3, 0.0, torch.Generator().manual_seed(1))
    assert y.tolist() == [0, 0, 0, 1, 1, 1] and torch.equal(f[0], w[1])


def test_config_rejects_unknown_models_and_splits():
    with pytest.raises(ValueError, match="unknown model 'gat'"):
        DGPConfig(models=("gat",))
    with pytest.raises(ValueError, match="split"):
        DGPConfig(split=3)
    assert DGPConfig(models=("gcn3", "dense2", "adgpm")).headline_model == "adgpm"
