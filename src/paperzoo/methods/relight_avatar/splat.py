"""Differentiable 3D Gaussian splatting on CPU (and CUDA) in pure PyTorch.

The renderer follows Kerbl et al. (SIGGRAPH 2023) and the EWA splatting it builds on:

1. **Projection** (:func:`project_gaussians`). Each Gaussian (mean ``mu``, rotation ``q``, scales ``s``) has
   world covariance ``Sigma = R S S^T R^T``. In camera space its image is approximated by the affine
   (EWA) map: ``Sigma_2d = J W Sigma W^T J^T + 0.3 I`` with ``W`` the camera rotation and ``J`` the
   Jacobian of the perspective projection at the mean (``x/z`` clamped to 1.3 x the field of view, as the
   reference CUDA code does). The 0.3 px dilation is the reference's low-pass filter. The conic is
   ``Sigma_2d^-1``.
2. **Per-pixel opacity.** ``alpha = min(0.99, o * exp(-d^2 / 2))`` with ``d^2`` the conic's Mahalanobis
   distance of the pixel centre; a Gaussian whose ``alpha < 1/255`` at a pixel is skipped there. That
   rule is *exact and tile independent*: it is the same test the reference kernel applies, and it
   defines the Gaussian's footprint (``d^2 <= 2 ln(255 o)``), so the screen-space bounding box used
   for binning is the box of that ellipse (not a 3-sigma square): no pixel the box misses could have
   received a contribution.
3. **Sorting and binning.** Valid Gaussians are sorted by camera depth once; each is listed in every
   16 x 16 tile its box touches, and a stable sort by tile keeps depth order inside a tile.
4. **Compositing** front to back, ``C = sum_i c_i alpha_i T_i`` with ``T_i = prod_{j<i} (1 - alpha_j)``,
   with the reference's early termination: the first Gaussian that would push ``T`` below ``1e-4`` is not
   blended and ends the pixel. Tiles are processed together in depth "slabs" of ``K`` Gaussians per
   tile: one batched tensor ``(tiles, K, pixels)`` per slab, the running transmittance carried between
   slabs, tiles whose every pixel has terminated dropped from later slabs, and the tiles of a slab split
   into groups so no intermediate exceeds ``max_elements``. Memory is bounded by the chunk, not by the
   scene; autograd stores one slab's intermediates per group.

Gradients to means, rotations, scales, opacities and colours come from autograd through all of it.
:func:`render_reference` is the brute-force check: every Gaussian against every pixel, no tiles, no
boxes, the EWA Jacobian taken by automatic differentiation of the projection instead of written out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from paperzoo.core.cameras import Camera, pixel_centers

__all__ = ["ALPHA_MAX", "ALPHA_MIN", "T_MIN", "Projected", "RenderOutput", "covariance_3d", "project_gaussians",
           "quat_to_rotmat", "rasterize", "render", "render_batch", "render_reference"]

#: Opacity is capped below 1 so the transmittance never reaches 0 (as in the reference kernel).
ALPHA_MAX = 0.99
#: Contributions with ``alpha`` below this are skipped (the reference's 1/255).
ALPHA_MIN = 1.0 / 255.0
#: A pixel ends when blending one more Gaussian would take its transmittance below this.
T_MIN = 1e-4


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` quaternions ``(w, x, y, z)`` (normalised here) -> ``(..., 3, 3)`` rotation matrices."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack((
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ), dim=-1).reshape(*q.shape[:-1], 3, 3)


def covariance_3d(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World covariances ``R diag(s)^2 R^T`` of ``(N,)`` Gaussians -> ``(N, 3, 3)``."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


@dataclass
class Projected:
    """Gaussians projected to one camera (all ``(N, ...)``; entries of invalid Gaussians are unused)."""

    means2d: torch.Tensor   # (N, 2) pixel coordinates
    conics: torch.Tensor    # (N, 3) upper triangle (a, b, c) of the inverse 2D covariance
    cov2d: torch.Tensor     # (N, 3) upper triangle of the 2D covariance (with dilation)
    depths: torch.Tensor    # (N,) camera-space z
    extents: torch.Tensor   # (N, 2) half-width and half-height of the footprint's box in pixels
    valid: torch.Tensor     # (N,) bool: in front of the near plane, non-degenerate, box on screen


def _check_inputs(means, quats, scales, opacities, colors) -> None:
    n = means.shape[0]
    shapes = {"means": (means, (n, 3)), "quats": (quats, (n, 4)), "scales": (scales, (n, 3)),
              "opacities": (opacities, (n,))}
    for name, (tensor, shape) in shapes.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"splat: {name} must have shape {shape}, got {tuple(tensor.shape)}")
    if colors.dim() != 2 or colors.shape[0] != n:
        raise ValueError(f"splat: colors must have shape ({n}, C), got {tuple(colors.shape)}")


def project_gaussians(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                      camera: Camera, *, near: float = 0.01, dilation: float = 0.3,
                      clamp_fov: float = 1.3) -> Projected:
    """EWA projection of 3D Gaussians to 2D conics (differentiable).

    ``clamp_fov`` bounds ``x/z`` and ``y/z`` in the Jacobian to that multiple of the half field of view,
    as the reference code does, so Gaussians far outside the view do not blow up; ``0`` disables it.
    """
    R = camera.R.to(means)
    cam = means @ R.T + camera.t.to(means)
    x, y, z = cam.unbind(-1)
    zs = torch.where(z > near, z, torch.ones_like(z))  # placeholders for culled Gaussians
    tx, ty = x / zs, y / zs
    if clamp_fov > 0:
        lim_x = clamp_fov * 0.5 * camera.width / camera.fx
        lim_y = clamp_fov * 0.5 * camera.height / camera.fy
        # clamp the tangent around the principal point, like the reference (it uses a symmetric frustum)
        off_x, off_y = (camera.cx - camera.width / 2) / camera.fx, (camera.cy - camera.height / 2) / camera.fy
        tx = (tx - off_x).clamp(-lim_x, lim_x) + off_x
        ty = (ty - off_y).clamp(-lim_y, lim_y) + off_y
    zero = torch.zeros_like(zs)
    J = torch.stack((camera.fx / zs, zero, -camera.fx * tx / zs,
                     zero, camera.fy / zs, -camera.fy * ty / zs), dim=-1).reshape(-1, 2, 3)
    T = J @ R                                               # (N, 2, 3)
    S = covariance_3d(quats, scales)
    cov = T @ S @ T.transpose(-1, -2)                       # (N, 2, 2)
    a = cov[:, 0, 0] + dilation
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + dilation
    det = a * c - b * b
    det_ok = det > 1e-12
    inv_det = 1.0 / torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack((c * inv_det, -b * inv_det, a * inv_det), dim=-1)
    u = camera.fx * x / zs + camera.cx
    v = camera.fy * y / zs + camera.cy
    means2d = torch.stack((u, v), dim=-1)
    # footprint: alpha >= 1/255  <=>  d^2 <= 2 ln(255 o); its box has half-sides sqrt(r2 * var)
    with torch.no_grad():
        r2 = 2.0 * torch.log((opacities.clamp_max(ALPHA_MAX) / ALPHA_MIN).clamp_min(1.0))
        ext = torch.stack(((r2 * a.clamp_min(0)).sqrt(), (r2 * c.clamp_min(0)).sqrt()), dim=-1) + 1.0
        on_screen = ((u + ext[:, 0] > 0) & (u - ext[:, 0] < camera.width)
                     & (v + ext[:, 1] > 0) & (v - ext[:, 1] < camera.height))
        valid = (z > near) & det_ok & (opacities >= ALPHA_MIN) & on_screen
    return Projected(means2d, conics, torch.stack((a, b, c), -1), z, ext, valid)


@dataclass
class RenderOutput:
    """What :func:`render` returns."""

    image: torch.Tensor   # (H, W, C) composited colour (+ background * final transmittance)
    alpha: torch.Tensor   # (H, W) accumulated opacity 1 - T
    depth: torch.Tensor   # (H, W) alpha-weighted mean depth (0 where nothing was hit)
    n_pairs: int          # Gaussian-pixel pairs evaluated (the compositing loop's work)
    n_visible: int        # Gaussians that passed culling


def _bin_tiles(proj: Projected, image_of: torch.Tensor, width: int, height: int, tile_size: int):
    """Depth-sorted (tile, Gaussian) pairs over a batch of images.

    Tile ``t`` of image ``k`` has global id ``k * tiles_per_image + t``. Returns the Gaussian ids sorted by
    (global tile, depth), the per-tile counts, and the tile grid size.
    """
    n_tx = math.ceil(width / tile_size)
    n_ty = math.ceil(height / tile_size)
    idx = torch.nonzero(proj.valid).squeeze(1)
    order = torch.argsort(proj.depths.detach()[idx], stable=True)
    idx = idx[order]
    n_images = int(image_of.max()) + 1 if image_of.numel() else 1
    with torch.no_grad():
        m = proj.means2d.detach()[idx]
        e = proj.extents[idx]
        x0 = ((m[:, 0] - e[:, 0]) / tile_size).floor().clamp(0, n_tx - 1).long()
        x1 = ((m[:, 0] + e[:, 0]) / tile_size).floor().clamp(0, n_tx - 1).long()
        y0 = ((m[:, 1] - e[:, 1]) / tile_size).floor().clamp(0, n_ty - 1).long()
        y1 = ((m[:, 1] + e[:, 1]) / tile_size).floor().clamp(0, n_ty - 1).long()
        nx, ny = x1 - x0 + 1, y1 - y0 + 1
        counts = nx * ny
        total = int(counts.sum())
        dev = counts.device
        owner = torch.repeat_interleave(torch.arange(idx.numel(), device=dev), counts)
        local = torch.arange(total, device=dev) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        tx = x0[owner] + local % nx[owner]
        ty = y0[owner] + torch.div(local, nx[owner], rounding_mode="floor")
        tile = image_of[idx[owner]] * (n_tx * n_ty) + ty * n_tx + tx
        # stable sort by tile keeps the depth order of `owner` within each tile
        perm = torch.argsort(tile, stable=True)
        gauss = idx[owner[perm]]
        per_tile = torch.bincount(tile, minlength=n_images * n_tx * n_ty)
    return gauss, per_tile, n_tx, n_ty, n_images


def rasterize(proj: Projected, opacities: torch.Tensor, colors: torch.Tensor, width: int, height: int, *,
              background: torch.Tensor | None = None, tile_size: int = 8, slab: int = 32,
              max_elements: int = 1 << 22, image_of: torch.Tensor | None = None) -> RenderOutput:
    """Tiled front-to-back alpha compositing of projected Gaussians (see the module docstring).

    ``image_of`` (N,) assigns each Gaussian to one image of a batch (default: all to one image): the
    images' tiles are composited together, so the per-step overhead of the slab loop is paid once for
    the batch. The outputs then have a leading image dimension.
    """
    device, dtype = colors.device, colors.dtype
    C = colors.shape[1]
    batched = image_of is not None
    if image_of is None:
        image_of = torch.zeros(colors.shape[0], dtype=torch.long, device=device)
    gauss, per_tile, n_tx, n_ty, n_images = _bin_tiles(proj, image_of, width, height, tile_size)
    per_image = n_tx * n_ty
    n_tiles = n_images * per_image
    P = tile_size * tile_size
    starts = torch.cumsum(per_tile, 0) - per_tile
    # pixel centres of every tile, (n_tiles, P, 2)
    local = pixel_centers(tile_size, tile_size, dtype=dtype).reshape(P, 2).to(device)
    ty, tx = torch.meshgrid(torch.arange(n_ty), torch.arange(n_tx), indexing="ij")
    origin = torch.stack((tx.reshape(-1), ty.reshape(-1)), -1).to(device=device, dtype=dtype) * tile_size
    pix = (origin[:, None, :] + local[None]).repeat(n_images, 1, 1)
    feat = torch.cat((colors, proj.depths[:, None].to(dtype)), dim=1)  # composite depth with the colours

    T_run = torch.ones(n_tiles, P, dtype=dtype, device=device)       # product of (1 - alpha) incl. the stopper
    T_out = torch.ones(n_tiles, P, dtype=dtype, device=device)       # transmittance after the last blend
    acc_t = torch.zeros(n_tiles, P, C + 1, dtype=dtype, device=device)
    max_count = int(per_tile.max()) if n_tiles else 0
    n_pairs = 0
    active = torch.nonzero(per_tile > 0).squeeze(1)
    k_range = torch.arange(slab, device=device)
    for s in range(0, max_count, slab):
        active = active[per_tile[active] > s]
        if active.numel() == 0:
            break
        group = max(1, max_elements // (slab * P))
        still = []
        for g0 in range(0, active.numel(), group):
            tiles = active[g0:g0 + group]
            pos = s + k_range                                     # (K,)
            in_tile = pos[None, :] < per_tile[tiles, None]        # (A, K)
            slot = (starts[tiles, None] + pos[None, :]).clamp_max(max(gauss.numel() - 1, 0))
            gid = torch.where(in_tile, gauss[slot], torch.zeros_like(slot))
            m2 = proj.means2d[gid]                                # (A, K, 2)
            con = proj.conics[gid]                                # (A, K, 3)
            d = pix[tiles][:, None, :, :] - m2[:, :, None, :]     # (A, K, P, 2)
            dx, dy = d[..., 0], d[..., 1]
            power = -0.5 * (con[..., 0:1] * dx * dx + con[..., 2:3] * dy * dy) - con[..., 1:2] * dx * dy
            alpha = (opacities[gid][..., None] * torch.exp(power)).clamp_max(ALPHA_MAX)
            keep = (alpha >= ALPHA_MIN) & (power <= 0) & in_tile[..., None]
            alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
            n_pairs += int(in_tile.sum()) * P
            T_in = T_run[tiles]                                   # (A, P)
            Tc = torch.cumprod(1.0 - alpha, dim=1)                # inclusive, (A, K, P)
            T_after = T_in[:, None, :] * Tc
            T_before = torch.cat((T_in[:, None, :], T_after[:, :-1]), dim=1)
            blend = T_after >= T_MIN                              # a prefix along K (T_after is non-increasing)
            w = torch.where(blend, alpha * T_before, torch.zeros_like(alpha))
            acc_t = acc_t.index_add(0, tiles, torch.einsum("akp,akc->apc", w, feat[gid]))
            T_run = T_run.index_copy(0, tiles, T_after[:, -1])
            t_last = torch.where(blend, T_after, torch.full_like(T_after, float("inf"))).amin(dim=1)
            T_out = T_out.index_copy(0, tiles, torch.minimum(T_out[tiles], t_last))
            with torch.no_grad():
                still.append(tiles[(T_after[:, -1] >= T_MIN).any(dim=1)])
        active = torch.cat(still) if still else active[:0]

    def untile(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(n_images, n_ty, n_tx, tile_size, tile_size, *x.shape[2:])
        x = x.transpose(2, 3).reshape(n_images, n_ty * tile_size, n_tx * tile_size, *x.shape[5:])
        return x[:, :height, :width]

    out = untile(acc_t)
    T_img = untile(T_out)
    image = out[..., :C]
    if background is not None:
        image = image + T_img[..., None] * background.to(image)
    alpha_img = 1.0 - T_img
    depth = torch.where(alpha_img > 1e-6, out[..., C] / alpha_img.clamp_min(1e-6), torch.zeros_like(alpha_img))
    if not batched:
        image, alpha_img, depth = image[0], alpha_img[0], depth[0]
    return RenderOutput(image, alpha_img, depth, n_pairs, int(proj.valid.sum()))


def render(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
           colors: torch.Tensor, camera: Camera, *, background: torch.Tensor | None = None, tile_size: int = 8,
           slab: int = 32, max_elements: int = 1 << 22, near: float = 0.01) -> RenderOutput:
    """Render ``N`` Gaussians with ``C``-channel colours through ``camera``; differentiable in all inputs.

    Parameters
    ----------
    means, quats, scales, opacities, colors:
        ``(N, 3)``, ``(N, 4)`` ``(w, x, y, z)`` (need not be unit), ``(N, 3)`` positive standard deviations,
        ``(N,)`` in ``(0, 1)``, ``(N, C)`` any channels (RGB, features...).
    camera:
        A :class:`~paperzoo.core.cameras.Camera`.
    background:
        ``(C,)`` colour behind the Gaussians (default: none, i.e. black).
    tile_size, slab, max_elements:
        Tile side in pixels; Gaussians per tile composited per batched step; cap on the elements of one
        ``(tiles, slab, pixels)`` intermediate (bounds memory). 8 px tiles: on the avatar's small splats
        16 px tiles evaluated about twice the Gaussian-pixel pairs (measured on the ICT head at 64-256 px).
    """
    _check_inputs(means, quats, scales, opacities, colors)
    proj = project_gaussians(means, quats, scales, opacities, camera, near=near)
    return rasterize(proj, opacities, colors, camera.width, camera.height, background=background,
                     tile_size=tile_size, slab=slab, max_elements=max_elements)


def render_batch(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                 colors: torch.Tensor, cameras: list[Camera], *, background: torch.Tensor | None = None,
                 tile_size: int = 8, slab: int = 32, max_elements: int = 1 << 22, near: float = 0.01) -> RenderOutput:
    """Render ``B`` images at once: image ``k`` shows Gaussians ``means[k]``... through ``cameras[k]``.

    Inputs carry a leading batch dimension (``(B, N, 3)`` etc.); every camera must have the same image
    size. The result equals ``B`` calls of :func:`render` (tested), with outputs ``(B, H, W, ...)``; it is
    faster because the compositing loop runs once for all images' tiles.
    """
    B = means.shape[0]
    if len(cameras) != B:
        raise ValueError(f"render_batch: {B} Gaussian sets but {len(cameras)} cameras")
    sizes = {(c.width, c.height) for c in cameras}
    if len(sizes) != 1:
        raise ValueError(f"render_batch: cameras must share one image size, got {sorted(sizes)}")
    for k in range(B):
        _check_inputs(means[k], quats[k], scales[k], opacities[k], colors[k])
    projs = [project_gaussians(means[k], quats[k], scales[k], opacities[k], cameras[k], near=near) for k in range(B)]
    proj = Projected(*(torch.cat([getattr(p, f) for p in projs]) for f in
                       ("means2d", "conics", "cov2d", "depths", "extents", "valid")))
    N = means.shape[1]
    image_of = torch.arange(B, device=means.device).repeat_interleave(N)
    width, height = sizes.pop()
    return rasterize(proj, opacities.reshape(-1), colors.reshape(B * N, -1), width, height, background=background,
                     tile_size=tile_size, slab=slab, max_elements=max_elements, image_of=image_of)


def render_reference(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                     colors: torch.Tensor, camera: Camera, *, background: torch.Tensor | None = None,
                     near: float = 0.01, dilation: float = 0.3) -> torch.Tensor:
    """Brute-force reference: every Gaussian at every pixel, one global depth order, no tiles or boxes.

    The EWA Jacobian is computed by automatic differentiation of the pinhole projection (not the
    closed form :func:`project_gaussians` uses), the conic by ``torch.linalg.inv``. Without the field-of-
    view clamp, so compare on scenes whose Gaussians lie inside the view. Returns the ``(H, W, C)`` image.
    """
    _check_inputs(means, quats, scales, opacities, colors)
    R = camera.R.to(means)
    t = camera.t.to(means)

    def to_pixels(p_cam: torch.Tensor) -> torch.Tensor:
        return torch.stack((camera.fx * p_cam[0] / p_cam[2] + camera.cx, camera.fy * p_cam[1] / p_cam[2] + camera.cy))

    cam = means @ R.T + t
    keep = cam[:, 2] > near
    cam, op, col = cam[keep], opacities[keep], colors[keep]
    Sigma = covariance_3d(quats[keep], scales[keep])
    Sigma_cam = R @ Sigma @ R.T
    J = torch.func.vmap(torch.func.jacrev(to_pixels))(cam)                 # (N, 2, 3)
    cov2 = J @ Sigma_cam @ J.transpose(-1, -2) + dilation * torch.eye(2, dtype=means.dtype, device=means.device)
    conic = torch.linalg.inv(cov2)
    center = torch.func.vmap(to_pixels)(cam)                                # (N, 2)
    order = torch.argsort(cam[:, 2].detach(), stable=True)
    center, conic, op, col = center[order], conic[order], op[order], col[order]

    pix = pixel_centers(camera.width, camera.height, dtype=means.dtype).reshape(-1, 1, 2).to(means.device)
    d = pix - center[None]                                                  # (P, N, 2)
    power = -0.5 * torch.einsum("pni,nij,pnj->pn", d, conic, d)
    alpha = (op[None] * torch.exp(power)).clamp_max(ALPHA_MAX)
    alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
    T_after = torch.cumprod(1.0 - alpha, dim=1)
    T_before = torch.cat((torch.ones_like(T_after[:, :1]), T_after[:, :-1]), dim=1)
    w = torch.where(T_after >= T_MIN, alpha * T_before, torch.zeros_like(alpha))
    image = w @ col
    if background is not None:
        T_final = 1.0 - w.sum(dim=1)
        image = image + T_final[:, None] * background.to(image)
    return image.reshape(camera.height, camera.width, -1)
