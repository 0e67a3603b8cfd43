"""BAN visual features: box crops, geometry, the pretrained object encoder and the grid encoder."""
import math

import pytest
import torch
import torch.nn.functional as F

from paperzoo.methods.ban.features import (
    NONZERO_EPS,
    FeatureInputError,
    GridEncoder,
    ObjectEncoder,
    box_geometry,
    crop_boxes,
    encode_objects,
    grid_boxes,
    head_targets,
    pretrain_object_encoder,
)

pytestmark = pytest.mark.usefixtures("one_thread")

PALETTE = torch.tensor([[230, 30, 30], [30, 200, 30], [40, 40, 230], [230, 220, 40]], dtype=torch.uint8)
SLOTS = [(2, 2), (18, 2), (2, 18), (18, 18)]   # top-left corners of 12 x 12 slots in a 32 x 32 image


def _shapes_data(num_images: int, seed: int = 0):
    """Tiny detection-style set: per image three objects (a filled square or a ring, one of four
    colours) in three of four fixed slots, the empty slot as a background proposal (real box, labels -1)
    and one padding row (zero box, mask false, labels -1)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.zeros(num_images, 3, 32, 32, dtype=torch.uint8)
    boxes = torch.zeros(num_images, 5, 4)
    mask = torch.zeros(num_images, 5, dtype=torch.bool)
    labels = torch.full((num_images, 5, 2), -1, dtype=torch.long)
    for i in range(num_images):
        empty = int(torch.randint(4, (1,), generator=gen))
        for b, (x, y) in enumerate(SLOTS):
            boxes[i, b] = torch.tensor([x, y, x + 12, y + 12], dtype=torch.float)
            mask[i, b] = True
            if b == empty:
                continue
            colour = int(torch.randint(4, (1,), generator=gen))
            shape = int(torch.randint(2, (1,), generator=gen))
            images[i, :, y:y + 12, x:x + 12] = PALETTE[colour].view(3, 1, 1)
            if shape == 1:                                    # ring: hollow square
                images[i, :, y + 3:y + 9, x + 3:x + 9] = 0
            labels[i, b] = torch.tensor([colour, shape])
    return images, boxes, mask, labels


# ---------------------------------------------------------------------------------------------- crop_boxes


@pytest.mark.parametrize("size", [16, 8, 6, 24])
def test_crop_of_whole_image_is_the_resized_image(size):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    whole = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).expand(2, 1, 4)
    crops = crop_boxes(images, whole, size)
    assert crops.shape == (2, 1, 3, size, size)
    expected = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    torch.testing.assert_close(crops[:, 0], expected, atol=1e-5, rtol=0)


def test_crop_of_a_box_samples_its_own_pixels():
    """A box of exactly ``size`` pixels returns those pixels (pixel-edge convention, no shift, x and y
    not swapped: the image is not square), for several images and boxes in one call."""
    images = torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[[3.0, 5.0, 7.0, 9.0], [16.0, 0.0, 20.0, 4.0], [0.0, 8.0, 4.0, 12.0]],
                          [[10.0, 2.0, 14.0, 6.0], [0.0, 0.0, 4.0, 4.0], [5.0, 7.0, 9.0, 11.0]]])
    crops = crop_boxes(images, boxes, 4)
    for n in range(2):
        for b in range(3):
            x0, y0, x1, y1 = boxes[n, b].long().tolist()
            torch.testing.assert_close(crops[n, b], images[n, :, y0:y1, x0:x1], atol=1e-6, rtol=0)


def test_crop_of_a_small_coloured_box_gives_its_colour():
    image = torch.zeros(1, 3, 16, 16)
    colour = torch.tensor([0.2, 0.5, 0.9])
    image[0, :, 6:8, 10:12] = colour.view(3, 1, 1)
    box = torch.tensor([[[10.0, 6.0, 12.0, 8.0]]])
    for size in (1, 2):
        crop = crop_boxes(image, box, size)[0, 0]
        torch.testing.assert_close(crop, colour.view(3, 1, 1).expand(3, size, size), atol=1e-6, rtol=0)
    # A larger crop of the same box: its centre is the colour, its edges blend with the black around it.
    crop = crop_boxes(image, box, 8)[0, 0]
    torch.testing.assert_close(crop[:, 3:5, 3:5], colour.view(3, 1, 1).expand(3, 2, 2), atol=1e-6, rtol=0)


def test_crop_is_differentiable_and_padded_boxes_are_finite():
    images = torch.rand(1, 3, 8, 8, requires_grad=True)
    boxes = torch.tensor([[[1.0, 1.0, 6.0, 5.0], [0.0, 0.0, 0.0, 0.0]]], requires_grad=True)
    crops = crop_boxes(images, boxes, 5)
    assert torch.isfinite(crops).all()
    crops[:, 0].sum().backward()
    assert images.grad.abs().sum() > 0
    assert boxes.grad[0, 0].abs().sum() > 0 and boxes.grad[0, 1].abs().sum() == 0


# ------------------------------------------------------------------------------------------- box_geometry


def test_box_geometry_known_values():
    boxes = torch.tensor([[8.0, 16.0, 24.0, 48.0], [0.0, 0.0, 0.0, 0.0], [-4.0, 0.0, 40.0, 64.0]])
    geo = box_geometry(boxes, 32, 64)
    expected = torch.tensor([[0.25, 0.25, 0.75, 0.75, 0.5, 0.5], [0.0] * 6, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(geo, expected)
    # Per-image sizes broadcast against boxes[..., 0].
    per_image = box_geometry(torch.tensor([[[0.0, 0.0, 8.0, 8.0]], [[0.0, 0.0, 8.0, 8.0]]]),
                             torch.tensor([[16.0], [32.0]]), torch.tensor([[8.0], [16.0]]))
    torch.testing.assert_close(per_image[:, 0, 2:4], torch.tensor([[0.5, 1.0], [0.25, 0.5]]))


# ---------------------------------------------------------------------------------------- encode_objects


def test_encode_objects_zero_rows_exactly_on_padding():
    images, boxes, mask, _ = _shapes_data(4)
    boxes[~mask] = torch.tensor([3.0, 4.0, 20.0, 30.0])        # whatever a padding row's box holds
    torch.manual_seed(0)
    encoder = ObjectEncoder(dim=8, width=4, crop_size=8).eval()
    for spatial in (True, False):
        feats = encode_objects(encoder, images, boxes, mask, spatial=spatial, batch_size=5)
        assert feats.shape == (4, 5, 8 + 6 * spatial)
        nonzero = feats.abs().sum(-1) > 0
        assert torch.equal(nonzero, mask)
        if spatial:
            torch.testing.assert_close(feats[mask][:, 8:], box_geometry(boxes[mask], 32, 32))


def test_encode_objects_keeps_real_rows_nonzero_when_the_cnn_outputs_zero():
    images, boxes, mask, _ = _shapes_data(3)
    encoder = ObjectEncoder(dim=6, width=4, crop_size=8).eval()
    with torch.no_grad():
        encoder.fc.bias.fill_(-1e3)                            # every output unit off: all-zero CNN rows
    with_geo = encode_objects(encoder, images, boxes, mask, spatial=True)
    assert (with_geo[..., :6] == 0).all()
    assert torch.equal(with_geo.abs().sum(-1) > 0, mask)
    without = encode_objects(encoder, images, boxes, mask, spatial=False)
    assert torch.equal(without.abs().sum(-1) > 0, mask)
    assert (without[mask] == NONZERO_EPS).all()


def test_box_features_do_not_depend_on_the_other_boxes():
    images, boxes, mask, _ = _shapes_data(2)
    torch.manual_seed(0)
    encoder = ObjectEncoder(dim=8, width=4, crop_size=8)      # left in train mode: encode switches to eval
    full = encode_objects(encoder, images, boxes, mask, batch_size=256)
    assert encoder.training
    alone_mask = torch.zeros_like(mask)
    alone_mask[1, 2] = True
    moved = boxes.clone()
    moved[1, 0] = torch.tensor([1.0, 1.0, 30.0, 30.0])         # another box of the same image changes
    alone = encode_objects(encoder, images, moved, alone_mask | mask, batch_size=1)
    torch.testing.assert_close(alone[1, 2], full[1, 2], atol=1e-6, rtol=0)
    only = encode_objects(encoder, images, boxes, alone_mask)
    torch.testing.assert_close(only[1, 2], full[1, 2], atol=1e-6, rtol=0)
    assert not torch.allclose(alone[1, 0], full[1, 0])


def test_encode_objects_rejects_inconsistent_inputs():
    images, boxes, mask, _ = _shapes_data(2)
    encoder = ObjectEncoder(dim=4, width=2, crop_size=4)
    with pytest.raises(FeatureInputError, match="box_mask"):
        encode_objects(encoder, images, boxes, mask[:, :3])
    bad = boxes.clone()
    bad[1, 3] = torch.tensor([5.0, 5.0, 5.0, 9.0])
    with pytest.raises(FeatureInputError, match=r"boxes\[1, 3\]"):
        encode_objects(encoder, images, bad, mask)


# ------------------------------------------------------------------------------- pretrain_object_encoder


def test_head_targets_background_and_unannotated():
    labels = torch.tensor([[2, 1], [-1, -1], [3, -1]])
    assert head_targets(labels, [4, 2]).tolist() == [[2, 1], [4, 2], [3, -1]]


def test_pretraining_learns_colour_and_shape_above_chance():
    images, boxes, mask, labels = _shapes_data(64)
    encoder, stats = pretrain_object_encoder(images, boxes, mask, labels, [4, 2], dim=16, width=8,
                                             crop_size=12, epochs=8, batch_size=32, lr=3e-3, seed=0)
    # Chance: 1/5 for colour (4 colours + background), 1/3 for shape; the last epoch's running accuracy.
    assert stats["acc_0"] > 0.8, stats
    assert stats["acc_1"] > 0.7, stats
    assert stats["num_boxes"] == 64 * 4                         # padding rows skipped, background kept
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    # The frozen features carry colour to new images: nearest colour centroid of the training features.
    train = encode_objects(encoder, images, boxes, mask, spatial=False)
    centroids = torch.stack([train[labels[..., 0] == c].mean(0) for c in range(4)])
    images, boxes, mask, labels = _shapes_data(16, seed=1)
    test = encode_objects(encoder, images, boxes, mask, spatial=False)
    objects = labels[..., 0] >= 0
    predicted = torch.cdist(test[objects], centroids).argmin(-1)
    assert (predicted == labels[..., 0][objects]).float().mean() > 0.8


def test_pretraining_learns_a_background_only_set():
    """Every real box is a background proposal: each head's only class is the extra background class."""
    images, boxes, mask, _ = _shapes_data(8)
    labels = torch.full((*mask.shape, 2), -1, dtype=torch.long)
    _, stats = pretrain_object_encoder(images, boxes, mask, labels, [4, 2], dim=8, width=4, crop_size=8,
                                       epochs=8, batch_size=16, lr=1e-2)
    assert stats["acc_0"] == 1.0 and stats["acc_1"] == 1.0 and math.isfinite(stats["loss"])


