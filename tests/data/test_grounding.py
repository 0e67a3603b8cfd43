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
        pool = _matching(labels, m.group("tc"), m.group("ts")) - {a}
        axis = cx if m.group(3).endswith("of") else cy
        assert all(abs(axis[j] - axis[a]) >= 1 for j in pool), phrase  # no relation hinges on < 1 pixel
        return {j for j in pool if rel(j)}
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


# ---------------------------------------------------------------------------------------------------------
# Flickr30k Entities official files (tiny copies written here)

_SENTENCES = {
    101: ["[/EN#18/people A man] with [/EN#19/clothing pierced ears] is wearing [/EN#20/clothing glasses] .",
          "[/EN#18/people A guy] stands in [/EN#0/notvisual the light] near [/EN#21/scene a wall] ."],
    202: ["[/EN#30/people/other Two kids] play with [/EN#31/animals a dog] ."],
}
_XML = {
    101: [("18", (10, 20, 110, 220)), ("19", (40, 30, 60, 50)), ("18", (120, 20, 200, 210)),
          ("20", None), ("21", None)],  # 20: nobndbox; 21: scene without a box
    202: [("30", (5, 5, 50, 90)), ("30", (60, 5, 100, 95)), ("31", (110, 40, 150, 80))],
}


def _write_flickr(root, proposals):
    import base64

    folder = root / "flickr30k_entities"
    for sub in ("Sentences", "Annotations"):
        (folder / sub).mkdir(parents=True)
    for split, ids in (("train", [202]), ("val", []), ("test", [101, 202])):
        (folder / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    for image_id, lines in _SENTENCES.items():
        (folder / "Sentences" / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
        objs = []
        for name, box in _XML[image_id]:
            inner = ("<nobndbox>1</nobndbox>" if box is None else
                     "<bndbox>" + "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
                     + "</bndbox>")
            objs.append(f"<object><name>{name}</name>{inner}</object>")
        (folder / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>500</width><height>333</height>"
            f"<depth>3</depth></size>{''.join(objs)}</annotation>")
    lines = []
    for image_id, boxes in proposals.items():
        b = np.asarray(boxes, dtype=np.float32)
        f = np.arange(len(b) * 2, dtype=np.float32).reshape(len(b), 2) + image_id
        lines.append("\t".join([str(image_id), "500", "333", str(len(b)), base64.b64encode(b.tobytes()).decode(),
                                base64.b64encode(f.tobytes()).decode()]))
    (folder / "test36.tsv").write_text("\n".join(lines) + "\n")
    return folder


_PROPOSALS = {101: [[10, 20, 110, 220], [40, 30, 60, 52], [300, 300, 400, 330], [125, 25, 200, 210]],
              202: [[110, 40, 150, 80], [0, 0, 500, 333], [60, 5, 100, 95]]}


def test_flickr30k_entities_reader(tmp_path, caplog):
    from paperzoo.data.grounding import ENTITY_TYPES, load_flickr30k_entities

    _write_flickr(tmp_path, _PROPOSALS)
    with caplog.at_level("INFO", logger="paperzoo.data.grounding"):
        data = load_flickr30k_entities("test", data_root=tmp_path)
    assert "skipped 3 of 8 phrases without a box" in caplog.text  # glasses (nobndbox), notvisual, scene
    assert data.phrases == ["A man", "pierced ears", "A guy", "Two kids", "a dog"]
    assert data.image_ids == (101, 202) and data.image_index.tolist() == [0, 0, 0, 1, 1]
    assert [ENTITY_TYPES[k] for k in data.kind.tolist()] == ["people", "clothing", "people", "people", "animals"]
    assert data.target_mask.tolist() == [[True, True], [True, False], [True, True], [True, True], [True, False]]
    assert data.target_boxes[0].tolist() == [[10, 20, 110, 220], [120, 20, 200, 210]]
    assert data.sentences[1] == "A man with pierced ears is wearing glasses ."
    assert data.phrase_word.tolist() == [0, 3, 0, 0, 4]
    assert data.boxes.shape == (2, 4, 4) and data.box_mask.tolist() == [[True] * 4, [True, True, True, False]]
    assert data.features[1, 0].tolist() == [202.0, 203.0] and data.image_size[0].tolist() == [500.0, 333.0]
    # "A man": either of its two boxes counts; "Two kids": proposal 2 hits its second box
    scores = torch.tensor([[0.0, 0, 0, 1.0], [0.0, 1, 0, 0], [0.0, 0.5, 1, 0], [0.0, 1, 0.5, 0], [1.0, 0, 0, 0]])
    assert recall_at_k(scores, data, ks=(1, 2, 3)) == pytest.approx({1: 3 / 5, 2: 4 / 5, 3: 1.0})
    assert recall_upper_bound(data) == 1.0
    assert len(load_flickr30k_entities("test", data_root=tmp_path, limit=1)) == 3


def test_flickr30k_errors_name_the_file(tmp_path):
    from paperzoo.data.grounding import load_flickr30k_entities

    folder = _write_flickr(tmp_path, {101: _PROPOSALS[101]})
    with pytest.raises(ValueError, match=r"test36\.tsv: image id 202 has no feature row"):
        load_flickr30k_entities("test", data_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="no bottom-up features for split 'train'"):
        load_flickr30k_entities("train", data_root=tmp_path)
    sentences = folder / "Sentences" / "202.txt"
    sentences.write_text("[/EN#30/people Two kids] play with [/EN#31 animals a dog] .\n")
    with pytest.raises(ValueError, match=r"Sentences/202\.txt:1: a malformed"):
        load_flickr30k_entities("test", data_root=tmp_path, limit=2)
    (folder / "Annotations" / "101.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"Annotations/101\.xml: not valid XML"):
        load_flickr30k_entities("test", data_root=tmp_path)
    (folder / "test.txt").write_text("101\nabc\n")
    with pytest.raises(ValueError, match=r"test\.txt:2: not an image id"):
        load_flickr30k_entities("test", data_root=tmp_path)
