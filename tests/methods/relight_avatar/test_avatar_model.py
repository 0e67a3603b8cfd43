"""The avatar: Gaussians follow the mesh, radiance transfer is linear in the light, the lobes, the baselines."""
import math

import pytest
import torch

from paperzoo.methods.relight_avatar import geometry as geo
from paperzoo.methods.relight_avatar.lights import EnvironmentMap, reflect, sg_lobe
from paperzoo.methods.relight_avatar.model import (
    HEAD_MATERIALS,
    AvatarTemplate,
    Lighting,
    RelightableAvatar,
    head_atlas_uvs,
)
from paperzoo.methods.relight_avatar.sh import sg_zonal_coefficients, sh_basis
from paperzoo.methods.relight_avatar.splat import quat_to_rotmat


@pytest.fixture(scope="module")
def head(face):
    return face.submesh(list(HEAD_MATERIALS))


@pytest.fixture(scope="module")
def template(head):
    return AvatarTemplate.from_mesh(head, 16)


def grid_mesh(n=5):
    xs = torch.linspace(0, 1, n)
    uv = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    verts = torch.cat([uv, torch.zeros(len(uv), 1)], 1)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a = i * n + j
            faces += [[a, a + 1, a + n + 1], [a, a + n + 1, a + n]]
    faces = torch.tensor(faces)
    return verts, faces, uv[faces]


def test_uv_texels_cover_the_layout_with_valid_barycentrics():
    verts, faces, fuv = grid_mesh()
    s = geo.sample_uv_texels(fuv, 8)
    assert len(s) == 64                                   # the unit square covers every texel exactly once
    assert torch.all(s.bary >= 0) and torch.allclose(s.bary.sum(-1), torch.ones(64))
    pos, frames = geo.surface_frames(verts, faces, fuv, s)
    # texel (row r, col c) centre is u = (c + 0.5) / 8, v = 1 - (r + 0.5) / 8; on this flat mesh xyz = (u, v, 0)
    expect = torch.stack(((s.cols + 0.5) / 8, 1 - (s.rows + 0.5) / 8, torch.zeros(64)), -1)
    torch.testing.assert_close(pos, expect)
    torch.testing.assert_close(frames[0], torch.eye(3))  # tangent = +u = +x, normal = +z
    maps = s.scatter(pos[None])
    torch.testing.assert_close(s.gather(maps)[0], pos)


def test_rotation_helpers_compose():
    R = torch.linalg.qr(torch.randn(50, 3, 3, dtype=torch.float64))[0]
    R = R * torch.det(R)[:, None, None]
    torch.testing.assert_close(quat_to_rotmat(geo.rotmat_to_quat(R)), R)
    q = torch.randn(50, 4, dtype=torch.float64)
    torch.testing.assert_close(quat_to_rotmat(geo.quat_multiply(geo.rotmat_to_quat(R), q)), R @ quat_to_rotmat(q))


def test_new_expression_moves_the_gaussians_with_the_mesh(head, template):
    jaw = head.posed(torch.eye(len(head.expression_names))[head.expression_index("jawOpen")])
    p0, _ = template.place(template.neutral)
    p1, _ = template.place(jaw.float())
    # each Gaussian moves by the barycentric blend of its triangle's vertex displacements
    tri = template.faces[template.sampling.face]
    disp = (jaw.float() - template.neutral)[template.vertex_subset][tri]
    expect = (disp * template.sampling.bary[..., None]).sum(1)
    torch.testing.assert_close(p1 - p0, expect, atol=1e-4, rtol=1e-4)
    moved = (p1 - p0).norm(dim=-1)
    assert moved.max() > 0.5 and (moved < 1e-6).sum() > 0     # the jaw moves (cm), the skull does not
    # the whole model: a decoder whose mesh is the jaw-open mesh puts the Gaussians there
    model = RelightableAvatar(template, "full", z_dim=4, channels=8)
    with torch.no_grad():
        model.mesh_decoder.bias.copy_((jaw.float() - template.neutral)[template.vertex_subset].reshape(-1))
    dec = model.decode(torch.zeros(1, 4))
    local = dec["means"][0] - p1
    assert local.norm(dim=-1).max() < 0.1 * template.base_scale.max()   # the decoded offsets start near 0


