"""Real spherical harmonics, projection and zonal kernels (paperzoo.methods.relight_avatar.sh)."""
import itertools
import math

import numpy as np
import pytest
import torch

from paperzoo.methods.relight_avatar.sh import (
    direction_to_equirect,
    equirect_directions,
    equirect_solid_angles,
    legendre_p,
    project_equirect,
    sg_zonal_coefficients,
    sh_basis,
    sh_convolve,
    sh_degree_of,
    sh_eval,
    sh_lambertian_kernel,
    sh_point_light,
    sh_project,
    sh_sg_integral,
    sphere_quadrature,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _unit(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1)


def test_known_values_and_convention():
    d = _unit(20)
    x, y, z = d.unbind(-1)
    Y = sh_basis(d, 2)
    assert Y.shape == (20, 9)
    torch.testing.assert_close(Y[:, 0], torch.full_like(x, 0.28209479177387814))
    # no Condon-Shortley phase: (Y_1^-1, Y_1^0, Y_1^1) = c (y, z, x)
    torch.testing.assert_close(Y[:, 1:4], 0.4886025119029199 * torch.stack([y, z, x], -1))
    torch.testing.assert_close(Y[:, 4], 1.0925484305920792 * x * y)
    torch.testing.assert_close(Y[:, 5], 1.0925484305920792 * y * z)
    torch.testing.assert_close(Y[:, 6], 0.31539156525252005 * (3 * z * z - 1))
    torch.testing.assert_close(Y[:, 7], 1.0925484305920792 * x * z)
    torch.testing.assert_close(Y[:, 8], 0.5462742152960396 * (x * x - y * y))


def test_matches_scipy_up_to_degree_8_with_the_phase_removed():
    from scipy.special import sph_harm_y

    d = _unit(40, seed=1)
    Y = sh_basis(d, 8).numpy()
    theta = np.arccos(d[:, 2].numpy())
    phi = np.arctan2(d[:, 1].numpy(), d[:, 0].numpy())
    for l in range(9):
        for m in range(-l, l + 1):
            c = sph_harm_y(l, abs(m), theta, phi)  # complex, with the (-1)^m phase
            ref = c.real if m == 0 else math.sqrt(2) * (-1) ** m * (c.real if m > 0 else c.imag)
            np.testing.assert_allclose(Y[:, l * l + l + m], ref, atol=1e-12, err_msg=f"l={l} m={m}")


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_orthonormal_to_degree_8_under_exact_quadrature(dtype, tol):
    dirs, w = sphere_quadrature(16, dtype=dtype)
    Y = sh_basis(dirs, 8)
    assert Y.dtype == dtype and Y.shape == (dirs.shape[0], 81)
    gram = (Y * w[:, None]).T @ Y
    assert (gram - torch.eye(81, dtype=dtype)).abs().max() < tol


def test_high_degree_is_stable_and_addition_theorem_holds():
    a, b = _unit(30, seed=2), _unit(30, seed=3)
    degree = 20
    Ya, Yb = sh_basis(a, degree), sh_basis(b, degree)
    P = legendre_p((a * b).sum(-1), degree)
    for l in range(degree + 1):
        band = slice(l * l, (l + 1) ** 2)
        lhs = (Ya[:, band] * Yb[:, band]).sum(-1)
        torch.testing.assert_close(lhs, (2 * l + 1) / (4 * math.pi) * P[:, l], atol=1e-11, rtol=0)


def test_basis_is_differentiable_including_the_poles():
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.3, -0.2, 0.9]], dtype=torch.float64,
                     requires_grad=True)
    sh_basis(d, 8).sum().backward()
    assert torch.isfinite(d.grad).all()
    q = _unit(4, seed=4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: sh_basis(v, 4), (q,))


def test_projection_of_a_band_limited_function_is_exact():
    def f(d):  # a + b cos(theta) + degree-2 terms, two channels
        x, y, z = d.unbind(-1)
        return torch.stack([0.7 + 0.4 * z + 0.3 * (3 * z * z - 1), 1.0 - 0.2 * x * y + 0.5 * y], -1)

    dirs, w = sphere_quadrature(20)
    coeffs = sh_project(f(dirs), dirs, w, 8)
    assert coeffs.shape == (81, 2)
    assert coeffs[9:].abs().max() < 1e-12  # nothing above degree 2
    torch.testing.assert_close(coeffs[0, 0], torch.tensor(0.7 * math.sqrt(4 * math.pi), dtype=torch.float64))
    test_dirs = _unit(50, seed=5)
    torch.testing.assert_close(sh_eval(coeffs, test_dirs), f(test_dirs), atol=1e-12, rtol=0)
    # one channel, (K,) layout
    torch.testing.assert_close(sh_eval(sh_project(f(dirs)[:, 0], dirs, w, 2), test_dirs), f(test_dirs)[:, 0])


