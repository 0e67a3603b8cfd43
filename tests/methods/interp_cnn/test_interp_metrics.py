"""Location instability and the maps it reads (paperzoo.methods.interp_cnn.metrics)."""
import math

import pytest
import torch
from torch import nn

from paperzoo.methods.interp_cnn.metrics import (
    filter_instability,
    layer_maps,
    location_instability,
    peak_positions,
)


def _uniform_square_std() -> float:
    """Std of the distance from the centre of a unit square to a uniform point in it."""
    mean = (math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6
    return math.sqrt(1 / 6 - mean**2)


def test_a_filter_that_always_fires_on_one_landmark_has_zero_instability():
    g = torch.Generator().manual_seed(0)
    n = 50
    landmarks = torch.rand(n, 3, 2, generator=g, dtype=torch.float64) * 64  # parts move from image to image
    positions = landmarks[:, 1:2, :].clone()  # the filter sits on part 1 in every image
    scores = torch.rand(n, 1, generator=g)
    li = filter_instability(positions, scores, landmarks[:, 1:2], 64, top_k=20)
    assert float(li[0]) == pytest.approx(0.0, abs=1e-12)
    # with every part counted, only the OTHER parts' distances vary: positive, and the same as by hand
    li3 = filter_instability(positions, scores, landmarks, 64, top_k=20)
    top = torch.argsort(scores[:, 0], descending=True)[:20]
    by_hand = sum(float((landmarks[top, 1] - landmarks[top, p]).norm(dim=-1).std()) for p in range(3)) / 3
    assert float(li3[0]) == pytest.approx(by_hand / math.hypot(64, 64))


def test_a_filter_at_random_positions_has_the_known_instability():
    g = torch.Generator().manual_seed(1)
    n = 40000
    positions = torch.rand(n, 1, 2, generator=g, dtype=torch.float64) * 100  # uniform over a 100 x 100 image
    landmarks = torch.full((n, 1, 2), 50.0, dtype=torch.float64)  # the part sits at the centre
    li = filter_instability(positions, torch.rand(n, 1, generator=g), landmarks, 100, top_k=n)
    assert float(li[0]) == pytest.approx(_uniform_square_std() / math.sqrt(2), rel=0.02)  # = 0.1007


def test_top_k_uses_the_highest_scoring_images_with_the_part_present():
    # 4 images: the best two put the filter 10 px from the part, the others far; image 0 lacks the part
    positions = torch.tensor([[[0.0, 0.0]], [[10.0, 0.0]], [[0.0, 10.0]], [[40.0, 0.0]], [[0.0, 7.0]]])
    landmarks = torch.tensor([[[math.nan, math.nan]], [[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]])
    scores = torch.tensor([[9.0], [5.0], [4.0], [1.0], [3.0]])
    assert float(filter_instability(positions, scores, landmarks, 10, top_k=2)[0]) == 0.0  # images 1, 2
    li3 = float(filter_instability(positions, scores, landmarks, 10, top_k=3)[0])  # images 1, 2, 4: 10, 10, 7
    assert li3 == pytest.approx(float(torch.tensor([10.0, 10.0, 7.0]).std()) / math.hypot(10, 10))
    # an image on which the filter is silent (score 0) does not count, whatever its argmax says
    silent = scores.clone()
    silent[2] = 0.0
    assert float(filter_instability(positions, silent, landmarks, 10, top_k=2)[0]) == pytest.approx(
        float(torch.tensor([10.0, 7.0]).std()) / math.hypot(10, 10))
    # fewer than two usable images: no value
    assert math.isnan(float(filter_instability(positions[:2], scores[:2], landmarks[:2], 10, top_k=5)[0]))


def test_peak_positions_are_cell_centres_in_image_pixels():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 1, 3] = 2.0
    maps[0, 1, 0, 0] = 1.0
    pos, val = peak_positions(maps, 32)
    assert pos[0, 0].tolist() == [3.5 * 8, 1.5 * 8] and pos[0, 1].tolist() == [4.0, 4.0]
    assert val[0].tolist() == [2.0, 1.0]


def test_each_filter_is_scored_on_the_category_it_fires_on_most():
    # 2 categories x 30 images; filter 0 fires on category 1 at its part, filter 1 on category 0 at random
    g = torch.Generator().manual_seed(3)
    n, size = 30, 8
    labels = torch.tensor([0] * n + [1] * n)
    landmarks = torch.full((2 * n, 2, 2), math.nan)
    cells = torch.randint(0, size, (2 * n, 2), generator=g)
    landmarks[:, 0] = (cells.float() + 0.5) * 4  # one part per image, in a random cell of a 32-px image
    maps = torch.zeros(2 * n, 2, size, size)
    for i in range(2 * n):
        j, r = cells[i].tolist()
        if labels[i] == 1:
            maps[i, 0, r, j] = 5.0 + torch.rand(1, generator=g).item()  # exactly on the landmark's cell
        else:
            maps[i, 1, *torch.randint(0, size, (2,), generator=g).tolist()] = 1.0
    out = location_instability(maps, labels, landmarks, 32, top_k=20)
    assert out["category"].tolist() == [1, 0]
    assert float(out["per_filter"][0]) == pytest.approx(0.0, abs=1e-9) and float(out["per_filter"][1]) > 0.05
    assert out["instability"] == pytest.approx(float(out["per_filter"].mean()))


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="top_k"):
        filter_instability(torch.zeros(3, 1, 2), torch.zeros(3, 1), torch.zeros(3, 1, 2), 8, top_k=1)
    with pytest.raises(ValueError, match="landmarks"):
        filter_instability(torch.zeros(3, 1, 2), torch.zeros(3, 1), torch.zeros(2, 1, 2), 8)


