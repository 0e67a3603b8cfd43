"""Phrase grounding data: synthetic phrases (unique referents, proposals), IoU, Recall@k, errors."""
import re

import numpy as np
import pytest
import torch

from paperzoo.data.grounding import (
    PHRASE_KINDS,
    GroundingData,
    box_iou,
    make_grounding,
    recall_at_k,
    recall_upper_bound,
)
from paperzoo.data.vqa import COLORS, SHAPES


@pytest.fixture(scope="module")
def ground() -> GroundingData:
    return make_grounding("train", 16, phrases_per_image=4, size=64, seed=2, num_proposals=24)


def test_layout(ground):
    p = len(ground)
    assert p == 64 and ground.images.shape == (16, 3, 64, 64) and ground.boxes.shape == (16, 24, 4)
    assert ground.target_boxes.shape == (p, 1, 4) and ground.target_mask.all()
    assert ground.box_labels.shape == (16, 24, 2) and ground.kind_names == PHRASE_KINDS
    counts = torch.bincount(ground.kind, minlength=4)
    assert counts.min() >= 10  # the four kinds in turn
    n_obj = ground.object_mask.sum(1)
    assert n_obj.min() >= 4 and n_obj.max() <= 7
    for i in range(16):  # exact boxes first in priority, so every object has one; padding is zero / -1
        real = int(ground.box_mask[i].sum())
        assert ground.box_mask[i, :real].all() and not ground.box_mask[i, real:].any()
        assert (ground.boxes[i, real:] == 0).all() and (ground.box_labels[i, real:] == -1).all()
    assert ground.box_mask.sum(1).min() < 24  # images with few objects are padded


def test_deterministic_and_splits_disjoint(ground):
    fewer = make_grounding("train", 5, phrases_per_image=4, size=64, seed=2)
    assert torch.equal(fewer.images, ground.images[:5]) and torch.equal(fewer.boxes, ground.boxes[:5])
    assert fewer.phrases == ground.phrases[:20]
    seen = {bytes(im.numpy()) for im in ground.images}
    for split in ("val", "test"):
        other = make_grounding(split, 16, phrases_per_image=1, size=64, seed=2)
        assert not seen & {bytes(im.numpy()) for im in other.images}


_DESC = r"(?:(?P<{p}c>{colors}) )?(?P<{p}s>{shapes}|object)"


def _desc_re(prefix: str) -> str:
    return _DESC.format(p=prefix, colors="|".join(COLORS), shapes="|".join(SHAPES))


def _matching(labels: np.ndarray, colour: str | None, shape: str) -> set[int]:
    return {j for j in range(len(labels))
            if (colour is None or COLORS[labels[j, 0]] == colour) and (shape == "object" or SHAPES[labels[j, 1]] == shape)}


