"""A simulated light stage: the ICT head captured one light at a time (OLAT), several views and expressions.

This is the ground truth a relightable avatar learns from, so it carries effects a local shading model
cannot fake: soft cast shadows (the nose on the cheek, the brows and lids on the eyes, the head on the neck),
glossy GGX specular whose roughness varies over the face (oily T-zone and lips, rougher cheeks, mirror-like
eyes), subsurface-like wrap lighting on skin, and a surface texture (skin tone, pores, freckles, red lips,
dark brows, sclera, iris and pupil).

Rendering is ray casting with Embree (``embreex``): primary rays from :meth:`Camera.rays` give, per pixel,
the hit triangle and barycentrics, hence the position, the interpolated vertex normal (turned towards the
viewer), the in-tile UV and the neutral ("rest") position, which drives the procedural texture so it moves
with the skin under every expression. Every light then adds, in linear RGB,

``E * vis * [albedo / pi * max(0, (n.l + w) / (1 + w)) + D(h) F(h.v) G(l, v) / (4 n.v)]``

with ``E = I / d^2`` the irradiance from a point light of intensity ``I`` at distance ``d`` (or the given
radiance of a directional light), ``w`` the wrap (0.3 on skin, 0 on the eyes), ``D`` GGX, ``F`` Schlick,
``G`` separable Smith, and ``vis`` the fraction of ``shadow_samples`` stratified points on the light's disk
(radius ``light_radius``) seen from the shading point. Shadow rays on skin start a few millimetres above the
surface (``subsurface_lift``): light scattered under the skin shows up to ~15 deg past the terminator, as
the wrap term asks, and shadow edges soften like real skin's.

Units are the mesh's: centimetres, y up, the face looking down +z. Images are unclamped linear floats
(a point light's glint on the eye may exceed 1); the background is 0 and ``masks`` marks the head.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paperzoo.core.cameras import Camera, look_at
from paperzoo.core.io import atomic_path
from paperzoo.data.face import FaceMesh, expression_sets, load_face, vertex_normals

log = logging.getLogger(__name__)

__all__ = ["OLATCapture", "OLATConfig", "capture_cameras", "generate_olat", "head_frame", "light_stage",
           "load_or_generate_olat", "olat_cache_path", "render_directional", "render_lights"]

CACHE_VERSION = 1
"""Bumped whenever the renderer's output changes, so stale caches are regenerated."""

RENDER_MATERIALS = ("M_Face", "M_BackHead", "M_GumsTongue", "M_Teeth", "M_ScleraLeft", "M_IrisLeft",
                    "M_ScleraRight", "M_IrisRight")
"""Skin, eyeballs, teeth and gums (the lashes, lacrimal fluid and eye-occlusion shells are left out)."""


@dataclass(frozen=True)
class OLATConfig:
    """What the simulated light stage captures. Lengths are in centimetres, angles in degrees."""

    image_size: int = 64
    """Width and height of every image in pixels."""
    n_cameras: int = 6
    """Number of cameras on an arc in front of the face."""
    azimuth_range_deg: tuple[float, float] = (-60.0, 60.0)
    """Camera azimuths, evenly spaced over this range (0 = frontal, positive towards the subject's left)."""
    elevation_range_deg: tuple[float, float] = (-10.0, 20.0)
    """Camera elevations, spread over this range in a low-discrepancy order."""
    fov_deg: float = 18.0
    """Vertical field of view; the camera distance is chosen so the whole head fits."""
    n_lights: int = 32
    """Number of point lights, evenly spread (Fibonacci) over the sphere above ``min_light_elevation_deg``."""
    min_light_elevation_deg: float = -40.0
    """Lowest light elevation seen from the head centre (a stage has no lights under the floor)."""
    light_distance: float = 10.0
    """Radius of the light sphere, in head sizes (the rendered head's largest bounding-box side, ~34 cm)."""
    light_radius: float = 20.0
    """Radius of each light's emitting disk (faces the head); sets the softness of the shadows."""
    shadow_samples: int = 8
    """Stratified points on each light's disk whose visibility is averaged; 0 turns shadows off."""
    irradiance: float = 3.5
    """Irradiance every light delivers at the head centre (a white light; pixel ~ albedo * cos * E / pi)."""
    n_train_expressions: int = 5
    """Training expressions (the first is neutral), see :func:`paperzoo.data.face.expression_sets`."""
    n_test_expressions: int = 1
    """Held-out expressions: new combinations of the training ones' facial actions."""
    heldout_light_fraction: float = 0.2
    """Fraction of the lights held out (at least one when there are two or more lights and this is > 0)."""
    heldout_camera_fraction: float = 0.2
    """Fraction of the cameras held out (at least one when there are two or more cameras and this is > 0)."""
    skin_wrap: float = 0.3
    """Wrap-lighting parameter ``w`` on skin (0 = Lambert)."""
    subsurface_lift: float = 0.25
    """Height above the skin at which shadow rays start (eyes and teeth use 0.02)."""
    specular_scale: float = 1.0
    """Multiplies the specular term (0 renders diffuse only, e.g. to isolate the highlights)."""
    materials: tuple[str, ...] = RENDER_MATERIALS
    """Mesh materials that are rendered; the rest are dropped."""
    seed: int = 0
    """Seeds the light-stage rotation, light sampling, expressions, splits and texture."""

    def __post_init__(self) -> None:
        checks = [("image_size", self.image_size >= 1), ("n_cameras", self.n_cameras >= 1),
                  ("n_lights", self.n_lights >= 1), ("shadow_samples", self.shadow_samples >= 0),
                  ("light_distance", self.light_distance > 1.0), ("light_radius", self.light_radius >= 0),
                  ("irradiance", self.irradiance > 0), ("n_train_expressions", self.n_train_expressions >= 1),
                  ("n_test_expressions", self.n_test_expressions >= 0),
                  ("heldout_light_fraction", 0 <= self.heldout_light_fraction < 1),
                  ("heldout_camera_fraction", 0 <= self.heldout_camera_fraction < 1),
                  ("fov_deg", 0 < self.fov_deg < 170), ("skin_wrap", self.skin_wrap >= 0),
                  ("subsurface_lift", self.subsurface_lift >= 0),
                  ("specular_scale", self.specular_scale >= 0), ("materials", len(self.materials) > 0)]
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise ValueError(f"OLATConfig: invalid {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}")
        object.__setattr__(self, "azimuth_range_deg", tuple(float(a) for a in self.azimuth_range_deg))
        object.__setattr__(self, "elevation_range_deg", tuple(float(a) for a in self.elevation_range_deg))
        object.__setattr__(self, "materials", tuple(self.materials))


