"""The ICT FaceKit head: mesh, UVs, materials, 57 expression and 10 identity blendshapes.

Data (``face`` in the catalog, ``<data root>/face/``): ``generic_neutral_mesh.obj`` (topology, per-corner
UVs, ``usemtl`` materials), ``ict_blendshapes.npz`` (``neutral`` (V, 3), ``expression_names`` (57,),
``expression_deltas`` (57, V, 3), ``identity_names`` (10,), ``identity_deltas`` (10, V, 3)) and
``vertex_indices.json`` (68 facial landmarks in the iBUG-68 order, among other vertex lists).

Geometry conventions: the mesh is in **centimetres** (the head is about 25 cm wide, 34 cm from the neck to the
crown), y is up and the face looks down +z (the nose tip is at z = 13); this matches
:func:`paperzoo.core.cameras.orbit_cameras`, whose azimuth 0 is on +z.

UVs are UDIM: the integer part of ``u`` is the texture tile (M_Face 0, M_BackHead 1, M_GumsTongue 2,
M_Teeth 3, M_LacrimalFluid 4-5, M_EyeLashes 6; the eyes, the eye blend and the eye occlusion each have their
own texture in tile 0), the fractional part the position inside it. :attr:`FaceMesh.face_uvs` keeps the
OBJ's values; :meth:`FaceMesh.local_uvs` gives the in-tile [0, 1] coordinates and :meth:`FaceMesh.atlas_uvs`
packs the materials of a (sub)mesh into one non-overlapping [0, 1]^2 chart.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paperzoo.data.roots import locate

log = logging.getLogger(__name__)

__all__ = [
    "EXPRESSION_GROUPS",
    "FACE_FILES",
    "HEAD_MATERIALS",
    "MATERIALS",
    "FaceMesh",
    "ObjFormatError",
    "expression_sets",
    "face_data_dir",
    "load_face",
    "vertex_normals",
]

FACE_FILES = ("generic_neutral_mesh.obj", "ict_blendshapes.npz", "vertex_indices.json")
MATERIALS = ("M_Face", "M_BackHead", "M_GumsTongue", "M_Teeth", "M_ScleraLeft", "M_IrisLeft", "M_ScleraRight",
             "M_IrisRight", "M_LacrimalFluid", "M_EyeBlend", "M_EyeOcclusion", "M_EyeLashes")
"""The materials of the ICT generic mesh, in file order."""
HEAD_MATERIALS = ("M_Face", "M_BackHead", "M_ScleraLeft", "M_IrisLeft", "M_ScleraRight", "M_IrisRight")
"""Skin and eyeballs: the closed head surface the avatar is built on."""


class ObjFormatError(ValueError):
    """A line of an OBJ file that cannot be parsed (the message names the file and the line)."""


def face_data_dir(data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding the ICT FaceKit files; a DataNotFoundError naming the files and folders tried."""
    from paperzoo.data.catalog import DATASETS

    return locate(DATASETS["face"], data_root)


