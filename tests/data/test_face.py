"""ICT FaceKit reader: counts, UDIM UVs, quad splitting, blendshapes, normals, submeshes, expression sets."""
import json
import re

import numpy as np
import pytest
import torch

from paperzoo.data.face import (
    EXPRESSION_GROUPS,
    FACE_FILES,
    HEAD_MATERIALS,
    MATERIALS,
    ObjFormatError,
    expression_sets,
    load_face,
    vertex_normals,
)
from paperzoo.data.roots import DataNotFoundError


def _write_face(folder, obj_text, n_vertices, n_expr=2, n_id=1):
    """A tiny dataset in the ICT layout: obj + npz (neutral = the OBJ's vertices) + vertex_indices.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FACE_FILES[0]).write_text(obj_text)
    verts = np.array([[float(x) for x in ln.split()[1:4]] for ln in obj_text.splitlines() if ln.startswith("v ")],
                     dtype=np.float32)
    assert len(verts) == n_vertices
    rng = np.random.default_rng(0)
    np.savez(folder / FACE_FILES[1], neutral=verts,
             expression_names=np.array([f"e{i}" for i in range(n_expr)]),
             expression_deltas=rng.normal(size=(n_expr, n_vertices, 3)).astype(np.float32),
             identity_names=np.array([f"id{i}" for i in range(n_id)]),
             identity_deltas=rng.normal(size=(n_id, n_vertices, 3)).astype(np.float32))
    (folder / FACE_FILES[2]).write_text(json.dumps({"idx_to_landmark_verts": [0] * 68}))
    return folder.parent


_TINY_OBJ = """# a quad and a triangle; vertex 2 has two UVs (a seam)
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 2 0 0
vt 0.1 0.1
vt 0.9 0.1
vt 0.9 0.9
vt 0.1 0.9
vt 1.2 0.5
vt 1.5 0.5
usemtl A
f 1/1 2/2 3/3 4/4
usemtl B
f 2/5 5/6 3/5
"""


def test_tiny_obj_splits_quads_keeps_per_corner_uvs_and_materials(tmp_path):
    mesh = load_face(_write_face(tmp_path / "face", _TINY_OBJ, 5))
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
    assert mesh.materials == ("A", "B")
    assert mesh.face_material.tolist() == [0, 0, 1]
    uv = mesh.face_uvs
    assert torch.allclose(uv[0], torch.tensor([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]))
    assert torch.allclose(uv[1], torch.tensor([[0.1, 0.1], [0.9, 0.9], [0.1, 0.9]]))
    # vertex 1 (index 1) is corner 1 of triangle 0 with uv (0.9, 0.1) and corner 0 of triangle 2 with (1.2, 0.5)
    assert torch.allclose(uv[2, 0], torch.tensor([1.2, 0.5]))
    assert mesh.uv_tile().tolist() == [0, 0, 1]
    assert torch.allclose(mesh.local_uvs()[2, 0], torch.tensor([0.2, 0.5]))
    # both halves of the quad face +z (consistent winding)
    assert (mesh.vertex_normals()[:4, 2] > 0.99).all()


@pytest.mark.parametrize("lineno, bad_line", [(14, "f 1/1 2/2"), (3, "v 0 zero 0"), (14, "f 1/1 2/2 3/3 4/4 5/5"),
                                              (16, "f 2 5 3"), (14, "f 1/1 2/x 3/3")])
def test_malformed_obj_line_names_file_and_line(tmp_path, lineno, bad_line):
    root = _write_face(tmp_path / "face", _TINY_OBJ, 5)
    lines = _TINY_OBJ.splitlines()
    lines[lineno - 1] = bad_line
    (tmp_path / "face" / FACE_FILES[0]).write_text("\n".join(lines) + "\n")
    with pytest.raises(ObjFormatError, match=rf"generic_neutral_mesh\.obj:{lineno}: cannot parse OBJ line"):
        load_face(root)


def test_face_index_out_of_range_is_named(tmp_path):
    root = _write_face(tmp_path / "face", _TINY_OBJ.replace("f 2/5 5/6 3/5", "f 2/5 5/6 9/5"), 5)
    with pytest.raises(ObjFormatError, match="refers to vertex 9, but the file has 5"):
        load_face(root)


def test_missing_data_names_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as info:
        load_face(tmp_path / "empty")
    msg = str(info.value)
    assert all(name in msg for name in FACE_FILES) and str(tmp_path / "empty" / "face") in msg


def test_ict_counts_materials_and_uv_tiles(face, data_root):
    obj = (data_root / "face" / FACE_FILES[0]).read_text()
    corners = [len(ln.split()) - 1 for ln in obj.splitlines() if ln.startswith("f ")]
    assert len(corners) == 26384
    assert face.n_vertices == 26719 == len(re.findall(r"^v ", obj, flags=re.MULTILINE))
    assert face.n_faces == sum(2 if c == 4 else 1 for c in corners) == 52220
    assert face.materials == MATERIALS
    assert len(face.expression_names) == 57 and face.expression_deltas.shape == (57, 26719, 3)
    assert face.identity_deltas.shape == (10, 26719, 3)
    local = face.local_uvs()
    assert local.min() >= 0 and local.max() <= 1
    tiles = {m: face.uv_tile()[face.face_material == i].unique().tolist() for i, m in enumerate(face.materials)}
    assert tiles["M_Face"] == [0] and tiles["M_BackHead"] == [1] and tiles["M_Teeth"] == [3]
    # centimetres, face towards +z: the head is ~25 cm wide and the nose tip is the front-most face point
    lo, hi = face.bounds()
    assert 20 < float(hi[0] - lo[0]) < 30 and 28 < float(hi[1] - lo[1]) < 40
    nose_tip = face.vertices[face.landmarks[30]]
    assert abs(float(nose_tip[0])) < 1e-4 and float(nose_tip[2]) > 12
    # outward normals: the nose tip's normal points forward
    assert float(face.vertex_normals()[face.landmarks[30], 2]) > 0.8


def test_atlas_uvs_give_each_material_its_own_cell(face):
    head = face.submesh(HEAD_MATERIALS)
    atlas = head.atlas_uvs()
    assert atlas.min() >= 0 and atlas.max() <= 1
    boxes = [(atlas[head.face_material == i].reshape(-1, 2).min(0).values,
              atlas[head.face_material == i].reshape(-1, 2).max(0).values) for i in range(len(head.materials))]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            overlap = torch.minimum(boxes[i][1], boxes[j][1]) - torch.maximum(boxes[i][0], boxes[j][0])
            assert (overlap <= 0).any(), (head.materials[i], head.materials[j])


def test_posed_is_neutral_plus_deltas_batched_and_differentiable(face):
    k = face.expression_index("jawOpen")
    w = torch.zeros(57)
    w[k] = 0.7
    assert torch.allclose(face.posed(w), face.vertices + 0.7 * face.expression_deltas[k], atol=1e-6)
    a = torch.zeros(10)
    a[3] = -0.5
    expect = face.vertices + 0.7 * face.expression_deltas[k] - 0.5 * face.identity_deltas[3]
    assert torch.allclose(face.posed(w, a), expect, atol=1e-5)
    wb = torch.stack((torch.zeros(57), w)).requires_grad_(True)
    out = face.posed(wb)
    assert out.shape == (2, face.n_vertices, 3) and torch.equal(out[0], face.vertices)
    out[1, :, 1].sum().backward()
    assert torch.allclose(wb.grad[1, k], face.expression_deltas[k, :, 1].sum(), rtol=1e-4)
    assert float(face.posed(w).sub(face.vertices).abs().max()) > 0.5  # jawOpen moves the chin by cm
    with pytest.raises(ValueError, match=r"\(57,\) or \(B, 57\)"):
        face.posed(torch.zeros(56))
    with pytest.raises(KeyError, match="unknown expression blendshape 'smile'"):
        face.expression_index("smile")


def test_vertex_normals_of_octahedron_and_sphere():
    octa_v = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64)
    octa_f = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    assert torch.allclose(vertex_normals(octa_v, octa_f), octa_v, atol=1e-12)
    trimesh = pytest.importorskip("trimesh")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    v = torch.tensor(sphere.vertices)
    n = vertex_normals(v, torch.tensor(sphere.faces))
    err = (n - v / 2.0).norm(dim=-1)  # area weighting on an irregular fan is within ~1 deg of the radial
    assert float(err.max()) < 0.02 and float(err.mean()) < 0.01
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(v), dtype=torch.float64))
    # batched and differentiable
    shear = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    vb = torch.stack((octa_v, octa_v @ shear))
    nb = vertex_normals(vb, octa_f)
    assert torch.allclose(nb[0], octa_v) and torch.equal(nb[1], vertex_normals(vb[1], octa_f))
    assert not torch.allclose(nb[1], octa_v, atol=0.05)
    x = (octa_v + 0.1 * torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert torch.autograd.gradcheck(lambda p: vertex_normals(p, octa_f), (x.requires_grad_(True),))


def test_vertex_normals_are_area_weighted():
    # a vertex shared by a large triangle facing +z and a small one facing +x: the normal leans towards +z
    v = torch.tensor([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, -1], [0, 1, 0.0]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 3, 4]])
    n = vertex_normals(v, f)[0]
    big, small = torch.tensor([0, 0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64)
    expect = 100 * big + 1 * small
    assert torch.allclose(n, expect / expect.norm(), atol=1e-12)


def test_submesh_keeps_vertices_and_blendshapes_consistent(face):
    head = face.submesh(HEAD_MATERIALS)
    assert head.materials == HEAD_MATERIALS
    keep = torch.isin(face.face_material, torch.tensor(face.material_ids(HEAD_MATERIALS)))
    assert head.n_faces == int(keep.sum())
    assert torch.equal(head.vertex_ids[head.faces], face.faces[keep])
    assert torch.equal(head.face_uvs, face.face_uvs[keep])
    assert head.n_vertices == int(torch.unique(face.faces[keep]).numel())
    w = torch.rand(57, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(head.posed(w), face.posed(w)[head.vertex_ids], atol=1e-6)
    names = [head.materials[i] for i in head.face_material.tolist()]
    assert names == [face.materials[i] for i in face.face_material[keep].tolist()]
    eyes = head.submesh(["M_IrisLeft"])
    assert torch.equal(face.vertices[eyes.vertex_ids], eyes.vertices)
    with pytest.raises(KeyError, match="unknown material 'M_Hair'"):
        face.submesh(["M_Hair"])


def test_expression_sets_plausible_disjoint_and_seeded(face):
    train, test = expression_sets(8, 4, seed=3, names=face.expression_names)
    assert train.shape == (8, 57) and test.shape == (4, 57)
    assert torch.equal(train[0], torch.zeros(57))
    both = torch.cat((train, test))
    assert both.max() <= 1 and both[both != 0].min() >= 0.4

    def groups(row):
        active = {face.expression_names[i] for i in torch.nonzero(row).flatten().tolist()}
        out = frozenset(g for g, names in EXPRESSION_GROUPS.items() if set(names) <= active)
        # a group counts when all its blendshapes move; smile_left is inside smile, so drop subsets
        return frozenset(g for g in out if not any(set(EXPRESSION_GROUPS[g]) < set(EXPRESSION_GROUPS[h])
                                                   for h in out))

    train_sets = [frozenset(torch.nonzero(r).flatten().tolist()) for r in train]
    test_sets = [frozenset(torch.nonzero(r).flatten().tolist()) for r in test]
    assert not set(train_sets) & set(test_sets) and len(set(test_sets)) == 4 and len(set(train_sets)) == 8
    seen = set().union(*[groups(r) for r in train])
    for r in test:
        g = groups(r)
        assert 2 <= len(g) <= 3 and g <= seen
    # few training actions, many held-out mixes of them: still all distinct
    tr, te = expression_sets(6, 10, seed=0)
    tr_sets = {frozenset(torch.nonzero(r).flatten().tolist()) for r in tr}
    te_sets = {frozenset(torch.nonzero(r).flatten().tolist()) for r in te}
    assert len(te_sets) == 10 and not tr_sets & te_sets
    with pytest.raises(ValueError, match="cannot find 6 \\+ 40 distinct combinations"):
        expression_sets(6, 40, seed=0)
    again = expression_sets(8, 4, seed=3, names=face.expression_names)
    assert torch.equal(again[0], train) and torch.equal(again[1], test)
    assert not torch.equal(expression_sets(8, 4, seed=4, names=face.expression_names)[1], test)
