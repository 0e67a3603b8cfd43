"""Explicit eye models (paperzoo.methods.relight_avatar.eyes): sphere fit, gaze, rigid eye Gaussians, shading."""
import math

import pytest
import torch

from paperzoo.core.cameras import look_at
from paperzoo.methods.relight_avatar.eyes import (
    EYE_MATERIALS,
    EyeGeometry,
    EyeModel,
    EyeModelError,
    eye_mask,
    fit_sphere,
    gaze_from_expression,
    gaze_rotation,
    kabsch,
    rasterize_ids,
)
from paperzoo.methods.relight_avatar.geometry import quat_multiply, rotmat_to_quat
from paperzoo.methods.relight_avatar.lights import EnvironmentMap, reflect
from paperzoo.methods.relight_avatar.model import HEAD_MATERIALS, AvatarTemplate, Lighting
from paperzoo.methods.relight_avatar.sh import sg_zonal_coefficients

pytestmark = pytest.mark.usefixtures("one_thread")


def _rotation(seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    Q = Q * torch.sign(torch.diagonal(R))
    return Q if torch.linalg.det(Q) > 0 else -Q


@pytest.fixture(scope="module")
def head(data_root):
    from paperzoo.data.face import load_face

    mesh = load_face(data_root)
    sub = mesh.submesh(list(HEAD_MATERIALS))
    template = AvatarTemplate.from_mesh(sub, 32)
    return sub, template, EyeGeometry.from_template(sub, template)


# -- geometry helpers ------------------------------------------------------------------------------------------
def test_fit_sphere_recovers_a_known_sphere_from_a_cap():
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(3, 200, 3, generator=g, dtype=torch.float64), dim=-1)
    d = torch.where(d[..., 2:] < -0.2, -d, d)                                 # a cap, like an eye behind lids
    centre = torch.tensor([[3.0, 3.5, 8.0], [-1.0, 0.0, 2.0], [0.1, -5.0, 0.0]], dtype=torch.float64)
    radius = torch.tensor([1.2, 0.5, 7.0], dtype=torch.float64)
    c, r = fit_sphere(centre[:, None] + radius[:, None, None] * d)
    torch.testing.assert_close(c, centre, atol=1e-9, rtol=0)
    torch.testing.assert_close(r, radius, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="N >= 4"):
        fit_sphere(torch.zeros(3, 3))


def test_kabsch_recovers_a_known_rotation_and_identity():
    g = torch.Generator().manual_seed(1)
    P = torch.randn(2, 50, 3, generator=g, dtype=torch.float64)
    R_true = torch.stack((_rotation(2), _rotation(3)))
    t = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 4.0]], dtype=torch.float64)
    Q = P @ R_true.transpose(-1, -2) + t[:, None]
    R, mt, res = kabsch(P, Q)
    torch.testing.assert_close(R, R_true, atol=1e-10, rtol=0)
    torch.testing.assert_close(mt, Q.mean(-2))
    assert float(res.max()) < 1e-10
    R0, _, res0 = kabsch(P, P)
    torch.testing.assert_close(R0, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-12, rtol=0)
    assert float(res0.max()) < 1e-12
    # a mirrored target: the best *proper* rotation (det +1) and a non-zero residual
    mirror = P * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    Rm, _, resm = kabsch(P, mirror)
    torch.testing.assert_close(torch.linalg.det(Rm), torch.ones(2, dtype=torch.float64))
    assert float(resm.min()) > 0.1


def test_gaze_rotation_turns_the_viewing_axis():
    yaw = torch.tensor([0.0, 0.3, -0.5, 0.2])
    pitch = torch.tensor([0.0, 0.0, 0.4, -0.3])
    R = gaze_rotation(yaw, pitch)
    z = R[..., 2]                                                             # R @ (0, 0, 1)
    want = torch.stack((torch.sin(yaw) * torch.cos(pitch), torch.sin(pitch), torch.cos(yaw) * torch.cos(pitch)), -1)
    torch.testing.assert_close(z, want)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand(4, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(4))
    # yaw alone is a rotation about the vertical axis (y is fixed)
    torch.testing.assert_close(R[1] @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))