def test_project_equirect_grid_is_consistent_with_the_basis():
    h, w = 32, 64
    omega = equirect_solid_angles(h, w, dtype=torch.float64)
    assert abs(float(omega.sum()) - 4 * math.pi) < 1e-12
    dirs = equirect_directions(h, w, dtype=torch.float64)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(h, w, dtype=torch.float64))
    row, col = direction_to_equirect(dirs, h, w)  # the inverse mapping hits the texel centres
    torch.testing.assert_close(row, torch.arange(h, dtype=torch.float64)[:, None].expand(h, w))
    torch.testing.assert_close(col, torch.arange(w, dtype=torch.float64)[None, :].expand(h, w))

    # a band-limited environment sampled on the grid: projection close to the exact coefficients
    x, y, z = dirs.unbind(-1)
    env = torch.stack([0.5 + 0.3 * y + 0.2 * (3 * x * x - 1), 0.1 + 0.4 * x * z, 1.0 - 0.6 * z], -1)
    exact_dirs, exact_w = sphere_quadrature(6)
    ex, ey, ez = exact_dirs.unbind(-1)
    exact = sh_project(torch.stack([0.5 + 0.3 * ey + 0.2 * (3 * ex * ex - 1), 0.1 + 0.4 * ex * ez,
                                    1.0 - 0.6 * ez], -1), exact_dirs, exact_w, 4)
    torch.testing.assert_close(project_equirect(env, 4), exact, atol=2e-3, rtol=0)  # point samples, 32 x 64
    # texels are integrated exactly: a constant map has nothing above degree 0, even at 4 x 8
    flat = project_equirect(torch.ones(4, 8, 1, dtype=torch.float64), 6)
    assert abs(float(flat[0, 0]) - math.sqrt(4 * math.pi)) < 1e-12 and flat[1:].abs().max() < 1e-12
    assert project_equirect(torch.ones(4, 8, 1, dtype=torch.float64), 6, subsamples=1)[1:].abs().max() > 0.01

    # where the bright texels are -> which degree-1 coefficient (y, z, x order) carries them
    def l1(rows, cols):
        img = torch.zeros(h, w, 1, dtype=torch.float64)
        img[rows, cols] = 1.0
        return project_equirect(img, 1)[1:4, 0]

    top = l1(slice(0, 4), slice(None))           # row 0 is up: +y
    centre = l1(slice(12, 20), slice(30, 34))     # centre column looks along -z
    right = l1(slice(12, 20), slice(46, 50))      # 3/4 of the width: +x
    assert top[0] > 0.1 and top[1:].abs().max() < 1e-9
    assert centre[1] < -0.05 and centre[0].abs() < 1e-9 and centre[2].abs() < 1e-9
    assert right[2] > 0.05 and right[0].abs() < 1e-9 and right[1].abs() < 1e-9