@dataclass
class OLATCapture:
    """One simulated capture. ``E`` expressions, ``C`` cameras, ``L`` lights, ``H x W`` pixels.

    Attributes
    ----------
    images: (E, C, L, H, W, 3) float16 linear RGB, one light at a time (0 = black background).
    masks: (E, C, H, W) bool, True where the head covers the pixel centre.
    cameras: the C cameras (:class:`paperzoo.core.cameras.Camera`, OpenCV convention).
    light_positions: (L, 3) float32 light centres; light_intensity: (L, 3) float32 radiant intensity
        (irradiance at distance d is ``intensity / d^2``).
    expression_weights: (E, 57) float32 blendshape weights; vertices: (E, V, 3) float32 posed full mesh
        (the tracked mesh, all materials).
    split: ``train_expressions``, ``test_expressions``, ``train_lights``, ``test_lights``,
        ``train_cameras``, ``test_cameras``: disjoint sorted index lists.
    config: the :class:`OLATConfig` that made it.
    """

    images: torch.Tensor
    masks: torch.Tensor
    cameras: list[Camera]
    light_positions: torch.Tensor
    light_intensity: torch.Tensor
    expression_weights: torch.Tensor
    vertices: torch.Tensor
    split: dict[str, list[int]]
    config: OLATConfig = field(default_factory=OLATConfig)


# -- stage layout ------------------------------------------------------------------------------------------------
def head_frame(mesh: FaceMesh, materials: tuple[str, ...] = RENDER_MATERIALS) -> tuple[np.ndarray, float, float]:
    """(centre (3,), bounding radius, head size) of the neutral rendered head, in cm.

    The centre is the bounding-box centre, the radius the largest vertex distance from it, and the size the
    largest side of the bounding box.
    """
    v = _renderer(mesh, materials).rest
    lo, hi = v.min(axis=0), v.max(axis=0)
    centre = (lo + hi) / 2
    return centre, float(np.linalg.norm(v - centre, axis=1).max()), float((hi - lo).max())


def capture_cameras(cfg: OLATConfig, mesh: FaceMesh, margin: float = 1.08) -> list[Camera]:
    """``cfg.n_cameras`` cameras on an arc in front of the face, looking at the head centre.

    All cameras share one distance: the smallest at which every neutral vertex of the rendered head projects
    inside every image, times ``margin`` (room for expressions such as an open jaw).
    """
    centre, _, _ = head_frame(mesh, cfg.materials)
    q = _renderer(mesh, cfg.materials).rest - centre
    tan_half = math.tan(math.radians(cfg.fov_deg) / 2)
    lo, hi = cfg.azimuth_range_deg
    elo, ehi = cfg.elevation_range_deg
    dirs = []
    for i in range(cfg.n_cameras):
        az = math.radians((lo + hi) / 2 if cfg.n_cameras == 1 else lo + (hi - lo) * i / (cfg.n_cameras - 1))
        frac = ((i * 0.6180339887498949) + 0.5) % 1.0 if cfg.n_cameras > 1 else 0.5
        el = math.radians(elo + (ehi - elo) * frac)
        dirs.append(np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]))
    distance = 0.0
    for d in dirs:
        # a vertex at camera depth (distance - q.d) with image-plane offsets x, y fits when
        # max(|x|, |y|) <= tan_half * depth, i.e. distance >= max(|x|, |y|) / tan_half + q.d
        right = np.cross(-d, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, -d)
        lateral = np.maximum(np.abs(q @ right), np.abs(q @ up))
        distance = max(distance, float((lateral / tan_half + q @ d).max()))
    distance *= margin
    return [look_at(tuple(centre + distance * d), tuple(centre), fov_deg=cfg.fov_deg, width=cfg.image_size,
                    height=cfg.image_size) for d in dirs]


