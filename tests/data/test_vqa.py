"""VQA data: the relational scene generator (determinism, boxes, answers), easy-VQA wheel reader, errors."""
import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.data import catalog, vqa
from paperzoo.data.roots import DataNotFoundError
from paperzoo.data.vqa import (
    BACKGROUND_RGB,
    COLOR_RGB,
    COLORS,
    RELATIONAL_ANSWERS,
    SHAPES,
    load_easy_vqa,
    make_relational_vqa,
)


@pytest.fixture(scope="module")
def rel() -> vqa.VQAData:
    return make_relational_vqa("train", 12, questions_per_image=10, size=64, seed=5)


def test_relational_layout(rel):
    q = len(rel)
    assert q == 120 and rel.images.shape == (12, 3, 64, 64) and rel.images.dtype == torch.uint8
    assert rel.boxes.shape == (12, 6, 4) and rel.boxes.dtype == torch.float32 and rel.box_mask.all()
    assert rel.box_labels.shape == (12, 6, 2) and rel.answer_scores.shape == (q, len(RELATIONAL_ANSWERS))
    assert rel.answers == list(RELATIONAL_ANSWERS) and rel.qtype_names == ("non_relational", "relational")
    assert torch.equal(rel.answer_scores.sum(1), torch.ones(q))
    assert rel.image_index.tolist() == [i for i in range(12) for _ in range(10)]
    for i in range(12):  # distinct colours per image
        assert len(set(rel.box_labels[i, :, 0].tolist())) == 6
    assert set(rel.box_labels[..., 1].unique().tolist()) == {SHAPES.index("square"), SHAPES.index("circle")}
    # half of the questions of each image are relational; kinds of each type balanced within one per image
    assert rel.qtype.view(12, 10).sum(1).tolist() == [5] * 12
    counts = torch.bincount(rel.qkind, minlength=len(rel.qkind_names))
    assert counts[:3].max() - counts[:3].min() <= 12 and counts[3:].max() - counts[3:].min() <= 12
    assert counts.min() > 0


def test_vocabulary_is_fixed():
    small = make_relational_vqa("test", 2, questions_per_image=3, num_objects=3, shapes=("triangle",), seed=1)
    assert small.answers == list(RELATIONAL_ANSWERS) and small.boxes.shape == (2, 3, 4)
    assert set(small.box_labels[..., 1].flatten().tolist()) == {SHAPES.index("triangle")}


def test_deterministic_per_image_and_seed(rel):
    fewer = make_relational_vqa("train", 3, questions_per_image=10, size=64, seed=5)
    assert torch.equal(fewer.images, rel.images[:3]) and torch.equal(fewer.boxes, rel.boxes[:3])
    assert fewer.questions == rel.questions[:30] and torch.equal(fewer.answer_scores, rel.answer_scores[:30])
    other = make_relational_vqa("train", 3, questions_per_image=10, size=64, seed=6)
    assert not torch.equal(other.images, rel.images[:3])


def test_splits_never_share_an_image(rel):
    seen = {bytes(im.numpy()) for im in rel.images}
    for split in ("val", "test"):
        other = make_relational_vqa(split, 12, questions_per_image=1, size=64, seed=5)
        assert not seen & {bytes(im.numpy()) for im in other.images}