def test_non_band_limited_reconstruction_converges_with_degree():
    dirs, w = sphere_quadrature(60)
    cap = torch.sigmoid((dirs[:, 1] - 0.5) * 10.0)[:, None]  # a soft cap around +y
    errors = []
    for degree in (1, 2, 4, 8):
        recon = sh_eval(sh_project(cap, dirs, w, degree), dirs)
        errors.append(float(((recon - cap) ** 2 * w[:, None]).sum().sqrt()))
    assert all(b < 0.8 * a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.05 * float((cap**2 * w[:, None]).sum().sqrt())


def test_lambertian_kernel_closed_form_matches_quadrature():
    t, wt = np.polynomial.legendre.leggauss(200)
    t_pos, w_pos = (t + 1) / 2, wt / 2  # max(0, t) vanishes on [-1, 0]: integrate on [0, 1]
    P = legendre_p(torch.as_tensor(t_pos), 8).numpy()
    numeric = 2 * math.pi * (P * (t_pos * w_pos)[:, None]).sum(0)
    np.testing.assert_allclose(sh_lambertian_kernel(8).numpy(), numeric, atol=1e-12)
    np.testing.assert_allclose(sh_lambertian_kernel(4).numpy()[:3], [math.pi, 2 * math.pi / 3, math.pi / 4])


def test_point_light_irradiance_to_order_2():
    light_dir = torch.nn.functional.normalize(torch.tensor([0.3, 0.8, -0.5], dtype=torch.float64), dim=0)
    normals = _unit(500, seed=6)
    exact = (normals @ light_dir).clamp_min(0)
    errors = {}
    for degree in (1, 2):
        light = sh_point_light(light_dir, torch.tensor([1.0], dtype=torch.float64), degree)
        irradiance = sh_eval(sh_convolve(light, sh_lambertian_kernel(degree)), normals)[:, 0]
        errors[degree] = float((irradiance - exact).abs().max())
        # the closed-form band-limited cosine: 1/4 + t/2 (+ 5/32 (3 t^2 - 1))
        t = normals @ light_dir
        closed = 0.25 + 0.5 * t + (5.0 / 32.0 * (3 * t * t - 1) if degree == 2 else 0.0)
        torch.testing.assert_close(irradiance, closed)
    assert errors[2] < 0.1 < errors[1]  # Ramamoorthi-Hanrahan: 9 terms within ~10 %


def test_sg_zonal_coefficients_reconstruct_the_lobe():
    sigma = torch.tensor(0.4, dtype=torch.float64)
    t = torch.linspace(-1, 1, 401, dtype=torch.float64)
    lobe = torch.exp(-torch.arccos(t) ** 2 / (2 * sigma**2))

    def recon(degree):
        k = sg_zonal_coefficients(sigma, degree)
        scale = torch.tensor([(2 * l + 1) / (4 * math.pi) for l in range(degree + 1)], dtype=torch.float64)
        return (legendre_p(t, degree) * k * scale).sum(-1)

    assert (recon(24) - lobe).abs().max() < 1e-4
    low = recon(3)
    assert (low - lobe).abs().max() > 0.05  # band-limited: a smooth, wider version
    assert int(low.argmax()) == t.numel() - 1  # still peaks at r (t = r . w = 1)
    main = t >= 0.2  # within its main lobe it decreases with the angle from r (ringing beyond)
    assert (low[main][1:] - low[main][:-1] > 0).all()
    # k_0 is the lobe's mass: 2 pi sigma^2 (1 - sigma^2/3 + ...) for a narrow lobe
    small = torch.tensor([0.01, 0.05], dtype=torch.float64)
    torch.testing.assert_close(sg_zonal_coefficients(small, 0)[:, 0],
                               2 * math.pi * small**2 * (1 - small**2 / 3 + small**4 / 15), rtol=1e-6, atol=0)


def test_sg_zonal_coefficients_gradcheck_in_sigma():
    sigma = torch.tensor([0.05, 0.3, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: sg_zonal_coefficients(s, 6), (sigma,))


def test_sh_sg_integral_matches_brute_force_for_band_limited_light():
    dirs, w = sphere_quadrature(120)
    x, y, z = dirs.unbind(-1)
    radiance = torch.stack([1.0 + 0.5 * y + 0.3 * x * z, 0.4 + 0.2 * (3 * z * z - 1) + 0.3 * x], -1)
    light = sh_project(radiance, dirs, w, 2)
    r = _unit(5, seed=7)
    sigma = torch.tensor([0.2, 0.35, 0.5, 0.8, 1.2], dtype=torch.float64)
    from paperzoo.methods.relight_avatar.lights import sg_lobe

    lobes = sg_lobe(dirs[None], r[:, None], sigma[:, None])  # (5, N)
    brute = (lobes[..., None] * radiance[None] * w[None, :, None]).sum(1)
    torch.testing.assert_close(sh_sg_integral(light, r, sigma), brute, rtol=1e-6, atol=1e-9)


def test_bad_inputs_give_one_clear_value_error():
    with pytest.raises(ValueError, match="not \\(L\\+1\\)\\^2"):
        sh_degree_of(10)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        sh_basis(torch.zeros(4, 2), 2)
    with pytest.raises(ValueError, match="degree"):
        sh_basis(torch.zeros(4, 3), -1)
    with pytest.raises(ValueError, match="kernel has 2 bands"):
        sh_convolve(torch.zeros(9, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="project_equirect"):
        project_equirect(torch.zeros(4, 8), 2)
