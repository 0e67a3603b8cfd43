import pytest
import torch

from paperzoo.core.metrics.ranking import both_sides, filtered_ranks, rank_metrics


def test_realistic_rank_with_ties_and_filter():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1],
                           [0.2, 0.8, 0.8, 0.1, 0.0]])
    targets = torch.tensor([2, 0])
    # row 0: 0.9 above; two others tie with the target -> 1 + 1 + 2/2 = 3
    # row 1: entity 1 is a known answer (filtered); entity 2 above -> rank 2
    ranks = filtered_ranks(scores.clone(), targets, torch.tensor([1]), torch.tensor([1]))
    assert ranks.tolist() == [3.0, 2.0]


def test_filtering_the_target_itself_is_ignored():
    scores = torch.tensor([[0.1, 0.7, 0.3]])
    ranks = filtered_ranks(scores, torch.tensor([1]), torch.tensor([0, 0]), torch.tensor([1, 2]))
    assert ranks.tolist() == [1.0]


def test_constant_scores_get_the_middle_rank():
    ranks = filtered_ranks(torch.zeros(1, 11), torch.tensor([4]))
    assert ranks.tolist() == [6.0]


def test_nan_scores_raise():
    with pytest.raises(FloatingPointError):
        filtered_ranks(torch.tensor([[float("nan"), 1.0]]), torch.tensor([1]))


def test_metrics_known_values():
    m = rank_metrics(torch.tensor([1.0, 2.0, 4.0, 20.0]))
    assert m["mr"] == pytest.approx(6.75)
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert (m["hits@1"], m["hits@3"], m["hits@10"]) == (0.25, 0.5, 0.75)
    both = both_sides(torch.tensor([1.0]), torch.tensor([2.0]), prefix="test/")
    assert both["test/mrr"] == pytest.approx(0.75) and both["test/head/mrr"] == 1.0 and both["test/tail/mrr"] == 0.5