def test_atlas_cells_do_not_overlap(head):
    uvs = head_atlas_uvs(head)
    assert uvs.min() >= 0 and uvs.max() <= 1
    boxes = [(uvs[head.face_material == i].reshape(-1, 2).amin(0), uvs[head.face_material == i].reshape(-1, 2).amax(0))
             for i in range(len(head.materials))]
    for i, (lo_a, hi_a) in enumerate(boxes):         # the materials' charts (ICT's UDIM tiles overlap) are disjoint
        for lo_b, hi_b in boxes[i + 1:]:
            assert bool((hi_a <= lo_b + 1e-6).any() or (hi_b <= lo_a + 1e-6).any())
    s = geo.sample_uv_texels(uvs, 64)
    mats = head.face_material[s.face]
    assert set(mats.tolist()) == set(range(len(head.materials)))   # every material gets texels


def _light(direction, radiance=1.0):
    far = 1e4
    return Lighting(positions=torch.tensor([direction], dtype=torch.float32) * far,
                    radiance=torch.full((1, 3), radiance), reference_distance=far)


@pytest.mark.parametrize("appearance", ["full", "linear", "sh_spec"])
def test_colour_is_linear_in_the_light(template, appearance):
    torch.manual_seed(0)
    model = RelightableAvatar(template, appearance, z_dim=4, channels=8)
    dec = model.decode(torch.randn(1, 4))
    eye = torch.tensor([0.0, 0.0, 80.0])
    a = model.shade(dec, eye, _light([0.3, 0.5, 0.8]))
    b = model.shade(dec, eye, _light([-0.6, 0.2, 0.7]))
    both = Lighting(positions=torch.cat((_light([0.3, 0.5, 0.8]).positions, _light([-0.6, 0.2, 0.7]).positions)),
                    radiance=torch.ones(2, 3), reference_distance=1e4)
    torch.testing.assert_close(model.shade(dec, eye, both), a + b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.shade(dec, eye, _light([0.3, 0.5, 0.8], 2.5)), 2.5 * a, atol=1e-5, rtol=1e-4)


def test_initial_transfer_is_lambertian(template):
    # at initialisation the diffuse transfer is the clamped cosine of the surface normal (band-limited)
    model = RelightableAvatar(template, "full", z_dim=4, channels=8)
    with torch.no_grad():
        model.spec_raw.fill_(-30.0)                     # no specular
    dec = model.decode(torch.zeros(1, 4))
    l = torch.tensor([0.0, 0.3, 1.0])
    l = l / l.norm()
    c = model.shade(dec, torch.tensor([0.0, 0.0, 80.0]), _light(l.tolist(), math.pi))[0]
    n = dec["frames"][0, :, :, 2]
    expect = 0.5 * (n @ l).clamp_min(0)                  # albedo sigmoid(0) = 0.5, E = pi -> rho * cos
    assert (c[:, 0] - expect).abs().mean() < 0.02 and (c[:, 0] - expect).abs().max() < 0.08


def test_specular_lobe_peaks_at_the_mirror_direction(template):
    model = RelightableAvatar(template, "full", z_dim=4, channels=8)
    dec = model.decode(torch.zeros(1, 4))
    k = int(torch.argmax(dec["frames"][0, :, 2, 2]))    # a Gaussian facing the camera (+z)
    eye = dec["means"][0, k] + torch.tensor([0.0, 30.0, 60.0])
    w_o = eye - dec["means"][0, k]
    head_out = model.view_head(torch.cat((dec["features"][0, k], (dec["frames"][0, k].T @ (w_o / w_o.norm())))))
    n = dec["frames"][0, k, :, 2] + dec["frames"][0, k] @ head_out[1:4]
    r = reflect(w_o, n)
    angles = torch.linspace(-0.6, 0.6, 13)
    spec = []
    for a in angles:   # lights swept through the mirror direction in the plane of r and x
        d = torch.cos(a) * r + torch.sin(a) * torch.nn.functional.normalize(torch.linalg.cross(r, n), dim=0)
        light = Lighting(positions=(dec["means"][0, k] + 1e4 * d)[None].detach(), radiance=torch.ones(1, 3),
                         reference_distance=1e4)
        full = model.shade(dec, eye, light)[0, k, 0]
        with torch.no_grad():
            model.spec_raw[k] = -30.0
        diffuse = model.shade(dec, eye, light)[0, k, 0]
        with torch.no_grad():
            model.spec_raw[k] = -2.0
        spec.append(float((full - diffuse).detach()))
    assert int(torch.tensor(spec).argmax()) == 6          # angle 0: the mirror direction