def light_stage(cfg: OLATConfig, mesh: FaceMesh) -> tuple[torch.Tensor, torch.Tensor]:
    """Light positions (L, 3) and intensities (L, 3): a Fibonacci sphere around the head, randomly turned.

    Every light delivers ``cfg.irradiance`` (white) at the head centre: intensity = irradiance * distance^2.
    """
    centre, _, size = head_frame(mesh, cfg.materials)
    dist = cfg.light_distance * size
    n = cfg.n_lights
    y_min = math.sin(math.radians(cfg.min_light_elevation_deg))
    k = np.arange(n) + 0.5
    y = 1 - (1 - y_min) * k / n  # uniform in y = uniform in area on the sphere cap
    r = np.sqrt(np.clip(1 - y * y, 0, None))
    phi = k * math.pi * (3 - math.sqrt(5)) + np.random.default_rng(cfg.seed).uniform(0, 2 * math.pi)
    dirs = np.stack((r * np.sin(phi), y, r * np.cos(phi)), axis=1)
    pos = centre + dist * dirs
    inten = np.full((n, 3), cfg.irradiance * dist * dist)
    return torch.from_numpy(pos.astype(np.float32)), torch.from_numpy(inten.astype(np.float32))


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    n_test = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, round(fraction * n)))
    test = sorted(rng.permutation(n)[:n_test].tolist())
    return [i for i in range(n) if i not in test], test


# -- procedural appearance ---------------------------------------------------------------------------------------
def _hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) for integer lattice points."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761 + 0x9E3779B9)
    h = h & 0xFFFFFFFF
    h = (h ^ (h >> 16)) * 0x45D9F3B & 0xFFFFFFFF
    h = (h ^ (h >> 16)) * 0x45D9F3B & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float64) / float(1 << 24)