def test_pretraining_ignores_unannotated_columns():
    """A real object box with only its colour annotated (shape -1) trains the colour head only."""
    images, boxes, mask, labels = _shapes_data(8)
    objects = labels[..., 0] >= 0
    labels[..., 1][objects & (torch.arange(5) % 2 == 0)] = -1
    _, stats = pretrain_object_encoder(images, boxes, mask, labels, [4, 2], dim=8, width=4, crop_size=8,
                                       epochs=1, batch_size=64)
    assert math.isfinite(stats["loss"]) and stats["num_boxes"] == 32


def test_pretraining_is_deterministic_for_a_seed():
    images, boxes, mask, labels = _shapes_data(12)
    kwargs = {"dim": 8, "width": 4, "crop_size": 8, "epochs": 2, "batch_size": 16, "max_boxes": 30}
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    enc_a, stats_a = pretrain_object_encoder(images, boxes, mask, labels, [4, 2], seed=5, **kwargs)
    assert torch.equal(torch.rand(1), before)                  # the caller's RNG stream is untouched
    enc_b, stats_b = pretrain_object_encoder(images, boxes, mask, labels, [4, 2], seed=5, **kwargs)
    enc_c, _ = pretrain_object_encoder(images, boxes, mask, labels, [4, 2], seed=6, **kwargs)
    assert stats_a["num_boxes"] == 30
    for key in ("loss", "acc_0", "acc_1"):
        assert stats_a[key] == stats_b[key]
    for (name, a), b, c in zip(enc_a.state_dict().items(), enc_b.state_dict().values(),
                               enc_c.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(enc_a.fc.weight, enc_c.fc.weight)


def test_pretraining_rejects_labels_out_of_range():
    images, boxes, mask, labels = _shapes_data(2)
    labels[0, 1, 1] = 2                                         # shape column has 2 classes: 0, 1
    with pytest.raises(FeatureInputError, match=r"box_labels\[\.\.\., 1\]"):
        pretrain_object_encoder(images, boxes, mask, labels, [4, 2], epochs=1)
    with pytest.raises(FeatureInputError, match="box_labels"):
        pretrain_object_encoder(images, boxes, mask, labels[..., :1], [4, 2], epochs=1)


# ---------------------------------------------------------------------------------------------- grid mode


def test_grid_boxes_tile_the_image_row_major():
    cells = grid_boxes(64, 8)
    assert cells.shape == (64, 4)
    torch.testing.assert_close(cells[0], torch.tensor([0.0, 0.0, 8.0, 8.0]))
    torch.testing.assert_close(cells[1], torch.tensor([8.0, 0.0, 16.0, 8.0]))      # next column first
    torch.testing.assert_close(cells[8], torch.tensor([0.0, 8.0, 8.0, 16.0]))
    # Each pixel (by its centre) lies in exactly one cell.
    centres = torch.arange(64) + 0.5
    px, py = centres.view(1, 1, -1), centres.view(1, -1, 1)
    inside = ((px >= cells[:, 0, None, None]) & (px < cells[:, 2, None, None])
              & (py >= cells[:, 1, None, None]) & (py < cells[:, 3, None, None]))
    assert (inside.sum(0) == 1).all()
    assert (grid_boxes(30, 4)[-1] == torch.tensor([22.5, 22.5, 30.0, 30.0])).all()


def test_grid_encoder_shapes_geometry_and_scaling():
    torch.manual_seed(0)
    enc = GridEncoder(dim=16, width=4, image_size=32, grid=4)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    out = enc(images)
    assert enc.out_dim == 22 and out.shape == (3, 16, 22)
    torch.testing.assert_close(out[..., 16:], box_geometry(grid_boxes(32, 4), 32, 32).expand(3, -1, -1))
    torch.testing.assert_close(enc(images.float() / 127.5 - 1), out)
    assert GridEncoder(dim=16, width=4, image_size=32, grid=3)(images).shape == (3, 9, 22)
    flat = GridEncoder(dim=16, width=4, image_size=32, grid=4, spatial=False)
    assert flat.out_dim == 16 and flat(images).shape == (3, 16, 16)
    with pytest.raises(FeatureInputError, match="GridEncoder"):
        enc(images[:, :, :16])


def test_grid_cells_follow_the_image_layout():
    """Row-major cells: content in the top-right of the image changes cell (0, grid-1) features, not the
    bottom-left cell's (receptive fields are local)."""
    torch.manual_seed(0)
    enc = GridEncoder(dim=8, width=4, image_size=32, grid=4)
    blank = torch.zeros(1, 3, 32, 32)
    marked = blank.clone()
    marked[0, :, 0:8, 24:32] = 1.0
    delta = (enc(marked) - enc(blank)).abs().sum(-1)[0]
    assert delta[3] > 0 and delta[12] == 0


def test_gradients_flow_through_the_grid_encoder():
    torch.manual_seed(0)
    enc = GridEncoder(dim=8, width=4, image_size=16, grid=4)
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    enc(images)[..., :8].sum().backward()
    assert images.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_grid_cells_without_geometry_are_never_all_zero():
    enc = GridEncoder(dim=4, width=2, image_size=16, grid=4, spatial=False)
    with torch.no_grad():
        enc.proj.bias.fill_(-1e3)
    out = enc(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    assert (out == NONZERO_EPS).all()
