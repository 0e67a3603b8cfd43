"""Lights for the relightable appearance model: point lights, distant lights and environment maps.

Per-Gaussian colour in Saito et al. (CVPR 2024) is diffuse + specular. The diffuse part needs the SH
coefficients of the light arriving at the Gaussian (:meth:`incident_sh`); the specular part needs
``integral L(w) G(w; r, sigma) dw`` with the spherical-Gaussian lobe
``G(q; p, sigma) = exp(-arccos(p . q)^2 / (2 sigma^2))`` around the reflected view direction ``r``
(:meth:`specular_at`). Every light here offers both, with the same shapes:

* ``incident_sh(points (..., 3), degree) -> (..., (degree+1)^2, 3)``
* ``specular_at(points (..., 3), r (..., 3), sigma (...)) -> (..., 3)``

:class:`PointLights` and :class:`DirectionalLights` are sums of delta lights (the integral is the
light's value times the lobe at its direction). :class:`EnvironmentMap` is distant, continuous light:
SH projection for the diffuse part and a prefiltered lookup table (:class:`PrefilteredEnvironment`) for
the specular part. Radiance is linear RGB throughout; the world is y-up.
"""
from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from paperzoo.methods.relight_avatar.sh import (
    direction_to_equirect,
    equirect_directions,
    equirect_solid_angles,
    num_coeffs,
    project_equirect,
    sg_zonal_coefficients,
    sh_basis,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_SIGMA",
    "DirectionalLights",
    "EnvironmentMap",
    "PointLights",
    "PrefilteredEnvironment",
    "Softbox",
    "angle_between",
    "reflect",
    "sg_lobe",
]

MIN_SIGMA = 0.01
"""The paper's lower bound on the lobe width (radians); the appearance model keeps ``sigma >= MIN_SIGMA``."""


# --------------------------------------------------------------------------------------------------
# Reflection and the spherical-Gaussian lobe
# --------------------------------------------------------------------------------------------------


def reflect(w_o: Tensor, n: Tensor) -> Tensor:
    """Mirror direction ``r = 2 (w_o . n) n - w_o`` (..., 3) of the direction to the viewer ``w_o`` about
    the normal ``n`` (both normalised first, so ``r`` is a unit vector). Shapes broadcast."""
    w_o = F.normalize(w_o, dim=-1)
    n = F.normalize(n, dim=-1)
    return 2.0 * (w_o * n).sum(-1, keepdim=True) * n - w_o


def _safe_norm(v: Tensor) -> Tensor:
    """``|v|`` over the last axis with a zero (not NaN) gradient at ``v = 0``."""
    sq = (v * v).sum(-1)
    positive = sq > 0
    root = torch.sqrt(torch.where(positive, sq, torch.ones_like(sq)))
    return torch.where(positive, root, torch.zeros_like(sq))


def angle_between(p: Tensor, q: Tensor) -> Tensor:
    """Angle (...) between vectors ``p`` and ``q`` (..., 3), as ``atan2(|p x q|, p . q)``: accurate for
    nearly parallel vectors (unlike ``arccos``) and with finite gradients everywhere except at zero
    vectors. The vectors need not be unit length."""
    p, q = torch.broadcast_tensors(p, q)
    return torch.atan2(_safe_norm(torch.linalg.cross(p, q, dim=-1)), (p * q).sum(-1))


def sg_lobe(q: Tensor, p: Tensor, sigma: Tensor | float) -> Tensor:
    """The paper's spherical-Gaussian lobe ``G(q; p, sigma) = exp(-arccos(p . q)^2 / (2 sigma^2))`` (...).

    ``q`` and ``p`` (..., 3) are directions (any length), ``sigma`` (...) the width in radians (the
    appearance model keeps it >= :data:`MIN_SIGMA`); shapes broadcast. The peak value is 1 at ``q = p``
    and the gradient there is finite (zero), see :func:`angle_between`.
    """
    theta = angle_between(p, q)
    return torch.exp(-0.5 * (theta / sigma) ** 2)