def test_sh_only_lobe_is_the_degree_3_projection_of_the_spherical_gaussian():
    torch.manual_seed(0)
    r = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=-1)
    w = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=-1)
    sigma = torch.tensor([0.2, 0.3, 0.5, 0.8, 1.0], dtype=torch.float64)
    got = RelightableAvatar._sh_lobe(w, r, sigma)
    k = sg_zonal_coefficients(sigma, 3)
    band = torch.cat([k[:, l:l + 1].expand(-1, 2 * l + 1) for l in range(4)], -1)
    expect = (sh_basis(r, 3) * band * sh_basis(w, 3)).sum(-1)
    torch.testing.assert_close(got, expect)
    # a wide lobe is well represented at degree 3, a sharp one is not
    exact = sg_lobe(w, r, sigma)
    assert (got - exact).abs()[-1] < 0.05 and RelightableAvatar._sh_lobe(r[:1], r[:1], sigma[:1] * 0 + 0.1) < 0.3


def test_uniform_environment_gives_albedo_times_radiance(template):
    model = RelightableAvatar(template, "full", z_dim=4, channels=8)
    with torch.no_grad():
        model.spec_raw.fill_(-30.0)
    env = EnvironmentMap(torch.full((16, 32, 3), 0.7))
    light = Lighting(env_sh=env.to_sh(8).float(), env_specular=env.specular)
    c = model.shade(model.decode(torch.zeros(1, 4)), torch.tensor([0.0, 0.0, 80.0]), light)
    # irradiance of a uniform sky is pi L; the transfer divides by pi: colour = rho * L = 0.35
    torch.testing.assert_close(c, torch.full_like(c, 0.35), atol=2e-3, rtol=0)


def test_bad_appearance_name(face):
    with pytest.raises(ValueError, match="appearance must be one of"):
        RelightableAvatar(AvatarTemplate.from_mesh(face.submesh(["M_ScleraLeft"]), 8), "phong")


def test_explicit_eyes_replace_the_eye_texels_and_follow_the_gaze(head):
    from paperzoo.methods.relight_avatar.eyes import EyeGeometry

    template = AvatarTemplate.from_mesh(head, 32)
    eyes = EyeGeometry.from_template(head, template)
    plain = RelightableAvatar(template, "full", z_dim=4, channels=8)
    torch.manual_seed(0)
    with_eyes = RelightableAvatar(template, "full", z_dim=4, channels=8, eyes=eyes)
    with_eyes.load_state_dict(plain.state_dict(), strict=False)
    dec = plain.decode(torch.zeros(1, 4))
    eye_pos, light = torch.tensor([0.0, 0.0, 80.0]), _light([0.2, 0.3, 0.9])
    a = plain.splat_inputs(dec, eye_pos, light)
    b = with_eyes.splat_inputs(dec, eye_pos, light, tracked=template.neutral[None])
    M, M_e = template.n_gaussians, eyes.n_gaussians
    assert a["means"].shape[1] == M and b["means"].shape[1] == M
    keep = eyes.non_eye(M)
    torch.testing.assert_close(b["colors"][:, :M - M_e], a["colors"][:, keep])   # the rest is unchanged
    left = b["means"][0, M - M_e:]
    turned = with_eyes.splat_inputs(dec, eye_pos, light, gaze=torch.tensor([[[0.4, 0.0], [0.4, 0.0]]]))
    moved = (turned["means"][0, M - M_e:] - left).norm(dim=-1)
    assert moved.min() > 0 and torch.equal(turned["means"][0, :M - M_e], b["means"][0, :M - M_e])
    with pytest.raises(ValueError, match="tracked mesh or a gaze"):
        with_eyes.splat_inputs(dec, eye_pos, light)
