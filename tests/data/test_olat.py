"""Simulated light stage: determinism, light direction, shadows, highlights, linearity, env lights, splits, cache."""
import dataclasses

import numpy as np
import pytest
import torch

from paperzoo.core.cameras import look_at
from paperzoo.data import olat
from paperzoo.data.olat import (
    OLATConfig,
    generate_olat,
    head_frame,
    load_or_generate_olat,
    olat_cache_path,
    render_directional,
    render_lights,
)
from paperzoo.data.roots import DataNotFoundError

TINY = OLATConfig(image_size=16, n_cameras=2, n_lights=2, n_train_expressions=1, n_test_expressions=1,
                  shadow_samples=2)


@pytest.fixture(scope="module")
def stage(face):
    """A frontal 32 px camera, the head centre and a light-placing helper at 10 head sizes."""
    centre, _, size = head_frame(face)
    cam = look_at(tuple(centre + np.array([0.0, 0.0, 150.0])), tuple(centre), fov_deg=20, width=32, height=32)
    dist = 10 * size

    def lights(*dirs, distance=dist, irradiance=3.5):
        d = np.asarray(dirs, dtype=np.float64)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return centre + distance * d, np.full((len(d), 3), irradiance * distance ** 2)

    return cam, centre, lights


def test_capture_layout_and_determinism(face):
    a = generate_olat(TINY, mesh=face, progress=False)
    E, C, L, S = 2, 2, 2, 16
    assert a.images.shape == (E, C, L, S, S, 3) and a.images.dtype == torch.float16
    assert a.masks.shape == (E, C, S, S) and a.masks.dtype == torch.bool
    assert a.vertices.shape == (E, face.n_vertices, 3) and a.expression_weights.shape == (E, 57)
    assert len(a.cameras) == C and a.light_positions.shape == (L, 3) and a.light_intensity.shape == (L, 3)
    assert torch.equal(a.vertices, face.posed(a.expression_weights))
    assert 0.05 < a.masks.float().mean() < 0.9
    m = a.masks
    assert not (m[..., 0, :].any() or m[..., -1, :].any() or m[..., :, 0].any() or m[..., :, -1].any())
    rows = m.any(dim=-1).float().sum(dim=-1)  # (E, C) image rows the head covers: framed tightly
    assert float(rows.max()) >= 0.75 * S
    assert (a.images[~a.masks[:, :, None].expand(E, C, L, S, S)] == 0).all()  # black background
    assert float(a.images.float().max()) > 0.05
    b = generate_olat(TINY, mesh=face, progress=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.light_positions, b.light_positions)
    c = generate_olat(dataclasses.replace(TINY, seed=1), mesh=face, progress=False)
    assert not torch.equal(a.light_positions, c.light_positions)


def test_splits_are_disjoint_and_cover(face):
    cfg = dataclasses.replace(TINY, n_lights=10, n_cameras=5, n_train_expressions=2, n_test_expressions=2,
                              heldout_light_fraction=0.3, heldout_camera_fraction=0.2, image_size=4)
    s = generate_olat(cfg, mesh=face, progress=False).split
    for kind, n, n_test in (("lights", 10, 3), ("cameras", 5, 1), ("expressions", 4, 2)):
        train, test = s[f"train_{kind}"], s[f"test_{kind}"]
        assert not set(train) & set(test) and sorted(train + test) == list(range(n)) and len(test) == n_test


def test_light_behind_the_head_leaves_the_front_dark(face, stage):
    cam, _, lights = stage
    pos, inten = lights([0, 0.2, 1], [0, 0.2, -1])
    img, mask = render_lights(face.vertices, [cam], pos, inten, TINY, face)
    front, back = img[0, 0][mask[0]].mean(), img[0, 1][mask[0]].mean()
    assert front > 0.05 and back < 0.1 * front


def test_cast_shadows_only_darken_and_are_soft(face, stage):
    cam, _, lights = stage
    pos, inten = lights([-1, 0.3, 0.4])  # from the subject's right: the nose shadows the left cheek
    cfg = dataclasses.replace(TINY, shadow_samples=8, light_radius=60.0)
    shadowed = render_lights(face.vertices, [cam], pos, inten, cfg, face)[0][0, 0].numpy()
    free = render_lights(face.vertices, [cam], pos, inten, dataclasses.replace(cfg, shadow_samples=0),
                         face)[0][0, 0].numpy()
    assert (shadowed <= free + 1e-6).all()
    lit = free.mean(-1) > 0.02
    ratio = shadowed.mean(-1)[lit] / free.mean(-1)[lit]
    assert (ratio < 0.05).sum() >= 5  # umbra
    assert ((ratio > 0.05) & (ratio < 0.95)).sum() >= 2  # penumbra from the light's size


