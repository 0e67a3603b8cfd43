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


def test_subset_keeps_the_image_table(rel):
    idx = [5, 0, 37]
    sub = rel.subset(idx)
    assert sub.questions == [rel.questions[i] for i in idx] and len(sub) == 3
    assert torch.equal(sub.image_index, rel.image_index[idx]) and torch.equal(sub.qtype, rel.qtype[idx])
    assert torch.equal(sub.answer_scores, rel.answer_scores[idx]) and torch.equal(sub.qkind, rel.qkind[idx])
    assert sub.images is rel.images and sub.num_images == 12


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
    if "nearest" in question:  # never asked when the winner leads by less than a pixel
        assert others[1][0] - others[0][0] >= 1, question
    if "farthest" in question:
        assert others[-1][0] - others[-2][0] >= 1, question
    assert abs(cx[k] - size / 2) >= 1 and abs(cy[k] - size / 2) >= 1
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


# ---------------------------------------------------------------------------------------------------------
# VQA v2 official files (tiny copies written here) and bottom-up features

def _ans(*texts):
    return [{"answer": t, "answer_confidence": "yes", "answer_id": k + 1} for k, t in enumerate(texts)]


def _write_vqa_v2(folder, split="train"):
    """4 questions on 2 COCO images; ids deliberately out of order."""
    qs = [{"image_id": 9, "question": "How many dogs?", "question_id": 91},
          {"image_id": 7, "question": "Is it raining?", "question_id": 70},
          {"image_id": 7, "question": "What color is the bus?", "question_id": 72},
          {"image_id": 9, "question": "Is this a dog?", "question_id": 90}]
    anns = [
        {"question_id": 91, "image_id": 9, "answer_type": "number", "multiple_choice_answer": "2",
         "answers": _ans("Two", "2", "2", "two", "3", "3", "3", "1", "2 ", "two.")},
        {"question_id": 70, "image_id": 7, "answer_type": "yes/no", "multiple_choice_answer": "no",
         "answers": _ans(*(["no"] * 9 + ["yes"]))},
        {"question_id": 72, "image_id": 7, "answer_type": "other", "multiple_choice_answer": "red",
         "answers": _ans("Red", "red", "the red", "maroon", "red!", "red.", "dark red", "red", "red", "red")},
        {"question_id": 90, "image_id": 9, "answer_type": "yes/no", "multiple_choice_answer": "yes",
         "answers": _ans(*(["yes"] * 10))}]
    q_name, a_name = vqa.vqa_v2_files(split)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / q_name).write_text(json.dumps({"questions": qs}))
    (folder / a_name).write_text(json.dumps({"annotations": anns}))
    return folder / q_name, folder / a_name


def _feature_rows():
    """image id -> (features (n, 3), boxes (n, 4), width, height) with n = 2 and 3 boxes."""
    rng = np.random.default_rng(0)
    out = {}
    for image_id, n, (w, h) in ((7, 3, (640.0, 480.0)), (9, 2, (500.0, 375.0)), (11, 2, (100.0, 100.0))):
        xy = rng.uniform(0, 100, size=(n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(5, 50, size=(n, 2)).astype(np.float32)], axis=1)
        out[image_id] = (rng.normal(size=(n, 3)).astype(np.float32), boxes, w, h)
    return out


def _b64(a: np.ndarray) -> str:
    import base64

    return base64.b64encode(np.ascontiguousarray(a, dtype=np.float32).tobytes()).decode("ascii")


