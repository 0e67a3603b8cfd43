"""Lights of the relightable appearance model (paperzoo.methods.relight_avatar.lights)."""
import math

import numpy as np
import pytest
import torch

from paperzoo.methods.relight_avatar.lights import (
    DirectionalLights,
    EnvironmentMap,
    PointLights,
    Softbox,
    angle_between,
    reflect,
    sg_lobe,
)
from paperzoo.methods.relight_avatar.sh import direction_to_equirect, sg_zonal_coefficients, sh_basis

pytestmark = pytest.mark.usefixtures("one_thread")


def _unit(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1)


def _brute_specular(env: EnvironmentMap, r, sigma):
    """sum_t L_t G(d_t; r, sigma) Omega_t over all texels (float64)."""
    d = env.directions().double().reshape(-1, 3)
    lw = (env.image.double() * env.solid_angles().double()[..., None]).reshape(-1, 3)
    g = sg_lobe(d[None], r[:, None], torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1))
    return g @ lw


def test_reflect_mirrors_about_the_normal():
    w_o, n = _unit(20, seed=1), _unit(20, seed=2)
    r = reflect(w_o, n)
    torch.testing.assert_close(r.norm(dim=-1), torch.ones(20, dtype=torch.float64))
    torch.testing.assert_close((r * n).sum(-1), (w_o * n).sum(-1))  # same angle to the normal
    cross = torch.linalg.cross(r + w_o, n)  # r + w_o = 2 (w_o . n) n is along n
    assert cross.abs().max() < 1e-12
    torch.testing.assert_close(reflect(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])),
                               torch.tensor([-1.0, 1.0, 0.0]) / math.sqrt(2))


def test_sg_lobe_peaks_at_the_mirror_direction_and_falls_off_monotonically():
    w_o = torch.nn.functional.normalize(torch.tensor([0.3, 0.2, 1.0], dtype=torch.float64), dim=0)
    n = torch.nn.functional.normalize(torch.tensor([0.1, 0.9, 0.4], dtype=torch.float64), dim=0)
    r = reflect(w_o, n)
    sigma = 0.2
    assert float(sg_lobe(r, r, sigma)) == 1.0
    q = _unit(500, seed=3)
    assert (sg_lobe(q, r, sigma) < 1.0).all()
    # along a great circle away from r the value decreases strictly and matches exp(-theta^2 / 2 sigma^2)
    side = torch.nn.functional.normalize(torch.linalg.cross(r, n), dim=0)
    angles = torch.linspace(0, math.pi, 50, dtype=torch.float64)
    arc = torch.cos(angles)[:, None] * r + torch.sin(angles)[:, None] * side
    values = sg_lobe(arc, r, sigma)
    assert (values[1:] < values[:-1]).all()
    torch.testing.assert_close(values, torch.exp(-angles**2 / (2 * sigma**2)))
    # any length: the lobe depends on the angle only
    torch.testing.assert_close(sg_lobe(3.0 * arc, 0.5 * r, sigma), values)
    torch.testing.assert_close(angle_between(arc, r), angles, atol=1e-12, rtol=0)


