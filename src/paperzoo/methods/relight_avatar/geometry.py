"""Gaussians attached to a mesh's UV space: one Gaussian per covered texel of an ``R x R`` UV map.

The paper decodes every Gaussian attribute as a UV map (offsets, rotations, scales, opacities, appearance),
so that convolutional decoders share weights across the surface and an expression change moves every
Gaussian with the mesh. Here:

* :func:`sample_uv_texels` finds, for every texel centre, the mesh triangle that covers it in UV space and
  its barycentric coordinates (texels no triangle covers get no Gaussian);
* :func:`surface_frames` places each Gaussian on the (posed) mesh by those barycentrics and gives it a
  right-handed tangent frame ``[t, b, n]`` (tangent along the UV ``u`` direction, interpolated normal);
* :func:`attach` turns decoded local offsets / rotations / log-scales into world means, quaternions and
  scales: ``mu = x + F delta``, ``q = quat(F) * q_local``, ``s = s_texel * exp(log_s)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from paperzoo.data.face import vertex_normals

__all__ = ["UVSampling", "attach", "quat_multiply", "rotmat_to_quat", "sample_uv_texels", "surface_frames",
           "triangle_pixel_pairs"]


@dataclass
class UVSampling:
    """Texels covered by the mesh's UV layout.

    Attributes
    ----------
    face:   (M,) triangle index of each texel.
    bary:   (M, 3) barycentric coordinates of the texel centre in that triangle.
    rows, cols: (M,) the texel's position in the ``resolution x resolution`` map (row 0 = top, v = 1).
    resolution: the UV map's side ``R``.
    """

    face: torch.Tensor
    bary: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    resolution: int

    def __len__(self) -> int:
        return int(self.face.numel())

    def scatter(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``(..., M, C)`` per-texel values -> ``(..., C, R, R)`` UV maps (uncovered texels = ``fill``)."""
        R = self.resolution
        out = values.new_full((*values.shape[:-2], values.shape[-1], R * R), fill)
        flat = (self.rows * R + self.cols).to(values.device)
        out[..., flat] = values.transpose(-1, -2)
        return out.reshape(*values.shape[:-2], values.shape[-1], R, R)

    def gather(self, maps: torch.Tensor) -> torch.Tensor:
        """``(..., C, R, R)`` UV maps -> ``(..., M, C)`` values at the covered texels."""
        R = self.resolution
        flat = (self.rows * R + self.cols).to(maps.device)
        return maps.reshape(*maps.shape[:-2], R * R)[..., flat].transpose(-1, -2)


