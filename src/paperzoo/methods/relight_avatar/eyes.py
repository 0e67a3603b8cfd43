"""Explicit eye models for the relightable avatar: eyeball geometry, a reflective eye appearance, gaze control.

Saito et al. (CVPR 2024) give the eyes explicit eyeball geometry: the eye Gaussians are rigid on an eyeball
that rotates with the gaze, and their specular lobe reflects the view about the eyeball's *true* normal (the
sphere's), which keeps the sharp corneal highlights that a decoded normal blurs. The released code lacks it
(facebookresearch/goliath#8); this module builds it on the ICT head.

Read top to bottom:

* :func:`fit_sphere`, :func:`kabsch`, :func:`gaze_rotation` - the geometry helpers (batched, differentiable).
* :class:`EyeGeometry` - which avatar texels are eye texels (sclera / iris materials), a least-squares sphere
  per eye from the neutral sclera (the ICT eyeball: radius 1.58 cm, RMS 0.6 mm off the sphere), every eye
  texel's neutral position and frame in its eye's frame, and per-frame eye poses from tracked meshes
  (:meth:`EyeGeometry.track`: Kabsch between the neutral and the tracked sclera).
* :class:`EyeModel` - the eye Gaussians and their shading, per eye ``e`` and Gaussian ``k``:

  - ``mu_k = c_e + R_e x_k``, ``q_k = quat(R_e) quat(F_k) q_k^local``, learned log-scales and opacities
    (``x_k`` the learned local position, initialised at the texel, ``F_k`` its neutral tangent frame);
  - ``n_k = R_e x0_k / |x0_k|``, the sphere normal at the texel (no learned residual);
  - ``c_k = v_k [rho_k / pi E(n_k) + k_s,e integral L(w) G(w; r_k, sigma_e) dw]`` with ``r_k`` the view
    direction reflected about ``n_k``, ``G`` the spherical-Gaussian lobe of :func:`.lights.sg_lobe`, ``v_k``
    a learned per-Gaussian visibility (eyelid occlusion), ``rho_k`` a learned albedo, ``k_s,e`` and
    ``sigma_e`` (>= 0.01 rad, initially 0.05) learned per eye; ``E(n)`` is ``sum_i max(0, n.l_i) E_i`` for
    point lights (exact clamped cosine) and the SH irradiance (degree 8) for an environment.

* :func:`eye_mask` - the pixels where an eye is the visible surface (a z-buffer over the head submesh), to
  measure eye-region errors.

Gaze conventions: the face looks down +z, y is up; ``gaze_rotation(yaw, pitch)`` turns the eye's +z axis to
``(sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch))``: positive yaw towards +x (the subject's left),
positive pitch up. Eye index 0 is the subject's left eye (+x, ``M_*Left``), 1 the right.

A fact about the ICT data that matters for gaze: its ``eyeLook*`` blendshapes move the eyelids and the
lacrimal / occlusion shells (up to 7.7 mm), **not the eyeballs** (the sclera moves by exactly 0; only
``PupilDilate_*`` moves the iris, non-rigidly). Tracked ICT meshes therefore always give the identity gaze,
and the light-stage capture never shows a rotated eye. :func:`gaze_from_expression` maps the ARKit-style
``eyeLook*`` weights to yaw / pitch (maximum angles are parameters) for explicit control.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.methods.relight_avatar import geometry as geo
from paperzoo.methods.relight_avatar.lights import MIN_SIGMA, reflect, sg_lobe
from paperzoo.methods.relight_avatar.sh import sh_basis, sh_lambertian_kernel

log = logging.getLogger(__name__)

__all__ = ["EYE_MATERIALS", "EyeGeometry", "EyeModel", "EyePose", "eye_mask", "fit_sphere", "gaze_from_expression",
           "gaze_rotation", "kabsch", "rasterize_ids"]

EYE_MATERIALS = (("M_ScleraLeft", "M_IrisLeft"), ("M_ScleraRight", "M_IrisRight"))
"""Materials of eye 0 (the subject's left, +x) and eye 1 (right); the first of each pair is the sclera."""
ENV_SH_DEGREE = 8
"""SH degree of the environment irradiance (that of ``Lighting.env_sh``)."""


class EyeModelError(ValueError):
    """Inputs the eye model cannot use (the message names the argument and what was expected)."""


# -- geometry helpers ------------------------------------------------------------------------------------------
def fit_sphere(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares sphere through ``points`` (..., N, 3): centre (..., 3) and radius (...).

    Solves the linear (algebraic) problem ``|x|^2 = 2 c.x + (r^2 - |c|^2)`` in float64 on centred points, which
    is exact for points on a sphere and close to the geometric fit for the nearly spherical ICT eyeballs.
    """
    if points.shape[-1] != 3 or points.shape[-2] < 4:
        raise EyeModelError(f"fit_sphere: points must be (..., N >= 4, 3), got {tuple(points.shape)}")
    P = points.double()
    mean = P.mean(-2, keepdim=True)
    Q = P - mean
    A = torch.cat((2 * Q, torch.ones_like(Q[..., :1])), dim=-1)
    b = (Q * Q).sum(-1, keepdim=True)
    s = torch.linalg.lstsq(A, b).solution.squeeze(-1)                       # (..., 4)
    c = s[..., :3]
    r = torch.sqrt((s[..., 3] + (c * c).sum(-1)).clamp_min(0))
    return (c + mean.squeeze(-2)).to(points.dtype), r.to(points.dtype)


def kabsch(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best rigid motion ``target ~ R (source - ms) + mt`` between corresponding points (..., N, 3).

    Returns the rotation ``R`` (..., 3, 3) (a proper rotation, det = +1), the target centroid ``mt``
    (..., 3) and the RMS residual (...) of the fit, in the points' units. Computed in float64.
    """
    if source.shape[-2:] != target.shape[-2:] or source.shape[-1] != 3:
        raise EyeModelError(f"kabsch: source and target must be matching (..., N, 3), got {tuple(source.shape)} "
                            f"and {tuple(target.shape)}")
    P, Q = source.double(), target.double()
    P, Q = torch.broadcast_tensors(P, Q)
    mp, mq = P.mean(-2, keepdim=True), Q.mean(-2, keepdim=True)
    X, Y = P - mp, Q - mq
    H = X.transpose(-1, -2) @ Y                                              # (..., 3, 3)
    U, _, Vh = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vh.transpose(-1, -2) @ U.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    D = torch.diag_embed(torch.stack((torch.ones_like(d), torch.ones_like(d), d), -1))
    R = Vh.transpose(-1, -2) @ D @ U.transpose(-1, -2)
    res = ((X @ R.transpose(-1, -2) - Y) ** 2).sum(-1).mean(-1).sqrt()
    return R.to(source.dtype), mq.squeeze(-2).to(source.dtype), res.to(source.dtype)


def gaze_rotation(yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """Eye rotations (..., 3, 3) for gaze angles in radians: ``R = R_y(yaw) R_x(-pitch)``.

    ``R`` maps the neutral viewing axis +z to ``(sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch))``;
    shapes broadcast, e.g. (B, 2) angles give (B, 2, 3, 3). Differentiable.
    """
    yaw, pitch = torch.broadcast_tensors(torch.as_tensor(yaw), torch.as_tensor(pitch))
    if not yaw.is_floating_point():
        yaw, pitch = yaw.float(), pitch.float()
    cy, sy, cp, sp = torch.cos(yaw), torch.sin(yaw), torch.cos(pitch), torch.sin(pitch)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    Ry = torch.stack((torch.stack((cy, zero, sy), -1), torch.stack((zero, one, zero), -1),
                      torch.stack((-sy, zero, cy), -1)), -2)
    Rx = torch.stack((torch.stack((one, zero, zero), -1), torch.stack((zero, cp, sp), -1),
                      torch.stack((zero, -sp, cp), -1)), -2)                 # R_x(-pitch)
    return Ry @ Rx


def gaze_from_expression(weights: torch.Tensor, names, *, max_yaw_deg: float = 30.0, max_up_deg: float = 25.0,
                         max_down_deg: float = 30.0) -> torch.Tensor:
    """Per-eye gaze (..., 2, 2) ``(yaw, pitch)`` in radians from ARKit-style ``eyeLook*`` blendshape weights.

    ``weights`` (..., K) follow ``names`` (the mesh's ``expression_names``). ``eyeLookOut`` turns an eye away
    from the nose (the left eye towards +x), ``eyeLookIn`` towards it, ``eyeLookUp`` / ``eyeLookDown`` tilt;
    weight 1 is the given maximum angle. The angles are a convention (the ICT blendshapes do not rotate the
    eyeballs, see the module docstring), not something measured from the mesh.
    """
    names = list(names)
    w = torch.as_tensor(weights)
    if w.shape[-1] != len(names):
        raise EyeModelError(f"gaze_from_expression: weights have {w.shape[-1]} entries, names {len(names)}")
    if not w.is_floating_point():
        w = w.float()

    def get(name: str) -> torch.Tensor:
        if name not in names:
            raise KeyError(f"gaze_from_expression: no blendshape {name!r} among the expression names")
        return w[..., names.index(name)]

    yaw_max, up, down = (math.radians(a) for a in (max_yaw_deg, max_up_deg, max_down_deg))
    out = []
    for side, outward in (("L", 1.0), ("R", -1.0)):
        yaw = outward * yaw_max * (get(f"eyeLookOut_{side}") - get(f"eyeLookIn_{side}"))
        pitch = up * get(f"eyeLookUp_{side}") - down * get(f"eyeLookDown_{side}")
        out.append(torch.stack((yaw, pitch), -1))
    return torch.stack(out, -2)


# -- the eyes of a head ----------------------------------------------------------------------------------------
@dataclass
class EyePose:
    """Where the eyes are in a batch of frames: rotations (B, 2, 3, 3), sphere centres (B, 2, 3) and the RMS
    residual (B, 2) of the rigid fit to the tracked sclera (0 for explicit gaze)."""

    rotation: torch.Tensor
    center: torch.Tensor
    residual: torch.Tensor


@dataclass
class EyeGeometry:
    """The explicit eyeballs of the avatar, in the units of the avatar template.

    Attributes
    ----------
    texels: (M_e,) indices of the eye texels among the avatar's Gaussians (eye 0's first, then eye 1's).
    eye: (M_e,) 0 or 1, the eye of each eye texel.
    is_iris: (M_e,) bool, the texel lies on an iris material.
    center: (2, 3) neutral sphere centres; radius: (2,) sphere radii (least squares on the sclera).
    local: (M_e, 3) neutral texel positions relative to their eye's centre (the eye frame is the world frame
        at the neutral, unrotated eye).
    frames: (M_e, 3, 3) neutral tangent frames of the texels (columns t, b, n; as the avatar's).
    base_scale: (M_e,) one texel's world size.
    sclera_vertices: (2, N_s) head-mesh vertex ids of each eye's sclera (the rigid part that tracking fits).
    sclera_neutral: (2, N_s, 3) their neutral positions.
    faces, face_material, materials: the head submesh's triangles and materials (for :func:`eye_mask`).
    """

    texels: torch.Tensor
    eye: torch.Tensor
    is_iris: torch.Tensor
    center: torch.Tensor
    radius: torch.Tensor
    local: torch.Tensor
    frames: torch.Tensor
    base_scale: torch.Tensor
    sclera_vertices: torch.Tensor
    sclera_neutral: torch.Tensor
    faces: torch.Tensor
    face_material: torch.Tensor
    materials: tuple[str, ...]

    @classmethod
    def from_template(cls, mesh, template) -> EyeGeometry:
        """Build from the head submesh ``mesh`` (a :class:`~paperzoo.data.face.FaceMesh`) and the avatar's
        :class:`~.model.AvatarTemplate` made from it (whose ``neutral`` is the mesh's vertices times its scale).
        A KeyError names a missing eye material."""
        if mesh.n_vertices != template.neutral.shape[0]:
            raise EyeModelError(f"EyeGeometry: the template has {template.neutral.shape[0]} vertices, the mesh "
                                f"{mesh.n_vertices}; build both from the same head submesh")
        neutral = template.neutral.float()
        pos, frames = template.place(neutral)
        mat_names = list(template.materials)
        texels, eyes, iris, centres, radii, sclera_ids = [], [], [], [], [], []
        for e, (sclera, iris_name) in enumerate(EYE_MATERIALS):
            for name in (sclera, iris_name):
                if name not in mat_names or name not in mesh.materials:
                    raise KeyError(f"EyeGeometry: material {name!r} missing; the head has {', '.join(mat_names)}")
            ids = [mat_names.index(sclera), mat_names.index(iris_name)]
            sel = torch.nonzero(torch.isin(template.texel_material, torch.tensor(ids))).squeeze(1)
            texels.append(sel)
            eyes.append(torch.full_like(sel, e))
            iris.append(template.texel_material[sel] == ids[1])
            v = torch.unique(mesh.faces[mesh.face_material == mesh.materials.index(sclera)])
            c, r = fit_sphere(neutral[v])
            d = (neutral[v] - c).norm(dim=-1)
            log.info("eye %d (%s): sphere centre %s, radius %.3f, RMS off-sphere %.4f (%d sclera vertices)",
                     e, sclera, [round(x, 3) for x in c.tolist()], float(r), float((d - r).pow(2).mean().sqrt()),
                     v.numel())
            centres.append(c)
            radii.append(r)
            sclera_ids.append(v)
        if sclera_ids[0].numel() != sclera_ids[1].numel():
            raise EyeModelError(f"EyeGeometry: the two scleras have {sclera_ids[0].numel()} and "
                                f"{sclera_ids[1].numel()} vertices (expected a symmetric head)")
        tex, eye = torch.cat(texels), torch.cat(eyes)
        if tex.numel() == 0:
            raise EyeModelError("EyeGeometry: the avatar has no eye texels (raise uv_resolution)")
        centre = torch.stack(centres)
        sclera_vertices = torch.stack(sclera_ids)
        return cls(tex, eye, torch.cat(iris), centre, torch.stack(radii), pos[tex] - centre[eye], frames[tex],
                   template.base_scale[tex].float(), sclera_vertices, neutral[sclera_vertices],
                   mesh.faces.clone(), mesh.face_material.clone(), tuple(mesh.materials))

    @property
    def n_gaussians(self) -> int:
        return int(self.texels.numel())

    def non_eye(self, n_gaussians: int) -> torch.Tensor:
        """(n_gaussians,) bool: the avatar's Gaussians that are *not* eye texels (the ones :class:`EyeModel`
        replaces), for an avatar with ``n_gaussians`` Gaussians."""
        if n_gaussians <= int(self.texels.max()):
            raise EyeModelError(f"non_eye: the avatar has {n_gaussians} Gaussians, the eye texels go up to "
                                f"{int(self.texels.max())}")
        keep = torch.ones(n_gaussians, dtype=torch.bool)
        keep[self.texels] = False
        return keep

    def track(self, tracked_vertices: torch.Tensor) -> EyePose:
        """Eye poses from tracked head meshes (B, V, 3): Kabsch from the neutral to the tracked sclera of each
        eye; the sphere centre moves with it (``c = mt + R (c0 - ms)``)."""
        if tracked_vertices.dim() != 3 or tracked_vertices.shape[-1] != 3:
            raise EyeModelError(f"track: tracked_vertices must be (B, V, 3), got {tuple(tracked_vertices.shape)}")
        src = self.sclera_neutral.to(tracked_vertices)                               # (2, N, 3)
        tgt = tracked_vertices[:, self.sclera_vertices]                              # (B, 2, N, 3)
        R, mt, res = kabsch(src, tgt)
        offset = (self.center.to(src) - src.mean(-2))                                # (2, 3)
        centre = mt + (R @ offset[..., None]).squeeze(-1)
        return EyePose(R, centre, res)

    def gaze_from_mesh(self, tracked_vertices: torch.Tensor) -> torch.Tensor:
        """Per-eye rotations (B, 2, 3, 3) of tracked head meshes (B, V, 3) (see :meth:`track`)."""
        return self.track(tracked_vertices).rotation

    def explicit(self, gaze: torch.Tensor, center: torch.Tensor | None = None) -> EyePose:
        """Eye poses for an explicit gaze: (B, 2, 2) ``(yaw, pitch)`` radians or (B, 2, 3, 3) rotations; the
        centres are ``center`` (B, 2, 3) (e.g. :meth:`track`'s, so the eyes follow the head) or the neutral."""
        if gaze.dim() == 3 and gaze.shape[1:] == (2, 2):
            R = gaze_rotation(gaze[..., 0], gaze[..., 1])
        elif gaze.dim() == 4 and gaze.shape[1:] == (2, 3, 3):
            R = gaze
        else:
            raise EyeModelError(f"gaze must be (B, 2, 2) yaw/pitch or (B, 2, 3, 3) rotations, got "
                                f"{tuple(gaze.shape)}")
        if center is None:
            center = self.center.to(R).expand(R.shape[0], 2, 3)
        return EyePose(R, center, torch.zeros(R.shape[:2], dtype=R.dtype))


# -- the eye Gaussians and their appearance --------------------------------------------------------------------
def _inverse_softplus(x: float) -> float:
    return math.log(math.expm1(x))


class EyeModel(nn.Module):
    """Rigid, relightable eye Gaussians on explicit eyeballs (see the module docstring).

    Parameters
    ----------
    geometry: the :class:`EyeGeometry`.
    roughness: initial lobe width ``sigma`` of both eyes (radians).
    specular: initial ``k_s`` of both eyes.
    """

    def __init__(self, geometry: EyeGeometry, *, roughness: float = 0.05, specular: float = 1.0):
        super().__init__()
        if roughness <= MIN_SIGMA:
            raise EyeModelError(f"EyeModel: roughness must exceed {MIN_SIGMA}, got {roughness}")
        g = geometry
        self.g = g
        M = g.n_gaussians
        for name in ("center", "local", "frames", "base_scale"):
            self.register_buffer(f"neutral_{name}", getattr(g, name).float().clone(), persistent=False)
        self.register_buffer("eye_index", g.eye.clone(), persistent=False)
        self.register_buffer("normal_local", F.normalize(g.local.float(), dim=-1), persistent=False)
        self.local = nn.Parameter(g.local.float().clone())                   # rigid in the eye frame
        self.quat_local = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(M, 1))
        self.log_scale = nn.Parameter(torch.tensor([math.log(0.8), math.log(0.8), math.log(0.2)]).repeat(M, 1))
        self.opacity_logit = nn.Parameter(torch.full((M,), 3.0))
        self.albedo_logit = nn.Parameter(torch.zeros(M, 3))
        self.visibility_logit = nn.Parameter(torch.full((M,), 2.0))
        self.roughness_raw = nn.Parameter(torch.full((2,), _inverse_softplus(roughness - MIN_SIGMA)))
        self.spec_raw = nn.Parameter(torch.full((2,), _inverse_softplus(specular)))
        k = sh_lambertian_kernel(ENV_SH_DEGREE, dtype=torch.float32)
        band = torch.cat([torch.full((2 * l + 1,), float(k[l])) for l in range(ENV_SH_DEGREE + 1)])
        self.register_buffer("lambert_band", band, persistent=False)

    @property
    def roughness(self) -> torch.Tensor:
        """(2,) lobe width ``sigma`` per eye (radians, >= 0.01)."""
        return MIN_SIGMA + F.softplus(self.roughness_raw)

    @property
    def specular(self) -> torch.Tensor:
        """(2,) specular weight ``k_s`` per eye."""
        return F.softplus(self.spec_raw)

    def pose(self, tracked_vertices: torch.Tensor | None = None, gaze: torch.Tensor | None = None) -> EyePose:
        """Eye poses from tracked meshes (B, V, 3), an explicit gaze (B, 2, 2) / (B, 2, 3, 3), or both (then
        the gaze sets the rotation and the tracked meshes the centres)."""
        if tracked_vertices is None and gaze is None:
            raise EyeModelError("EyeModel: give tracked_vertices or gaze")
        if gaze is None:
            return self.g.track(tracked_vertices)
        centre = self.g.track(tracked_vertices).center if tracked_vertices is not None else None
        return self.g.explicit(gaze, centre)

    def gaussians(self, pose: EyePose) -> dict[str, torch.Tensor]:
        """Means (B, M_e, 3), quaternions (B, M_e, 4), scales, opacities and world sphere normals of the eye
        Gaussians for eye poses ``pose``."""
        R = pose.rotation.to(self.local)[:, self.eye_index]                  # (B, M, 3, 3)
        c = pose.center.to(self.local)[:, self.eye_index]                    # (B, M, 3)
        B = R.shape[0]
        means = c + (R @ self.local[..., None]).squeeze(-1)
        frames = R @ self.neutral_frames
        q_local = self.quat_local / self.quat_local.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        quats = geo.quat_multiply(geo.rotmat_to_quat(frames), q_local.expand(B, -1, -1))
        scales = (self.neutral_base_scale[:, None] * torch.exp(self.log_scale)).expand(B, -1, -1)
        opacities = torch.sigmoid(self.opacity_logit).expand(B, -1)
        normals = (R @ self.normal_local[..., None]).squeeze(-1)
        return {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "normals": normals}

    def shade(self, means: torch.Tensor, normals: torch.Tensor, camera_center: torch.Tensor,
              lighting) -> torch.Tensor:
        """Colours (B, M_e, 3) of eye Gaussians at ``means`` with sphere ``normals`` (B, M_e, 3), seen from
        ``camera_center`` (3,) or (B, 3), under ``lighting`` (a :class:`~.model.Lighting`: point lights or an
        environment)."""
        cam = torch.as_tensor(camera_center).to(means)
        cam = cam[:, None, :] if cam.dim() == 2 else cam
        w_o = F.normalize(cam - means, dim=-1)
        r = reflect(w_o, normals)
        sigma = self.roughness[self.eye_index]                                # (M,)
        ks = self.specular[self.eye_index][:, None]
        albedo = torch.sigmoid(self.albedo_logit)
        vis = torch.sigmoid(self.visibility_logit)[:, None]
        if getattr(lighting, "env_sh", None) is not None:
            env = lighting.env_sh.to(means)
            if env.shape != ((ENV_SH_DEGREE + 1) ** 2, 3):
                raise EyeModelError(f"EyeModel: env_sh must be ({(ENV_SH_DEGREE + 1) ** 2}, 3), got "
                                    f"{tuple(env.shape)}")
            irradiance = (sh_basis(normals, ENV_SH_DEGREE) * self.lambert_band) @ env     # (B, M, 3)
            diffuse = albedo / math.pi * irradiance
            spec = lighting.env_specular(r, sigma.expand(r.shape[:-1]))
        else:
            if lighting.positions is None or lighting.radiance is None:
                raise EyeModelError("EyeModel: lighting needs positions and radiance (point lights) or env_sh")
            w_l, E = lighting.point_lights().incident(means)                     # (B, M, L, 3) each
            cos = (w_l * normals[..., None, :]).sum(-1, keepdim=True).clamp_min(0)
            diffuse = albedo / math.pi * (cos * E).sum(-2)
            spec = (sg_lobe(w_l, r[..., None, :], sigma[:, None])[..., None] * E).sum(-2)
        return vis * (diffuse + ks * spec)

    def forward(self, camera_center: torch.Tensor, lighting, *, tracked_vertices: torch.Tensor | None = None,
                gaze: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The eye Gaussians, ready to concatenate with the avatar's before splatting: ``means`` (B, M_e, 3),
        ``quats`` (B, M_e, 4), ``scales`` (B, M_e, 3), ``opacities`` (B, M_e), ``colors`` (B, M_e, 3)."""
        out = self.gaussians(self.pose(tracked_vertices, gaze))
        out["colors"] = self.shade(out["means"], out.pop("normals"), camera_center, lighting)
        return out


# -- which pixels show the eyes --------------------------------------------------------------------------------
def rasterize_ids(camera, vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(H, W) int64 index of the nearest triangle covering each pixel centre (-1 where none): a z-buffer of the
    triangles ``faces`` (F, 3) of ``vertices`` (V, 3) seen by ``camera`` (:class:`~paperzoo.core.cameras.Camera`).
    Triangles with a corner behind the camera are skipped."""
    H, W = camera.height, camera.width
    uv, z = camera.project(vertices.double())
    tri_uv, tri_z = uv[faces], z[faces]                                      # (F, 3, 2), (F, 3)
    front = (tri_z > 1e-6).all(-1)
    fids = torch.nonzero(front).squeeze(1)
    p, zc = tri_uv[fids], tri_z[fids]
    owner, cx, cy, bary = geo.triangle_pixel_pairs(p, W, H)
    l0, l1, l2 = bary.unbind(-1)
    # perspective-correct depth: 1/z interpolates linearly in screen space
    inv_z = l0 / zc[owner, 0] + l1 / zc[owner, 1] + l2 / zc[owner, 2]
    pix = cy * W + cx
    depth = 1.0 / inv_z
    best = torch.full((H * W,), math.inf, dtype=torch.float64).scatter_reduce(0, pix, depth, "amin")
    win = depth <= best[pix]
    out = torch.full((H * W,), -1, dtype=torch.long)
    out[pix[win]] = fids[owner[win]]
    return out.reshape(H, W)


def eye_mask(camera, tracked_vertices: torch.Tensor, geometry: EyeGeometry, eye: int | None = None) -> torch.Tensor:
    """(H, W) bool: pixels whose visible surface is an eye (sclera or iris) of the tracked head mesh (V, 3).

    ``geometry`` is the :class:`EyeGeometry` of that head submesh (its triangles and materials); ``eye`` 0 / 1
    restricts to one eye. The eyelids, nose and the rest of the head occlude the eyeballs as in the capture.
    """
    if tracked_vertices.dim() != 2 or tracked_vertices.shape[-1] != 3:
        raise EyeModelError(f"eye_mask: tracked_vertices must be (V, 3), got {tuple(tracked_vertices.shape)}")
    ids = rasterize_ids(camera, tracked_vertices, geometry.faces)
    pairs = EYE_MATERIALS if eye is None else (EYE_MATERIALS[eye],)
    eye_mats = torch.tensor([geometry.materials.index(m) for pair in pairs for m in pair])
    is_eye_face = torch.isin(geometry.face_material, eye_mats)
    return (ids >= 0) & is_eye_face[ids.clamp_min(0)]