def referents(phrase: str, boxes: np.ndarray, labels: np.ndarray) -> set[int]:
    """The objects a phrase can mean, worked out from boxes and labels alone."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    m = re.fullmatch(rf"the (largest|smallest) ({'|'.join(SHAPES)}|object)", phrase)
    if m:
        pool = sorted(_matching(labels, None, m.group(2)), key=lambda j: area[j])
        best = pool[-1] if m.group(1) == "largest" else pool[0]
        return {j for j in pool if area[j] == area[best]}
    m = re.fullmatch(rf"the {_desc_re('t')} (left of|right of|above|below) the {_desc_re('a')}", phrase)
    if m:
        anchors = _matching(labels, m.group("ac"), m.group("as"))
        assert len(anchors) == 1, phrase
        a = anchors.pop()
        rel = {"left of": lambda j: cx[j] < cx[a], "right of": lambda j: cx[j] > cx[a],
               "above": lambda j: cy[j] < cy[a], "below": lambda j: cy[j] > cy[a]}[m.group(3)]
        return {j for j in _matching(labels, m.group("tc"), m.group("ts")) if j != a and rel(j)}
    m = re.fullmatch(rf"the {_desc_re('t')}", phrase)
    assert m, phrase
    return _matching(labels, m.group("tc"), m.group("ts"))


def test_each_phrase_names_exactly_its_target(ground):
    for p, phrase in enumerate(ground.phrases):
        i = int(ground.image_index[p])
        n = int(ground.object_mask[i].sum())
        boxes, labels = ground.objects[i, :n].numpy(), ground.object_labels[i, :n].numpy()
        assert referents(phrase, boxes, labels) == {int(ground.target_object[p])}, phrase
        assert torch.equal(ground.target_boxes[p, 0], ground.objects[i, ground.target_object[p]])
    kinds = [ground.kind_names[k] for k in ground.kind.tolist()]
    relational = [ph for ph, k in zip(ground.phrases, kinds) if k == "relation"]
    assert relational and all(re.search(r" (left of|right of|above|below) the ", ph) for ph in relational)


def test_proposals_and_their_labels(ground):
    assert recall_upper_bound(ground) == 1.0  # every object's exact box is a proposal
    ious = []
    for i in range(len(ground.images)):
        real = ground.box_mask[i]
        n = int(ground.object_mask[i].sum())
        iou = box_iou(ground.boxes[i, real], ground.objects[i, :n])
        best, j = iou.max(dim=1)
        want = torch.where((best >= 0.5).unsqueeze(1), ground.object_labels[i, j], torch.full((len(j), 2), -1))
        assert torch.equal(ground.box_labels[i, real], want)
        assert (iou.max(dim=0).values > 0.999).all()  # exact boxes
        ious.append(best)
        inside = ground.boxes[i, real]
        assert inside.min() >= 0 and inside.max() <= 64 and (inside[:, 2:] > inside[:, :2]).all()
    ious = torch.cat(ious)
    assert ((ious >= 0.5) & (ious < 0.9)).sum() > 16  # positive jitter
    assert ((ious > 0.1) & (ious < 0.5)).sum() > 16  # hard negatives
    assert (ious < 0.1).sum() > 16  # background


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 4, 4], [5, 5, 5, 9]])
    b = torch.tensor([[0.0, 0, 2, 2], [1, 0, 3, 2], [1, 1, 3, 3], [10, 10, 12, 12]])
    want = torch.tensor([[1.0, 1 / 3, 1 / 7, 0], [0.25, 0.25, 0.25, 0], [0, 0, 0, 0]])
    assert torch.allclose(box_iou(a, b), want)
    batched = box_iou(torch.stack([a, a + 1]), torch.stack([b, b + 1]))
    assert batched.shape == (2, 3, 4) and torch.allclose(batched[1], want)
    with pytest.raises(ValueError, match="4 coordinates"):
        box_iou(torch.zeros(2, 3), b)


def _hand_made() -> GroundingData:
    # image 0: proposals 0 exact hit, 1 a near miss (IoU 1/3), 2 background, 3 padding that covers the target
    # image 1: proposals never reach IoU 0.5 with phrase 2's target
    boxes = torch.tensor([[[0.0, 0, 10, 10], [5, 0, 15, 10], [30, 30, 40, 40], [0, 0, 10, 10]],
                          [[0.0, 0, 4, 4], [20, 20, 30, 30], [0, 0, 0, 0], [0, 0, 0, 0]]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    targets = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 0, 0]],
                            [[50.0, 50, 60, 60], [4, 0, 14, 10]],  # the second of two targets is hit
                            [[0.0, 0, 10, 10], [0, 0, 4, 4]]])  # c's padding row would be hit: masked
    return GroundingData(phrases=["a", "b", "c"], image_index=torch.tensor([0, 0, 1]), target_boxes=targets,
                         target_mask=torch.tensor([[True, False], [True, True], [True, False]]), images=None,
                         boxes=boxes, box_mask=mask, box_labels=None, features=None, image_size=None)


def test_recall_at_k_hand_made():
    data = _hand_made()
    scores = torch.tensor([[0.9, 0.5, 0.1, 9.0],  # phrase a: its hit ranked first (padding ignored)
                           [0.9, 0.5, 0.7, 9.0],  # phrase b: its hit (proposal 1, IoU 0.82 with target 2) third
                           [0.1, 0.9, 9.0, 9.0]])  # phrase c: no proposal can hit
    assert recall_at_k(scores, data, ks=(1, 2, 3, 10)) == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 2 / 3, 10: 2 / 3})
    assert recall_upper_bound(data) == pytest.approx(2 / 3)
    masked = scores.masked_fill(~data.box_mask[data.image_index], float("-inf"))
    assert recall_at_k(masked, data, ks=(1, 3)) == pytest.approx({1: 1 / 3, 3: 2 / 3})
    assert recall_at_k(scores, data, ks=(1,), iou=0.3)[1] == pytest.approx(2 / 3)  # b's first: IoU 0.43
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(scores[:, :3], data)
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(torch.full((3, 4), float("nan")), data)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_proposals"):
        make_grounding("train", 2, num_proposals=6)
    with pytest.raises(ValueError, match="split"):
        make_grounding("dev", 2)
