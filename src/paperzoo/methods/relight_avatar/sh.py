"""Real spherical harmonics, sphere quadrature, latitude-longitude grids and zonal kernels.

This is the lighting maths of the diffuse part of the relightable appearance model (Saito et al., CVPR
2024): incident light is projected into real SH (RGB to degree 3, monochrome to degree 8) and the
diffuse colour is a learned transfer of those coefficients. It also gives the "SH-only specular" baseline:
the spherical-Gaussian lobe band-limited by its zonal harmonic coefficients (Funk-Hecke).

SH convention
-------------
Real, orthonormal (``integral Y_i Y_j dw = delta_ij`` over the unit sphere), ordered by degree
``l = 0..L`` and within a degree by order ``m = -l..l``: flat index ``i = l*l + l + m``, ``(L+1)**2``
functions in all. Polar axis ``+z`` (``theta = arccos z``, ``phi = atan2(y, x)``), **without the
Condon-Shortley phase**::

    Y_l^m = sqrt(2) N_l^m P_l^m(cos theta) cos(m phi)        m > 0
    Y_l^0 =         N_l^0 P_l^0(cos theta)
    Y_l^m = sqrt(2) N_l^|m| P_l^|m|(cos theta) sin(|m| phi)  m < 0

with ``N_l^m = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!)`` and ``P_l^m`` the associated Legendre functions
without the ``(-1)^m`` factor. Hence ``Y_0^0 = 0.2820948`` and
``(Y_1^-1, Y_1^0, Y_1^1) = 0.4886025 (y, z, x)``
(the convention of Ramamoorthi and Hanrahan 2001; Sloan's "Stupid SH tricks" and scipy include the
Condon-Shortley phase, which flips the sign of every odd-``m`` function). The functions are functions of
the direction vector: the y-up world of :class:`~.lights.EnvironmentMap` does not change them, only the
meaning of the index order (the ``m = 0`` functions are symmetric about ``z``).

Evaluation uses the fully normalised associated Legendre recurrence in ``z`` times
``sin^m(theta) (cos m phi, sin m phi) = (Re, Im) (x + i y)^m``, so it is a polynomial in ``(x, y, z)``:
stable to high degree, exact at the poles and differentiable everywhere.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "direction_to_equirect",
    "equirect_directions",
    "equirect_solid_angles",
    "equirect_texel_quadrature",
    "legendre_p",
    "num_coeffs",
    "project_equirect",
    "sg_zonal_coefficients",
    "sh_basis",
    "sh_convolve",
    "sh_degree_of",
    "sh_eval",
    "sh_lambertian_kernel",
    "sh_point_light",
    "sh_project",
    "sh_sg_integral",
    "sphere_quadrature",
]


def num_coeffs(degree: int) -> int:
    """Number of real SH functions of degrees ``0..degree``: ``(degree + 1) ** 2``."""
    _check_degree(degree)
    return (degree + 1) ** 2


def sh_degree_of(n_coeffs: int) -> int:
    """The degree ``L`` with ``(L + 1) ** 2 == n_coeffs``; ValueError when ``n_coeffs`` is not a square."""
    degree = math.isqrt(max(int(n_coeffs), 0)) - 1
    if degree < 0 or (degree + 1) ** 2 != n_coeffs:
        raise ValueError(f"SH coefficients: {n_coeffs} is not (L+1)^2 for any degree L >= 0")
    return degree


def _check_degree(degree: int) -> None:
    if not isinstance(degree, (int, np.integer)) or isinstance(degree, bool) or degree < 0:
        raise ValueError(f"SH degree must be a non-negative integer, got {degree!r}")


def _check_dirs(dirs: Tensor, what: str = "dirs") -> None:
    if not isinstance(dirs, Tensor) or dirs.dim() < 1 or dirs.shape[-1] != 3:
        shape = tuple(dirs.shape) if isinstance(dirs, Tensor) else type(dirs).__name__
        raise ValueError(f"{what} must be a tensor of shape (..., 3), got {shape}")


def _band_index(degree: int, device=None) -> Tensor:
    """Degree ``l`` of each flat SH index ``0..(degree+1)^2 - 1``."""
    return torch.cat([torch.full((2 * l + 1,), l, dtype=torch.long) for l in range(degree + 1)]).to(device)


# --------------------------------------------------------------------------------------------------
# Basis
# --------------------------------------------------------------------------------------------------


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """Real orthonormal SH of degrees ``0..degree`` at directions ``dirs`` (..., 3) -> (..., (degree+1)^2).

    ``dirs`` need not be unit length (they are normalised; the zero vector gives ``Y_0^0`` only). See the
    module docstring for the ordering and sign convention. Differentiable, float32 and float64.
    """
    _check_degree(degree)
    _check_dirs(dirs)
    if not dirs.is_floating_point():
        dirs = dirs.to(torch.get_default_dtype())
    tiny = torch.finfo(dirs.dtype).tiny
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(tiny**0.5)
    x, y, z = d.unbind(-1)
    out: list[Tensor | None] = [None] * (degree + 1) ** 2
    # (cos_m[m], sin_m[m]) = (Re, Im) (x + i y)^m = sin^m(theta) (cos m phi, sin m phi)
    cos_m, sin_m = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(degree):
        cos_m.append(x * cos_m[-1] - y * sin_m[-1])
        sin_m.append(x * sin_m[-1] + y * cos_m[-2])
    sqrt2 = math.sqrt(2.0)
    qmm = 1.0 / math.sqrt(4.0 * math.pi)  # N_m^m (2m-1)!!, the normalised P_m^m / sin^m
    for m in range(degree + 1):
        if m > 0:
            qmm *= math.sqrt((2 * m + 1) / (2 * m))
        q_prev2: Tensor | None = None
        q_prev: Tensor | None = None
        for l in range(m, degree + 1):
            if l == m:
                q = torch.full_like(z, qmm)
            elif l == m + 1:
                q = math.sqrt(2 * m + 3) * z * q_prev
            else:
                a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
                b = math.sqrt((2 * l + 1) * ((l - 1) ** 2 - m * m) / ((2 * l - 3) * (l * l - m * m)))
                q = a * z * q_prev - b * q_prev2
            q_prev2, q_prev = q_prev, q
            centre = l * l + l
            if m == 0:
                out[centre] = q
            else:
                out[centre + m] = sqrt2 * q * cos_m[m]
                out[centre - m] = sqrt2 * q * sin_m[m]
    return torch.stack(out, dim=-1)


def legendre_p(t: Tensor, degree: int) -> Tensor:
    """Legendre polynomials ``P_0..P_degree`` at ``t`` (...) -> (..., degree+1) (Bonnet's recurrence)."""
    _check_degree(degree)
    ps = [torch.ones_like(t)]
    if degree >= 1:
        ps.append(t)
    for l in range(1, degree):
        ps.append(((2 * l + 1) * t * ps[l] - l * ps[l - 1]) / (l + 1))
    return torch.stack(ps, dim=-1)


def sh_eval(coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Evaluate an SH expansion at directions.

    ``coeffs`` is (..., K, C) (K = (L+1)^2 coefficients of C channels) or (K,) for one channel; ``dirs`` is
    (..., 3) and broadcasts against the leading dims of ``coeffs``. Returns (..., C), or (...) for (K,).
    """
    if coeffs.dim() == 1:
        degree = sh_degree_of(coeffs.shape[0])
        return (sh_basis(dirs, degree) * coeffs).sum(-1)
    if coeffs.dim() < 2:
        raise ValueError(f"SH coefficients must be (K,) or (..., K, C), got {tuple(coeffs.shape)}")
    degree = sh_degree_of(coeffs.shape[-2])
    basis = sh_basis(dirs, degree).to(coeffs.dtype)
    return (basis.unsqueeze(-1) * coeffs).sum(-2)


def sh_point_light(direction: Tensor, radiance: Tensor, degree: int) -> Tensor:
    """SH projection of a delta (point or directional) light: ``radiance * Y(direction)``.

    ``direction`` (..., 3) points from the shaded point towards the light, ``radiance`` (..., C) is the
    light's integrated radiance (radiance times solid angle; the irradiance on a surface facing it).
    Returns (..., (degree+1)^2, C); sum over a light axis for several lights.
    """
    basis = sh_basis(direction, degree)
    return basis.unsqueeze(-1) * radiance.unsqueeze(-2)


# --------------------------------------------------------------------------------------------------
# Quadrature, latitude-longitude grids and projection
# --------------------------------------------------------------------------------------------------


def sphere_quadrature(degree: int, *, dtype: torch.dtype = torch.float64,
                      device=None) -> tuple[Tensor, Tensor]:
    """Directions (N, 3) and weights (N,) that integrate every spherical polynomial of degree <= ``degree``
    exactly: Gauss-Legendre in ``z = cos theta`` (``degree//2 + 1`` nodes) times ``degree + 1`` uniform
    longitudes. ``sphere_quadrature(2 * L)`` integrates products of two SH of degree <= L exactly."""
    _check_degree(degree)
    n_z, n_phi = degree // 2 + 1, degree + 1
    z, wz = np.polynomial.legendre.leggauss(n_z)
    phi = 2.0 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(np.clip(1.0 - zz**2, 0.0, None))
    dirs = np.stack([s * np.cos(pp), s * np.sin(pp), zz], axis=-1).reshape(-1, 3)
    weights = np.repeat(wz * (2.0 * np.pi / n_phi), n_phi)
    return (torch.as_tensor(dirs, dtype=dtype, device=device),
            torch.as_tensor(weights, dtype=dtype, device=device))


def equirect_directions(height: int, width: int, *, dtype: torch.dtype = torch.float32,
                        device=None) -> Tensor:
    """Unit directions (H, W, 3) of the texel centres of a y-up latitude-longitude map.

    Texel (row i, col j) is centred on ``theta = pi (i + 0.5) / H`` (polar angle from ``+y``: row 0 is the
    top, looking up) and ``phi = 2 pi (j + 0.5) / W - pi`` (longitude), with direction
    ``(sin theta sin phi, cos theta, -sin theta cos phi)``: the centre column looks along ``-z`` (the view
    axis of an OpenGL camera at the origin), the column at 3/4 of the width along ``+x`` and the left and
    right edges along ``+z`` (as a panorama seen from inside).
    """
    theta = math.pi * (torch.arange(height, dtype=torch.float64) + 0.5) / height
    phi = 2.0 * math.pi * (torch.arange(width, dtype=torch.float64) + 0.5) / width - math.pi
    st, ct = torch.sin(theta)[:, None], torch.cos(theta)[:, None]
    sp, cp = torch.sin(phi)[None, :], torch.cos(phi)[None, :]
    dirs = torch.stack([st * sp, ct.expand(-1, width), -st * cp], dim=-1)
    return dirs.to(dtype=dtype, device=device)


def equirect_solid_angles(height: int, width: int, *, dtype: torch.dtype = torch.float32,
                          device=None) -> Tensor:
    """Exact solid angle (H, W) of each texel of a latitude-longitude map; they sum to ``4 pi``."""
    edges = torch.cos(math.pi * torch.arange(height + 1, dtype=torch.float64) / height)
    band = (edges[:-1] - edges[1:]) * (2.0 * math.pi / width)
    return band[:, None].expand(height, width).to(dtype=dtype, device=device)


def direction_to_equirect(dirs: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Continuous texel coordinates ``(row, col)`` of directions (..., 3) in an (H, W) map, where integer
    values are texel centres (the inverse of :func:`equirect_directions`). ``col`` is in ``[-0.5, W - 0.5)``
    and wraps; ``row`` is in ``[-0.5, H - 0.5]``. Safe at the poles (longitude 0 there, finite gradients).
    """
    _check_dirs(dirs)
    x, y, z = dirs.unbind(-1)
    rho2 = x * x + z * z
    off_axis = rho2 > torch.finfo(dirs.dtype).eps ** 2
    rho = torch.sqrt(torch.where(off_axis, rho2, torch.ones_like(rho2)))
    rho = torch.where(off_axis, rho, torch.zeros_like(rho))
    theta = torch.atan2(rho, y)
    phi = torch.atan2(torch.where(off_axis, x, torch.zeros_like(x)),
                      torch.where(off_axis, -z, torch.ones_like(z)))
    row = theta * (height / math.pi) - 0.5
    col = (phi + math.pi) * (width / (2.0 * math.pi)) - 0.5
    return row, col


def sh_project(values: Tensor, dirs: Tensor, weights: Tensor, degree: int) -> Tensor:
    """SH coefficients of a function sampled on a quadrature grid: ``sum_n w_n f(d_n) Y(d_n)``.

    ``values`` is (N,) -> (K,), or (..., N, C) -> (..., K, C); ``dirs`` (N, 3); ``weights`` (N,) are
    solid angles (they should sum to ``4 pi``).
    """
    _check_dirs(dirs)
    if dirs.dim() != 2 or weights.shape != dirs.shape[:1]:
        raise ValueError(f"sh_project: dirs must be (N, 3) and weights (N,), got {tuple(dirs.shape)} "
                         f"and {tuple(weights.shape)}")
    basis = sh_basis(dirs, degree).to(values.dtype) * weights.to(values.dtype).unsqueeze(-1)  # (N, K)
    if values.dim() == 1:
        if values.shape[0] != dirs.shape[0]:
            raise ValueError(f"sh_project: {values.shape[0]} values for {dirs.shape[0]} directions")
        return values @ basis
    if values.shape[-2] != dirs.shape[0]:
        raise ValueError(f"sh_project: values {tuple(values.shape)} must be (..., N={dirs.shape[0]}, C)")
    return torch.einsum("nk,...nc->...kc", basis, values)


def equirect_texel_quadrature(height: int, width: int, n: int, *, dtype: torch.dtype = torch.float32,
                              device=None) -> tuple[Tensor, Tensor]:
    """Quadrature inside each texel of an (H, W) latitude-longitude map: directions (H, W, n*n, 3) and
    weights (H, W, n*n) from ``n`` Gauss-Legendre nodes in ``z = cos theta`` times ``n`` in ``phi`` over
    the texel; a texel's weights sum to its exact solid angle. ``n = 1``: one point, midway in ``z`` and
    ``phi``."""
    if n < 1:
        raise ValueError(f"equirect_texel_quadrature: n must be >= 1, got {n}")
    x, wx = (torch.as_tensor(v, dtype=torch.float64) for v in np.polynomial.legendre.leggauss(n))
    z_edges = torch.cos(math.pi * torch.arange(height + 1, dtype=torch.float64) / height)
    z_mid, z_half = (z_edges[:-1] + z_edges[1:]) / 2, (z_edges[:-1] - z_edges[1:]) / 2  # (H,)
    z = z_mid[:, None] + z_half[:, None] * x  # (H, n)
    wz = z_half[:, None] * wx  # (H, n)
    dphi = 2.0 * math.pi / width
    phi = (torch.arange(width, dtype=torch.float64)[:, None] + 0.5 + 0.5 * x) * dphi - math.pi  # (W, n)
    wphi = 0.5 * dphi * wx  # (n,)
    s = torch.sqrt((1.0 - z * z).clamp_min(0.0))
    zz = z[:, None, :, None].expand(height, width, n, n)
    ss = s[:, None, :, None]
    dirs = torch.stack([(ss * torch.sin(phi)[None, :, None, :]).expand(height, width, n, n), zz,
                        (-ss * torch.cos(phi)[None, :, None, :]).expand(height, width, n, n)], -1)
    weights = (wz[:, None, :, None] * wphi).expand(height, width, n, n)
    return (dirs.reshape(height, width, n * n, 3).to(dtype=dtype, device=device),
            weights.reshape(height, width, n * n).to(dtype=dtype, device=device))


def project_equirect(env: Tensor, degree: int, *, subsamples: int = 4, chunk_points: int = 1 << 18) -> Tensor:
    """SH coefficients (K, C) of a latitude-longitude map ``env`` (H, W, C) (texel layout of
    :func:`equirect_directions`), taken as constant over each texel: every texel's integral of the basis
    is computed with ``subsamples`` x ``subsamples`` Gauss points (:func:`equirect_texel_quadrature`), so
    a constant map has no energy above degree 0 even on a coarse grid (``subsamples=1``: the midpoint
    rule in ``z`` and ``phi``). Rows are processed in chunks of about ``chunk_points`` points to bound
    memory."""
    if not isinstance(env, Tensor) or env.dim() != 3:
        raise ValueError(f"project_equirect: env must be an (H, W, C) tensor, got "
                         f"{tuple(env.shape) if isinstance(env, Tensor) else type(env).__name__}")
    height, width, channels = env.shape
    dtype = env.dtype if env.is_floating_point() else torch.get_default_dtype()
    env = env.to(dtype)
    dirs, weights = equirect_texel_quadrature(height, width, subsamples, dtype=torch.float64,
                                              device=env.device)
    rows = max(1, chunk_points // max(width * subsamples**2, 1))
    total = torch.zeros((num_coeffs(degree), channels), dtype=torch.float64, device=env.device)
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        texel_basis = (sh_basis(dirs[r0:r1], degree) * weights[r0:r1, ..., None]).sum(-2)  # (rows, W, K)
        total = total + torch.einsum("hwk,hwc->kc", texel_basis, env[r0:r1].to(torch.float64))
    return total.to(dtype)


# --------------------------------------------------------------------------------------------------
# Zonal kernels (Funk-Hecke)
# --------------------------------------------------------------------------------------------------
# A zonal kernel f(r . w) acts on an SH expansion band by band: integral f(r . w) L(w) dw =
# sum_l k_l sum_m L_lm Y_lm(r), with k_l = 2 pi integral_{-1}^{1} f(t) P_l(t) dt. Equivalently
# f(r . w) = sum_l k_l sum_m Y_lm(r) Y_lm(w) = sum_l k_l (2l+1)/(4 pi) P_l(r . w).
# Both kernels below are returned as these per-band multipliers k_0..k_L.


def sh_lambertian_kernel(degree: int, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Per-band multipliers (degree+1,) of the clamped cosine ``max(0, t)``: ``pi, 2 pi/3, pi/4, 0, -pi/24,
    ...`` (Ramamoorthi and Hanrahan 2001, closed form; 0 for odd l > 1). Irradiance of a light ``L`` at
    normal ``n`` is ``sh_eval(sh_convolve(L, kernel), n)``."""
    _check_degree(degree)
    values = []
    for l in range(degree + 1):
        if l == 0:
            values.append(math.pi)
        elif l == 1:
            values.append(2.0 * math.pi / 3.0)
        elif l % 2:
            values.append(0.0)
        else:
            half = l // 2
            values.append(2.0 * math.pi * (-1) ** (half - 1) / ((l + 2) * (l - 1))
                          * math.factorial(l) / (2**l * math.factorial(half) ** 2))
    return torch.tensor(values, dtype=dtype, device=device)


def sg_zonal_coefficients(sigma: Tensor | float, degree: int, *, n_nodes: int | None = None) -> Tensor:
    """Per-band multipliers (..., degree+1) of the spherical-Gaussian lobe ``exp(-theta^2 / (2 sigma^2))``.

    ``k_l(sigma) = 2 pi integral_0^a exp(-theta^2/(2 sigma^2)) P_l(cos theta) sin theta dtheta`` by
    Gauss-Legendre quadrature in ``theta`` on ``[0, a]``, ``a = min(pi, 10 sigma)`` (the lobe is below
    ``e^-50`` beyond), with ``n_nodes`` nodes (default ``max(64, 4 degree)``): accurate to about 1e-12
    relative for ``sigma >= 0.01`` and differentiable in ``sigma`` (...). ``k_0`` is the lobe's integral
    over the sphere (about ``2 pi sigma^2`` for small ``sigma``). With them the lobe centred on ``r`` is
    ``sum_l k_l (2l+1)/(4 pi) P_l(r . w)``; truncated at degree 3 it is the band-limited "SH-only
    specular" lobe.
    """
    _check_degree(degree)
    sigma = torch.as_tensor(sigma)
    if not sigma.is_floating_point():
        sigma = sigma.to(torch.get_default_dtype())
    n_nodes = n_nodes or max(64, 4 * degree)
    s, w = np.polynomial.legendre.leggauss(n_nodes)
    s = torch.as_tensor((s + 1.0) / 2.0, dtype=sigma.dtype, device=sigma.device)  # nodes on [0, 1]
    w = torch.as_tensor(w / 2.0, dtype=sigma.dtype, device=sigma.device)
    a = torch.clamp(10.0 * sigma, max=math.pi).unsqueeze(-1)  # (..., 1)
    theta = a * s  # (..., n)
    integrand = torch.exp(-0.5 * (theta / sigma.unsqueeze(-1)) ** 2) * torch.sin(theta) * (w * a)
    return 2.0 * math.pi * (legendre_p(torch.cos(theta), degree) * integrand.unsqueeze(-1)).sum(-2)


def sh_convolve(coeffs: Tensor, kernel: Tensor) -> Tensor:
    """Apply per-band multipliers ``kernel`` (..., L'+1) (L' >= L) to SH coefficients (..., K, C):
    coefficient ``(l, m)`` is multiplied by ``kernel[..., l]``. Leading dims broadcast."""
    degree = sh_degree_of(coeffs.shape[-2])
    if kernel.shape[-1] < degree + 1:
        raise ValueError(f"sh_convolve: kernel has {kernel.shape[-1]} bands, coefficients need {degree + 1}")
    expanded = kernel[..., :degree + 1][..., _band_index(degree, kernel.device)]
    return coeffs * expanded.to(coeffs.dtype).unsqueeze(-1)


def sh_sg_integral(light: Tensor, r: Tensor, sigma: Tensor) -> Tensor:
    """``integral L(w) G(w; r, sigma) dw`` for a light given by SH coefficients (..., K, C), lobe axes
    ``r`` (..., 3) and widths ``sigma`` (...): ``sum_lm k_l(sigma) L_lm Y_lm(r)`` -> (..., C). Exact for
    a band-limited ``L``; with a degree-3 light it is the "SH-only specular" of the paper's baseline."""
    degree = sh_degree_of(light.shape[-2])
    kernel = sg_zonal_coefficients(sigma, degree)
    return sh_eval(sh_convolve(light, kernel), r)
