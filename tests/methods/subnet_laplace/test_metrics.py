"""Metrics against hand-computed values, and the reliability diagram as a real PNG."""
import math

import pytest
import torch

from paperzoo.methods.subnet_laplace.metrics import (
    accuracy,
    brier,
    calibration_bins,
    ece,
    gaussian_nll,
    nll,
    reliability_diagram,
    rmse,
)

PROBS = torch.tensor([[0.7, 0.2, 0.1],
                      [0.1, 0.6, 0.3],
                      [0.25, 0.25, 0.5]])
LABELS = torch.tensor([0, 2, 2])


def test_accuracy_nll_brier_by_hand():
    assert accuracy(PROBS, LABELS) == pytest.approx(2 / 3)
    assert nll(PROBS, LABELS) == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.5)) / 3)
    per_point = [(0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2), (0.1 ** 2 + 0.6 ** 2 + 0.7 ** 2),
                 (0.25 ** 2 + 0.25 ** 2 + 0.5 ** 2)]
    assert brier(PROBS, LABELS) == pytest.approx(sum(per_point) / 3)
    assert brier(torch.eye(3), torch.arange(3)) == 0.0
    assert brier(torch.eye(3), torch.tensor([1, 2, 0])) == pytest.approx(2.0)


def test_nll_of_a_zero_probability_is_finite():
    value = nll(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert math.isfinite(value) and value > 700


def test_ece_of_a_perfectly_calibrated_toy_is_zero():
    # 10 predictions at confidence 0.8 (8 right) and 4 at confidence 0.5 (2 right)
    probs = torch.tensor([[0.8, 0.2]] * 10 + [[0.5, 0.5]] * 4, dtype=torch.float64)
    labels = torch.tensor([0] * 8 + [1] * 2 + [0, 0, 1, 1])
    error, bins = ece(probs, labels, n_bins=10)
    assert error == pytest.approx(0.0, abs=1e-12)
    assert bins.count.sum() == 14 and bins.count[7] == 10 and bins.count[4] == 4
    assert bins.accuracy[7] == pytest.approx(0.8) and bins.confidence[7] == pytest.approx(0.8)
    assert torch.isnan(bins.accuracy[0])  # empty bin


def test_ece_by_hand():
    # all at confidence 0.9, half right: |0.5 - 0.9| = 0.4; plus one at 0.6, right: |1 - 0.6| = 0.4
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.4, 0.6]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    error, bins = ece(probs, labels)          # 15 bins by default
    assert bins.lower.numel() == 15
    assert error == pytest.approx(4 / 5 * 0.4 + 1 / 5 * 0.4)


def test_bins_are_closed_on_the_right():
    for dtype in (torch.float32, torch.float64):
        probs = torch.tensor([[0.5, 0.5], [0.6, 0.4], [1.0, 0.0], [0.0, 0.0]], dtype=dtype)
        bins = calibration_bins(probs, torch.tensor([0, 0, 0, 0]), n_bins=5)  # edges 0, .2, .4, .6, .8, 1
        assert bins.count.tolist() == [1, 0, 2, 0, 1]


def test_gaussian_nll_and_rmse_by_hand():
    mean = torch.tensor([[0.0], [1.0]])
    var = torch.tensor([[1.0], [4.0]])
    y = torch.tensor([[1.0], [1.0]])
    expected = (0.5 * math.log(2 * math.pi) + 0.5 + 0.5 * math.log(2 * math.pi * 4)) / 2
    assert gaussian_nll(mean, var, y) == pytest.approx(expected)
    assert gaussian_nll(mean.flatten(), var.flatten(), y.flatten()) == pytest.approx(expected)
    assert rmse(mean, y) == pytest.approx(math.sqrt(0.5))


def test_reliability_diagram_writes_a_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(200, 4, generator=g), -1)
    labels = torch.randint(0, 4, (200,), generator=g)
    path = reliability_diagram(probs, labels, tmp_path / "plots" / "reliability.png", title="toy")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [p.name for p in path.parent.iterdir()] == ["reliability.png"]


def test_metric_inputs_are_validated():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        accuracy(torch.ones(3), LABELS)
    with pytest.raises(ValueError, match="labels must lie"):
        nll(PROBS, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="integer class ids"):
        brier(PROBS, LABELS.float())
    with pytest.raises(ValueError, match="positive"):
        gaussian_nll(torch.zeros(2), torch.tensor([1.0, 0.0]), torch.zeros(2))
    with pytest.raises(ValueError, match="one shape"):
        rmse(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="n_bins"):
        ece(PROBS, LABELS, n_bins=0)