# -- geometry helpers --------------------------------------------------------------------------------------------
def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals of a triangle mesh, batched and differentiable.

    ``vertices`` (..., V, 3), ``faces`` (F, 3) int64 with counter-clockwise winding seen from outside; each
    triangle adds its (unnormalised) cross product, i.e. its normal times twice its area, to its three corners.
    A vertex in no triangle gets a zero normal.
    """
    faces = torch.as_tensor(faces, dtype=torch.long, device=vertices.device)
    v0, v1, v2 = (vertices[..., faces[:, k], :] for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)  # (..., F, 3)
    # scatter in a vertex-major (V, batch * 3) layout: index_add along dim 0 is several times faster on CPU
    # than along a middle dimension (the avatar recomputes normals every training step)
    n_v, n_f = vertices.shape[-2], fn.shape[-2]
    flat = fn.reshape(-1, n_f, 3).permute(1, 0, 2).reshape(n_f, -1)
    out = flat.new_zeros(n_v, flat.shape[1])
    for k in range(3):
        out = out.index_add(0, faces[:, k], flat)
    out = out.reshape(n_v, -1, 3).permute(1, 0, 2).reshape(vertices.shape)
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-20)


@dataclass(frozen=True, eq=False)
class FaceMesh:
    """The ICT FaceKit generic head (or a part of it, see :meth:`submesh`). Tensors are on the CPU.

    Attributes
    ----------
    vertices: (V, 3) float32 neutral vertex positions, centimetres.
    faces: (F, 3) int64 triangles (the OBJ's quads split along their 0-2 diagonal), counter-clockwise outside.
    face_uvs: (F, 3, 2) float32 UDIM UV of every triangle corner (seams keep their own UVs).
    face_material: (F,) int64 index into ``materials``.
    materials: material names (``usemtl``), in file order.
    expression_names: the 57 expression blendshape names (ARKit-like, plus PupilDilate and cheekRaiser).
    expression_deltas: (57, V, 3) float32 offsets added per unit expression weight.
    identity_names, identity_deltas: (10,) names and (10, V, 3) identity offsets.
    vertex_ids: (V,) int64 index of every vertex in the full mesh (``arange`` for the full mesh).
    landmarks: (68,) int64 full-mesh vertex ids of the iBUG-68 facial landmarks (jaw 0-16, brows 17-26, nose
        27-35, eyes 36-47, mouth 48-67; "right" is the subject's right, i.e. -x).
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    face_uvs: torch.Tensor
    face_material: torch.Tensor
    materials: tuple[str, ...]
    expression_names: tuple[str, ...]
    expression_deltas: torch.Tensor
    identity_names: tuple[str, ...]
    identity_deltas: torch.Tensor
    vertex_ids: torch.Tensor
    landmarks: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    def expression_index(self, name: str) -> int:
        """Index of an expression blendshape by name; a KeyError listing the names otherwise."""
        try:
            return self.expression_names.index(name)
        except ValueError:
            raise KeyError(f"unknown expression blendshape {name!r}; known: {', '.join(self.expression_names)}"
                           ) from None

    # -- posing -----------------------------------------------------------------------------------------------
    def posed(self, expression_weights, identity_weights=None) -> torch.Tensor:
        """Vertices under linear blendshapes: ``neutral + sum_k w_k expr_k + sum_j a_j id_j``.

        ``expression_weights`` (57,) or (B, 57) (tensor or array-like; gradients flow through tensors),
        ``identity_weights`` None, (10,) or (B, 10). Returns (V, 3) or (B, V, 3) in the weights' float dtype.
        """
        w = torch.as_tensor(expression_weights)
        if not w.is_floating_point():
            w = w.float()
        n_expr = len(self.expression_names)
        if w.shape[-1] != n_expr or w.dim() not in (1, 2):
            raise ValueError(f"expression_weights must be ({n_expr},) or (B, {n_expr}), got {tuple(w.shape)}")
        out = self.vertices.to(w.dtype) + torch.einsum("...k,kvc->...vc", w, self.expression_deltas.to(w.dtype))
        if identity_weights is not None:
            a = torch.as_tensor(identity_weights).to(w.dtype)
            n_id = len(self.identity_names)
            if a.shape[-1] != n_id or a.dim() not in (1, 2):
                raise ValueError(f"identity_weights must be ({n_id},) or (B, {n_id}), got {tuple(a.shape)}")
            out = out + torch.einsum("...k,kvc->...vc", a, self.identity_deltas.to(w.dtype))
        return out

    def vertex_normals(self, vertices: torch.Tensor | None = None) -> torch.Tensor:
        """Area-weighted unit normals of ``vertices`` (..., V, 3) (default: the neutral) on this topology."""
        return vertex_normals(self.vertices if vertices is None else vertices, self.faces)

    def bounds(self, vertices: torch.Tensor | None = None) -> torch.Tensor:
        """(2, 3) axis-aligned bounding box (min row, max row) of ``vertices`` (default: the neutral)."""
        v = (self.vertices if vertices is None else vertices).reshape(-1, 3)
        return torch.stack((v.min(dim=0).values, v.max(dim=0).values))

    # -- parts ------------------------------------------------------------------------------------------------
    def material_ids(self, materials) -> list[int]:
        """Indices of the named materials; a KeyError naming an unknown one and the known ones."""
        names = [materials] if isinstance(materials, str) else list(materials)
        out = []
        for name in names:
            if name not in self.materials:
                raise KeyError(f"unknown material {name!r}; this mesh has {', '.join(self.materials)}")
            out.append(self.materials.index(name))
        return out

    def submesh(self, materials) -> FaceMesh:
        """The triangles of the named materials, with only the vertices they use (re-indexed).

        Blendshapes are restricted to the kept vertices, so ``sub.posed(w)`` equals
        ``full.posed(w)[sub.vertex_ids]``; materials keep their names (``face_material`` indexes the new list).
        """
        ids = self.material_ids(materials)
        keep_f = torch.isin(self.face_material, torch.tensor(ids, dtype=torch.long))
        faces = self.faces[keep_f]
        used = torch.unique(faces)
        remap = torch.full((self.n_vertices,), -1, dtype=torch.long)
        remap[used] = torch.arange(used.numel())
        new_materials = tuple(self.materials[i] for i in sorted(ids))
        mat_remap = torch.full((len(self.materials),), -1, dtype=torch.long)
        mat_remap[torch.tensor(sorted(ids), dtype=torch.long)] = torch.arange(len(new_materials))
        return FaceMesh(
            vertices=self.vertices[used], faces=remap[faces], face_uvs=self.face_uvs[keep_f],
            face_material=mat_remap[self.face_material[keep_f]], materials=new_materials,
            expression_names=self.expression_names, expression_deltas=self.expression_deltas[:, used],
            identity_names=self.identity_names, identity_deltas=self.identity_deltas[:, used],
            vertex_ids=self.vertex_ids[used], landmarks=self.landmarks)

    # -- texture coordinates ----------------------------------------------------------------------------------
    def uv_tile(self) -> torch.Tensor:
        """(F,) int64 UDIM tile of every triangle (``floor`` of the corners' mean u)."""
        return torch.floor(self.face_uvs[..., 0].mean(dim=1)).long()

    def local_uvs(self) -> torch.Tensor:
        """(F, 3, 2) UVs inside each triangle's own tile, in [0, 1]."""
        out = self.face_uvs.clone()
        out[..., 0] -= self.uv_tile().to(out.dtype)[:, None]
        return out

    def atlas_uvs(self) -> torch.Tensor:
        """(F, 3, 2) UVs packing every material of this mesh into its own cell of one [0, 1]^2 chart.

        Cells form a ``ceil(sqrt(M))``-wide grid in material order (left to right, then top to bottom); each
        material's tile is scaled into its cell, so charts of different materials never overlap.
        """
        n = len(self.materials)
        cols = max(1, math.ceil(math.sqrt(n)))
        rows = math.ceil(n / cols)
        local = self.local_uvs()
        col = (self.face_material % cols).to(local.dtype)[:, None]
        row = torch.div(self.face_material, cols, rounding_mode="floor").to(local.dtype)[:, None]
        u = (local[..., 0] + col) / cols
        v = (local[..., 1] + row) / rows
        return torch.stack((u, v), dim=-1)


# -- reading ---------------------------------------------------------------------------------------------------
def _parse_obj(path: Path) -> dict[str, np.ndarray | list[str]]:
    """Vertices, per-corner UV indices and materials of a v / vt / f / usemtl OBJ (quads and triangles)."""
    verts: list[str] = []
    uvs: list[str] = []
    numbered: list[int] = []  # line numbers of the v and vt lines, to name a bad one
    tris: list[tuple[int, int, int, int, int, int, int]] = []  # v0 v1 v2 t0 t1 t2 material
    materials: list[str] = []
    mat = -1
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    for lineno, line in enumerate(lines, 1):
        tag = line[:2]
        try:
            if tag == "v ":
                parts = line.split()
                if len(parts) < 4:
                    raise ValueError(f"a vertex needs 3 coordinates, got {len(parts) - 1}")
                verts.append(line)
                numbered.append(lineno)
            elif tag == "vt":
                if line.startswith("vt "):
                    parts = line.split()
                    if len(parts) < 3:
                        raise ValueError(f"a texture coordinate needs 2 values, got {len(parts) - 1}")
                    uvs.append(line)
                    numbered.append(lineno)
            elif tag == "f ":
                corners = line.split()[1:]
                if len(corners) not in (3, 4):
                    raise ValueError(f"a face with {len(corners)} corners (only triangles and quads)")
                if mat < 0:
                    raise ValueError("a face before any usemtl")
                vi, ti = [], []
                for c in corners:
                    p = c.split("/")
                    if len(p) < 2 or not p[1]:
                        raise ValueError(f"corner {c!r} has no texture coordinate (expected v/vt)")
                    vi.append(int(p[0]) - 1)
                    ti.append(int(p[1]) - 1)
                tris.append((vi[0], vi[1], vi[2], ti[0], ti[1], ti[2], mat))
                if len(corners) == 4:
                    tris.append((vi[0], vi[2], vi[3], ti[0], ti[2], ti[3], mat))
            elif tag == "us" and line.startswith("usemtl"):
                name = line.split(maxsplit=1)[1].strip() if len(line.split()) > 1 else ""
                if not name:
                    raise ValueError("usemtl without a material name")
                if name not in materials:
                    materials.append(name)
                mat = materials.index(name)
        except (ValueError, IndexError) as exc:
            raise ObjFormatError(f"{path}:{lineno}: cannot parse OBJ line {line[:60]!r} ({exc})") from None
    try:
        v = np.array(" ".join(s[2:] for s in verts).split(), dtype=np.float64)
        t = np.array(" ".join(s[3:] for s in uvs).split(), dtype=np.float64)
        fast = v.size == 3 * len(verts) and t.size == 2 * len(uvs)
    except ValueError:
        fast = False
    if not fast:  # a bad number, or extra values (w, vertex colours): per line, naming a bad one
        rows: dict[str, list[list[float]]] = {"v": [], "vt": []}
        for lineno in numbered:
            line = lines[lineno - 1]
            kind, n = ("v", 3) if line.startswith("v ") else ("vt", 2)
            try:
                rows[kind].append([float(x) for x in line.split()[1:n + 1]])
            except ValueError as exc:
                raise ObjFormatError(f"{path}:{lineno}: cannot parse OBJ line {line[:60]!r} ({exc})") from None
        v, t = np.array(rows["v"], dtype=np.float64).ravel(), np.array(rows["vt"], dtype=np.float64).ravel()
    f = np.asarray(tris, dtype=np.int64).reshape(-1, 7)
    v, t = v.reshape(-1, 3), t.reshape(-1, 2)
    if len(f) == 0:
        raise ObjFormatError(f"{path}: no faces")
    for name, idx, n in (("vertex", f[:, :3], len(v)), ("texture coordinate", f[:, 3:6], len(t))):
        bad = (idx < 0) | (idx >= n)
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise ObjFormatError(f"{path}: face {row} refers to {name} {int(idx[row][bad[row]][0]) + 1}, "
                                 f"but the file has {n}")
    return {"v": v, "vt": t, "faces": f[:, :3], "face_vt": f[:, 3:6], "material": f[:, 6], "materials": materials}


@functools.lru_cache(maxsize=4)
def _load(folder: Path, stamp: tuple[float, ...]) -> FaceMesh:
    obj_path, npz_path, json_path = (folder / name for name in FACE_FILES)
    obj = _parse_obj(obj_path)
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("neutral", "expression_names", "expression_deltas", "identity_names",
                                         "identity_deltas")}
    except KeyError as exc:
        raise KeyError(f"{npz_path}: missing array {exc}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{npz_path}: cannot read ({exc})") from None
    n_v = len(obj["v"])
    for key in ("neutral",):
        if arrays[key].shape != (n_v, 3):
            raise ValueError(f"{npz_path}: {key} has shape {arrays[key].shape}, the OBJ has {n_v} vertices")
    for key, names in (("expression_deltas", "expression_names"), ("identity_deltas", "identity_names")):
        if arrays[key].shape != (len(arrays[names]), n_v, 3):
            raise ValueError(f"{npz_path}: {key} has shape {arrays[key].shape}, expected "
                             f"({len(arrays[names])}, {n_v}, 3)")
    gap = float(np.abs(arrays["neutral"] - obj["v"]).max())
    if gap > 1e-3:
        raise ValueError(f"{npz_path}: neutral differs from {obj_path.name} by {gap:.3g} cm: not the same mesh")
    try:
        landmarks = json.loads(json_path.read_text(encoding="utf-8"))["idx_to_landmark_verts"]
    except (KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{json_path}: no landmark list idx_to_landmark_verts ({exc})") from None
    face_uvs = obj["vt"][obj["face_vt"]]
    log.debug("ICT face: %d vertices, %d triangles, %d materials", n_v, len(obj["faces"]), len(obj["materials"]))
    return FaceMesh(
        vertices=torch.from_numpy(arrays["neutral"].astype(np.float32)),
        faces=torch.from_numpy(obj["faces"]),
        face_uvs=torch.from_numpy(face_uvs.astype(np.float32)),
        face_material=torch.from_numpy(obj["material"]),
        materials=tuple(obj["materials"]),
        expression_names=tuple(str(s) for s in arrays["expression_names"]),
        expression_deltas=torch.from_numpy(arrays["expression_deltas"].astype(np.float32)),
        identity_names=tuple(str(s) for s in arrays["identity_names"]),
        identity_deltas=torch.from_numpy(arrays["identity_deltas"].astype(np.float32)),
        vertex_ids=torch.arange(n_v, dtype=torch.long),
        landmarks=torch.tensor(landmarks, dtype=torch.long))


def load_face(data_root: str | os.PathLike | None = None) -> FaceMesh:
    """The full ICT FaceKit mesh with its blendshapes (parsed once per process, ~0.3 s; re-read if changed).

    Raises :class:`~paperzoo.data.roots.DataNotFoundError` naming the files and the folders tried, and
    :class:`ObjFormatError` naming the file and line of a malformed OBJ line.
    """
    folder = face_data_dir(data_root)
    stamp = tuple((folder / name).stat().st_mtime for name in FACE_FILES)
    return _load(folder.resolve(), stamp)


# -- expressions -------------------------------------------------------------------------------------------------
EXPRESSION_GROUPS: dict[str, tuple[str, ...]] = {
    "jaw_open": ("jawOpen",),
    "smile": ("mouthSmile_L", "mouthSmile_R", "cheekSquint_L", "cheekSquint_R"),
    "smile_left": ("mouthSmile_L", "cheekSquint_L"),
    "frown": ("mouthFrown_L", "mouthFrown_R"),
    "pucker": ("mouthPucker",),
    "funnel": ("mouthFunnel", "jawOpen"),
    "blink": ("eyeBlink_L", "eyeBlink_R"),
    "wide_eyes": ("eyeWide_L", "eyeWide_R"),
    "brow_raise": ("browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R"),
    "brow_down": ("browDown_L", "browDown_R"),
    "cheek_puff": ("cheekPuff_L", "cheekPuff_R"),
    "sneer": ("noseSneer_L", "noseSneer_R"),
    "look_left": ("eyeLookOut_L", "eyeLookIn_R"),
    "look_right": ("eyeLookIn_L", "eyeLookOut_R"),
    "look_up": ("eyeLookUp_L", "eyeLookUp_R"),
    "look_down": ("eyeLookDown_L", "eyeLookDown_R"),
}
"""Plausible facial actions as sets of blendshapes driven together (``_L`` is the subject's left)."""
_EXCLUSIVE = [{"look_left", "look_right"}, {"look_up", "look_down"}, {"blink", "wide_eyes"},
              {"brow_raise", "brow_down"}, {"smile", "smile_left", "frown", "pucker", "funnel", "cheek_puff"},
              {"look_up", "blink"}, {"look_down", "blink"}, {"look_left", "blink"}, {"look_right", "blink"}]


def _compatible(groups: frozenset[str]) -> bool:
    return all(len(groups & ex) <= 1 for ex in _EXCLUSIVE)


def expression_sets(n_train: int, n_test: int, seed: int = 0, names: tuple[str, ...] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random plausible expression weights: (n_train, 57) and (n_test, 57) float32 tensors.

    Each expression drives one to three compatible groups of :data:`EXPRESSION_GROUPS` (jaw open, smile,
    blink, brow raise, gaze, ...) with one weight per group in [0.4, 1] (eyes: [0.5, 1]). Row 0 of the
    training set is the neutral face; the next rows are single groups (so training sees every action alone
    while it can), then random combinations. The held-out set holds combinations of two or three groups that
    all appear in training, and no held-out combination of groups occurs in training.
    ``names`` are the blendshape names (default: the ICT order, :attr:`FaceMesh.expression_names`).
    """
    if n_train < 1 or n_test < 0:
        raise ValueError(f"expression_sets: need n_train >= 1 and n_test >= 0, got {n_train}, {n_test}")
    if names is None:
        names = _ICT_EXPRESSIONS
    index = {n: i for i, n in enumerate(names)}
    missing = sorted({b for g in EXPRESSION_GROUPS.values() for b in g} - set(index))
    if missing:
        raise KeyError(f"expression_sets: blendshapes {missing} are not among the given names")
    rng = np.random.default_rng(seed)
    groups = sorted(EXPRESSION_GROUPS)
    singles = [frozenset([g]) for g in rng.permutation(groups)]
    train: list[frozenset[str]] = [frozenset()] + singles[: n_train - 1]
    seen = set(train)

    def draw(pool: list[str], sizes: tuple[int, ...]) -> frozenset[str]:
        for _ in range(2_000):
            k = int(rng.choice(sizes))
            combo = frozenset(rng.choice(pool, size=min(k, len(pool)), replace=False).tolist())
            if len(combo) >= min(sizes) and _compatible(combo) and combo not in seen:
                return combo
        raise ValueError(f"expression_sets: cannot find {n_train} + {n_test} distinct combinations of "
                         f"{len(pool)} expression groups")

    while len(train) < n_train:
        combo = draw(groups, (2, 3))
        train.append(combo)
        seen.add(combo)
    trained_groups = sorted(set().union(*train)) or groups
    test = []
    for _ in range(n_test):
        combo = draw(trained_groups if len(trained_groups) >= 2 else groups, (2, 3))
        test.append(combo)
        seen.add(combo)

    def weights(combos: list[frozenset[str]]) -> torch.Tensor:
        out = np.zeros((len(combos), len(names)), dtype=np.float32)
        for row, combo in enumerate(combos):
            for g in sorted(combo):
                lo = 0.5 if g.startswith(("look", "blink", "wide")) else 0.4
                w = rng.uniform(lo, 1.0)
                for b in EXPRESSION_GROUPS[g]:
                    out[row, index[b]] = max(out[row, index[b]], w)
        return torch.from_numpy(out)

    return weights(train), weights(test)


_ICT_EXPRESSIONS = (
    "PupilDilate_L", "PupilDilate_R", "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R",
    "browOuterUp_L", "browOuterUp_R", "cheekPuff_L", "cheekPuff_R", "cheekRaiser_L", "cheekRaiser_R",
    "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R",
    "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L",
    "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft",
    "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmile_L", "mouthSmile_R",
    "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L", "mouthUpperUp_R", "noseSneer_L", "noseSneer_R")
"""The 57 expression blendshapes in the order of ``ict_blendshapes.npz``."""