def test_gaze_from_expression_maps_look_weights():
    names = ["eyeLookOut_L", "eyeLookIn_L", "eyeLookUp_L", "eyeLookDown_L", "eyeLookOut_R", "eyeLookIn_R",
             "eyeLookUp_R", "eyeLookDown_R", "jawOpen"]
    w = torch.zeros(2, len(names))
    w[0, names.index("eyeLookOut_L")] = 1.0                                  # left eye looks out: towards +x
    w[0, names.index("eyeLookIn_R")] = 1.0                                   # right eye looks in: towards +x
    w[1, names.index("eyeLookDown_L")] = 0.5
    w[1, names.index("eyeLookUp_R")] = 1.0
    g = gaze_from_expression(w, names, max_yaw_deg=30, max_up_deg=25, max_down_deg=30)
    deg = torch.rad2deg(g)
    torch.testing.assert_close(deg[0], torch.tensor([[30.0, 0.0], [30.0, 0.0]]))
    torch.testing.assert_close(deg[1], torch.tensor([[0.0, -15.0], [0.0, 25.0]]))
    with pytest.raises(KeyError, match="eyeLookOut_L"):
        gaze_from_expression(torch.zeros(1, 1), ["jawOpen"])


# -- the ICT eyes ----------------------------------------------------------------------------------------------
def test_ict_eyeballs_are_spheres_with_the_eye_texels(head):
    _, template, g = head
    # the ICT eyeball: radius 1.58 cm, left eye (index 0) at +x, the two mirror images of each other
    torch.testing.assert_close(g.radius, torch.full((2,), 1.577), atol=5e-3, rtol=0)
    assert g.center[0, 0] > 2.5 and g.center[1, 0] < -2.5
    torch.testing.assert_close(g.center[0] * torch.tensor([-1.0, 1.0, 1.0]), g.center[1], atol=1e-4, rtol=0)
    eye_mats = [template.materials.index(m) for pair in EYE_MATERIALS for m in pair]
    want = torch.nonzero(torch.isin(template.texel_material, torch.tensor(eye_mats))).squeeze(1)
    assert sorted(g.texels.tolist()) == want.tolist() and g.n_gaussians > 50
    keep = g.non_eye(template.n_gaussians)
    assert torch.equal(torch.nonzero(~keep).squeeze(1), want)
    # every eye texel lies on (or, for the iris, just inside) its eyeball
    d = g.local.norm(dim=-1)
    assert float((d - g.radius[g.eye]).abs()[~g.is_iris].max()) < 0.15
    assert float((g.radius[g.eye] - d)[g.is_iris].max()) < 0.4
    torch.testing.assert_close(g.local + g.center[g.eye], template.place(template.neutral)[0][g.texels])