def _write_tsv(path, rows, num_boxes=None):
    lines = []
    for image_id, (f, b, w, h) in rows.items():
        n = len(b) if num_boxes is None or image_id not in num_boxes else num_boxes[image_id]
        lines.append("\t".join([str(image_id), str(int(w)), str(int(h)), str(n), _b64(b), _b64(f)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_hdf5(folder, split, rows, adaptive=False, bb_boxes=None):
    import pickle

    h5py = pytest.importorskip("h5py")
    order = [11, 9, 7]  # rows in the file: not the question order
    name = f"{split}{'' if adaptive else '36'}"
    spatial = []
    for i in order:
        _, b, w, h = rows[i]
        s = np.stack([b[:, 0] / w, b[:, 1] / h, b[:, 2] / w, b[:, 3] / h, (b[:, 2] - b[:, 0]) / w,
                      (b[:, 3] - b[:, 1]) / h], axis=1)
        spatial.append(s.astype(np.float32))
    with h5py.File(folder / f"{name}.hdf5", "w") as hf:
        if adaptive:
            counts = [len(rows[i][1]) for i in order]
            stops = np.cumsum(counts)
            hf["pos_boxes"] = np.stack([stops - counts, stops], axis=1)
            hf["image_features"] = np.concatenate([rows[i][0] for i in order])
            hf["image_bb"] = np.concatenate([rows[i][1] for i in order])
            hf["spatial_features"] = np.concatenate(spatial)
        else:  # fixed layout: every image padded to 3 boxes by repeating its last (as real files have 36)
            def pad(a):
                return np.concatenate([a, np.repeat(a[-1:], 3 - len(a), axis=0)])
            hf["image_features"] = np.stack([pad(rows[i][0]) for i in order])
            hf["image_bb"] = np.stack([pad(rows[i][1])[: bb_boxes or 3] for i in order])
            hf["spatial_features"] = np.stack([pad(s) for s in spatial])
    with open(folder / f"{name}_imgid2idx.pkl", "wb") as fh:
        pickle.dump({i: r for r, i in enumerate(order)}, fh)


def test_normalize_answer_and_scores():
    norm = vqa.normalize_answer
    assert [norm(a) for a in ("Two", "the dog.", "yes!", "1,000", "dont know", "t-shirt", "A red  car", "3.5")] == [
        "2", "dog", "yes", "1000", "don't know", "t shirt", "red car", "3.5"]
    assert [vqa.answer_score(c) for c in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]


def test_vqa_v2_with_tsv_features(tmp_path):
    folder = tmp_path / "vqa_v2"
    _write_vqa_v2(folder)
    rows = _feature_rows()
    _write_tsv(folder / "train36.tsv", rows)
    data = vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)
    assert data.question_ids == (70, 72, 90, 91)  # sorted by question id
    assert data.image_ids == (7, 9) and data.image_index.tolist() == [0, 0, 1, 1]
    assert [data.qtype_names[t] for t in data.qtype.tolist()] == ["yes/no", "other", "yes/no", "number"]
    assert data.answers == ["2", "no", "red", "yes"]  # each the answer of one question: alphabetical
    score = {a: data.answer_scores[3, k].item() for k, a in enumerate(data.answers)}
    assert score["2"] == 1.0 and "3" not in score  # "Two", "2", "2", "two", "2 ", "two." -> 6 of 10
    assert data.answer_scores[1, data.answers.index("red")].item() == 1.0  # 8 normalise to "red"
    assert data.answer_scores[0, data.answers.index("yes")].item() == pytest.approx(0.3)
    assert data.answer_scores[0, data.answers.index("no")].item() == 1.0
    assert data.images is None and data.features.shape == (2, 3, 3) and data.boxes.shape == (2, 3, 4)
    assert data.box_mask.tolist() == [[True, True, True], [True, True, False]]
    for r, image_id in enumerate(data.image_ids):
        f, b, w, h = rows[image_id]
        n = len(b)
        assert torch.equal(data.features[r, :n], torch.from_numpy(f))
        assert torch.equal(data.boxes[r, :n], torch.from_numpy(b)) and (data.boxes[r, n:] == 0).all()
        assert data.image_size[r].tolist() == [w, h]
    limited = vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1, limit=2)
    assert limited.question_ids == (70, 72) and limited.image_ids == (7,) and limited.features.shape[0] == 1
    text_only = vqa.load_vqa_v2("train", data_root=tmp_path, features=None, answers=["red", "no"])
    assert text_only.boxes is None and text_only.answers == ["red", "no"]
    assert text_only.answer_scores[:, 0].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_vqa_v2_vocabulary_from_train_and_min_count(tmp_path):
    folder = tmp_path / "vqa_v2"
    _write_vqa_v2(folder)
    _write_vqa_v2(folder, "val")
    assert vqa.vqa_v2_answer_vocab(folder / vqa.vqa_v2_files("train")[1], min_count=1) == ["2", "no", "red", "yes"]
    assert vqa.vqa_v2_answer_vocab(folder / vqa.vqa_v2_files("train")[1], min_count=2) == []
    val_a = folder / vqa.vqa_v2_files("val")[1]
    anns = json.loads(val_a.read_text())
    anns["annotations"][0]["multiple_choice_answer"] = "Red!"  # now "red" is the answer of 2 val questions
    val_a.write_text(json.dumps(anns))
    val = vqa.load_vqa_v2("val", data_root=tmp_path, features=None, min_answer_count=1)
    assert val.answers == ["red", "no", "yes", "2"] and len(val) == 4  # train + val: red 3, no/yes 2, "2" 1
    train = vqa.load_vqa_v2("train", data_root=tmp_path, features=None, min_answer_count=3)
    assert train.answers == ["red"]


def test_vqa_v2_hdf5_fixed_and_adaptive(tmp_path):
    folder = tmp_path / "vqa_v2"
    _write_vqa_v2(folder)
    rows = _feature_rows()
    _write_hdf5(folder, "train", rows)
    data = vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)
    assert data.features.shape == (2, 3, 3) and data.box_mask.all()  # fixed layout: every box is real
    for r, image_id in enumerate(data.image_ids):
        f, _, w, h = rows[image_id]
        assert torch.equal(data.features[r, : len(f)], torch.from_numpy(f))
        assert torch.allclose(data.image_size[r], torch.tensor([w, h]))
    (folder / "train36.hdf5").unlink()
    _write_hdf5(folder, "train", rows, adaptive=True)
    data = vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)
    assert data.box_mask.tolist() == [[True, True, True], [True, True, False]]
    assert torch.equal(data.boxes[1, :2], torch.from_numpy(rows[9][1]))