def _value_noise(p: np.ndarray, freq: float, seed: int) -> np.ndarray:
    """Smooth 3-D value noise in [-1, 1] at points ``p`` (N, 3) with ``freq`` cells per cm."""
    q = p * freq
    i = np.floor(q).astype(np.int64)
    f = q - i
    s = f * f * (3 - 2 * f)
    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (s[:, 0] if dx else 1 - s[:, 0]) * (s[:, 1] if dy else 1 - s[:, 1]) \
                    * (s[:, 2] if dz else 1 - s[:, 2])
                out += w * _hash01(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return 2 * out - 1


def _smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def _segment_distance(p: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance from every point (N, 3) to a polyline (K, 3)."""
    best = np.full(len(p), np.inf)
    for a, b in itertools.pairwise(polyline):
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
        best = np.minimum(best, np.linalg.norm(p - (a + t[:, None] * ab), axis=1))
    return best


class _Regions:
    """Face regions (lips, brows, oily T-zone) from the neutral landmarks, as smooth weights at rest points."""

    def __init__(self, mesh: FaceMesh):
        lm = mesh.vertices.double().numpy()[mesh.landmarks.numpy()] if mesh.landmarks.numel() == 68 else None
        if lm is None:
            raise ValueError("the face mesh has no 68 landmarks (vertex_indices.json idx_to_landmark_verts)")
        self.lips_c = lm[48:60].mean(axis=0)
        self.lips_ax = np.array([np.ptp(lm[48:60, 0]) / 2 * 1.02, np.ptp(lm[48:60, 1]) / 2 * 1.15])
        self.brow_r, self.brow_l = lm[17:22], lm[22:27]
        self.nose = lm[27:31]
        self.nose_base = lm[31:36]
        self.forehead_y = float(lm[17:27, 1].mean())
        self.brow_z = float(lm[17:27, 2].min())
        self.eye_span = float(np.ptp(lm[36:48, 0]) / 2)

    def lips(self, p: np.ndarray) -> np.ndarray:
        e = ((p[:, 0] - self.lips_c[0]) / self.lips_ax[0]) ** 2 + ((p[:, 1] - self.lips_c[1]) / self.lips_ax[1]) ** 2
        return (1 - _smoothstep(0.75, 1.05, e)) * _smoothstep(self.lips_c[2] - 2.5, self.lips_c[2] - 1.5, p[:, 2])

    def brows(self, p: np.ndarray) -> np.ndarray:
        lifted = [b + np.array([0.0, 0.25, 0.0]) for b in (self.brow_r, self.brow_l)]
        d = np.minimum(_segment_distance(p, lifted[0]), _segment_distance(p, lifted[1]))
        return 1 - _smoothstep(0.3, 0.65, d)

    def tzone(self, p: np.ndarray) -> np.ndarray:
        forehead = _smoothstep(self.forehead_y + 0.5, self.forehead_y + 1.5, p[:, 1]) \
            * (1 - _smoothstep(self.eye_span * 0.6, self.eye_span, np.abs(p[:, 0]))) \
            * _smoothstep(self.brow_z - 2.0, self.brow_z, p[:, 2])
        nose = 1 - _smoothstep(0.8, 1.6, np.minimum(_segment_distance(p, self.nose),
                                                    _segment_distance(p, self.nose_base)))
        return np.maximum(forehead, nose)


_SKIN = np.array([0.50, 0.30, 0.22])
_BROW = np.array([0.07, 0.045, 0.03])
_LIPS = np.array([0.42, 0.14, 0.12])
_SCLERA = np.array([0.72, 0.68, 0.64])
_IRIS = np.array([0.10, 0.20, 0.27])
_TEETH = np.array([0.68, 0.62, 0.50])
_GUMS = np.array([0.45, 0.12, 0.12])


def _appearance(names: list[str], mat: np.ndarray, uv: np.ndarray, rest: np.ndarray, regions: _Regions,
                cfg: OLATConfig) -> dict[str, np.ndarray]:
    """Per-pixel albedo (N, 3), roughness, specular F0, wrap, shadow-ray lift and specular scale (N,)."""
    n = len(mat)
    albedo = np.zeros((n, 3))
    rough = np.full(n, 0.5)
    f0 = np.full(n, 0.04)
    wrap = np.zeros(n)
    lift = np.full(n, 0.02)
    kind = np.array([("skin" if nm in ("M_Face", "M_BackHead") else "sclera" if nm.startswith("M_Sclera")
                      else "iris" if nm.startswith("M_Iris") else "teeth" if nm == "M_Teeth"
                      else "gums" if nm == "M_GumsTongue" else "other") for nm in names])[mat] if n else \
        np.array([], dtype=str)
    seed = cfg.seed
    skin = (kind == "skin") | (kind == "other")
    if skin.any():
        p = rest[skin]
        low = 0.6 * _value_noise(p, 0.25, seed) + 0.4 * _value_noise(p, 0.6, seed + 1)
        pores = _value_noise(p, 12.0, seed + 2)
        freckle = np.clip((_value_noise(p, 4.0, seed + 3) - 0.55) * 4, 0, 1)
        tone = _SKIN * (1 + 0.12 * low[:, None]) * (1 + 0.06 * pores[:, None]) * (1 - 0.25 * freckle[:, None])
        blush = np.clip(_value_noise(p, 0.35, seed + 4), 0, 1)[:, None] * np.array([0.05, -0.03, -0.02])
        tone = tone + blush
        lips, brows, tz = regions.lips(p), regions.brows(p), regions.tzone(p)
        tone = tone * (1 - lips[:, None]) + _LIPS * (1 + 0.05 * pores[:, None]) * lips[:, None]
        tone = tone * (1 - brows[:, None]) + _BROW * brows[:, None]
        albedo[skin] = tone
        r = 0.55 + 0.08 * low
        r = r * (1 - tz) + 0.30 * tz
        r = r * (1 - lips) + 0.33 * lips
        r = r * (1 - brows) + 0.7 * brows
        rough[skin] = r
        f0[skin] = 0.035
        wrap[skin] = cfg.skin_wrap
        lift[skin] = cfg.subsurface_lift
    eye = (kind == "sclera") | (kind == "iris")
    if eye.any():
        d = uv[eye] - 0.5
        rad = np.linalg.norm(d, axis=1)
        ang = np.arctan2(d[:, 1], d[:, 0])
        streaks = 1 + 0.25 * np.sin(23 * ang) * np.sin(7 * ang + 1.3)
        iris = _IRIS * streaks[:, None] * (0.7 + 0.6 * np.clip((rad - 0.04) / 0.08, 0, 1))[:, None]
        veins = np.clip(_smoothstep(0.2, 0.45, rad), 0, 1)[:, None] * np.array([0.0, -0.12, -0.12])
        sclera = _SCLERA * (1 + veins)
        limbus = _smoothstep(0.105, 0.125, rad)[:, None]
        col = iris * (1 - limbus) + sclera * limbus
        col = col * (1 - 0.6 * np.exp(-((rad - 0.122) / 0.008) ** 2))[:, None]  # dark limbal ring
        pupil = 1 - _smoothstep(0.035, 0.045, rad)
        albedo[eye] = col * (1 - pupil[:, None]) + 0.01 * pupil[:, None]
        rough[eye] = 0.2
        f0[eye] = 0.04
    teeth = kind == "teeth"
    albedo[teeth], rough[teeth], wrap[teeth] = _TEETH, 0.25, 0.1
    gums = kind == "gums"
    albedo[gums], rough[gums], wrap[gums], lift[gums] = _GUMS, 0.3, cfg.skin_wrap, 0.05
    return {"albedo": albedo, "roughness": rough, "f0": f0, "wrap": wrap, "lift": lift,
            "ks": np.full(n, cfg.specular_scale)}


# -- ray casting -------------------------------------------------------------------------------------------------
class EmbreeMissingError(RuntimeError):
    """embreex (Embree ray casting) is not installed."""


def _embree():
    try:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh
    except ImportError as exc:
        raise EmbreeMissingError(f"the OLAT renderer needs embreex (pip install embreex): {exc}") from None
    return rtcore_scene, TriangleMesh


class _Renderer:
    """Ray caster for one mesh and material set; :meth:`gbuffer` per (posed vertices, camera, config).

    The Embree scenes of the last few posed meshes are kept (keyed by a hash of the vertices).
    """

    keep = 8

    def __init__(self, mesh: FaceMesh, materials: tuple[str, ...]):
        self.mesh = mesh  # keeps the id used as the cache key alive
        self.full_n = mesh.n_vertices
        self.sub = mesh.submesh(materials)
        self.faces = self.sub.faces.numpy()
        self.mat = self.sub.face_material.numpy()
        self.uv = self.sub.local_uvs().double().numpy()
        self.rest = self.sub.vertices.double().numpy()
        self.regions = _Regions(mesh)
        self._scenes: dict[str, tuple] = {}
        self._scene = None
        self._normals = None
        self._verts = None

    def set_vertices(self, vertices) -> None:
        v = torch.as_tensor(vertices).detach().to("cpu", torch.float64)
        if tuple(v.shape) != (self.full_n, 3):
            raise ValueError(f"vertices must be the full posed mesh, ({self.full_n}, 3), got {tuple(v.shape)}")
        v = v[self.sub.vertex_ids]
        key = hashlib.sha1(v.numpy().tobytes()).hexdigest()
        if key not in self._scenes:
            rtcore_scene, TriangleMesh = _embree()
            scene = rtcore_scene.EmbreeScene()
            TriangleMesh(scene, v.numpy()[self.faces].astype(np.float32))
            if len(self._scenes) >= self.keep:
                self._scenes.pop(next(iter(self._scenes)))
            self._scenes[key] = (scene, vertex_normals(v, self.sub.faces).numpy(), v.numpy())
        self._scene, self._normals, self._verts = self._scenes[key]

    def gbuffer(self, camera: Camera, cfg: OLATConfig) -> dict[str, np.ndarray]:
        """Per hit pixel: position, normal and view direction (facing the camera), appearance; plus the mask."""
        o, d = camera.rays(dtype=torch.float64)
        o, d = o.reshape(-1, 3).numpy(), d.reshape(-1, 3).numpy()
        res = self._scene.run(o.astype(np.float32), d.astype(np.float32), output=1)
        hit = res["primID"] >= 0
        tri = res["primID"][hit]
        b1, b2 = res["u"][hit].astype(np.float64), res["v"][hit].astype(np.float64)
        bary = np.stack((1 - b1 - b2, b1, b2), axis=1)
        corners = self.faces[tri]
        p = np.einsum("nk,nkc->nc", bary, self._verts[corners])
        nrm = np.einsum("nk,nkc->nc", bary, self._normals[corners])
        e1 = self._verts[corners[:, 1]] - self._verts[corners[:, 0]]
        e2 = self._verts[corners[:, 2]] - self._verts[corners[:, 0]]
        ng = np.cross(e1, e2)
        wo = -d[hit]
        flip = np.where(np.einsum("nc,nc->n", ng, wo) < 0, -1.0, 1.0)[:, None]
        ng = ng * flip / np.linalg.norm(ng, axis=1, keepdims=True).clip(1e-20)
        nrm = nrm * flip
        nrm = nrm / np.linalg.norm(nrm, axis=1, keepdims=True).clip(1e-20)
        # silhouette pixels whose interpolated normal turns away from the viewer: bend it back to the horizon
        ndv = np.einsum("nc,nc->n", nrm, wo)
        back = ndv < 1e-3
        if back.any():
            nrm[back] = nrm[back] + (1e-3 - ndv[back])[:, None] * wo[back]
            nrm[back] /= np.linalg.norm(nrm[back], axis=1, keepdims=True)
        uv = np.einsum("nk,nkc->nc", bary, self.uv[tri])
        rest = np.einsum("nk,nkc->nc", bary, self.rest[corners])
        app = _appearance(list(self.sub.materials), self.mat[tri], uv, rest, self.regions, cfg)
        # shadow rays start above the surface on the viewer's side: along the geometric normal (robust against
        # self-intersection) by the material's lift
        origin = p + ng * np.maximum(app["lift"], 1e-3)[:, None]
        return {"mask": hit, "p": p, "n": nrm, "wo": wo, "origin": origin, **app}

    def occluded(self, origins: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """True where the segment from ``origins`` to ``targets`` (N, 3) hits the mesh."""
        d = targets - origins
        dist = np.linalg.norm(d, axis=1)
        d = d / dist.clip(1e-20)[:, None]
        res = self._scene.run(origins.astype(np.float32), d.astype(np.float32),
                              dists=(dist * 0.9999).astype(np.float32), query="OCCLUDED")
        return res >= 0

    def occluded_dir(self, origins: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """True where a ray from ``origins`` along the unit ``direction`` (3,) hits the mesh."""
        d = np.broadcast_to(direction, origins.shape)
        return self._scene.run(origins.astype(np.float32), np.ascontiguousarray(d, dtype=np.float32),
                               query="OCCLUDED") >= 0


def _shade(g: dict[str, np.ndarray], l: np.ndarray, irradiance: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Radiance (N, 3) towards the viewer from light direction ``l`` (N, 3) with irradiance (N, 3) or (3,)."""
    n, wo = g["n"], g["wo"]
    ndl = np.einsum("nc,nc->n", n, l)
    ndv = np.einsum("nc,nc->n", n, wo).clip(1e-4)
    w = g["wrap"]
    diffuse = g["albedo"] / math.pi * (np.clip((ndl + w) / (1 + w), 0, None))[:, None]
    h = l + wo
    h = h / np.linalg.norm(h, axis=1, keepdims=True).clip(1e-20)
    ndh = np.einsum("nc,nc->n", n, h).clip(0, 1)
    vdh = np.einsum("nc,nc->n", wo, h).clip(0, 1)
    a2 = (g["roughness"] ** 2) ** 2
    D = a2 / (math.pi * (ndh * ndh * (a2 - 1) + 1) ** 2)
    F = g["ks"] * (g["f0"] + (1 - g["f0"]) * (1 - vdh) ** 5)
    nl = ndl.clip(0, 1)

    def g1(x):
        return 2 * x / (x + np.sqrt(a2 + (1 - a2) * x * x)).clip(1e-20)

    spec = np.where(ndl > 0, D * F * g1(nl) * g1(ndv) / (4 * ndv), 0.0)
    return (diffuse + spec[:, None]) * irradiance * vis[:, None]


def _disk_samples(centre: np.ndarray, normal: np.ndarray, radius: float, k: int, seed: int) -> np.ndarray:
    """``k`` stratified jittered points (k, 3) on a disk; seeded by ``seed`` and the light's position."""
    rng = np.random.default_rng([seed, zlib.crc32(np.round(centre, 3).astype(np.float64).tobytes())])
    u1 = (np.arange(k) + rng.uniform(size=k)) / k
    theta = 2 * math.pi * ((np.arange(k) * 0.6180339887498949 + rng.uniform()) % 1.0)
    a = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(normal, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    r = radius * np.sqrt(u1)
    return centre + r[:, None] * (np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2)


def _render_point_lights(r: _Renderer, g: dict[str, np.ndarray], positions: np.ndarray, intensity: np.ndarray,
                         centre: np.ndarray, cfg: OLATConfig) -> np.ndarray:
    """(L, N, 3) radiance of the hit pixels under each point light."""
    p = g["p"]
    out = np.zeros((len(positions), len(p), 3))
    if len(p) == 0:
        return out
    for j, (pos, inten) in enumerate(zip(positions, intensity)):
        to = pos - p
        d2 = np.einsum("nc,nc->n", to, to)
        l = to / np.sqrt(d2)[:, None]
        lit = np.einsum("nc,nc->n", g["n"], l) > -g["wrap"] - 1e-9  # other pixels receive nothing
        vis = np.zeros(len(p))
        if cfg.shadow_samples == 0:
            vis[lit] = 1.0
        elif lit.any():
            axis = centre - pos
            axis /= np.linalg.norm(axis).clip(1e-20)
            pts = _disk_samples(pos, axis, cfg.light_radius, cfg.shadow_samples, cfg.seed)
            o = g["origin"][lit]
            occ = np.zeros(len(o))
            for q in pts:
                occ += r.occluded(o, np.broadcast_to(q, o.shape))
            vis[lit] = 1 - occ / len(pts)
        out[j] = _shade(g, l, inten[None, :] / d2[:, None], vis)
    return out


def _centre_of(r: _Renderer) -> np.ndarray:
    lo, hi = r.rest.min(axis=0), r.rest.max(axis=0)
    return (lo + hi) / 2


_RENDERERS: dict[tuple[int, tuple[str, ...]], _Renderer] = {}


def _renderer(mesh: FaceMesh, materials: tuple[str, ...]) -> _Renderer:
    key = (id(mesh), tuple(materials))
    if key not in _RENDERERS:
        if len(_RENDERERS) >= 4:
            _RENDERERS.pop(next(iter(_RENDERERS)))
        _RENDERERS[key] = _Renderer(mesh, tuple(materials))
    return _RENDERERS[key]


def _scatter(values: np.ndarray, mask: np.ndarray, h: int, w: int) -> np.ndarray:
    img = np.zeros(values.shape[:-2] + (h * w, 3), dtype=np.float32)
    img[..., mask, :] = values
    return img.reshape(values.shape[:-2] + (h, w, 3))


def render_lights(vertices, cameras: list[Camera], light_positions, light_intensity,
                  cfg: OLATConfig | None = None, mesh: FaceMesh | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the posed head under point lights, one at a time, from every camera.

    ``vertices`` (V, 3): the full posed ICT mesh (all materials; ``cfg.materials`` are drawn).
    ``light_positions`` (L, 3), ``light_intensity`` (L, 3) radiant intensity (irradiance = I / d^2).
    Returns images (C, L, H, W, 3) float32 (linear, unclamped) and masks (C, H, W) bool.
    """
    cfg = cfg or OLATConfig()
    mesh = mesh if mesh is not None else load_face()
    pos, inten = _paired_rows("render_lights", ("light positions", light_positions),
                              ("intensities", light_intensity))
    r = _renderer(mesh, cfg.materials)
    r.set_vertices(vertices)
    centre = _centre_of(r)
    _check_lights_outside(r, pos)
    images, masks = [], []
    for cam in cameras:
        g = r.gbuffer(cam, cfg)
        rad = _render_point_lights(r, g, pos, inten, centre, cfg)
        images.append(_scatter(rad, g["mask"], cam.height, cam.width))
        masks.append(g["mask"].reshape(cam.height, cam.width))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


def _paired_rows(caller: str, first: tuple[str, object], second: tuple[str, object]) -> tuple[np.ndarray, np.ndarray]:
    """Two (N, 3) float64 arrays that must have as many rows, e.g. light positions and intensities."""
    (name_a, a), (name_b, b) = first, second
    a = torch.as_tensor(a, dtype=torch.float64).reshape(-1, 3).numpy()
    b = torch.as_tensor(b, dtype=torch.float64).reshape(-1, 3).numpy()
    if len(a) != len(b):
        raise ValueError(f"{caller}: {len(a)} {name_a} but {len(b)} {name_b}")
    return a, b


def _check_lights_outside(r: _Renderer, pos: np.ndarray) -> None:
    lo, hi = r._verts.min(axis=0), r._verts.max(axis=0)
    inside = np.all((pos > lo) & (pos < hi), axis=1)
    if inside.any():
        raise ValueError(f"light {int(np.argmax(inside))} at {pos[np.argmax(inside)].round(2).tolist()} lies "
                         f"inside the head's bounding box {lo.round(1).tolist()}..{hi.round(1).tolist()} (cm)")


def render_directional(vertices, camera: Camera, directions, radiance, cfg: OLATConfig | None = None,
                       mesh: FaceMesh | None = None, chunk: int = 1 << 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the posed head, same material as :func:`render_lights`, under distant directional lights.

    ``directions`` (M, 3) point from the head towards each light (normalised here); ``radiance`` (M, 3) is
    the irradiance each delivers on a surface facing it (an environment map's texel radiance times its solid
    angle). Shadows are hard: one ray per pixel and direction. Returns image (H, W, 3) float32 and mask (H, W).
    ``chunk`` bounds the number of shadow rays cast at once.
    """
    cfg = cfg or OLATConfig()
    mesh = mesh if mesh is not None else load_face()
    dirs, rad = _paired_rows("render_directional", ("directions", directions), ("radiance values", radiance))
    norms = np.linalg.norm(dirs, axis=1)
    if (norms < 1e-12).any():
        raise ValueError(f"render_directional: direction {int(np.argmin(norms))} is zero")
    dirs = dirs / norms[:, None]
    r = _renderer(mesh, cfg.materials)
    r.set_vertices(vertices)
    g = r.gbuffer(camera, cfg)
    total = np.zeros((len(g["p"]), 3))
    if len(g["p"]):
        for l, e in zip(dirs, rad):
            lit = np.einsum("nc,c->n", g["n"], l) > -g["wrap"] - 1e-9
            vis = np.zeros(len(g["p"]))
            if cfg.shadow_samples == 0:
                vis[lit] = 1.0
            else:
                o = g["origin"][lit]
                occ = np.concatenate([r.occluded_dir(o[s:s + chunk], l) for s in range(0, len(o), chunk)]) \
                    if len(o) else np.zeros(0, dtype=bool)
                vis[lit] = 1.0 - occ
            total += _shade(g, np.broadcast_to(l, g["p"].shape), e, vis)
    img = _scatter(total[None], g["mask"], camera.height, camera.width)[0]
    return torch.from_numpy(img), torch.from_numpy(g["mask"].reshape(camera.height, camera.width))


# -- the capture -------------------------------------------------------------------------------------------------
def generate_olat(cfg: OLATConfig | None = None, mesh: FaceMesh | None = None, progress: bool = True,
                  data_root: str | os.PathLike | None = None) -> OLATCapture:
    """Simulate a light-stage capture of the ICT head (see the module docstring for the appearance model).

    Expressions come from :func:`paperzoo.data.face.expression_sets` (train first, then test); cameras from
    :func:`capture_cameras`; lights from :func:`light_stage`. ``progress`` shows a tqdm bar (subject to
    ``PAPERZOO_PROGRESS``) over the (expression, camera) views. ``mesh`` defaults to
    :func:`paperzoo.data.face.load_face` (``data_root``).
    """
    from paperzoo.core.progress import progress as bar

    cfg = cfg or OLATConfig()
    mesh = mesh if mesh is not None else load_face(data_root)
    train_w, test_w = expression_sets(cfg.n_train_expressions, cfg.n_test_expressions, cfg.seed,
                                      names=mesh.expression_names)
    weights = torch.cat((train_w, test_w))
    verts = mesh.posed(weights).float()
    cameras = capture_cameras(cfg, mesh)
    pos, inten = light_stage(cfg, mesh)
    r = _renderer(mesh, cfg.materials)
    centre = _centre_of(r)
    E, C, L, S = len(weights), len(cameras), len(pos), cfg.image_size
    images = torch.zeros((E, C, L, S, S, 3), dtype=torch.float16)
    masks = torch.zeros((E, C, S, S), dtype=torch.bool)
    pos_np, inten_np = pos.double().numpy(), inten.double().numpy()
    views = [(e, c) for e in range(E) for c in range(C)]
    for e, c in bar(views, desc="olat", total=len(views), **({} if progress else {"disable": True})):
        r.set_vertices(verts[e])
        if c == 0:
            _check_lights_outside(r, pos_np)
        g = r.gbuffer(cameras[c], cfg)
        rad = _render_point_lights(r, g, pos_np, inten_np, centre, cfg)
        images[e, c] = torch.from_numpy(_scatter(rad, g["mask"], S, S)).to(torch.float16)
        masks[e, c] = torch.from_numpy(g["mask"].reshape(S, S))
    rng = np.random.default_rng([cfg.seed, 7])
    train_l, test_l = _split(L, cfg.heldout_light_fraction, rng)
    train_c, test_c = _split(C, cfg.heldout_camera_fraction, rng)
    split = {"train_expressions": list(range(cfg.n_train_expressions)),
             "test_expressions": list(range(cfg.n_train_expressions, E)),
             "train_lights": train_l, "test_lights": test_l, "train_cameras": train_c, "test_cameras": test_c}
    log.info("OLAT capture: %d expressions x %d cameras x %d lights at %d px", E, C, L, S)
    return OLATCapture(images=images, masks=masks, cameras=cameras, light_positions=pos, light_intensity=inten,
                       expression_weights=weights, vertices=verts, split=split, config=cfg)


def _config_json(cfg: OLATConfig) -> str:
    return json.dumps({"version": CACHE_VERSION, **dataclasses.asdict(cfg)}, sort_keys=True)


def olat_cache_path(cfg: OLATConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`load_or_generate_olat` keeps the capture for ``cfg`` (a hash of the config and version)."""
    from paperzoo.data.roots import user_cache

    folder = Path(cache_dir) if cache_dir is not None else user_cache() / "olat"
    return folder / f"olat-{hashlib.sha256(_config_json(cfg).encode()).hexdigest()[:16]}.npz"


def _save(cap: OLATCapture, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, images=cap.images.numpy(), masks=cap.masks.numpy(),
                 cameras=np.array(json.dumps([c.to_dict() for c in cap.cameras])),
                 light_positions=cap.light_positions.numpy(), light_intensity=cap.light_intensity.numpy(),
                 expression_weights=cap.expression_weights.numpy(), vertices=cap.vertices.numpy(),
                 split=np.array(json.dumps(cap.split)), config=np.array(_config_json(cap.config)))


def _load(path: Path, cfg: OLATConfig) -> OLATCapture:
    from paperzoo.core.cameras import Camera as _Camera

    with np.load(path, allow_pickle=False) as z:
        if str(z["config"]) != _config_json(cfg):
            raise ValueError(f"{path}: made by a different config")
        return OLATCapture(
            images=torch.from_numpy(z["images"]), masks=torch.from_numpy(z["masks"]),
            cameras=[_Camera.from_dict(d) for d in json.loads(str(z["cameras"]))],
            light_positions=torch.from_numpy(z["light_positions"]),
            light_intensity=torch.from_numpy(z["light_intensity"]),
            expression_weights=torch.from_numpy(z["expression_weights"]),
            vertices=torch.from_numpy(z["vertices"]), split=json.loads(str(z["split"])), config=cfg)


def load_or_generate_olat(cfg: OLATConfig | None = None, cache_dir: str | os.PathLike | None = None,
                          mesh: FaceMesh | None = None, progress: bool = True,
                          data_root: str | os.PathLike | None = None) -> OLATCapture:
    """The capture for ``cfg`` from the cache (default ``<user cache>/olat/``), generated and saved if absent.

    The cache file is written atomically; an unreadable or mismatched one is regenerated (with a warning).
    The key is the config (and :data:`CACHE_VERSION`), not the mesh: pass a ``cache_dir`` of its own for a
    mesh other than the ICT generic head.
    """
    cfg = cfg or OLATConfig()
    path = olat_cache_path(cfg, cache_dir)
    if path.is_file():
        try:
            cap = _load(path, cfg)
            log.info("OLAT capture loaded from %s", path)
            return cap
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("OLAT cache %s unusable (%s); regenerating", path, exc)
    cap = generate_olat(cfg, mesh=mesh, progress=progress, data_root=data_root)
    _save(cap, path)
    log.info("OLAT capture saved to %s", path)
    return cap