def triangle_pixel_pairs(p: torch.Tensor, width: int, height: int
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel centres inside 2D triangles: every (triangle, pixel) pair whose centre ``(x + 0.5, y + 0.5)``
    lies in the triangle (edges included), enumerated from the triangles' bounding boxes.

    ``p`` (F, 3, 2) are corner coordinates in pixels. Returns ``owner`` (N,) triangle index, ``cx``, ``cy``
    (N,) pixel column / row and ``bary`` (N, 3) barycentric coordinates (float64). Degenerate triangles
    cover nothing. Used to rasterise UV layouts (texels) and screen-space triangles (eye masks).
    """
    p = p.double()
    lo = (p.amin(dim=1) - 0.5).ceil().clamp_min(0).long()                      # first centre index >= min
    hi = torch.minimum((p.amax(dim=1) - 0.5).floor().long(), torch.tensor([width - 1, height - 1]))
    nx = (hi[:, 0] - lo[:, 0] + 1).clamp_min(0)
    ny = (hi[:, 1] - lo[:, 1] + 1).clamp_min(0)
    counts = nx * ny
    owner = torch.repeat_interleave(torch.arange(p.shape[0]), counts)
    local = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    cx = lo[owner, 0] + local % nx[owner]
    cy = lo[owner, 1] + torch.div(local, nx[owner], rounding_mode="floor")
    q = torch.stack((cx + 0.5, cy + 0.5), dim=-1).double()
    a, b, c = p[owner, 0], p[owner, 1], p[owner, 2]
    v0, v1, v2 = b - a, c - a, q - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = den.abs() > 1e-14
    den = torch.where(ok, den, torch.ones_like(den))
    l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    l0 = 1.0 - l1 - l2
    eps = -1e-9
    inside = ok & (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
    return owner[inside], cx[inside], cy[inside], torch.stack((l0, l1, l2), -1)[inside]


def sample_uv_texels(face_uvs: torch.Tensor, resolution: int, face_mask: torch.Tensor | None = None) -> UVSampling:
    """Rasterise the UV layout: which triangle covers each texel centre, with barycentrics.

    ``face_uvs`` is ``(F, 3, 2)`` in ``[0, 1]`` (OBJ convention: ``v`` up). Where UV islands overlap, the
    lowest-index triangle wins. ``face_mask`` (F,) restricts the triangles used.
    """
    if face_uvs.dim() != 3 or face_uvs.shape[1:] != (3, 2):
        raise ValueError(f"sample_uv_texels: face_uvs must be (F, 3, 2), got {tuple(face_uvs.shape)}")
    R = int(resolution)
    uv = face_uvs.double()
    fids = torch.arange(uv.shape[0])
    if face_mask is not None:
        fids = fids[face_mask]
        uv = uv[face_mask]
    # texel coordinates: x = u * R, y = (1 - v) * R; texel (r, c) centre at (c + 0.5, r + 0.5)
    p = torch.stack((uv[..., 0] * R, (1.0 - uv[..., 1]) * R), dim=-1)        # (F, 3, 2)
    owner, cx, cy, bary = triangle_pixel_pairs(p, R, R)
    texel = cy * R + cx
    cand_face = fids[owner]
    # one triangle per texel: the lowest face index
    order = torch.argsort(cand_face * (R * R) + texel, stable=True)
    texel, cand_face, bary = texel[order], cand_face[order], bary[order]
    order2 = torch.argsort(texel, stable=True)
    texel, cand_face, bary = texel[order2], cand_face[order2], bary[order2]
    first = torch.ones_like(texel, dtype=torch.bool)
    first[1:] = texel[1:] != texel[:-1]
    texel, cand_face, bary = texel[first], cand_face[first], bary[first]
    bary = bary.clamp_min(0)
    bary = bary / bary.sum(-1, keepdim=True)
    return UVSampling(cand_face, bary.float(), torch.div(texel, R, rounding_mode="floor"), texel % R, R)


def surface_frames(vertices: torch.Tensor, faces: torch.Tensor, face_uvs: torch.Tensor, sampling: UVSampling,
                   normals: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``(..., M, 3)`` and rotation frames ``(..., M, 3, 3)`` (columns t, b, n) of the texels.

    The tangent is the surface direction of increasing ``u`` in the texel's triangle, made orthogonal to
    the interpolated vertex normal; ``b = n x t`` makes the frame right-handed.
    """
    if normals is None:
        normals = vertex_normals(vertices, faces)
    tri = faces[sampling.face]                                                # (M, 3)
    w = sampling.bary.to(vertices)
    P = vertices[..., tri, :]                                                 # (..., M, 3, 3)
    pos = (P * w[..., None]).sum(-2)
    n = (normals[..., tri, :] * w[..., None]).sum(-2)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    uv = face_uvs[sampling.face].to(vertices)                                 # (M, 3, 2)
    e1, e2 = P[..., 1, :] - P[..., 0, :], P[..., 2, :] - P[..., 0, :]
    du1, dv1 = uv[:, 1, 0] - uv[:, 0, 0], uv[:, 1, 1] - uv[:, 0, 1]
    du2, dv2 = uv[:, 2, 0] - uv[:, 0, 0], uv[:, 2, 1] - uv[:, 0, 1]
    det = du1 * dv2 - du2 * dv1
    det = torch.where(det.abs() > 1e-14, det, torch.full_like(det, 1e-14))
    t = (e1 * dv2[:, None] - e2 * dv1[:, None]) / det[:, None]                # dP/du
    t = t - (t * n).sum(-1, keepdim=True) * n
    bad = t.norm(dim=-1, keepdim=True) < 1e-12
    fallback = torch.linalg.cross(n, torch.tensor([0.0, 1.0, 0.0], dtype=n.dtype).expand_as(n))
    t = torch.where(bad, fallback, t)
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = torch.linalg.cross(n, t)
    return pos, torch.stack((t, b, n), dim=-1)


def texel_world_size(vertices: torch.Tensor, faces: torch.Tensor, face_uvs: torch.Tensor,
                     sampling: UVSampling) -> torch.Tensor:
    """World length of one texel side on each texel's triangle: ``sqrt(area_3d / area_uv) / R``."""
    P = vertices[faces[sampling.face]]
    a3 = 0.5 * torch.linalg.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]).norm(dim=-1)
    uv = face_uvs[sampling.face].to(vertices)
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    auv = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs()
    return (a3 / auv.clamp_min(1e-14)).sqrt() / sampling.resolution


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` rotation matrices -> unit quaternions ``(w, x, y, z)`` (w >= 0), differentiable."""
    m = R
    t = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack((
        torch.stack((1 + t, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]), -1),
        torch.stack((m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]), -1),
        torch.stack((m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]), -1),
        torch.stack((m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]), -1),
    ), dim=-2)                                                                # (..., 4, 4): 4 candidate (scaled) quats
    diag = torch.stack((1 + t, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]), -1)
    best = diag.argmax(-1)                                                    # the best-conditioned candidate
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of ``(w, x, y, z)`` quaternions (rotation ``a`` after ``b``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack((aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw), -1)


def attach(positions: torch.Tensor, frames: torch.Tensor, delta: torch.Tensor, q_local: torch.Tensor,
           log_scale: torch.Tensor, base_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local decoded attributes -> world means, quaternions and scales of the Gaussians.

    ``delta`` (..., M, 3) is an offset in the texel's frame, ``q_local`` (..., M, 4) a rotation relative to it,
    ``log_scale`` (..., M, 3) a log factor on ``base_scale`` (M,) (one texel's world size).
    """
    means = positions + (frames @ delta[..., None]).squeeze(-1)
    quats = quat_multiply(rotmat_to_quat(frames), q_local / q_local.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    scales = base_scale[..., None] * torch.exp(log_scale)
    return means, quats, scales