def test_vqa_v2_feature_errors_name_file_and_image(tmp_path):
    folder = tmp_path / "vqa_v2"
    _write_vqa_v2(folder)
    rows = _feature_rows()
    tsv = _write_tsv(folder / "train36.tsv", rows, num_boxes={9: 3})  # issue #43/#44: count vs boxes
    with pytest.raises(vqa.FeatureFileError, match=rf"{re.escape(str(tsv))}: image id 9: num_boxes is 3"):
        vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)
    bad = dict(rows)
    f, b, w, h = rows[7]
    bad[7] = (np.concatenate([f, f]), b, w, h)  # 6 feature rows for 3 boxes, width 3: detected by width
    _write_tsv(tsv, {9: rows[9], 7: bad[7]})
    with pytest.raises(ValueError, match=r"image id 7: 18 feature values do not split into num_boxes = 3 rows"):
        vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)
    _write_tsv(tsv, {k: v for k, v in rows.items() if k != 9})
    with pytest.raises(ValueError, match=rf"{re.escape(str(tsv))}: image id 9 has no feature row"):
        vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)
    tsv.unlink()
    _write_hdf5(folder, "train", rows, bb_boxes=2)
    with pytest.raises(ValueError, match=r"train36\.hdf5: image id 7: image_features has 3 boxes but image_bb has 2"):
        vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)


def test_vqa_v2_question_annotation_mismatch(tmp_path):
    folder = tmp_path / "vqa_v2"
    q_path, a_path = _write_vqa_v2(folder)
    anns = json.loads(a_path.read_text())
    anns["annotations"][2]["image_id"] = 8
    a_path.write_text(json.dumps(anns))
    with pytest.raises(ValueError, match=r"questions\.json: question id 72 is about image 7 but .* says image 8"):
        vqa.load_vqa_v2("train", data_root=tmp_path, features=None)
    anns["annotations"].pop(2)
    a_path.write_text(json.dumps(anns))
    with pytest.raises(ValueError, match=r"question id 72 has no annotation"):
        vqa.load_vqa_v2("train", data_root=tmp_path, features=None)
    qs = json.loads(q_path.read_text())
    qs["questions"][1] = {"image_id": 7, "question_id": 70}
    q_path.write_text(json.dumps(qs))
    with pytest.raises(ValueError, match=r"questions\.json: questions\[1\] has no str field 'question'"):
        vqa.load_vqa_v2("train", data_root=tmp_path, features=None)


def test_vqa_v2_missing_files_and_h5py(tmp_path, monkeypatch):
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match="v2_OpenEnded_mscoco_val2014_questions.json"):
        vqa.load_vqa_v2("val", data_root=tmp_path)
    folder = tmp_path / "vqa_v2"
    _write_vqa_v2(folder)
    with pytest.raises(DataNotFoundError, match="no bottom-up features for split 'train'"):
        vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)
    (folder / "train36.hdf5").write_bytes(b"")
    (folder / "train36_imgid2idx.pkl").write_bytes(b"")
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        vqa.load_vqa_v2("train", data_root=tmp_path, min_answer_count=1)