def test_layer_maps_reads_the_named_layer_rectified_in_eval_mode():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.9), nn.Conv2d(4, 2, 1))
    x = torch.randn(5, 3, 6, 6)
    maps = layer_maps(net, "0", x, batch_size=2)
    torch.testing.assert_close(maps, torch.relu(net[0](x)))
    assert net.training  # the mode is restored


def test_reference_levels_put_ideal_part_filters_far_below_random_ones():
    from paperzoo.methods.interp_cnn.metrics import reference_instability

    g = torch.Generator().manual_seed(4)
    n = 200
    labels = torch.zeros(n, dtype=torch.long)
    centre = torch.rand(n, 1, 2, generator=g) * 32 + 16  # an object anywhere in the middle of a 64-px image
    landmarks = torch.cat([centre, centre + torch.tensor([8.0, 0.0])], dim=1)  # two parts, a fixed offset apart
    ref = reference_instability(labels, landmarks, 64, 8, top_k=100)
    # ideal filters sit on the landmark's unit: only the 8-px quantisation moves them off the parts
    assert ref["part"] < 0.05 and ref["random"] > 0.1
    # one part on a fixed unit centre: the ideal filter is exactly on it every time
    fixed = torch.full((n, 1, 2), 36.0)
    assert reference_instability(labels, fixed, 64, 8, top_k=50)["part"] == pytest.approx(0.0, abs=1e-12)


def test_by_category_scores_every_filter_on_every_category():
    from paperzoo.methods.interp_cnn.metrics import instability_by_category

    g = torch.Generator().manual_seed(5)
    labels = torch.tensor([0] * 12 + [1] * 12)
    maps = torch.rand(24, 3, 4, 4, generator=g)
    landmarks = torch.rand(24, 2, 2, generator=g) * 32
    out = instability_by_category(maps, labels, landmarks, 32, top_k=5)
    pos, sc = peak_positions(maps, 32)
    for c in (0, 1):
        rows = labels == c
        assert out[c] == pytest.approx(float(filter_instability(pos[rows], sc[rows], landmarks[rows], 32, 5).mean()))
    # the assigned protocol scores each filter on one category only: a different number in general
    assert location_instability(maps, labels, landmarks, 32, 5)["instability"] != pytest.approx(sum(out.values()) / 2)