# --------------------------------------------------------------------------------------------------
# Delta lights
# --------------------------------------------------------------------------------------------------


def _as_float_tensor(value, name: str, shape_tail: tuple[int, ...] = (3,)) -> Tensor:
    t = torch.as_tensor(value)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.dim() != 1 + len(shape_tail) or tuple(t.shape[1:]) != shape_tail:
        tail = ", ".join(map(str, shape_tail))
        raise ValueError(f"{name} must have shape (L, {tail}), got {tuple(t.shape)}")
    return t


class _DeltaLights:
    """A set of delta lights; subclasses define :meth:`incident`."""

    radiance: Tensor

    def incident(self, points: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return self.radiance.shape[0]

    def incident_sh(self, points: Tensor, degree: int) -> Tensor:
        """SH coefficients (..., (degree+1)^2, 3) of the light arriving at ``points`` (..., 3): the sum
        over lights of ``radiance * Y(direction)`` (no visibility: the appearance model learns it)."""
        dirs, rad = self.incident(points)
        basis = sh_basis(dirs, degree).to(rad.dtype)  # (..., L, K)
        return torch.einsum("...lk,...lc->...kc", basis, rad)

    def specular_at(self, points: Tensor, r: Tensor, sigma: Tensor | float) -> Tensor:
        """``sum_lights radiance * G(direction; r, sigma)`` (..., 3) at ``points`` (..., 3) for lobe axes
        ``r`` (..., 3) and widths ``sigma`` (...)."""
        dirs, rad = self.incident(points)
        sigma = torch.as_tensor(sigma, dtype=rad.dtype, device=rad.device)
        lobe = sg_lobe(dirs, r.unsqueeze(-2), sigma.unsqueeze(-1) if sigma.dim() else sigma)  # (..., L)
        return (lobe.unsqueeze(-1) * rad).sum(-2)


class PointLights(_DeltaLights):
    """Point lights at ``positions`` (L, 3) with ``radiance`` (L, 3) (linear RGB).

    Falloff: a surface point at distance ``d`` from light ``i`` receives ``radiance[i] *
    (reference_distance / d)^2`` from direction ``(position - point) / d`` (``radiance`` is the light's
    integrated radiance - the irradiance on a surface facing it - at ``reference_distance``; a light stage
    normalises its lights this way so that the subject's centre sees the same intensity from each).
    Distances below ``min_distance`` are clamped there.
    """

    def __init__(self, positions, radiance, *, reference_distance: float = 1.0, min_distance: float = 1e-3):
        self.positions = _as_float_tensor(positions, "PointLights positions")
        self.radiance = _as_float_tensor(radiance, "PointLights radiance").to(self.positions)
        if self.radiance.shape[0] != self.positions.shape[0]:
            raise ValueError(f"PointLights: {self.positions.shape[0]} positions but "
                             f"{self.radiance.shape[0]} radiance rows")
        if not reference_distance > 0 or not min_distance > 0:
            raise ValueError(f"PointLights: reference_distance and min_distance must be > 0, got "
                             f"{reference_distance} and {min_distance}")
        self.reference_distance = float(reference_distance)
        self.min_distance = float(min_distance)

    def incident(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Unit directions from ``points`` (..., 3) to each light and the radiance arriving there, both
        (..., L, 3)."""
        diff = self.positions.to(points.dtype) - points.unsqueeze(-2)
        dist2 = (diff * diff).sum(-1, keepdim=True).clamp_min(self.min_distance**2)
        dirs = diff / torch.sqrt(dist2)
        rad = self.radiance.to(points.dtype) * (self.reference_distance**2 / dist2)
        return dirs, rad

    def select(self, index) -> PointLights:
        """A subset of the lights (an int, a slice, or an index tensor / list)."""
        index = [index] if isinstance(index, int) else index
        return PointLights(self.positions[index], self.radiance[index],
                           reference_distance=self.reference_distance, min_distance=self.min_distance)


class DirectionalLights(_DeltaLights):
    """Distant lights from unit ``directions`` (L, 3) (towards the light) with ``radiance`` (L, 3):
    the integrated radiance (radiance times solid angle) each contributes, the same everywhere."""

    def __init__(self, directions, radiance):
        self.directions = F.normalize(_as_float_tensor(directions, "DirectionalLights directions"), dim=-1)
        self.radiance = _as_float_tensor(radiance, "DirectionalLights radiance").to(self.directions)
        if self.radiance.shape[0] != self.directions.shape[0]:
            raise ValueError(f"DirectionalLights: {self.directions.shape[0]} directions but "
                             f"{self.radiance.shape[0]} radiance rows")

    def incident(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Directions and radiance (..., L, 3), independent of ``points`` (..., 3)."""
        shape = points.shape[:-1] + self.directions.shape
        return (self.directions.to(points.dtype).expand(shape), self.radiance.to(points.dtype).expand(shape))


# --------------------------------------------------------------------------------------------------
# Environment maps
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Softbox:
    """A soft rectangular light of :meth:`EnvironmentMap.studio`: centred on ``direction`` (towards the
    light), ``half_size`` = (half width, half height) in radians, linear RGB ``radiance``, edges blurred
    over ``softness`` radians."""

    direction: tuple[float, float, float]
    half_size: tuple[float, float]
    radiance: tuple[float, float, float]
    softness: float = 0.05


DEFAULT_SOFTBOXES = (
    Softbox((-0.55, 0.45, 0.70), (0.35, 0.45), (6.0, 5.6, 5.0)),   # key: front left, above
    Softbox((0.75, 0.10, 0.65), (0.30, 0.40), (1.6, 1.7, 2.0)),    # fill: front right, dimmer and cooler
    Softbox((0.10, 0.70, -0.70), (0.60, 0.20), (4.0, 4.0, 4.0)),   # rim: behind, above
)


def _bilinear(table: Tensor, row: Tensor, col: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Flat indices into an (h, w) grid and weights of the four bilinear corners (rows clamped, columns
    wrapped)."""
    h, w = table.shape[-3], table.shape[-2]
    r0 = torch.floor(row)
    c0 = torch.floor(col)
    fr, fc = row - r0, col - c0
    r0, c0 = r0.long(), c0.long()
    rows = (r0.clamp(0, h - 1), (r0 + 1).clamp(0, h - 1))
    cols = (torch.remainder(c0, w), torch.remainder(c0 + 1, w))
    idx, wts = [], []
    for i, wr in ((0, 1.0 - fr), (1, fr)):
        for j, wc in ((0, 1.0 - fc), (1, fc)):
            idx.append(rows[i] * w + cols[j])
            wts.append(wr * wc)
    return idx, wts


@dataclass
class PrefilteredEnvironment:
    """An environment map convolved with the lobe ``G(.; r, sigma)`` for a list of ``sigmas``.

    ``table[s, i, j]`` (S, h, w, 3) is the lobe-weighted *average* radiance around the direction of
    texel ``(i, j)`` of an (h, w) latitude-longitude grid; ``integral L G dw = k_0(sigma) * average``
    with ``k_0`` the lobe's integral over the sphere (:func:`~.sh.sg_zonal_coefficients`, evaluated
    exactly at lookup time). Interpolating the average, which changes slowly with ``sigma``, rather than
    the integral (about ``2 pi sigma^2 * average``) keeps interpolation between levels accurate.
    """

    sigmas: Tensor      # (S,) increasing
    table: Tensor       # (S, h, w, 3)

    def integrals(self) -> Tensor:
        """The stack (S, h, w, 3) of ``integral L(w) G(w; r, sigma_s) dw`` at the grid's lobe axes ``r``."""
        mass = sg_zonal_coefficients(self.sigmas.to(torch.float64), 0)[:, 0].to(self.table.dtype)
        return self.table * mass[:, None, None, None]

    def lookup(self, r: Tensor, sigma: Tensor | float) -> Tensor:
        """``integral L(w) G(w; r, sigma) dw`` (..., 3) for lobe axes ``r`` (..., 3) and widths ``sigma``
        (...): bilinear in direction (wrapping in longitude, clamped at the poles) and linear in
        ``log sigma`` (the average is clamped to the prefiltered range; the lobe's mass is exact for any
        ``sigma > 0``). Differentiable in ``r`` and ``sigma``."""
        dtype = r.dtype
        sigma = torch.as_tensor(sigma, dtype=dtype, device=r.device)
        r, sigma = torch.broadcast_tensors(r, sigma.unsqueeze(-1))
        sigma = sigma[..., 0]
        levels = torch.log(self.sigmas.to(dtype=dtype, device=r.device))
        table = self.table.to(dtype=dtype, device=r.device)
        n_levels, h, w, channels = table.shape
        flat = table.reshape(n_levels, h * w, channels)
        row, col = direction_to_equirect(r, h, w)
        idx, wts = _bilinear(table, row, col)
        if n_levels == 1:
            lo = torch.zeros_like(sigma, dtype=torch.long)
            t = torch.zeros_like(sigma)
        else:
            x = torch.log(sigma).clamp(levels[0], levels[-1])
            lo = (torch.searchsorted(levels, x.detach().contiguous(), right=True) - 1).clamp(0, n_levels - 2)
            t = (x - levels[lo]) / (levels[lo + 1] - levels[lo])
        hi = (lo + 1).clamp(max=n_levels - 1)
        out = 0.0
        for level, lw in ((lo, 1.0 - t), (hi, t)):
            avg = sum(flat[level, i] * wt.unsqueeze(-1) for i, wt in zip(idx, wts))
            out = out + avg * lw.unsqueeze(-1)
        mass = sg_zonal_coefficients(sigma, 0, n_nodes=24)  # 24 nodes: 1e-14 relative
        return out * mass


class EnvironmentMap:
    """Distant light as an equirectangular (latitude-longitude) map of linear RGB radiance, y-up world.

    ``image`` is (H, W, 3), H, W >= 2, finite and non-negative. Texel ``(row i, col j)`` is centred on the
    direction ``(sin t sin p, cos t, -sin t cos p)`` with ``t = pi (i + 0.5) / H`` (row 0 looks up, +y)
    and ``p = 2 pi (j + 0.5) / W - pi`` (the centre column looks along -z, the column at 3/4 width along
    +x); see :func:`~.sh.equirect_directions`. Texel solid angles are exact (they sum to 4 pi).
    """

    def __init__(self, image, *, name: str = "environment"):
        img = torch.as_tensor(image)
        if img.dim() != 3 or img.shape[-1] != 3 or img.shape[0] < 2 or img.shape[1] < 2:
            raise ValueError(f"EnvironmentMap {name!r}: image must have shape (H, W, 3) with H, W >= 2, "
                             f"got {tuple(img.shape)}")
        if not img.is_floating_point():
            img = img.to(torch.get_default_dtype())
        bad = ~torch.isfinite(img) | (img < 0)
        if bool(bad.any()):
            i, j, c = (int(v) for v in torch.nonzero(bad)[0])
            raise ValueError(f"EnvironmentMap {name!r}: radiance must be finite and >= 0 (linear RGB); "
                             f"texel (row {i}, col {j}, channel {c}) is {float(img[i, j, c])}")
        self.image = img
        self.name = name
        self._prefiltered: PrefilteredEnvironment | None = None

    # ---- geometry ---------------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def directions(self) -> Tensor:
        """Unit directions (H, W, 3) of the texel centres."""
        return equirect_directions(self.height, self.width, dtype=self.image.dtype, device=self.image.device)

    def solid_angles(self) -> Tensor:
        """Solid angle (H, W) of each texel (sum 4 pi)."""
        return equirect_solid_angles(self.height, self.width, dtype=self.image.dtype,
                                     device=self.image.device)

    def integral(self) -> Tensor:
        """``integral L(w) dw`` (3,): radiance times solid angle summed over the texels."""
        return (self.image * self.solid_angles().unsqueeze(-1)).sum((0, 1))

    def radiance(self, dirs: Tensor) -> Tensor:
        """Radiance (..., 3) in directions (..., 3), bilinear between texel centres (wrapping in
        longitude)."""
        row, col = direction_to_equirect(dirs, self.height, self.width)
        flat = self.image.to(dirs.dtype).reshape(-1, 3)
        idx, wts = _bilinear(self.image, row, col)
        return sum(flat[i] * wt.unsqueeze(-1) for i, wt in zip(idx, wts))

    # ---- diffuse: SH ------------------------------------------------------------------------------
    def to_sh(self, degree: int) -> Tensor:
        """SH coefficients ((degree+1)^2, 3) of the map (exact texel solid angles, midpoint rule)."""
        return project_equirect(self.image, degree)

    def incident_sh(self, points: Tensor, degree: int) -> Tensor:
        """:meth:`to_sh` broadcast to ``points`` (..., 3) -> (..., K, 3) (distant light: the same
        everywhere)."""
        coeffs = self.to_sh(degree).to(device=points.device, dtype=points.dtype)
        return coeffs.expand(points.shape[:-1] + (num_coeffs(degree), 3))

    # ---- specular: prefiltered lookup -------------------------------------------------------------
    def prefilter(self, sigmas: Sequence[float] | Tensor | None = None,
                  resolution: tuple[int, int] = (16, 32),
                  *, chunk_pairs: int = 1 << 22) -> PrefilteredEnvironment:
        """Convolve the map with ``G(.; r, sigma)`` for each sigma on an (h, w) = ``resolution`` grid of
        lobe axes ``r``; keep the result for :meth:`specular` and return it.

        Exact sum over all texels: ``sum_t L_t G(d_t; r, sigma) Omega_t``, normalised by
        ``sum_t G(d_t; r, sigma) Omega_t`` and multiplied by the exact lobe mass ``k_0(sigma)`` (identical
        when the lobe spans several texels; for lobes narrower than a texel it is the texel's radiance
        times the lobe's mass, where the plain sum would alias). Computed in float64, in chunks of about
        ``chunk_pairs`` (lobe axis, texel) pairs. Cost: ``S h w H W`` lobe evaluations, e.g. 16 sigmas,
        16 x 32 axes and a 64 x 128 map: 67 M, about 2 s on one core (32 x 64 axes: about 8 s); memory
        ``S h w`` x 3 values. Done once per map.
        Lobes narrower than a lookup texel (``pi / h``) are blurred to about that size. Default sigmas:
        16 from :data:`MIN_SIGMA` to 2 rad, log-spaced (a factor 1.42 apart: the lookup's interpolation
        error between levels is a few percent).
        """
        if sigmas is None:
            sigmas = np.geomspace(MIN_SIGMA, 2.0, 16)
        sig = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if sig.numel() == 0 or bool((sig <= 0).any()) or bool((sig[1:] <= sig[:-1]).any()):
            raise ValueError(f"EnvironmentMap.prefilter: sigmas must be positive and increasing, "
                             f"got {sig.tolist()}")
        h, w = (int(v) for v in resolution)
        if h < 2 or w < 2:
            raise ValueError(f"EnvironmentMap.prefilter: resolution must be >= (2, 2), got {resolution}")
        start = time.perf_counter()
        src_dirs = self.directions().to(torch.float64).reshape(-1, 3)
        omega = self.solid_angles().to(torch.float64).reshape(-1)
        weighted = self.image.to(torch.float64).reshape(-1, 3) * omega[:, None]  # (T, 3)
        axes = equirect_directions(h, w, dtype=torch.float64).reshape(-1, 3)
        chunk = max(1, chunk_pairs // src_dirs.shape[0])
        table = torch.empty(sig.numel(), h * w, 3, dtype=torch.float64)
        for a0 in range(0, axes.shape[0], chunk):
            cos = (axes[a0:a0 + chunk] @ src_dirs.T).clamp(-1.0, 1.0)
            theta2 = torch.arccos(cos) ** 2  # the directions are constants: arccos is fine here
            for s, sigma in enumerate(sig.tolist()):
                g = torch.exp(theta2 * (-0.5 / sigma**2))
                norm = g @ omega
                table[s, a0:a0 + chunk] = (g @ weighted) / norm.clamp_min(1e-300)[:, None]
        dtype = self.image.dtype
        self._prefiltered = PrefilteredEnvironment(sigmas=sig.to(dtype),
                                                   table=table.reshape(-1, h, w, 3).to(dtype))
        logger.debug("prefiltered %s (%dx%d) for %d sigmas at %dx%d in %.2f s", self.name, self.height,
                     self.width, sig.numel(), h, w, time.perf_counter() - start)
        return self._prefiltered

    def specular(self, r: Tensor, sigma: Tensor | float) -> Tensor:
        """``integral L(w) G(w; r, sigma) dw`` (..., 3) by the prefiltered lookup (computed with the
        defaults of :meth:`prefilter` on first use unless :meth:`prefilter` was called)."""
        if self._prefiltered is None:
            self.prefilter()
        return self._prefiltered.lookup(r, sigma)

    def specular_at(self, points: Tensor, r: Tensor, sigma: Tensor | float) -> Tensor:
        """:meth:`specular` (distant light: ``points`` only set the shape)."""
        out = self.specular(r, sigma)
        return out.expand(torch.broadcast_shapes(out.shape, points.shape))

    # ---- ground truth: distant lights -------------------------------------------------------------
    def to_directional(self, n: int) -> DirectionalLights:
        """``n`` distant lights that stand for the map, by median cut (Debevec 2005).

        The map is split recursively (always the region with the most energy) into rectangles of equal
        energy (luminance times solid angle), across the longer side measured on the sphere; each region
        becomes one light at its energy-weighted mean direction carrying the region's ``sum L_t Omega_t``.
        So the lights sum exactly to :meth:`integral`, bright regions get many lights and dark ones few.
        Deterministic. ``n`` must be between 1 and H * W.
        """
        if not 1 <= int(n) <= self.height * self.width:
            raise ValueError(f"EnvironmentMap.to_directional: n must be in 1..{self.height * self.width} "
                             f"(the texel count), got {n}")
        img = self.image.detach().to(torch.float64).cpu().numpy()
        omega = self.solid_angles().detach().to(torch.float64).cpu().numpy()
        dirs = self.directions().detach().to(torch.float64).cpu().numpy()
        energy = (img @ np.array([0.2126, 0.7152, 0.0722])) * omega  # (H, W) luminance x solid angle
        h, w = energy.shape
        row_sin = np.sin(np.pi * (np.arange(h) + 0.5) / h)

        def entry(r0, r1, c0, c1):
            e = float(energy[r0:r1, c0:c1].sum())
            return (-e, -(r1 - r0) * (c1 - c0), r0, r1, c0, c1)

        heap = [entry(0, h, 0, w)]
        done: list[tuple[int, int, int, int]] = []
        while heap and len(heap) + len(done) < n:
            _, _, r0, r1, c0, c1 = heapq.heappop(heap)
            if r1 - r0 == 1 and c1 - c0 == 1:
                done.append((r0, r1, c0, c1))
                continue
            tall = (r1 - r0) * np.pi / h
            wide = (c1 - c0) * 2.0 * np.pi / w * float(row_sin[r0:r1].max())
            split_rows = (tall >= wide and r1 - r0 > 1) or c1 - c0 == 1
            block = energy[r0:r1, c0:c1]
            marginal = block.sum(1) if split_rows else block.sum(0)
            lo, hi = (r0, r1) if split_rows else (c0, c1)
            total = marginal.sum()
            if total > 0:
                cut = lo + int(np.searchsorted(np.cumsum(marginal), 0.5 * total)) + 1
                cut = min(max(cut, lo + 1), hi - 1)
            else:
                cut = (lo + hi) // 2
            if split_rows:
                halves = ((r0, cut, c0, c1), (cut, r1, c0, c1))
            else:
                halves = ((r0, r1, c0, cut), (r0, r1, cut, c1))
            for region in halves:
                heapq.heappush(heap, entry(*region))
        regions = done + [item[2:] for item in heap]
        light_dirs, light_rad = [], []
        for r0, r1, c0, c1 in regions:
            e = energy[r0:r1, c0:c1]
            weight = e if e.sum() > 0 else omega[r0:r1, c0:c1]
            mean = (dirs[r0:r1, c0:c1] * weight[..., None]).sum((0, 1))
            norm = np.linalg.norm(mean)
            light_dirs.append(mean / norm if norm > 1e-12 else dirs[(r0 + r1) // 2, (c0 + c1) // 2])
            light_rad.append((img[r0:r1, c0:c1] * omega[r0:r1, c0:c1, None]).sum((0, 1)))
        dtype, device = self.image.dtype, self.image.device
        return DirectionalLights(torch.as_tensor(np.stack(light_dirs), dtype=dtype, device=device),
                                 torch.as_tensor(np.stack(light_rad), dtype=dtype, device=device))

    # ---- procedural maps --------------------------------------------------------------------------
    @staticmethod
    def _supersampled(fn, height: int, width: int, samples: int) -> Tensor:
        """Average of ``fn(dirs (..., 3)) -> (..., 3)`` over ``samples x samples`` points per texel,
        weighted by solid angle (so small features such as a sun disk are not missed between centres)."""
        sub = (torch.arange(samples, dtype=torch.float64) + 0.5) / samples
        rows = (torch.arange(height, dtype=torch.float64)[:, None] + sub[None, :]).reshape(-1)
        cols = (torch.arange(width, dtype=torch.float64)[:, None] + sub[None, :]).reshape(-1)
        theta = math.pi * rows / height
        phi = 2.0 * math.pi * cols / width - math.pi
        st, ct = torch.sin(theta)[:, None], torch.cos(theta)[:, None]
        dirs = torch.stack([st * torch.sin(phi)[None], ct.expand(-1, phi.numel()),
                            -st * torch.cos(phi)[None]], -1)
        values = fn(dirs) * st[..., None]  # sin(theta): the solid-angle density in (theta, phi)
        values = values.reshape(height, samples, width, samples, 3).sum((1, 3))
        weight = st.reshape(height, samples).sum(1)[:, None, None] * samples
        return (values / weight).to(torch.get_default_dtype())

    @classmethod
    def sky(cls, height: int = 32, width: int = 64, *, sun_direction=(0.45, 0.6, -0.65),
            sun_radius: float = 0.06, sun_radiance=(40.0, 36.0, 30.0), zenith=(0.25, 0.4, 0.85),
            horizon=(0.85, 0.9, 1.0), ground=(0.18, 0.16, 0.14), supersample: int = 4) -> EnvironmentMap:
        """A clear sky: a zenith-to-horizon gradient above, a uniform ground below, and a sun disk of
        angular radius ``sun_radius`` (radians; larger than the real 0.0047 so that small maps resolve
        it) towards ``sun_direction``, anti-aliased by ``supersample``^2 samples per texel."""
        sun = F.normalize(torch.tensor(sun_direction, dtype=torch.float64), dim=0)
        zen, hor, gnd, sun_rad = (torch.tensor(v, dtype=torch.float64)
                                  for v in (zenith, horizon, ground, sun_radiance))

        def fn(d):
            up = d[..., 1:2]
            t = up.clamp(0.0, 1.0).sqrt()
            sky = hor * (1.0 - t) + zen * t
            out = torch.where(up >= 0, sky, gnd.expand_as(sky))
            in_sun = (angle_between(d, sun.expand_as(d)) <= sun_radius).unsqueeze(-1)
            return torch.where(in_sun, sun_rad.expand_as(out), out)

        return cls(cls._supersampled(fn, height, width, supersample), name="sky")

    @classmethod
    def studio(cls, height: int = 32, width: int = 64, *, boxes: Sequence[Softbox] = DEFAULT_SOFTBOXES,
               supersample: int = 4) -> EnvironmentMap:
        """A photo studio: soft rectangular softboxes (default: key, fill and rim) on black."""
        if not boxes:
            raise ValueError("EnvironmentMap.studio: at least one Softbox is needed")
        up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)

        def fn(d):
            out = torch.zeros(d.shape, dtype=torch.float64)
            for box in boxes:
                c = F.normalize(torch.tensor(box.direction, dtype=torch.float64), dim=0)
                hint = up if abs(float(c[1])) < 0.99 else torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
                right = F.normalize(torch.linalg.cross(hint, c), dim=0)
                top = torch.linalg.cross(c, right)
                front = d @ c
                a = torch.atan2(d @ right, front).abs()
                b = torch.atan2(d @ top, front).abs()
                soft = max(box.softness, 1e-6)
                edge_a = ((box.half_size[0] - a) / soft + 0.5).clamp(0.0, 1.0)
                edge_b = ((box.half_size[1] - b) / soft + 0.5).clamp(0.0, 1.0)
                smooth_a, smooth_b = edge_a * edge_a * (3 - 2 * edge_a), edge_b * edge_b * (3 - 2 * edge_b)
                mask = smooth_a * smooth_b * (front > 0)
                out = out + mask.unsqueeze(-1) * torch.tensor(box.radiance, dtype=torch.float64)
            return out

        return cls(cls._supersampled(fn, height, width, supersample), name="studio")

    @classmethod
    def from_image(cls, image, *, gamma: float | str = "srgb", scale: float = 1.0,
                   height: int | None = None, name: str = "image") -> EnvironmentMap:
        """Treat a photo (H, W, 3) in [0, 1] (or uint8) as a latitude-longitude map: gamma -> linear
        (``"srgb"``: the sRGB curve; a number: ``v ** gamma``), times ``scale``, optionally resized to
        (``height``, 2 ``height``) (antialiased bilinear). A photo is not a panorama: its pixel grid is simply
        stretched over the sphere (row 0 up, the centre column along -z)."""
        img = torch.as_tensor(np.asarray(image) if not isinstance(image, Tensor) else image)
        if img.dim() != 3 or img.shape[-1] != 3:
            raise ValueError(f"EnvironmentMap.from_image {name!r}: image must be (H, W, 3), "
                             f"got {tuple(img.shape)}")
        if img.dtype == torch.uint8:
            img = img.to(torch.float64) / 255.0
        img = img.to(torch.float64)
        lo, hi = float(img.min()), float(img.max())
        if not (0.0 <= lo and hi <= 1.0):
            raise ValueError(f"EnvironmentMap.from_image {name!r}: values must be in [0, 1] (or uint8), "
                             f"got min {lo:.4g} max {hi:.4g}")
        if gamma == "srgb":
            lin = torch.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4)
        elif isinstance(gamma, (int, float)) and gamma > 0:
            lin = img ** float(gamma)
        else:
            raise ValueError(f"EnvironmentMap.from_image: gamma must be 'srgb' or a positive number, "
                             f"got {gamma!r}")
        if height is not None:
            lin = F.interpolate(lin.permute(2, 0, 1)[None], size=(int(height), 2 * int(height)),
                                mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0)
        return cls((lin * scale).to(torch.get_default_dtype()), name=name)