def test_sg_lobe_gradients_are_finite_at_the_peak_and_gradcheck():
    r = torch.nn.functional.normalize(torch.tensor([0.2, -0.5, 0.8], dtype=torch.float64), dim=0)
    for peak in (r, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)):  # the second: p x q exactly 0
        q = peak.clone().requires_grad_(True)
        p = peak.clone().requires_grad_(True)
        sigma = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
        sg_lobe(q, p, sigma).backward()
        for g in (q.grad, p.grad, sigma.grad):
            assert torch.isfinite(g).all() and g.abs().max() < 1e-10  # a smooth maximum
    # tiny angles are resolved (arccos of the dot product would round them to 0 or to ~1e-8)
    tiny = torch.tensor([1e-9, 1e-7, 1e-5], dtype=torch.float64)
    x_axis = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    side = torch.nn.functional.normalize(torch.linalg.cross(r, x_axis), dim=0)
    near = torch.cos(tiny)[:, None] * r + torch.sin(tiny)[:, None] * side
    torch.testing.assert_close(angle_between(near, r), tiny, rtol=1e-6, atol=0)
    qs = torch.cat([r[None] + 1e-4 * _unit(1, seed=9), _unit(5, seed=4)]).requires_grad_(True)
    ps = torch.cat([r[None], _unit(5, seed=5)]).requires_grad_(True)
    sig = torch.tensor([0.05, 0.1, 0.3, 0.7, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sg_lobe, (qs, ps, sig))


def test_point_lights_directions_falloff_and_sums():
    positions = torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, 4.0]], dtype=torch.float64)
    radiance = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], dtype=torch.float64)
    lights = PointLights(positions, radiance, reference_distance=2.0)
    points = torch.tensor([[0.0, 0.0, 0.0], [0.0, -2.0, 0.0]], dtype=torch.float64)
    dirs, rad = lights.incident(points)
    assert dirs.shape == rad.shape == (2, 2, 3)
    torch.testing.assert_close(dirs[0, 0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(dirs[0, 1], torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64))
    torch.testing.assert_close(rad[0, 0], radiance[0])  # at the reference distance: as given
    torch.testing.assert_close(rad[1, 0], radiance[0] / 4)  # twice as far: a quarter
    torch.testing.assert_close(rad[0, 1], radiance[1] * 4 / 25)
    sh = lights.incident_sh(points, 3)
    assert sh.shape == (2, 16, 3)
    torch.testing.assert_close(sh[0], sh_basis(dirs[0], 3).T @ rad[0])
    r = _unit(2, seed=6)
    sigma = torch.tensor([0.3, 0.6], dtype=torch.float64)
    spec = lights.specular_at(points, r, sigma)
    expected = (sg_lobe(dirs, r[:, None], sigma[:, None])[..., None] * rad).sum(1)
    torch.testing.assert_close(spec, expected)
    one = lights.select(1)
    assert len(one) == 1 and len(lights) == 2
    torch.testing.assert_close(one.incident(points)[1], rad[:, 1:])


def test_environment_map_geometry_and_lookup():
    env = EnvironmentMap.sky(16, 32)
    dirs = env.directions()
    assert dirs.shape == (16, 32, 3)
    assert float(dirs[0, :, 1].min()) > 0.98 and float(dirs[-1, :, 1].max()) < -0.98  # row 0 is up
    centre = dirs[7:9, 15:17].mean((0, 1))  # the centre of the image looks along -z
    torch.testing.assert_close(centre / centre.norm(), torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)
    assert float(dirs[8, 24, 0]) > 0.99  # 3/4 of the width: +x
    assert abs(float(env.solid_angles().sum()) - 4 * math.pi) < 1e-5
    torch.testing.assert_close(env.radiance(dirs.double()), env.image.double(), rtol=1e-5, atol=1e-5)
    # bilinear between texel centres, wrapping across the seam (+z) between the last and first column
    theta = math.pi * 5.5 / 16  # row 5, longitude pi: the seam
    seam = torch.tensor([0.0, math.cos(theta), math.sin(theta)])
    torch.testing.assert_close(env.radiance(seam), (env.image[5, 0] + env.image[5, -1]) / 2,
                               rtol=1e-5, atol=1e-6)
    between = torch.nn.functional.normalize(dirs[5, 3] + dirs[6, 3], dim=0)  # rows: not on a texel centre
    expected = (env.image[5, 3] + env.image[6, 3]) / 2
    assert float((env.radiance(between) - expected).abs().max()) < 0.02 * float(expected.max())
    # the map's SH agrees with the basis: a map that is Y_1^-1 (= c y) projects onto that coefficient only
    y_map = EnvironmentMap(torch.clamp_min(dirs[..., 1:2].expand(-1, -1, 3), 0.0) + 0.0)
    coeffs = y_map.to_sh(1)
    assert coeffs[1, 0] > 0.5 and coeffs[[2, 3], 0].abs().max() < 1e-6
    constant = EnvironmentMap(torch.full((8, 16, 3), 0.5))
    torch.testing.assert_close(constant.to_sh(2)[0], torch.full((3,), 0.5 * math.sqrt(4 * math.pi)))
    assert constant.to_sh(2)[1:].abs().max() < 1e-6  # texels integrated exactly, even at 8 x 16
    torch.testing.assert_close(constant.incident_sh(torch.zeros(4, 3), 2)[3], constant.to_sh(2))


def test_to_directional_conserves_the_integral_and_finds_the_sun():
    env = EnvironmentMap.sky(32, 64, sun_direction=(0.5, 0.6, -0.6))
    lights = env.to_directional(64)
    assert isinstance(lights, DirectionalLights) and len(lights) == 64
    torch.testing.assert_close(lights.radiance.sum(0), env.integral(), rtol=1e-5, atol=0)
    # one light: at the energy-weighted mean direction (luminance x solid angle)
    energy = (env.image @ torch.tensor([0.2126, 0.7152, 0.0722])) * env.solid_angles()
    mean = (env.directions() * energy[..., None]).sum((0, 1))
    torch.testing.assert_close(env.to_directional(1).directions[0], mean / mean.norm(), rtol=1e-5, atol=1e-6)
    # median cut: regions of equal energy (up to whole texels), none wasted on the black background
    luminance = torch.tensor([0.2126, 0.7152, 0.0722])
    studio = EnvironmentMap.studio(32, 64).to_directional(16).radiance @ luminance
    assert float(studio.max() / studio.min()) < 4.0
    sun = torch.nn.functional.normalize(torch.tensor([0.5, 0.6, -0.6]), dim=0)
    brightest = lights.directions[lights.radiance.sum(-1).argmax()]
    assert float(angle_between(brightest, sun)) < 0.1
    # diffuse shading with the lights ~ shading with every texel (median cut: a few percent)
    normals = _unit(64, seed=7, dtype=torch.float32)
    by_texel = (env.image.reshape(-1, 3) * env.solid_angles().reshape(-1, 1))
    full = (normals @ env.directions().reshape(-1, 3).T).clamp_min(0) @ by_texel
    approx = (normals @ lights.directions.T).clamp_min(0) @ lights.radiance
    assert float(((approx - full).abs() / full).max()) < 0.08
    with pytest.raises(ValueError, match="1..2048"):
        env.to_directional(5000)


def test_prefiltered_lookup_equals_the_brute_force_integral():
    env = EnvironmentMap.studio(24, 48)
    sigmas = [0.1, 0.2, 0.4, 0.8]
    pre = env.prefilter(sigmas, resolution=(12, 24))
    # at the lookup grid's texel centres and at the prefiltered sigmas: exact (up to the lobe's normalisation)
    grid = torch.cartesian_prod(torch.arange(12), torch.arange(24))
    from paperzoo.methods.relight_avatar.sh import equirect_directions

    axes = equirect_directions(12, 24, dtype=torch.float64)[grid[:, 0], grid[:, 1]]
    for sigma in sigmas:  # the sum and the prefilter differ by the texel sum's error in the lobe's mass
        got = env.specular(axes, torch.full((axes.shape[0],), sigma, dtype=torch.float64))
        brute = _brute_specular(env, axes, sigma)
        assert float((got - brute).abs().max()) < 0.01 * float(brute.max())
        torch.testing.assert_close(pre.integrals()[sigmas.index(sigma)].reshape(-1, 3).double(), got)
    # anywhere, between levels (a factor sqrt(2) apart) on a finer grid: interpolation error only
    fine = env.prefilter([0.1, 0.14, 0.2, 0.28, 0.4, 0.56, 0.8], resolution=(24, 48))
    r = _unit(200, seed=8)
    sigma = torch.linspace(0.25, 0.6, 200, dtype=torch.float64)
    got = fine.lookup(r, sigma)
    brute = torch.cat([_brute_specular(env, r[i:i + 1], float(sigma[i])) for i in range(200)])
    rel = (got - brute).abs().sum(-1) / brute.sum(-1).clamp_min(0.05 * float(brute.sum(-1).max()))
    assert float(rel.median()) < 0.03 and float((got - brute).abs().max()) < 0.03 * float(brute.max())
    coarse_error = float((pre.lookup(r, sigma) - brute).abs().max())
    assert coarse_error > float((got - brute).abs().max())  # the coarser table is worse
    # a constant map gives the lobe's mass, k_0(sigma), for any sigma (also between levels)
    constant = EnvironmentMap(torch.full((8, 16, 3), 2.0, dtype=torch.float64))
    s = torch.tensor([0.012, 0.05, 0.3, 1.5], dtype=torch.float64)
    out = constant.specular(_unit(4, seed=9), s)
    mass = sg_zonal_coefficients(s, 0)
    torch.testing.assert_close(out, (2.0 * mass).expand(4, 3), rtol=1e-9, atol=0)


def test_specular_lookup_gradcheck_in_direction_and_sigma():
    env = EnvironmentMap(EnvironmentMap.sky(8, 16).image.double())
    pre = env.prefilter([0.1, 0.3, 0.9], resolution=(6, 12))
    # lobe axes off the lookup grid's texel rows/columns and sigmas off the levels (the kinks)
    rows = torch.tensor([0.3, 1.6, 2.45, 4.2], dtype=torch.float64)
    cols = torch.tensor([0.7, 5.3, 10.6, 8.4], dtype=torch.float64)
    theta = math.pi * (rows + 0.5) / 6
    phi = 2 * math.pi * (cols + 0.5) / 12 - math.pi
    st = torch.sin(theta)
    r = torch.stack([st * torch.sin(phi), torch.cos(theta), -st * torch.cos(phi)], -1)
    row, col = direction_to_equirect(r, 6, 12)
    torch.testing.assert_close(row, rows)
    torch.testing.assert_close(col, cols)
    r = (1.3 * r).requires_grad_(True)  # any length
    sigma = torch.tensor([0.15, 0.2, 0.5, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pre.lookup, (r, sigma))
    env.specular(r, sigma).sum().backward()
    assert sigma.grad.abs().min() > 0 and torch.isfinite(r.grad).all()
    # at the poles the longitude is undefined: values and gradients stay finite
    poles = torch.tensor([[0.0, 1.0, 0.0], [0.0, -2.0, 0.0], [1e-20, 1.0, -1e-20]], dtype=torch.float64,
                         requires_grad=True)
    out = env.specular(poles, 0.2)
    out.sum().backward()
    assert torch.isfinite(out).all() and poles.grad.abs().max() < 1e3  # no 1 / distance-to-axis blow-up


def test_procedural_maps():
    sky = EnvironmentMap.sky(32, 64, sun_direction=(0.0, 0.5, -1.0))
    sun_dir = torch.nn.functional.normalize(torch.tensor([0.0, 0.5, -1.0]), dim=0)
    row, col = (round(float(v)) for v in direction_to_equirect(sun_dir, 32, 64))
    assert sky.image[row, col].sum() == sky.image.sum(-1).max()
    assert sky.image[2].mean() > sky.image[-3].mean()  # sky brighter than the ground
    studio = EnvironmentMap.studio(32, 64)
    dark = (studio.image.sum(-1) == 0).float().mean()
    assert 0.5 < float(dark) < 0.97
    single = EnvironmentMap.studio(16, 32, boxes=[Softbox((0.0, 0.0, -1.0), (0.3, 0.3), (1.0, 1.0, 1.0))])
    torch.testing.assert_close(single.image[8, 16], torch.ones(3))  # the centre column looks along -z
    assert single.image[8, 0].sum() == 0
    photo = np.full((6, 12, 3), 0.5)
    photo[0] = 1.0
    env = EnvironmentMap.from_image(photo, scale=2.0)
    torch.testing.assert_close(env.image[3, 3], torch.full((3,), 2 * 0.21404114048223255))
    torch.testing.assert_close(env.image[0, 0], torch.full((3,), 2.0))
    small = EnvironmentMap.from_image((photo * 255).astype(np.uint8), gamma=1.0, height=4)
    assert small.image.shape == (4, 8, 3)


def test_bad_input_is_one_clear_value_error():
    for bad in (torch.zeros(4, 8), torch.zeros(4, 8, 4), torch.zeros(1, 8, 3)):
        message = r"EnvironmentMap 'x': image must have shape \(H, W, 3\)"
        with pytest.raises(ValueError, match=message) as info:
            EnvironmentMap(bad, name="x")
        assert "\n" not in str(info.value)
    img = torch.ones(4, 8, 3)
    img[2, 5, 1] = -1.0
    with pytest.raises(ValueError, match=r"texel \(row 2, col 5, channel 1\)"):
        EnvironmentMap(img)
    with pytest.raises(ValueError, match="values must be in \\[0, 1\\]"):
        EnvironmentMap.from_image(np.full((4, 8, 3), 3.0))
    with pytest.raises(ValueError, match="positions must have shape"):
        PointLights(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="2 positions but 3"):
        PointLights(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="increasing"):
        EnvironmentMap(img.abs()).prefilter([0.3, 0.1])