def test_tracking_the_eyes(head):
    sub, _, g = head
    neutral = sub.vertices[None].double()
    pose = g.track(neutral)
    torch.testing.assert_close(pose.rotation, torch.eye(3, dtype=torch.float64).expand(1, 2, 3, 3), atol=1e-9,
                               rtol=0)
    torch.testing.assert_close(pose.center, g.center[None].double(), atol=1e-5, rtol=0)
    # the ICT eyeLook* shapes move the lids, never the eyeballs: the tracked gaze stays the identity
    w = torch.zeros(1, len(sub.expression_names))
    w[0, sub.expression_index("eyeLookOut_L")] = 1.0
    posed = sub.posed(w)
    lids = (posed - sub.vertices).norm(dim=-1).max()
    assert float(lids) > 0.2
    look = g.track(posed)
    torch.testing.assert_close(look.rotation, torch.eye(3).expand(1, 2, 3, 3), atol=1e-6, rtol=0)
    # an eyeball rotated about its centre (a gaze to the subject's left and up) is recovered exactly
    R_gaze = gaze_rotation(torch.tensor(0.35, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64))
    eye0 = torch.isin(torch.arange(sub.n_vertices), torch.unique(sub.faces[torch.isin(
        sub.face_material, torch.tensor([sub.materials.index(m) for m in EYE_MATERIALS[0]]))]))
    c0 = g.center[0].double()
    moved = neutral.clone()
    moved[0, eye0] = (neutral[0, eye0] - c0) @ R_gaze.T + c0
    pose = g.track(moved)
    torch.testing.assert_close(pose.rotation[0, 0], R_gaze, atol=1e-9, rtol=0)
    torch.testing.assert_close(pose.rotation[0, 1], torch.eye(3, dtype=torch.float64), atol=1e-9, rtol=0)
    axis_angle = math.degrees(math.acos((float(torch.trace(R_gaze)) - 1) / 2))
    assert 15 < axis_angle < 25
    # the whole head moving rigidly carries the eyes (rotation and centre) with it
    R_head, t = _rotation(5), torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    pose = g.track(moved @ R_head.T + t)
    torch.testing.assert_close(pose.rotation[0, 0], R_head @ R_gaze, atol=1e-9, rtol=0)
    torch.testing.assert_close(pose.center[0], g.center.double() @ R_head.T + t, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="tracked_vertices"):
        g.track(neutral[0])


def test_bad_inputs_name_what_is_wrong(head):
    sub, template, g = head
    assert issubclass(EyeModelError, ValueError)
    without_iris = sub.submesh([m for m in sub.materials if m != "M_IrisRight"])
    with pytest.raises(KeyError, match="M_IrisRight"):
        EyeGeometry.from_template(without_iris, AvatarTemplate.from_mesh(without_iris, 16))
    with pytest.raises(EyeModelError, match="same head submesh"):
        EyeGeometry.from_template(without_iris, template)
    with pytest.raises(EyeModelError, match="roughness"):
        EyeModel(g, roughness=0.005)
    with pytest.raises(EyeModelError, match=r"\(V, 3\)"):
        eye_mask(look_at((0.0, 0.0, 60.0), (0.0, 0.0, 0.0)), sub.vertices[None], g)


# -- the eye Gaussians -----------------------------------------------------------------------------------------
def _point_light(position, value=1.0):
    return Lighting(positions=torch.tensor([position], dtype=torch.float32),
                    radiance=torch.full((1, 3), float(value)), reference_distance=1.0)


