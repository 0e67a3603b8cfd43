"""The relightable Gaussian avatar: a conditional VAE over expressions, Gaussians on the mesh's UV texels,
and learnable radiance transfer (Saito, Schwartz, Simon, Li, Nam, CVPR 2024).

Read top to bottom:

* :class:`AvatarTemplate` - the head mesh, its UV atlas and the texels that carry Gaussians.
* :class:`ExpressionEncoder` - tracked mesh -> ``(mu, logvar)`` of the expression code ``z``.
* :class:`UVDecoder` - ``z`` -> UV maps (transposed convolutions, last layer with an *untied* bias, i.e.
  one free value per texel and channel, as codec-avatar decoders use).
* :class:`RelightableAvatar` - decodes the mesh and the Gaussians (offsets, rotations, scales, opacities in
  each texel's tangent frame), and shades them:

  - **diffuse**: ``c_d = rho * sum_i L_i d_i`` with the incident light's SH ``L`` (degree 8) and a decoded
    transfer ``d``: RGB for degrees 0-3 (16 x 3), monochrome for degrees 4-8 (65);
  - **specular** (``appearance="full"``): ``c_s = v * k_s * integral L(w) G(w; r, sigma) dw``, the spherical
    Gaussian ``G = exp(-angle(w, r)^2 / (2 sigma^2))`` around the reflection ``r`` of the view direction about
    a view-dependent normal (surface normal + decoded residual), visibility ``v`` decoded from ``z`` and the
    view, roughness ``sigma >= 0.01`` per Gaussian. A point light contributes its radiance times ``G`` at its
    direction; an environment map a prefiltered lookup;
  - ``appearance="sh_spec"``: the same lobe band-limited to SH degree 3 (its zonal harmonics), the paper's
    "SH-only specular" ablation;
  - ``appearance="linear"``: the linear appearance model the paper compares with: no diffuse / specular
    split, the colour is albedo times one learned transfer of the incident light's SH (same orders), decoded
    from ``z`` *and the view direction*, so it is linear in the light and view dependent only through the
    decoder (no reflection geometry, no lobe).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.methods.relight_avatar import geometry as geo
from paperzoo.methods.relight_avatar.lights import PointLights, reflect, sg_lobe
from paperzoo.methods.relight_avatar.sh import (
    legendre_p,
    sg_zonal_coefficients,
    sh_basis,
    sh_lambertian_kernel,
    sh_sg_integral,
)

__all__ = ["APPEARANCES", "AvatarTemplate", "ExpressionEncoder", "Lighting", "RelightableAvatar", "UVDecoder",
           "head_atlas_uvs"]

APPEARANCES = ("full", "linear", "sh_spec")
SH_DEGREE = 8            # monochrome transfer up to this degree
RGB_DEGREE = 3           # RGB transfer up to this degree
N_RGB = (RGB_DEGREE + 1) ** 2          # 16
N_ALL = (SH_DEGREE + 1) ** 2           # 81
N_TRANSFER = 3 * N_RGB + (N_ALL - N_RGB)  # 113 decoded transfer channels
SPEC_SH_DEGREE = 3       # the band limit of the SH-only specular baseline
HEAD_MATERIALS = ("M_Face", "M_BackHead", "M_GumsTongue", "M_Teeth", "M_ScleraLeft", "M_IrisLeft", "M_ScleraRight",
                  "M_IrisRight")
"""The materials the avatar covers with Gaussians: what the simulated light stage renders."""
#: atlas cells (u0, v0, u1, v1) per material: the face gets half the texels (it fills most of every view)
_ATLAS = {"M_Face": (0.0, 0.0, 0.5, 1.0), "M_BackHead": (0.5, 0.5, 0.8, 1.0),
          "M_Teeth": (0.8, 0.5, 1.0, 0.75), "M_GumsTongue": (0.8, 0.75, 1.0, 1.0),
          "M_ScleraLeft": (0.5, 0.25, 0.75, 0.5), "M_IrisLeft": (0.75, 0.25, 1.0, 0.5),
          "M_ScleraRight": (0.5, 0.0, 0.75, 0.25), "M_IrisRight": (0.75, 0.0, 1.0, 0.25)}


def head_atlas_uvs(mesh) -> torch.Tensor:
    """(F, 3, 2) UVs of a head submesh packed into one chart (ICT's UDIM tiles overlap across materials)."""
    local = mesh.local_uvs()
    out = torch.empty_like(local)
    for i, name in enumerate(mesh.materials):
        u0, v0, u1, v1 = _ATLAS.get(name, (0.0, 0.0, 1.0, 1.0))
        sel = mesh.face_material == i
        out[sel, :, 0] = u0 + local[sel, :, 0].clamp(0, 1) * (u1 - u0)
        out[sel, :, 1] = v0 + local[sel, :, 1].clamp(0, 1) * (v1 - v0)
    return out


@dataclass
class AvatarTemplate:
    """Everything fixed about the avatar: mesh topology, UV texels, neutral geometry, encoder inputs.

    Only the triangles around the texels' triangles are needed to place the Gaussians (positions and
    interpolated normals), so the template keeps that patch of the mesh (``vertex_subset``, ``faces`` and
    ``face_uvs`` re-indexed into it): at low UV resolution this is a small part of the head.
    """

    neutral: torch.Tensor          # (V, 3) neutral vertices of the whole head (model units)
    vertex_subset: torch.Tensor    # (V',) head vertices of the patch that carries Gaussians
    faces: torch.Tensor            # (F', 3) the patch's triangles, indexing vertex_subset
    face_uvs: torch.Tensor         # (F', 3, 2) their atlas UVs
    sampling: geo.UVSampling       # the texels carrying Gaussians (faces index the patch)
    base_scale: torch.Tensor       # (M,) one texel's world size
    texel_material: torch.Tensor   # (M,) material index of each Gaussian's triangle
    materials: tuple[str, ...]
    encoder_vertices: torch.Tensor  # (E,) vertex ids whose displacements the encoder reads
    displacement_scale: float      # typical displacement magnitude (normalises encoder input and mesh loss)

    @classmethod
    def from_mesh(cls, mesh, resolution: int, *, n_encoder_vertices: int = 512, scale: float = 1.0,
                  displacement_scale: float = 1.0) -> AvatarTemplate:
        """Build from a :class:`~paperzoo.data.face.FaceMesh` head submesh; ``scale`` converts its units."""
        uvs = head_atlas_uvs(mesh)
        sampling = geo.sample_uv_texels(uvs, resolution)
        neutral = mesh.vertices.float() * scale
        # the patch: every triangle touching a vertex of a texel's triangle (enough for their normals)
        tex_vertices = torch.unique(mesh.faces[torch.unique(sampling.face)])
        keep = torch.isin(mesh.faces, tex_vertices).any(dim=1)
        keep[sampling.face] = True
        face_ids = torch.nonzero(keep).squeeze(1)
        subset = torch.unique(mesh.faces[face_ids])
        remap = torch.full((mesh.n_vertices,), -1, dtype=torch.long)
        remap[subset] = torch.arange(subset.numel())
        face_remap = torch.full((mesh.n_faces,), -1, dtype=torch.long)
        face_remap[face_ids] = torch.arange(face_ids.numel())
        local = geo.UVSampling(face_remap[sampling.face], sampling.bary, sampling.rows, sampling.cols, resolution)
        faces, face_uvs = remap[mesh.faces[face_ids]], uvs[face_ids]
        base = geo.texel_world_size(neutral[subset], faces, face_uvs, local)
        g = torch.Generator().manual_seed(0)
        n = min(n_encoder_vertices, mesh.n_vertices)
        enc = torch.randperm(mesh.n_vertices, generator=g)[:n].sort().values
        return cls(neutral, subset, faces, face_uvs, local, base, mesh.face_material[sampling.face],
                   tuple(mesh.materials), enc, displacement_scale)

    @property
    def n_gaussians(self) -> int:
        return len(self.sampling)

    def place(self, vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Texel positions (..., M, 3) and tangent frames (..., M, 3, 3) on head meshes (..., V, 3)."""
        return self.place_patch(vertices[..., self.vertex_subset, :])

    def place_patch(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same from the patch's vertices alone (..., V', 3)."""
        return geo.surface_frames(patch, self.faces, self.face_uvs, self.sampling)


class ExpressionEncoder(nn.Module):
    """Tracked-mesh displacements at a fixed vertex subset -> ``(mu, logvar)`` of ``z``."""

    def __init__(self, n_vertices: int, z_dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * n_vertices, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * z_dim))

    def forward(self, displacements: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(displacements.flatten(1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 5)


class UVDecoder(nn.Module):
    """``z`` (B, z_dim) -> (B, out_channels, R, R): a linear layer to ``8 x 8``, transposed convolutions
    doubling the size, and a last 3x3 convolution plus an untied (per-texel) bias."""

    def __init__(self, z_dim: int, out_channels: int, resolution: int, channels: int = 32):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"uv_resolution must be a power of two >= 8, got {resolution}")
        self.channels = channels
        self.fc = nn.Linear(z_dim, channels * 64)
        ups = []
        size, c = 8, channels
        while size < resolution:
            c_out = max(16, c // 2) if size * 2 < resolution else c
            ups += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            size, c = size * 2, c_out
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(c, out_channels, 3, padding=1, bias=False)
        nn.init.normal_(self.out.weight, std=1e-3)
        self.bias = nn.Parameter(torch.zeros(out_channels, resolution, resolution))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.fc(z), 0.2).reshape(-1, self.channels, 8, 8)
        return self.out(self.ups(x)) + self.bias


@dataclass
class Lighting:
    """Light for one rendered image.

    Either point lights (``positions`` (L, 3), ``radiance`` (L, 3), falloff ``(reference_distance / d)^2``)
    or an environment (``env_sh`` (81, 3) SH of the radiance, ``env_specular(r, sigma)`` a prefiltered lookup).
    """

    positions: torch.Tensor | None = None
    radiance: torch.Tensor | None = None
    reference_distance: float = 1.0
    env_sh: torch.Tensor | None = None
    env_specular: object | None = None

    @property
    def is_env(self) -> bool:
        return self.env_sh is not None

    def point_lights(self) -> PointLights:
        return PointLights(self.positions, self.radiance, reference_distance=self.reference_distance)


class RelightableAvatar(nn.Module):
    """Conditional VAE + Gaussians on UV texels + learnable radiance transfer (see the module docstring).

    Parameters
    ----------
    template: the fixed :class:`AvatarTemplate`.
    appearance: ``"full"``, ``"linear"`` or ``"sh_spec"``.
    z_dim, channels: code size and decoder width.
    """

    def __init__(self, template: AvatarTemplate, appearance: str = "full", *, z_dim: int = 32, channels: int = 32,
                 feat_dim: int = 8, eyes=None):
        super().__init__()
        if appearance not in APPEARANCES:
            raise ValueError(f"appearance must be one of {APPEARANCES}, got {appearance!r}")
        self.t = template
        self.appearance = appearance
        R = template.sampling.resolution
        M = template.n_gaussians
        V = template.vertex_subset.numel()
        self.encoder = ExpressionEncoder(len(template.encoder_vertices), z_dim)
        # mesh decoder: linear in z (a learned blendshape basis) over the patch that carries Gaussians, starts at
        # the neutral mesh
        self.mesh_decoder = nn.Linear(z_dim, 3 * V)
        nn.init.zeros_(self.mesh_decoder.weight)
        nn.init.zeros_(self.mesh_decoder.bias)
        self.geom_decoder = UVDecoder(z_dim, 11, R, channels)
        with torch.no_grad():
            b = self.geom_decoder.bias
            b[3] = 1.0                                   # identity local rotation (w = 1)
            b[7:9] = math.log(0.8)                      # in-plane std ~ 0.8 texel
            b[9] = math.log(0.2)                        # thin along the normal
            b[10] = 3.0                                  # opacity sigmoid(3) ~ 0.95
        n_app = N_TRANSFER + feat_dim
        self.app_decoder = UVDecoder(z_dim, n_app, R, channels)
        self.feat_dim = feat_dim
        # per-Gaussian static parameters
        self.albedo_logit = nn.Parameter(torch.zeros(M, 3))
        self.roughness_raw = nn.Parameter(torch.full((M,), math.log(math.expm1(0.25))))
        self.spec_raw = nn.Parameter(torch.full((M,), -2.0))
        # view-conditioned head: [features, local view direction] -> visibility, normal residual (full/sh_spec)
        # or -> the view-dependent transfer (linear)
        out_view = N_TRANSFER if appearance == "linear" else 4
        #: the linear model's view-dependent transfer is a residual shared by every Gaussian's 113 coefficients;
        #: unscaled, Adam's per-step moves of its last layer (~lr) perturb every colour by sum_i L_i * lr and the
        #: model does not learn (measured: L1 flat at 0.05 for 600 steps); scaled, it trains like the others
        self.view_scale = 0.05
        self.view_head = nn.Sequential(nn.Linear(feat_dim + 3, 32), nn.LeakyReLU(0.2), nn.Linear(32, out_view))
        nn.init.normal_(self.view_head[-1].weight, std=1e-3)
        nn.init.zeros_(self.view_head[-1].bias)
        if appearance != "linear":
            with torch.no_grad():
                self.view_head[-1].bias[0] = 2.0         # visibility sigmoid(2) ~ 0.88
        self._init_transfer()
        # explicit eyes (optional): rigid eyeball Gaussians with their own reflective appearance replace the
        # UV-decoded Gaussians of the eye texels
        self.eyes = None
        if eyes is not None:
            from paperzoo.methods.relight_avatar.eyes import EyeModel

            self.eyes = EyeModel(eyes)
            self.register_buffer("non_eye", eyes.non_eye(M), persistent=False)

    # -- initialisation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _init_transfer(self) -> None:
        """Start the diffuse transfer at the clamped-cosine transfer of the neutral surface normal (a local
        Lambertian surface, band-limited to degree 8); training then learns shadowing and interreflection."""
        _, frames = self.t.place(self.t.neutral)
        n = frames[..., 2]
        k = sh_lambertian_kernel(SH_DEGREE, dtype=torch.float32) / math.pi
        band = torch.cat([torch.full((2 * l + 1,), float(k[l])) for l in range(SH_DEGREE + 1)])
        d = sh_basis(n, SH_DEGREE) * band                                     # (M, 81)
        flat = torch.cat((d[:, :N_RGB].repeat(1, 3), d[:, N_RGB:]), dim=1)    # (M, 113)
        self.app_decoder.bias[:N_TRANSFER] = self.t.sampling.scatter(flat)

    # -- encoder / decoders ----------------------------------------------------------------------------------
    def encode(self, tracked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tracked meshes (B, V, 3) -> ``(mu, logvar)`` (B, z_dim)."""
        disp = (tracked - self.t.neutral.to(tracked))[:, self.t.encoder_vertices] / self.t.displacement_scale
        return self.encoder(disp)

    def decode(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """``z`` (B, z_dim) -> the mesh patch (B, V', 3) (vertices ``template.vertex_subset``), Gaussians and the
        view-independent appearance, per Gaussian (B, M, ...)."""
        B = z.shape[0]
        neutral = self.t.neutral[self.t.vertex_subset]
        mesh = neutral + self.mesh_decoder(z).reshape(B, -1, 3) * self.t.displacement_scale
        pos, frames = self.t.place_patch(mesh)
        g = self.t.sampling.gather(self.geom_decoder(z))                      # (B, M, 11)
        base = self.t.base_scale.to(z)
        delta = g[..., 0:3] * base[:, None]
        means, quats, scales = geo.attach(pos, frames, delta, g[..., 3:7], g[..., 7:10], base)
        opacity = torch.sigmoid(g[..., 10])
        a = self.t.sampling.gather(self.app_decoder(z))                       # (B, M, 113 + feat)
        return {"mesh": mesh, "means": means, "quats": quats, "scales": scales, "opacities": opacity,
                "frames": frames, "transfer": a[..., :N_TRANSFER], "features": a[..., N_TRANSFER:]}

    # -- shading -------------------------------------------------------------------------------------------
    @staticmethod
    def _apply_transfer(light_sh: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
        """``sum_i L_i d_i``: light SH (..., 81, 3) with transfer (..., 113) -> (..., 3)."""
        d_rgb = transfer[..., :3 * N_RGB].unflatten(-1, (3, N_RGB)).transpose(-1, -2)   # (..., 16, 3)
        d_mono = transfer[..., 3 * N_RGB:]                                                # (..., 65)
        low = (light_sh[..., :N_RGB, :] * d_rgb).sum(-2)
        high = (light_sh[..., N_RGB:, :] * d_mono[..., None]).sum(-2)
        return low + high

    def shade(self, dec: dict[str, torch.Tensor], eye: torch.Tensor, light: Lighting) -> torch.Tensor:
        """Colours (B, M, 3) of the decoded Gaussians seen from camera centre ``eye`` (3,) under ``light``."""
        means, frames = dec["means"], dec["frames"]
        w_o = eye.to(means) - means
        w_o = w_o / w_o.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        view_local = (frames.transpose(-1, -2) @ w_o[..., None]).squeeze(-1)     # in the tangent frame
        head = self.view_head(torch.cat((dec["features"], view_local), dim=-1))
        if light.is_env:
            light_sh = light.env_sh.to(means).expand(*means.shape[:-1], N_ALL, 3)
        else:
            w_l, E = light.point_lights().incident(means)                          # (B, M, L, 3) each
            # the basis of the incident direction is taken as a constant: its derivative with respect to a
            # Gaussian's position is ~1 / distance to the light (a stage light is metres away), and dropping it
            # removes most of the backward pass's elementwise work
            with torch.no_grad():
                basis = sh_basis(w_l, SH_DEGREE)
            light_sh = (basis[..., None] * E[..., None, :]).sum(-3)               # (B, M, 81, 3)
        albedo = torch.sigmoid(self.albedo_logit)
        if self.appearance == "linear":
            return albedo * self._apply_transfer(light_sh, dec["transfer"] + self.view_scale * head)
        diffuse = albedo * self._apply_transfer(light_sh, dec["transfer"])
        vis = torch.sigmoid(head[..., 0:1])
        n = frames[..., 2] + (frames @ head[..., 1:4, None]).squeeze(-1)
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        r = reflect(w_o, n)
        sigma = 0.01 + F.softplus(self.roughness_raw)                            # (M,)
        ks = F.softplus(self.spec_raw)[:, None]
        if light.is_env:
            if self.appearance == "full":
                spec = light.env_specular(r, sigma.expand(r.shape[:-1]))
            else:
                # integral L G_3 dw = sum_{l <= 3} k_l(sigma) L_lm Y_lm(r): the band-limited lobe against the map
                spec = sh_sg_integral(light.env_sh.to(means)[:N_RGB], r, sigma.expand(r.shape[:-1]))
        else:
            if self.appearance == "full":
                lobe = sg_lobe(w_l, r[..., None, :], sigma[:, None])               # (B, M, L)
            else:
                lobe = self._sh_lobe(w_l, r[..., None, :], sigma[:, None])
            spec = (lobe[..., None] * E).sum(-2)
        return diffuse + vis * ks * spec

    def splat_inputs(self, dec: dict[str, torch.Tensor], eye: torch.Tensor, light: Lighting, *,
                     tracked: torch.Tensor | None = None, gaze: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything the splatting renderer needs (B, M', ...) for decoded Gaussians seen from ``eye`` under
        ``light``: the shaded UV Gaussians, and with explicit eyes, the eye model's Gaussians in place of the
        eye texels (posed from the ``tracked`` head meshes (B, V, 3), or by an explicit ``gaze`` (B, 2, 2)
        yaw / pitch per eye, radians)."""
        out = {k: dec[k] for k in ("means", "quats", "scales", "opacities")}
        out["colors"] = self.shade(dec, eye, light)
        if self.eyes is None:
            return out
        if tracked is None and gaze is None:
            raise ValueError("an avatar with explicit eyes needs the tracked mesh or a gaze to place them")
        ex = self.eyes(eye, light, tracked_vertices=tracked, gaze=gaze)
        return {k: torch.cat((out[k][:, self.non_eye], ex[k]), dim=1) for k in out}

    @staticmethod
    def _sh_lobe(w: torch.Tensor, r: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The lobe band-limited to degree 3: ``sum_l k_l(sigma) (2l + 1) / (4 pi) P_l(r . w)``."""
        k = sg_zonal_coefficients(sigma, SPEC_SH_DEGREE)                         # (M, 4)
        ls = torch.arange(SPEC_SH_DEGREE + 1, dtype=k.dtype)
        P = legendre_p((w * r).sum(-1).clamp(-1, 1), SPEC_SH_DEGREE)           # (..., M, 4)
        return (P * k * (2 * ls + 1) / (4 * math.pi)).sum(-1)


def bench_frame(resolution: int, image_size: int, appearance: str = "full"):
    """One relit frame of an (untrained) avatar for benchmarks: ``(params, frame)``.

    ``params`` are the tensors that require grad (the model's parameters); ``frame()`` decodes the neutral
    expression, shades the Gaussians for a point light and a frontal camera at ``image_size`` px, and
    splats them, returning the :class:`~.splat.RenderOutput` (the whole relight + render path).
    """
    from paperzoo.core.cameras import look_at
    from paperzoo.data.face import load_face
    from paperzoo.methods.relight_avatar.splat import render

    head = load_face().submesh(list(HEAD_MATERIALS))
    template = AvatarTemplate.from_mesh(head, resolution)
    torch.manual_seed(0)
    model = RelightableAvatar(template, appearance)
    lo, hi = template.neutral.min(0).values, template.neutral.max(0).values
    centre = ((lo + hi) / 2).tolist()
    camera = look_at((centre[0], centre[1], centre[2] + 4.0 * float((hi - lo).max())), centre, fov_deg=18,
                     width=image_size, height=image_size)
    light = Lighting(positions=torch.tensor([[100.0, 150.0, 300.0]]), radiance=torch.full((1, 3), 3.5e5))
    tracked = template.neutral[None]

    def frame():
        dec = model.decode(model.encode(tracked)[0])
        g = model.splat_inputs(dec, camera.center, light)
        return render(g["means"][0], g["quats"][0], g["scales"][0], g["opacities"][0], g["colors"][0], camera)

    return [p for p in model.parameters() if p.requires_grad], frame