def test_highlight_moves_with_the_light(face, stage):
    cam, _, lights = stage
    pos, inten = lights([-1, 0.5, 1], [1, 0.5, 1])
    full, _ = render_lights(face.vertices, [cam], pos, inten, TINY, face)
    diffuse, _ = render_lights(face.vertices, [cam], pos, inten, dataclasses.replace(TINY, specular_scale=0), face)
    spec = (full - diffuse)[0].mean(-1)  # (L, H, W)
    assert float(spec.min()) >= -1e-6 and float(spec.max()) > 0.02
    cols = torch.arange(spec.shape[-1], dtype=torch.float32)
    centroid = [float((s.sum(0) * cols).sum() / s.sum()) for s in spec]
    # this camera's image right is world +x (look_at: right = forward x up = (0, 0, -1) x (0, 1, 0))
    assert centroid[1] > centroid[0] + 2


def test_images_are_linear_in_light_intensity_and_unclamped(face, stage):
    cam, _, lights = stage
    pos, inten = lights([0.3, 0.2, 1])
    one, _ = render_lights(face.vertices, [cam], pos, inten, TINY, face)
    two, _ = render_lights(face.vertices, [cam], pos, 2 * inten, TINY, face)
    assert torch.allclose(two, 2 * one, rtol=1e-5, atol=1e-7) and float(one.max()) > 0.1
    bright, _ = render_lights(face.vertices, [cam], pos, 10 * inten, TINY, face)
    assert float(bright.max()) > 1.5
    # inverse-square falloff: the same intensity twice as far gives a quarter (lights far from the head)
    near_pos, near_i = lights([0.3, 0.2, 1], distance=1e4)
    near, _ = render_lights(face.vertices, [cam], near_pos, near_i, TINY, face)
    far_pos, _ = lights([0.3, 0.2, 1], distance=2e4)
    far, _ = render_lights(face.vertices, [cam], far_pos, near_i, TINY, face)
    assert torch.allclose(far, near / 4, rtol=0.01, atol=1e-6) and float(near.max()) > 0.1