def test_explicit_gaze_rotates_the_eye_gaussians_rigidly(head):
    sub, _, g = head
    torch.manual_seed(0)
    model = EyeModel(g)
    cam = torch.tensor([0.0, 0.0, 60.0])
    light = _point_light([0.0, 30.0, 60.0])
    gaze = torch.tensor([[[0.4, 0.2], [-0.3, -0.1]]])
    rest = model(cam, light, gaze=torch.zeros(1, 2, 2))
    out = model(cam, light, gaze=gaze)
    same = model(cam, light, tracked_vertices=sub.vertices[None])
    torch.testing.assert_close(rest["means"], same["means"], atol=1e-5, rtol=0)
    torch.testing.assert_close(rest["means"][0], g.local + g.center[g.eye], atol=1e-5, rtol=0)
    R = gaze_rotation(gaze[..., 0], gaze[..., 1])[0]
    for e in range(2):
        sel = g.eye == e
        a, b = rest["means"][0, sel], out["means"][0, sel]
        exact = "donot_use_mm_for_euclid_dist"
        torch.testing.assert_close(torch.cdist(a, a, compute_mode=exact), torch.cdist(b, b, compute_mode=exact),
                                   atol=1e-5, rtol=0)
        c = g.center[e]
        torch.testing.assert_close((b - c).norm(dim=-1), (a - c).norm(dim=-1), atol=1e-5, rtol=0)
        torch.testing.assert_close(b - c, (a - c) @ R[e].T, atol=1e-5, rtol=0)
        assert float((b - a).detach().norm(dim=-1).max()) > 0.3              # it did move
    # orientations turn with the eye: q = quat(R) q_rest (up to the sign of a quaternion)
    want = quat_multiply(rotmat_to_quat(R[g.eye]), rest["quats"][0])
    torch.testing.assert_close((want * out["quats"][0]).sum(-1).abs(), torch.ones(g.n_gaussians), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(out["scales"], rest["scales"])
    assert out["colors"].shape == (1, g.n_gaussians, 3) and out["opacities"].shape == (1, g.n_gaussians)
    # gaze and tracked meshes together: the gaze turns the eyes, the (moved) head carries their centres
    shift = torch.tensor([1.0, -0.5, 2.0])
    pose = model.pose(sub.vertices[None] + shift, gaze)
    torch.testing.assert_close(pose.rotation[0], R)
    torch.testing.assert_close(pose.center[0], g.center + shift, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="gaze must be"):
        model(cam, light, gaze=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="tracked_vertices or gaze"):
        model(cam, light)


def _specular_only(g):
    model = EyeModel(g, roughness=0.05, specular=1.0)
    with torch.no_grad():
        model.albedo_logit.fill_(-40.0)                                       # no diffuse
        model.visibility_logit.fill_(40.0)                                    # nothing occluded
    return model


@torch.no_grad()
def test_specular_peaks_where_the_view_reflects_about_the_sphere_normal(head):
    _, _, g = head
    model = _specular_only(g)
    gaze = torch.tensor([[[0.3, -0.2], [0.0, 0.0]]])
    geo = model.gaussians(model.g.explicit(gaze))
    k = int(torch.nonzero(g.eye == 0)[0])
    p, n = geo["means"][0, k], geo["normals"][0, k]
    # the sphere normal of the rotated eye: the direction from the sphere centre
    torch.testing.assert_close(n, torch.nn.functional.normalize(p - g.center[0], dim=0), atol=0.1, rtol=0)
    cam = p + 50.0 * torch.nn.functional.normalize(n + torch.tensor([0.3, 0.1, 0.2]), dim=0)
    r = reflect(cam - p, n)
    sigma = float(model.roughness[0])
    values = []
    offsets = torch.linspace(-0.15, 0.15, 13)
    for off in offsets:
        axis = torch.nn.functional.normalize(torch.linalg.cross(r, torch.tensor([0.0, 1.0, 0.0])), dim=0)
        d = r * math.cos(off) + torch.linalg.cross(axis, r) * math.sin(off)  # r turned by `off` radians
        dist = 40.0
        c = model.shade(geo["means"], geo["normals"], cam, _point_light((p + dist * d).tolist(), dist ** 2))
        values.append(float(c[0, k, 0]))
    values = torch.tensor(values)
    assert int(values.argmax()) == 6                                          # the mirror direction
    torch.testing.assert_close(values[6], torch.tensor(1.0), atol=1e-3, rtol=0)   # k_s * G(r) * E = 1
    torch.testing.assert_close(values, torch.exp(-offsets ** 2 / (2 * sigma ** 2)), atol=2e-3, rtol=0)


@torch.no_grad()
def test_diffuse_and_environment_shading(head):
    _, _, g = head
    model = EyeModel(g)
    with torch.no_grad():
        model.albedo_logit.fill_(0.0)                                         # albedo 0.5
        model.spec_raw.fill_(-40.0)                                           # no specular
        model.visibility_logit.fill_(40.0)
    gz = torch.zeros(1, 2, 2)
    geo = model.gaussians(model.g.explicit(gz))
    n = geo["normals"][0]
    far = torch.tensor([0.0, 0.0, 1e4])
    c = model.shade(geo["means"], geo["normals"], far, _point_light(far.tolist(), 1e8))
    want = 0.5 / math.pi * n[:, 2].clamp_min(0) * 1e8 / (far - geo["means"][0]).norm(dim=-1) ** 2
    torch.testing.assert_close(c[0], want[:, None].expand(-1, 3), atol=1e-4, rtol=1e-3)
    # a constant environment of radiance 2: irradiance 2 pi, diffuse = albedo * 2; specular = k_s 2 k_0(sigma)
    env = EnvironmentMap(torch.full((8, 16, 3), 2.0))
    light = Lighting(env_sh=env.to_sh(8), env_specular=env.specular)
    c = model.shade(geo["means"], geo["normals"], far, light)
    torch.testing.assert_close(c, torch.full_like(c, 1.0), atol=1e-3, rtol=0)
    with torch.no_grad():
        model.albedo_logit.fill_(-40.0)
        model.spec_raw.fill_(math.log(math.expm1(1.0)))
    c = model.shade(geo["means"], geo["normals"], far, light)
    k0 = sg_zonal_coefficients(model.roughness[0].detach(), 0)[0]
    torch.testing.assert_close(c, torch.full_like(c, 2.0 * float(k0)), atol=1e-4, rtol=1e-2)


def test_gradients_reach_every_parameter(head):
    sub, _, g = head
    torch.manual_seed(0)
    model = EyeModel(g)
    cam = torch.tensor([10.0, 5.0, 60.0])
    tracked = sub.vertices[None].expand(2, -1, -1)
    loss = 0.0
    env = EnvironmentMap(torch.rand(8, 16, 3, generator=torch.Generator().manual_seed(0)))
    for light in (_point_light([20.0, 30.0, 50.0], 900.0), Lighting(env_sh=env.to_sh(8), env_specular=env.specular)):
        out = model(cam, light, tracked_vertices=tracked, gaze=torch.full((2, 2, 2), 0.1))
        loss = loss + sum(out[k].square().mean() for k in ("means", "quats", "scales", "opacities", "colors"))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().max()) > 0, name