def _check_tight(image: np.ndarray, boxes: np.ndarray, colours: list[tuple[int, int, int]]):
    """Every non-background pixel lies in a box; every box edge holds one; the box centre has its colour."""
    ink = np.any(image != np.array(BACKGROUND_RGB), axis=2)
    inside = np.zeros_like(ink)
    for (x0, y0, x1, y1), colour in zip(boxes.astype(int), colours):
        sub = ink[y0:y1, x0:x1]
        assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()
        inside[y0:y1, x0:x1] = True
        assert tuple(image[(y0 + y1) // 2, (x0 + x1) // 2]) == colour
    assert not (ink & ~inside).any()


def test_boxes_are_tight(rel):
    for i in range(len(rel.images)):
        colours = [COLOR_RGB[c] for c in rel.box_labels[i, :, 0].tolist()]
        _check_tight(rel.images[i].permute(1, 2, 0).numpy(), rel.boxes[i].numpy(), colours)


def test_render_scene_all_shapes_tight():
    objects = [(12.3, 14.7, 12.0, 0, 0), (40.5, 15.2, 13.0, 1, 1), (20.0, 44.0, 14.0, 2, 2),
               (48.2, 47.9, 9.5, 5, 2)]
    image, boxes = vqa.render_scene(objects, 64)
    _check_tight(image, boxes, [COLOR_RGB[o[3]] for o in objects])
    # antialiased: edge pixels blend object and background
    assert len({tuple(p) for p in image.reshape(-1, 3)}) > len(objects) + 1


def _recompute(question: str, boxes: np.ndarray, labels: np.ndarray, size: int) -> str:
    """Answer a generated question from the boxes and labels alone (independently of the generator)."""
    colour = re.findall(r"the (\w+) object", question)[-1]
    k = [i for i in range(len(labels)) if COLORS[labels[i, 0]] == colour]
    assert len(k) == 1
    k = k[0]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    dist = [((cx[j] - cx[k]) ** 2 + (cy[j] - cy[k]) ** 2) ** 0.5 if j != k else None for j in range(len(cx))]
    others = sorted((d, j) for j, d in enumerate(dist) if d is not None)
    if question.startswith("what is the shape of the object nearest"):
        return SHAPES[labels[others[0][1], 1]]
    if question.startswith("what is the shape of the object farthest"):
        return SHAPES[labels[others[-1][1], 1]]
    if question.startswith("what color is the object nearest"):
        return COLORS[labels[others[0][1], 0]]
    if question.startswith("how many objects"):
        return str(sum(labels[j, 1] == labels[k, 1] for j in range(len(labels))))
    if question.startswith("what is the shape of the"):
        return SHAPES[labels[k, 1]]
    if "left or right" in question:
        return "left" if cx[k] < size / 2 else "right"
    assert "top or bottom" in question
    return "top" if cy[k] < size / 2 else "bottom"


def test_answers_recomputed_from_boxes(rel):
    answers = rel.answer_index().tolist()
    relational = {"nearest", "farthest", "how many"}
    for q, question in enumerate(rel.questions):
        i = int(rel.image_index[q])
        expected = _recompute(question, rel.boxes[i].numpy(), rel.box_labels[i].numpy(), 64)
        assert rel.answers[answers[q]] == expected, question
        assert rel.qtype[q].item() == int(any(w in question for w in relational))


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        make_relational_vqa("dev", 2)
    with pytest.raises(ValueError, match="num_objects"):
        make_relational_vqa("train", 2, num_objects=7)
    with pytest.raises(ValueError, match="shapes"):
        make_relational_vqa("train", 2, shapes=("hexagon",))


# ---------------------------------------------------------------------------------------------------------
# easy-VQA

@pytest.fixture(scope="module")
def easy_dir():
    try:
        return vqa.easy_vqa_dir()
    except DataNotFoundError as exc:
        pytest.skip(f"easy-vqa not installed: {str(exc).splitlines()[0]}")


def test_easy_vqa_test_split(easy_dir):
    data = load_easy_vqa("test")
    assert len(data) == 9673 and data.num_images == 1000 and len(data.answers) == 13
    assert data.images.shape == (1000, 3, 64, 64) and data.images.dtype == torch.uint8
    assert data.qtype_names == ("yes/no", "color", "shape")
    assert int((data.qtype == 0).sum()) == 7136  # the wheel's README: 7,136 yes/no test questions
    for q in range(0, len(data), 97):  # the type agrees with the wording
        text, kind = data.questions[q], data.qtype_names[data.qtype[q]]
        if kind == "color":
            assert "color" in text
        elif kind == "shape":
            assert text.startswith("what") and "color" not in text


def test_easy_vqa_limit_matches_files(easy_dir):
    data = load_easy_vqa("train", limit=40)
    rows = json.loads((easy_dir / "train" / "questions.json").read_text())[:40]
    assert data.questions == [r[0] for r in rows]
    assert [data.answers[a] for a in data.answer_index().tolist()] == [r[1] for r in rows]
    assert [data.image_ids[i] for i in data.image_index.tolist()] == [r[2] for r in rows]
    assert data.num_images == len({r[2] for r in rows}) < 40
    for r, image_id in enumerate(data.image_ids):
        pixels = np.asarray(Image.open(easy_dir / "train" / "images" / f"{image_id}.png").convert("RGB"))
        assert np.array_equal(data.images[r].permute(1, 2, 0).numpy(), pixels)


def _tiny_copy(easy_dir, root, rows):
    folder = root / "easy_vqa"
    for split in ("train", "test"):
        (folder / split / "images").mkdir(parents=True)
        (folder / split / "questions.json").write_text(json.dumps(rows))
        for image_id in (0, 1):
            shutil.copy(easy_dir / split / "images" / f"{image_id}.png", folder / split / "images")
    shutil.copy(easy_dir / "answers.txt", folder)
    return folder


def test_easy_vqa_data_root_and_malformed_row(easy_dir, tmp_path):
    rows = [["what color is the shape?", "blue", 1], ["is there a circle?", "no", 0]]
    folder = _tiny_copy(easy_dir, tmp_path, rows)
    data = load_easy_vqa("test", data_root=tmp_path)
    assert data.image_ids == (1, 0) and data.qtype.tolist() == [1, 0] and str(folder) in data.source
    (folder / "train" / "questions.json").write_text(json.dumps(rows + [["is there a circle?", "no"]]))
    with pytest.raises(ValueError, match=r"train/questions\.json: row 2 is not"):
        load_easy_vqa("train", data_root=tmp_path)
    (folder / "train" / "questions.json").write_text(json.dumps(rows + [["is it?", "maybe", 0]]))
    with pytest.raises(ValueError, match=r"row 2: answer 'maybe'"):
        load_easy_vqa("train", data_root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_easy_vqa("val", data_root=tmp_path)


def test_easy_vqa_missing_names_the_install(monkeypatch, tmp_path):
    source = dataclasses.replace(catalog.DATASETS["easy_vqa"], packages=())
    monkeypatch.setitem(catalog.DATASETS, "easy_vqa", source)
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match="pip install easy-vqa") as info:
        load_easy_vqa("train", data_root=tmp_path)
    assert str(tmp_path / "easy_vqa") in str(info.value)