def test_shading_wraps_past_the_terminator_and_peaks_at_the_mirror_direction():
    n = 181
    ang = np.radians(np.linspace(-90, 90, n))
    wo = np.array([np.sin(np.radians(30)), 0.0, np.cos(np.radians(30))])
    g = {"n": np.tile([0.0, 0.0, 1.0], (n, 1)), "wo": np.tile(wo, (n, 1)), "albedo": np.full((n, 3), 0.5),
         "roughness": np.full(n, 0.3), "f0": np.full(n, 0.04), "wrap": np.full(n, 0.3), "ks": np.ones(n)}
    l = np.stack((np.sin(ang), np.zeros(n), np.cos(ang)), axis=1)
    out = olat._shade(g, l, np.ones(3), np.ones(n))[:, 0]
    diffuse = olat._shade({**g, "ks": np.zeros(n)}, l, np.ones(3), np.ones(n))[:, 0]
    ndl = np.cos(ang)
    assert np.allclose(diffuse, 0.5 / np.pi * np.clip((ndl + 0.3) / 1.3, 0, None))
    spec = out - diffuse
    assert abs(np.degrees(ang[np.argmax(spec)]) + 30) <= 1  # the mirror of the view at +30 deg is -30 deg
    assert spec[np.argmax(spec)] > 10 * spec[n // 2 + 30] > 0  # a glossy lobe, not a constant
    lambert = olat._shade({**g, "wrap": np.zeros(n)}, l, np.ones(3), np.ones(n))[:, 0]
    past = (ndl > -0.25) & (ndl < 0)  # grazing, just past the terminator: wrap lights it, Lambert does not
    assert (diffuse[past] > 0).all() and (lambert[past] == 0).all()
    assert np.allclose(olat._shade(g, l, np.ones(3), np.full(n, 0.25)), 0.25 * olat._shade(g, l, np.ones(3),
                                                                                           np.ones(n)))


def test_winding_does_not_matter(face, stage):
    """Normals are turned towards the viewer, so a mesh with flipped triangles renders the same."""
    cam, _, lights = stage
    pos, inten = lights([0.3, 0.2, 1], [-1, 0.3, 0.2])
    flipped = dataclasses.replace(face, faces=face.faces[:, [0, 2, 1]],
                                  face_uvs=face.face_uvs[:, [0, 2, 1]])
    a, ma = render_lights(face.vertices, [cam], pos, inten, TINY, face)
    b, mb = render_lights(face.vertices, [cam], pos, inten, TINY, flipped)
    assert torch.equal(ma, mb) and float(a.max()) > 0.1
    assert torch.allclose(a, b, atol=1e-4)


def test_directional_light_equals_a_very_distant_point_light(face, stage):
    cam, _, lights = stage
    direction = np.array([[0.4, 0.3, 1.0]])
    radiance = np.array([[2.0, 1.5, 1.0]])
    cfg = dataclasses.replace(TINY, light_radius=0.0, shadow_samples=1)
    env, env_mask = render_directional(face.vertices, cam, direction, radiance, cfg, face)
    pos, inten = lights(direction[0], distance=1e5, irradiance=1.0)
    point, mask = render_lights(face.vertices, [cam], pos, inten * radiance, cfg, face)
    assert torch.equal(env_mask, mask[0])
    assert torch.allclose(env, point[0, 0], atol=2e-3, rtol=1e-3)
    # two directions add up; a direction from behind casts the head's shadow, so its pixels stay dark
    both, _ = render_directional(face.vertices, cam, np.array([[0.4, 0.3, 1.0], [0, 0, -1.0]]),
                                 np.array([[2.0, 1.5, 1.0], [1.0, 1.0, 1.0]]), cfg, face)
    assert float((both - env).abs().max()) > 0.0 and float((both - env).mean()) < 0.05 * float(env.mean())


def test_cache_writes_once_then_loads(face, tmp_path, monkeypatch):
    cfg = dataclasses.replace(TINY, image_size=8)
    first = load_or_generate_olat(cfg, cache_dir=tmp_path, mesh=face, progress=False)
    path = olat_cache_path(cfg, tmp_path)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]

    def boom(*a, **k):
        raise AssertionError("regenerated instead of loading the cache")

    monkeypatch.setattr(olat, "generate_olat", boom)
    again = load_or_generate_olat(cfg, cache_dir=tmp_path, mesh=face, progress=False)
    assert torch.equal(again.images, first.images) and again.split == first.split
    assert torch.equal(again.cameras[1].R, first.cameras[1].R) and torch.equal(again.vertices, first.vertices)
    assert olat_cache_path(dataclasses.replace(cfg, seed=5), tmp_path) != path
    monkeypatch.undo()
    path.write_bytes(b"not a zip")  # a corrupt cache is regenerated and replaced
    fixed = load_or_generate_olat(cfg, cache_dir=tmp_path, mesh=face, progress=False)
    assert torch.equal(fixed.images, first.images) and path.stat().st_size > 100


def test_bad_config_and_lights_inside_the_head(face, stage):
    with pytest.raises(ValueError, match="n_lights=0"):
        OLATConfig(n_lights=0)
    with pytest.raises(ValueError, match="heldout_light_fraction=1.5"):
        OLATConfig(heldout_light_fraction=1.5)
    cam, centre, _ = stage
    with pytest.raises(ValueError, match="light 0 at .* lies inside the head"):
        render_lights(face.vertices, [cam], centre[None], np.ones((1, 3)), TINY, face)
    with pytest.raises(ValueError, match=r"vertices must be the full posed mesh, \(26719, 3\)"):
        render_lights(face.vertices[:10], [cam], centre[None] + 500, np.ones((1, 3)), TINY, face)


def test_missing_face_data_is_one_error_naming_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match="generic_neutral_mesh.obj, ict_blendshapes.npz"):
        load_or_generate_olat(TINY, cache_dir=tmp_path / "olat", progress=False)
    assert not (tmp_path / "olat").exists()


def test_mismatched_light_rows_are_one_clear_error(face):
    from paperzoo.data.olat import render_directional, render_lights

    cam = olat.capture_cameras(TINY, face)[0]
    with pytest.raises(ValueError, match="render_lights: 2 light positions but 1 intensities"):
        render_lights(face.vertices, [cam], torch.ones(2, 3) * 500, torch.ones(1, 3), TINY, mesh=face)
    with pytest.raises(ValueError, match="render_directional: 1 directions but 2 radiance values"):
        render_directional(face.vertices, cam, torch.tensor([[0.0, 0, 1]]), torch.ones(2, 3), TINY, mesh=face)