# -- eye pixels ------------------------------------------------------------------------------------------------
def test_eye_mask_matches_a_ray_caster(head):
    import numpy as np

    embree = pytest.importorskip("embreex.rtcore_scene")
    from embreex.mesh_construction import TriangleMesh

    sub, _, g = head
    w = torch.zeros(len(sub.expression_names))
    w[sub.expression_index("eyeBlink_L")] = 0.6                             # half-closed left lid
    v = sub.posed(w)
    cam = look_at((8.0, 6.0, 70.0), (0.0, 3.0, 8.0), fov_deg=14.0, width=48, height=48)
    scene = embree.EmbreeScene()
    TriangleMesh(scene, v.numpy()[sub.faces.numpy()].astype(np.float32))
    o, d = cam.rays()
    hit = scene.run(o.reshape(-1, 3).numpy(), d.reshape(-1, 3).numpy().astype(np.float32), output=1)["primID"]
    hit = torch.from_numpy(hit.astype(np.int64)).reshape(48, 48)
    ids = rasterize_ids(cam, v, sub.faces)
    agree = (ids == hit).float().mean()
    assert float(agree) > 0.98                                               # edges may differ by a triangle
    eye_faces = torch.isin(sub.face_material, torch.tensor([sub.materials.index(m) for p in EYE_MATERIALS
                                                             for m in p]))
    want = (hit >= 0) & eye_faces[hit.clamp_min(0)]
    got = eye_mask(cam, v, g)
    assert int(want.sum()) > 20
    assert int((got ^ want).sum()) <= max(2, int(0.05 * want.sum()))
    left, right = eye_mask(cam, v, g, eye=0), eye_mask(cam, v, g, eye=1)
    assert torch.equal(left | right, got) and not (left & right).any() and int(left.sum()) < int(right.sum())
    # the lids hide part of the eyeballs: fewer eye pixels than the eyeball triangles alone would cover
    alone = rasterize_ids(cam, v, sub.faces[eye_faces]) >= 0
    assert int(got.sum()) < int(alone.sum()) and not (got & ~alone).any()
