#!/usr/bin/env python
"""Relightable Gaussian codec avatars: the cost of our CPU Gaussian splatting renderer (issue 25, point 4).

Run from the repository root (see README.md)::

    .venv/bin/python benchmarks/relight_avatar/bench_render.py                  # 1 and 2 threads, ~10 min
    .venv/bin/python benchmarks/relight_avatar/bench_render.py --compiled       # + torch.compile / numba rows
    .venv/bin/python benchmarks/relight_avatar/bench_render.py --tiny --no-peer # the smoke test's sizes
    .venv/bin/python benchmarks/relight_avatar/bench_render.py --markdown \
        benchmarks/relight_avatar/results.json

Every measurement runs in ONE fresh child process per (part, size, thread count) (so that its peak memory
is its own; see ``paperzoo.core.procstats.run_json_child``). In a child, each measured call is run once
to warm up, once to measure memory (peak resident memory after resetting ``VmHWM``, minus the resident
memory just before; the child fixes glibc's mmap threshold so that a freed tensor's pages really leave),
then ``--repeats`` times for wall and CPU seconds (medians). Parts:

compare (ours | litesplat, per scene and thread count)
    a small layered scene (:func:`compare_scene`) rendered by ``paperzoo.methods.relight_avatar.splat.render``
    and by litesplat 0.1.1 (dense: every Gaussian at every pixel, Keras 3 on the torch backend), forward
    (``no_grad``) and forward + backward (``loss = sum(image * fixed random weights)``, gradients to all
    Gaussian parameters). The litesplat child also checks that the two images agree and attributes their
    difference step by step to the models' differences (:func:`agreement`).
fps (per avatar resolution R and thread count)
    ``round(0.6 R^2)`` Gaussians (one per UV texel of an R x R map, 60 % of it covered) on the ICT FaceKit
    head (:func:`face_scene`; a head-sized sphere where the face data is absent) at 256 x 256: frames per
    second forward and forward + backward, the Gaussian-pixel pairs the renderer evaluated
    (``RenderOutput.n_pairs``) per second against the **floor** (:func:`floor_composite`, timed in the same
    child before and after), and memory per Gaussian (parameter bytes; the transient peak over the
    resident memory before the call, divided by N).
avatar (per avatar resolution R and thread count; ``--avatar``)
    the same measurements of the avatar model's own frame (decode + relight + render) through the hook
    ``paperzoo.methods.relight_avatar.model.bench_frame`` (:func:`load_avatar_hook`).
compiled (per thread count; ``--compiled``)
    what a compiled hot loop would give: the floor under ``torch.compile`` (inductor, C++) against eager,
    forward and forward + backward, and a numba forward compositor (:func:`numba_composite`, on our own
    projection and tile lists) against our forward on the largest avatar scene, with its image checked
    against ours.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import functools
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from paperzoo.core.procstats import cpu_name, peak_rss_mib, reset_peak_rss, rss_mib, run_json_child, versions

HERE = Path(__file__).resolve().parent
PEER = "litesplat 0.1.1 (PyPI, Keras 3 torch backend): dense, every Gaussian x every pixel, 1024-pixel batch"
MIB = 2 ** 20
PARAM_FIELDS = ("means", "quats", "scales", "opacities", "colors")
PARTS = ("compare", "fps", "avatar", "compiled")


@dataclass(frozen=True)
class Sizes:
    """The sizes of one benchmark run (defaults: the full run)."""

    compare: tuple[tuple[int, int], ...] = ((256, 64), (512, 128))  # (Gaussians, image side) of part (a)
    avatar_res: tuple[int, ...] = (64, 96, 128)  # UV resolutions R of part (b): round(0.6 R^2) Gaussians
    image: int = 256                              # image side of part (b)
    floor_tiles: int = 2048                       # floor block: tiles x slab x tile^2 (the renderer's chunk)
    slab: int = 32                                # the renderer's defaults: 32 Gaussians a slab, 8 px tiles
    tile: int = 8


def sizes_from_json(text: str) -> Sizes:
    """Inverse of ``json.dumps(asdict(sizes))``."""
    d = json.loads(text)
    d["compare"] = tuple(tuple(c) for c in d["compare"])
    return Sizes(**{**d, "avatar_res": tuple(d["avatar_res"])})


FULL = Sizes()
TINY = Sizes(compare=((24, 32),), avatar_res=(12,), image=48, floor_tiles=4)


def n_gaussians(res: int) -> int:
    """The avatar's Gaussian count at UV resolution ``res``: one per covered texel, about 0.6 res^2."""
    return round(0.6 * res * res)


# --------------------------------------------------------------------------------------------
# scenes
# --------------------------------------------------------------------------------------------
@dataclass
class Scene:
    """Gaussians (``render``'s parameters) and the camera they are seen through."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    camera: object
    source: str
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.means.shape[0])

    def params(self) -> list[torch.Tensor]:
        """The five parameter tensors, in ``render``'s order."""
        return [getattr(self, k) for k in PARAM_FIELDS]

    def param_bytes(self) -> int:
        """Bytes of the parameters (no gradients, no optimiser state)."""
        return sum(p.numel() * p.element_size() for p in self.params())


def compare_scene(n: int, size: int, seed: int = 0, rotated: bool = False) -> Scene:
    """A small random scene on which litesplat's conventions coincide with the standard 3DGS model.

    The camera sits at the origin looking down +z with ``R = I`` (``look_at`` with up = -y) and 30 deg field
    of view. The Gaussians lie on ``layers`` fronto-parallel planes (z = 2, 2.5, 3, ...), inside 90 % of the
    view, flat (``s_z = 1e-3 s_x``), axis aligned (identity rotation) unless ``rotated``, with random in-plane
    standard deviations of 0.8-3 px (at 64 px; proportionally more at larger sizes), opacities U(0.3, 0.95)
    and colours U(0, 1). Within a plane they are listed by increasing distance from the optical axis, so
    that a stable sort by depth (ours) and a sort by distance from the camera (litesplat's) give the same
    order; between planes 0.5 depth units exceed any distance difference inside a plane. Flat and axis
    aligned, the screen covariance has no off-diagonal term, so litesplat's y flip (it flips the mean but
    not the covariance) and its elementwise product of the camera and Gaussian rotations change nothing.
    ``rotated=True`` gives the same scene with random rotations and thickness ``s_z = s_x``, where they do.
    """
    from paperzoo.core.cameras import look_at

    cam = look_at((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), up=(0.0, -1.0, 0.0), fov_deg=30.0, width=size,
                  height=size)
    if not (torch.allclose(cam.R, torch.eye(3)) and float(cam.t.abs().max()) == 0.0):
        raise RuntimeError("compare_scene: look_at did not give R = I, t = 0")  # the conventions rely on it
    g = torch.Generator().manual_seed(seed)
    layers = max(2, min(8, n // 16))
    per = [n // layers + (i < n % layers) for i in range(layers)]
    means, sx = [], []
    for li, m in enumerate(per):
        z = 2.0 + 0.5 * li
        half = 0.9 * z * math.tan(math.radians(15.0))
        xy = (torch.rand(m, 2, generator=g) * 2 - 1) * half
        xy = xy[torch.argsort(xy.norm(dim=1))]            # by distance from the axis: the two sorts agree
        means.append(torch.cat((xy, torch.full((m, 1), z)), 1))
        sx.append(torch.full((m,), z / cam.fx))           # world length of one pixel at this depth
    means = torch.cat(means)
    px = torch.cat(sx) * (size / 64)
    sig = 0.8 + 2.2 * torch.rand(n, 2, generator=g)
    scales = torch.stack((sig[:, 0] * px, sig[:, 1] * px, 1e-3 * sig[:, 0] * px), 1)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    if rotated:
        quats = torch.randn(n, 4, generator=g)
        scales[:, 2] = scales[:, 0]
    opac = 0.3 + 0.65 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return Scene(means, quats, scales, opac, colors, cam, "layered" + ("-rotated" if rotated else ""),
                 {"layers": layers})


def _tangent_quats(normals: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) rotating +z onto each unit normal (the shortest arc)."""
    n = normals / normals.norm(dim=1, keepdim=True)
    w = 1.0 + n[:, 2]
    q = torch.stack((w, -n[:, 1], n[:, 0], torch.zeros_like(w)), 1)
    flip = w < 1e-6                                        # normal = -z: half a turn about x
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=q.dtype)
    return q / q.norm(dim=1, keepdim=True)


def _surface_scene(points: torch.Tensor, normals: torch.Tensor, area: float, size: int, seed: int,
                   source: str) -> Scene:
    """Surfels on a surface: flat Gaussians in the tangent plane, in-plane standard deviation half the mean
    spacing ``sqrt(area / N)`` (neighbours overlap, the surface looks closed), thickness a tenth of it,
    opacities U(0.8, 0.99), random colours; a 30 deg camera in front (+z) framing the bounding box."""
    from paperzoo.core.cameras import look_at

    n = points.shape[0]
    g = torch.Generator().manual_seed(seed + 1)
    spacing = math.sqrt(area / n)
    scales = torch.tensor([0.5, 0.5, 0.05]) * spacing
    lo, hi = points.min(0).values, points.max(0).values
    center = (lo + hi) / 2
    extent = float((hi - lo)[:2].max())
    dist = 0.55 * extent / math.tan(math.radians(15.0)) + float(hi[2] - center[2])
    cam = look_at(tuple((center + torch.tensor([0.0, 0.0, dist])).tolist()), tuple(center.tolist()),
                  fov_deg=30.0, width=size, height=size)
    return Scene(points.float().contiguous(), _tangent_quats(normals.float()), scales.expand(n, 3).clone(),
                 0.8 + 0.19 * torch.rand(n, generator=g), torch.rand(n, 3, generator=g), cam, source,
                 {"spacing": spacing, "area": area})


def face_scene(n: int, size: int, seed: int = 0, data_root: str | None = None) -> Scene:
    """``n`` surfels sampled uniformly by area on the ICT FaceKit head (skin and eyeballs,
    ``paperzoo.data.face.HEAD_MATERIALS``, neutral expression, centimetres), seen from the front."""
    from paperzoo.data.face import HEAD_MATERIALS, load_face

    head = load_face(data_root).submesh(HEAD_MATERIALS)
    tri = head.vertices.double()[head.faces]                                    # (F, 3, 3)
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = cross.norm(dim=1)
    g = torch.Generator().manual_seed(seed)
    fid = torch.multinomial(area2, n, replacement=True, generator=g)
    r1, r2 = (torch.rand(n, 1, generator=g, dtype=torch.float64) for _ in range(2))
    s = r1.sqrt()                                                               # uniform in the triangle
    t = tri[fid]
    pts = (1 - s) * t[:, 0] + s * (1 - r2) * t[:, 1] + s * r2 * t[:, 2]
    normals = cross[fid] / area2[fid, None].clamp_min(1e-12)
    return _surface_scene(pts, normals, 0.5 * float(area2.sum()), size, seed, "ict-face")


def sphere_scene(n: int, size: int, seed: int = 0, radius: float = 12.0) -> Scene:
    """``n`` surfels uniformly on a head-sized sphere (radius 12 cm), seen from the front (the fallback of
    :func:`face_scene` where the ICT data is absent)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    return _surface_scene(radius * d, d, 4 * math.pi * radius ** 2, size, seed, "sphere")


def avatar_scene(n: int, size: int, seed: int = 0, kind: str = "face") -> Scene:
    """The avatar-sized scene: the ICT head (``kind="face"``; the sphere when its data cannot be found) or
    the sphere."""
    if kind == "face":
        try:
            return face_scene(n, size, seed)
        except (ImportError, FileNotFoundError) as exc:  # DataNotFoundError is a FileNotFoundError
            scene = sphere_scene(n, size, seed)
            scene.info["face_unavailable"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            return scene
    return sphere_scene(n, size, seed)


# --------------------------------------------------------------------------------------------
# the floor: the per-pair arithmetic on contiguous blocks
# --------------------------------------------------------------------------------------------
def floor_composite(px: torch.Tensor, py: torch.Tensor, mx: torch.Tensor, my: torch.Tensor, a: torch.Tensor,
                    b: torch.Tensor, c: torch.Tensor, o: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Front-to-back compositing of ``A`` tiles x ``K`` Gaussians x ``P`` pixels, with nothing but the
    per-pair arithmetic: pixel coordinates ``px, py`` (A, 1, P), Gaussian centres ``mx, my``, conic
    ``a, b, c`` and opacity ``o`` (A, K, 1), colours ``col`` (A, K, C), all contiguous and already gathered.
    Per pair: ``power = -0.5 (a dx^2 + c dy^2) - b dx dy``, ``alpha = min(0.99, o exp(power))``, the
    transmittance ``T`` (exclusive cumulative product of ``1 - alpha`` along K) and the weight ``alpha T``;
    then the colour ``sum_k w c`` (A, P, C). No gathers, masks, 1/255 cut, early termination, binning or
    projection: every renderer that evaluates these pairs does at least this, so its time is a floor for
    eager PyTorch."""
    dx = px - mx
    dy = py - my
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    alpha = (o * torch.exp(power)).clamp_max(0.99)
    t_inc = torch.cumprod(1.0 - alpha, dim=1)
    t_exc = torch.cat((torch.ones_like(t_inc[:, :1]), t_inc[:, :-1]), dim=1)
    return torch.einsum("akp,akc->apc", alpha * t_exc, col)


def floor_inputs(tiles: int, slab: int, tile: int, channels: int = 3, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs of :func:`floor_composite`: ``tiles`` tiles of ``tile^2`` pixels, ``slab`` Gaussians
    each, centres inside the tile and standard deviations of 1.5-4 px (``exp`` sees realistic arguments)."""
    g = torch.Generator().manual_seed(seed)
    P = tile * tile
    lin = torch.arange(P)
    px = (lin % tile + 0.5).float().expand(tiles, 1, P).contiguous()
    py = (lin // tile + 0.5).float().expand(tiles, 1, P).contiguous()
    mx, my = (torch.rand(tiles, slab, 1, generator=g) * tile for _ in range(2))
    var = (1.5 + 2.5 * torch.rand(tiles, slab, 1, generator=g)) ** 2
    a, c = 1.0 / var, 1.0 / var.flip(1)
    b = 0.1 * torch.randn(tiles, slab, 1, generator=g) * a
    o = 0.3 + 0.65 * torch.rand(tiles, slab, 1, generator=g)
    col = torch.rand(tiles, slab, channels, generator=g)
    return [px, py, mx, my, a, b, c, o, col]


def floor_rate(sizes: Sizes, repeats: int, backward: bool, fn=floor_composite) -> dict:
    """Median pairs per second of ``fn`` (default :func:`floor_composite`) on one renderer-sized block,
    forward (``no_grad``) or forward + backward (gradients to the Gaussian-side inputs)."""
    x = floor_inputs(sizes.floor_tiles, sizes.slab, sizes.tile)
    pairs = sizes.floor_tiles * sizes.slab * sizes.tile ** 2
    if backward:
        for t in x[2:]:
            t.requires_grad_()

        def step():
            for t in x[2:]:
                t.grad = None
            fn(*x).sum().backward()
    else:
        def step():
            with torch.no_grad():
                fn(*x)
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(max(1, repeats)):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    w, c = statistics.median(walls), statistics.median(cpus)
    return {"pairs": pairs, "first_s": first, "median_s": w, "median_cpu_s": c, "pairs_per_s": pairs / w,
            "pairs_per_cpu_s": pairs / c}


# --------------------------------------------------------------------------------------------
# litesplat, converted to our conventions
# --------------------------------------------------------------------------------------------
class Litesplat:
    """litesplat's ``CameraLayer`` + ``GaussianParameterLayer`` holding a :class:`Scene`, rendering in our
    conventions (imports Keras with the torch backend; needs ``pip install -e '.[bench-avatar]'``).

    litesplat reads ``gaussians.json`` / ``camera.json`` (positions, (w, x, y, z) quaternions, standard
    deviations, opacities in [0, 1], colours; ``rotation`` = world-to-camera R, ``translation`` = t, fx, fy,
    cx, cy, width, height): the same quantities as ours, written to a temporary folder. Two conversions:
    it samples pixel ``(i, j)`` at ``(i, j)`` where we sample the centre ``(i + 0.5, j + 0.5)``, so it gets
    ``cx - 0.5``; and it renders bottom-up (it maps the projected ``v`` to ``height - v``), so it gets
    ``cy + 0.5`` and its image is flipped back. Its sort order is computed once, when the layer is built
    (by distance from ``translation``, which is the camera centre only when ``t = 0``, as here).
    """

    def __init__(self, scene: Scene, batch_size: int = 1024):
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import contextlib
        import io

        import keras
        from litesplat.core import CameraLayer, GaussianParameterLayer

        if keras.backend.backend() != "torch":
            raise RuntimeError(f"litesplat: Keras uses the {keras.backend.backend()} backend; "
                               "set KERAS_BACKEND=torch")
        cam = scene.camera
        self.height, self.width, self.batch_size = cam.height, cam.width, batch_size
        gauss = [{"position": m, "color": c, "rotation": q, "scale": s, "opacity": o} for m, c, q, s, o in
                 zip(scene.means.tolist(), scene.colors.tolist(), scene.quats.tolist(), scene.scales.tolist(),
                     scene.opacities.tolist())]
        camera = [{"camera_id": 0, "model": "PINHOLE", "image_name": "none.png", "width": cam.width,
                   "height": cam.height, "fx": cam.fx, "fy": cam.fy, "cx": cam.cx - 0.5, "cy": cam.cy + 0.5,
                   "rotation": cam.R.tolist(), "translation": cam.t.tolist()}]
        with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):  # it prints emoji
            Path(d, "gaussians.json").write_text(json.dumps(gauss))
            Path(d, "camera.json").write_text(json.dumps(camera))
            self.gaussians = GaussianParameterLayer(d)
            self.layer = CameraLayer(d, self.gaussians)

    def params(self) -> list[torch.Tensor]:
        """The torch tensors behind litesplat's trainable weights."""
        g = self.gaussians
        return [v.value for v in (g.positions, g.rotations, g.scales, g.opacities, g.colors)]

    def render(self) -> torch.Tensor:
        """The (H, W, 3) image, top row first (our orientation)."""
        img = self.layer(inputs=(self.height, self.width), render=False, batch_size=self.batch_size)
        return torch.flip(img, dims=(0,))


def dense_uncut(scene: Scene, dilation: float = 0.0, order: str = "depth") -> torch.Tensor:
    """litesplat's model in our conventions: our EWA projection (with ``dilation`` px^2 added, none in
    litesplat), every Gaussian at every pixel centre, ``alpha = clip(o exp(power), 0, 1)`` with no 0.99 cap,
    no 1/255 cut and no early termination; sorted by camera depth (ours) or by distance from the camera
    centre (``order="distance"``, litesplat's)."""
    from paperzoo.core.cameras import pixel_centers
    from paperzoo.methods.relight_avatar.splat import project_gaussians

    cam = scene.camera
    proj = project_gaussians(scene.means, scene.quats, scene.scales, scene.opacities, cam, dilation=dilation,
                             clamp_fov=0.0)
    key = proj.depths if order == "depth" else (scene.means - cam.center.to(scene.means)).norm(dim=1)
    idx = torch.argsort(key.detach(), stable=True)
    m, con, o, col = proj.means2d[idx], proj.conics[idx], scene.opacities[idx], scene.colors[idx]
    pix = pixel_centers(cam.width, cam.height).reshape(-1, 1, 2)
    d = pix - m[None]
    dx, dy = d[..., 0], d[..., 1]
    power = -0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) - con[:, 1] * dx * dy
    alpha = (o * torch.exp(power)).clamp(0.0, 1.0)
    t_inc = torch.cumprod(1.0 - alpha, dim=1)
    t_exc = torch.cat((torch.ones_like(t_inc[:, :1]), t_inc[:, :-1]), dim=1)
    return ((alpha * t_exc) @ col).reshape(cam.height, cam.width, -1)


def _diff(x: torch.Tensor, y: torch.Tensor) -> dict:
    err = (x.detach().double() - y.detach().double()).abs()
    mse = float((err ** 2).mean())
    return {"max_abs": float(err.max()), "mean_abs": float(err.mean()),
            "psnr_db": (10 * math.log10(1.0 / mse)) if mse > 0 else float("inf")}


def agreement(scene: Scene, lite_image: torch.Tensor) -> dict:
    """Ours vs litesplat, and the difference taken apart one model change at a time:

    ``dilation``  ours' reference (``render_reference``) with the 0.3 px^2 low-pass vs without;
    ``cuts``      the reference without dilation vs :func:`dense_uncut` (the 0.99 cap, the 1/255 cut and the
                  early termination at T < 1e-4);
    ``sort``      :func:`dense_uncut` sorted by depth vs by distance from the camera (0 on
                  :func:`compare_scene` by construction);
    ``convention`` :func:`dense_uncut` by distance vs litesplat: what is left is float rounding, i.e. the
                  conversion of cameras and parameters is exact.
    ``ours_vs_reference`` checks that the tiled renderer equals its brute-force reference on this scene."""
    from paperzoo.methods.relight_avatar.splat import render, render_reference

    p = scene.params()
    with torch.no_grad():
        ours = render(*p, scene.camera).image
        ref = render_reference(*p, scene.camera)
        ref0 = render_reference(*p, scene.camera, dilation=0.0)
        unc = dense_uncut(scene, order="depth")
        unc_d = dense_uncut(scene, order="distance")
    return {"ours_vs_litesplat": _diff(ours, lite_image), "ours_vs_reference": _diff(ours, ref),
            "dilation": _diff(ref, ref0), "cuts": _diff(ref0, unc), "sort": _diff(unc, unc_d),
            "convention": _diff(unc_d, lite_image)}


# --------------------------------------------------------------------------------------------
# numba forward compositor (the "compiled kernel" option, forward only)
# --------------------------------------------------------------------------------------------
def numba_module(threads: int | None = None):
    """numba, with its ``workqueue`` threading layer (set before its thread pool starts) and ``threads``
    threads. The workqueue's threads sleep between calls; the OpenMP layer's spin, and on a busy 2-core
    machine that made torch 2.7x slower after a numba call."""
    import numba

    numba.config.THREADING_LAYER = "workqueue"
    if threads is not None:
        numba.set_num_threads(threads)
    return numba


@functools.lru_cache(maxsize=1)
def _numba_kernel():
    import numpy as np

    numba = numba_module()

    one, half = np.float32(1.0), np.float32(0.5)

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def composite(starts, counts, mx, my, ca, cb, cc, opac, feat, n_tx, tile, width, height, alpha_min,
                  alpha_max, t_min, out, t_out, pairs):  # pragma: no cover - compiled
        for t in numba.prange(counts.shape[0]):
            ty, tx = t // n_tx, t % n_tx
            n_eval = 0
            for j in range(tile):
                y = ty * tile + j
                if y >= height:
                    continue
                for i in range(tile):
                    x = tx * tile + i
                    if x >= width:
                        continue
                    px, py, T = np.float32(x) + half, np.float32(y) + half, one
                    for k in range(starts[t], starts[t] + counts[t]):
                        n_eval += 1
                        dx, dy = px - mx[k], py - my[k]
                        power = -half * (ca[k] * dx * dx + cc[k] * dy * dy) - cb[k] * dx * dy
                        if power > 0:
                            continue
                        alpha = min(alpha_max, opac[k] * math.exp(power))
                        if alpha < alpha_min:
                            continue
                        t_next = T * (one - alpha)
                        if t_next < t_min:
                            break
                        for ch in range(feat.shape[1]):
                            out[y, x, ch] += alpha * T * feat[k, ch]
                        T = t_next
                    t_out[y, x] = T
            pairs[t] = n_eval

    return composite


def numba_composite(scene: Scene, tile: int = 8) -> tuple[torch.Tensor, int]:
    """Forward render with our projection and tile lists (``splat.project_gaussians``, ``splat._bin_tiles``)
    and a per-pixel numba loop for the compositing (the reference kernel's semantics: skip ``power > 0`` and
    ``alpha < 1/255``, cap 0.99, stop before ``T < 1e-4``; float32, ``fastmath``, tiles in parallel, each
    tile's Gaussian parameters gathered into contiguous arrays first). Returns the (H, W, C) image and the
    Gaussian-pixel pairs evaluated (up to each pixel's termination, where ours counts whole slabs)."""
    import numpy as np

    from paperzoo.methods.relight_avatar import splat

    cam = scene.camera
    with torch.no_grad():
        proj = splat.project_gaussians(scene.means, scene.quats, scene.scales, scene.opacities, cam)
        image_of = torch.zeros(scene.n, dtype=torch.long)
        gauss, per_tile, n_tx, *_ = splat._bin_tiles(proj, image_of, cam.width, cam.height, tile)
        m, con = proj.means2d[gauss], proj.conics[gauss]
        cols = [m[:, 0], m[:, 1], con[:, 0], con[:, 1], con[:, 2], scene.opacities[gauss],
                scene.colors[gauss]]
        cols = [c.float().contiguous().numpy() for c in cols]
    starts = (torch.cumsum(per_tile, 0) - per_tile).numpy()
    out = np.zeros((cam.height, cam.width, scene.colors.shape[1]), dtype=np.float32)
    t_out = np.ones((cam.height, cam.width), dtype=np.float32)
    pairs = np.zeros(per_tile.numel(), dtype=np.int64)
    _numba_kernel()(starts, per_tile.numpy(), *cols, n_tx, tile, cam.width, cam.height,
                    np.float32(splat.ALPHA_MIN), np.float32(splat.ALPHA_MAX), np.float32(splat.T_MIN),
                    out, t_out, pairs)
    return torch.from_numpy(out), int(pairs.sum())


# --------------------------------------------------------------------------------------------
# child: measuring
# --------------------------------------------------------------------------------------------
def fix_malloc() -> bool:
    """Fix glibc's mmap threshold at 128 KiB (``mallopt(M_MMAP_THRESHOLD)``; it otherwise grows after each
    free of a big block, after which freed tensors stay resident and later peaks read too low). False where
    there is no glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024))  # M_MMAP_THRESHOLD = -3
    except (OSError, AttributeError):
        return False


def measure(step, repeats: int) -> dict:
    """One warm-up call (first-use allocations of the libraries), then one call's peak resident memory over
    the memory before it, then ``repeats`` timed calls (wall and CPU seconds of this process, medians)."""
    step()
    gc.collect()
    rss0 = rss_mib()
    ok = reset_peak_rss()
    c0, t0 = time.process_time(), time.perf_counter()
    res = step()
    first = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    peak = peak_rss_mib(ok)
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        res = step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"peak_delta_mib": peak - rss0, "hwm_reset": ok, "first": first,
            "median_s": statistics.median(walls), "median_cpu_s": statistics.median(cpus), "wall_s": walls,
            "cpu_s": cpus, "result": res}


def _steps(render_fn, params: list[torch.Tensor], shape: tuple[int, int, int], seed: int = 3):
    """(forward, forward + backward) closures over ``render_fn() -> image or RenderOutput``; the backward's
    loss is ``sum(image * w)`` with fixed random weights ``w``."""
    w = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))

    def image_of(out):
        return out if isinstance(out, torch.Tensor) else out.image

    def pairs_of(out):
        return getattr(out, "n_pairs", None)

    def forward():
        with torch.no_grad():
            return pairs_of(render_fn())

    def forward_backward():
        for p in params:
            p.grad = None
        out = render_fn()
        (image_of(out) * w).sum().backward()
        return pairs_of(out)

    return forward, forward_backward


def child_compare(args) -> dict:
    n, size = args.n, args.size
    scene = compare_scene(n, size)
    if args.variant == "litesplat":
        lite = Litesplat(scene)
        torch.set_num_threads(args.threads)  # after Keras' import
        params = lite.params()
        fwd, fwdbwd = _steps(lite.render, params, (size, size, 3))
        with torch.no_grad():
            image = lite.render()
        extra = {"agreement": agreement(scene, image),
                 "rotated": {"convention": _diff(dense_uncut(compare_scene(n, size, rotated=True),
                                                             order="distance"),
                                                 Litesplat(compare_scene(n, size, rotated=True)).render())}}
        pairs = n * size * size
    else:
        from paperzoo.methods.relight_avatar.splat import render

        params = [p.clone().requires_grad_() for p in scene.params()]
        fwd, fwdbwd = _steps(lambda: render(*params, scene.camera), params, (size, size, 3))
        extra, pairs = {}, None
    f = measure(fwd, args.repeats)
    b = measure(fwdbwd, args.repeats)
    pairs = pairs if pairs is not None else f.pop("result")
    return {"forward": f, "forward_backward": b, "pairs": pairs, "source": scene.source, **extra}


def load_avatar_hook():
    """``paperzoo.methods.relight_avatar.model.bench_frame`` (the avatar's relight + render hook), or a
    RuntimeError saying why not. Contract: ``bench_frame(resolution: int, image_size: int) -> (params,
    frame)`` with ``params`` the list of tensors that require grad and ``frame()`` returning a
    ``RenderOutput`` of one relit frame at ``image_size`` px (appearance + render)."""
    import importlib

    try:  # by full name: sys.modules decides (the package attribute may hold an earlier import)
        model = importlib.import_module("paperzoo.methods.relight_avatar.model")
    except ImportError as exc:
        raise RuntimeError(f"--avatar: paperzoo.methods.relight_avatar.model cannot be imported ({exc})"
                           ) from exc
    hook = getattr(model, "bench_frame", None)
    if hook is None:
        raise RuntimeError("--avatar: paperzoo.methods.relight_avatar.model has no bench_frame(resolution, "
                           "image_size); see benchmarks/relight_avatar/README.md")
    return hook


def child_fps(args) -> dict:
    sizes = sizes_from_json(args.sizes)
    n = n_gaussians(args.res)
    if args.avatar:
        params, frame = load_avatar_hook()(args.res, sizes.image)
        source, info, param_bytes = "avatar-model", {}, sum(p.numel() * p.element_size() for p in params)
        shape = (sizes.image, sizes.image, 3)
    else:
        from paperzoo.methods.relight_avatar.splat import render

        scene = avatar_scene(n, sizes.image, kind=args.scene)
        params = [p.clone().requires_grad_() for p in scene.params()]
        source, info, param_bytes = scene.source, scene.info, scene.param_bytes()
        shape = (sizes.image, sizes.image, scene.colors.shape[1])

        def frame():
            return render(*params, scene.camera, tile_size=sizes.tile, slab=sizes.slab)

    floor = {"forward": [floor_rate(sizes, args.repeats, False)],
             "forward_backward": [floor_rate(sizes, args.repeats, True)]}
    fwd, fwdbwd = _steps(frame, params, shape)
    if args.avatar:  # the model's own Gaussian count (its UV layout), as splatted
        with torch.no_grad():
            n = frame().n_visible
    f = measure(fwd, args.repeats)
    b = measure(fwdbwd, args.repeats)
    floor["forward"].append(floor_rate(sizes, args.repeats, False))
    floor["forward_backward"].append(floor_rate(sizes, args.repeats, True))
    return {"n": n, "source": source, "scene_info": info, "param_bytes": param_bytes,
            "pairs": f.pop("result"), "forward": f, "forward_backward": b, "floor": floor}


def child_compiled(args) -> dict:
    """Ours forward first (nothing compiled in the process yet), then numba, then the floor block eager and
    under ``torch.compile``."""
    from paperzoo.methods.relight_avatar.splat import render

    sizes = sizes_from_json(args.sizes)
    scene = avatar_scene(n_gaussians(args.res), sizes.image, kind=args.scene)
    out: dict = {"n": scene.n, "source": scene.source}

    def ours_fwd():
        with torch.no_grad():
            return render(*scene.params(), scene.camera, tile_size=sizes.tile, slab=sizes.slab)

    ours = measure(lambda: ours_fwd().n_pairs, args.repeats)
    out["ours_forward"] = {**ours, "pairs": ours.pop("result")}
    try:
        numba = numba_module(args.threads)
        t0 = time.perf_counter()
        image, nb_pairs = numba_composite(scene, sizes.tile)
        out["numba_jit_s"] = time.perf_counter() - t0
        nb = measure(lambda: numba_composite(scene, sizes.tile)[1], args.repeats)
        nb.pop("result")
        out["numba"] = {**nb, "pairs": nb_pairs, "vs_ours": _diff(image, ours_fwd().image),
                        "version": numba.__version__, "threading_layer": numba.threading_layer()}
    except ImportError:
        out["numba"] = {"error": "numba is not installed (pip install numba)"}
    compiled = torch.compile(floor_composite)
    for key, bwd in (("forward", False), ("forward_backward", True)):
        out[f"eager_{key}"] = floor_rate(sizes, args.repeats, bwd)
        try:
            out[f"compiled_{key}"] = rate = floor_rate(sizes, args.repeats, bwd, compiled)
            out[f"compile_{key}_s"] = rate["first_s"]  # the first call compiles
        except (RuntimeError, OSError, ImportError) as exc:  # inductor needs a C++ compiler; report, go on
            out[f"compiled_{key}"] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
    return out


def child(args) -> dict:
    fix = fix_malloc()
    torch.set_num_threads(args.threads)
    fn = {"compare": child_compare, "fps": child_fps, "compiled": child_compiled}[args.child]
    return {**fn(args), "mmap_threshold_fixed": fix, "torch_threads": torch.get_num_threads()}


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------
def run_child(kind: str, threads: int, args, avatar: bool = False, **kw) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--threads", str(threads),
           "--repeats", str(args.repeats), "--scene", args.scene]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    if avatar:
        cmd.append("--avatar")
    return run_json_child(cmd, threads, args.child_timeout, args.max_wait)


def _ms(s: float) -> str:
    return f"{1000 * s:.1f} ms" if s < 1 else f"{s:.2f} s"


def _mib(x: float) -> str:
    return f"{x:.1f}"


def floor_best(row: dict, key: str, per: str = "pairs_per_s") -> dict:
    """The faster of the two floor measurements (before and after) of an fps row, per wall second
    (``per="pairs_per_s"``) or per CPU second (``"pairs_per_cpu_s"``)."""
    return max(row["floor"][key], key=lambda r: r[per])


def floor_shares(row: dict) -> dict:
    """Pairs per second of an fps row and its share of the floor, forward and forward + backward, per wall
    second and per CPU second (the latter is steadier on a loaded machine)."""
    out = {}
    for key in ("forward", "forward_backward"):
        rate = row["pairs"] / row[key]["median_s"]
        rate_cpu = row["pairs"] / row[key]["median_cpu_s"]
        floor = floor_best(row, key)["pairs_per_s"]
        floor_cpu = floor_best(row, key, "pairs_per_cpu_s")["pairs_per_cpu_s"]
        out[key] = {"rate": rate, "floor": floor, "share": rate / floor, "rate_cpu": rate_cpu,
                    "floor_cpu": floor_cpu, "share_cpu": rate_cpu / floor_cpu}
    return out


def summary(data: dict) -> list[str]:
    """The one-line verdicts the benchmark prints: ratios, fps, floor shares, memory per Gaussian."""
    lines = []
    for r in data["compare"]:
        if r["variant"] != "litesplat" or "error" in r:
            continue
        ours = _ours_row(data, r)
        if ours:
            f, b, of, ob = r["forward"], r["forward_backward"], ours["forward"], ours["forward_backward"]
            lines.append(f"(a) N={r['n']} {r['size']}px {r['threads']} thr: litesplat / ours = "
                         f"{f['median_s'] / of['median_s']:.1f}x forward, "
                         f"{b['median_s'] / ob['median_s']:.1f}x "
                         f"forward+backward (wall; CPU: {f['median_cpu_s'] / of['median_cpu_s']:.1f}x, "
                         f"{b['median_cpu_s'] / ob['median_cpu_s']:.1f}x); images: max |ours - litesplat| = "
                         f"{r['agreement']['ours_vs_litesplat']['max_abs']:.2g}, conversion residual "
                         f"{r['agreement']['convention']['max_abs']:.2g}")
    for r in data["fps"] + [{**a, "res": f"{a['res']} (avatar model)"} for a in data.get("avatar", [])]:
        if "error" in r:
            continue
        sh = floor_shares(r)
        lines.append(f"(b) R={r['res']} N={r['n']} {r['threads']} thr: {1 / r['forward']['median_s']:.2f} "
                     f"fps forward, {1 / r['forward_backward']['median_s']:.2f} fps forward+backward")
        for key, name in (("forward", "forward"), ("forward_backward", "forward+backward")):
            x = sh[key]
            lines.append(f"(c) R={r['res']} {r['threads']} thr {name}: {x['rate'] / 1e6:.1f} M pairs/s: "
                         f"ours is {x['share']:.2f} of the floor ({x['floor'] / 1e6:.1f} M/s); per CPU "
                         f"second {x['share_cpu']:.2f} ({x['rate_cpu'] / 1e6:.1f} of "
                         f"{x['floor_cpu'] / 1e6:.1f} M/s)")
        lines.append(f"(d) R={r['res']} {r['threads']} thr: {r['param_bytes'] / r['n']:.0f} B parameters + "
                     f"{r['forward']['peak_delta_mib'] * MIB / r['n']:.0f} B forward / "
                     f"{r['forward_backward']['peak_delta_mib'] * MIB / r['n']:.0f} B forward+backward "
                     f"transient peak per Gaussian")
    return lines


def _header(*cells: str) -> list[str]:
    """A markdown table's header and separator rows."""
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def _cell(d: dict) -> str:
    """An agreement cell: max |difference| (PSNR), or 0."""
    return f"{d['max_abs']:.2g} ({d['psnr_db']:.0f} dB)" if math.isfinite(d["psnr_db"]) else "0"


def _rate(x: dict) -> str:
    return "error" if "error" in x else f"{x['pairs_per_s'] / 1e6:.1f}"


def _share_cell(x: dict) -> str:
    """``rate (floor; **share**; share per CPU second)`` in M pairs/s, from :func:`floor_shares`."""
    return f"{x['rate'] / 1e6:.1f} ({x['floor'] / 1e6:.1f}; **{x['share']:.2f}**; {x['share_cpu']:.2f})"


def _other(r: dict) -> str:
    return "?" if r.get("other_cpu") is None else f"{r['other_cpu']:.2f}"


def _ours_row(data: dict, r: dict) -> dict | None:
    """The ``ours`` compare row of the same scene and thread count as ``r`` (None if it failed)."""
    return next((o for o in data["compare"] if o["variant"] == "ours" and o["n"] == r["n"]
                 and o["size"] == r["size"] and o["threads"] == r["threads"] and "error" not in o), None)


def _fps_table(rows: list[dict]) -> list[str]:
    """The (b)-(d) table of fps rows (geometry scenes or the avatar model)."""
    out = _header("R", "N", "scene", "threads", "fwd fps", "fwd+bwd fps", "fwd wall; CPU",
                   "fwd+bwd wall; CPU", "pairs / frame", "M pairs/s fwd (floor; share; CPU share)",
                   "M pairs/s fwd+bwd (floor; share; CPU share)",
                   "B/Gaussian params", "B/Gaussian peak fwd; fwd+bwd", "other CPU")
    for r in rows:
        if "error" in r:
            out.append(f"| {r['res']} | {n_gaussians(r['res'])} | | {r['threads']} | error: {r['error']} |")
            continue
        f, b = r["forward"], r["forward_backward"]
        sf, sb = floor_shares(r)["forward"], floor_shares(r)["forward_backward"]
        out.append(f"| {r['res']} | {r['n']} | {r['source']} | {r['threads']} | {1 / f['median_s']:.2f} | "
                   f"{1 / b['median_s']:.2f} | {_ms(f['median_s'])}; {_ms(f['median_cpu_s'])} | "
                   f"{_ms(b['median_s'])}; {_ms(b['median_cpu_s'])} | {r['pairs']:,} | "
                   f"{_share_cell(sf)} | {_share_cell(sb)} | "
                   f"{r['param_bytes'] / r['n']:.0f} | {f['peak_delta_mib'] * MIB / r['n']:.0f}; "
                   f"{b['peak_delta_mib'] * MIB / r['n']:.0f} | {_other(r)} |")
    return out


def markdown(data: dict) -> str:
    """The results tables (results.md) of a results dict."""
    env, ver = data["env"], data["env"]["versions"]
    out = [(f"Measured {env['date']} on {env['cpu']} ({env['cores']} cores, shared with other work, so "
            f"noisy: medians of {data['settings']['repeats']} repeats; `other CPU` = share of the machine's "
            f"CPU time that other processes used while the child ran). torch {ver.get('torch')}, litesplat "
            f"{ver.get('litesplat')}, keras {ver.get('keras')}, numba {ver.get('numba')}."), ""]
    runs = data.get("runs", {})
    if runs:
        out += ["Runs: " + "; ".join(f"{part} {r['date']} (threads {r['settings']['threads']}, repeats "
                                     f"{r['settings']['repeats']})" for part, r in runs.items()) + ".", ""]
    out += ["### (a) Same scene: ours vs litesplat", ""]
    out += _header("N", "px", "threads", "renderer", "forward wall", "CPU", "fwd+bwd wall", "CPU",
                   "litesplat / ours wall (fwd; fwd+bwd)", "CPU (fwd; fwd+bwd)", "peak MiB (fwd; fwd+bwd)",
                   "pairs", "other CPU")
    for r in data["compare"]:
        head = f"| {r['n']} | {r['size']} | {r['threads']} | {r['variant']} |"
        if "error" in r:
            out.append(f"{head} error: {r['error']} |")
            continue
        ours = _ours_row(data, r)
        f, b = r["forward"], r["forward_backward"]
        ratio = (f"{f['median_s'] / ours['forward']['median_s']:.1f}x; "
                 f"{b['median_s'] / ours['forward_backward']['median_s']:.1f}x | "
                 f"{f['median_cpu_s'] / ours['forward']['median_cpu_s']:.1f}x; "
                 f"{b['median_cpu_s'] / ours['forward_backward']['median_cpu_s']:.1f}x") if ours else "- | -"
        out.append(f"{head} {_ms(f['median_s'])} | {_ms(f['median_cpu_s'])} | {_ms(b['median_s'])} | "
                   f"{_ms(b['median_cpu_s'])} | {ratio} | {_mib(f['peak_delta_mib'])}; "
                   f"{_mib(b['peak_delta_mib'])} | "
                   f"{r['pairs']:,} | {_other(r)} |")
    agree = [r for r in data["compare"] if r["variant"] == "litesplat" and "error" not in r]
    seen = set()
    if agree:
        out += ["", ("Image agreement (max |difference| over pixels and channels, colours in [0, 1]; PSNR); "
                     "each column after the second is one step of the chain ours -> litesplat (README):"), ""]
        out += _header("N", "px", "ours vs litesplat", "ours vs brute-force reference", "0.3 px2 dilation",
                       "0.99 cap + 1/255 cut + T<1e-4 stop", "depth vs distance sort", "conversion residual",
                       "litesplat on rotated Gaussians")
        for r in agree:
            if (r["n"], r["size"]) in seen:
                continue
            seen.add((r["n"], r["size"]))
            a = r["agreement"]
            cells = [a["ours_vs_litesplat"], a["ours_vs_reference"], a["dilation"], a["cuts"], a["sort"],
                     a["convention"], r["rotated"]["convention"]]
            out.append(f"| {r['n']} | {r['size']} | " + " | ".join(_cell(c) for c in cells) + " |")
    out += ["", (f"### (b)-(d) Avatar-sized scenes at {data['settings']['sizes']['image']} px: frames per "
                 "second, pairs per second vs the floor, memory per Gaussian"), ""]
    out += _fps_table(data["fps"])
    if data.get("avatar"):
        out += ["", ("### (b) Relight + render: the avatar model's frame (`model.bench_frame`: decode, "
                     "shade, splat); N = the Gaussians it splats, parameters = the model's weights"), ""]
        out += _fps_table(data["avatar"])
    if data.get("compiled"):
        out += ["", "### Compiled hot loop: the floor block under torch.compile; a numba forward compositor",
                ""]
        out += _header("threads", "floor fwd M pairs/s eager / compiled", "floor fwd+bwd eager / compiled",
                       "compile s (fwd; fwd+bwd)", "ours fwd", "numba fwd (first call s)",
                       "ours / numba time", "numba vs ours max abs", "pairs ours; numba", "other CPU")
        for r in data["compiled"]:
            if "error" in r:
                out.append(f"| {r['threads']} | error: {r['error']} |")
                continue
            nb, ours = r["numba"], r["ours_forward"]
            nb_cells = (f"{_ms(nb['median_s'])} ({r['numba_jit_s']:.1f}) | "
                        f"{ours['median_s'] / nb['median_s']:.1f}x | "
                        f"{nb['vs_ours']['max_abs']:.1g} | {ours['pairs']:,}; {nb['pairs']:,}"
                        if "error" not in nb else f"{nb['error']} | | | {ours['pairs']:,}")
            out.append(f"| {r['threads']} | {_rate(r['eager_forward'])} / {_rate(r['compiled_forward'])} | "
                       f"{_rate(r['eager_forward_backward'])} / {_rate(r['compiled_forward_backward'])} | "
                       f"{r.get('compile_forward_s', float('nan')):.0f}; "
                       f"{r.get('compile_forward_backward_s', float('nan')):.0f} | {_ms(ours['median_s'])} | "
                       f"{nb_cells} | {_other(r)} |")
    return "\n".join(out)


def parse_pairs(text: str) -> tuple[tuple[int, int], ...]:
    """``"256x64,512x128"`` -> ((256, 64), (512, 128)); a ValueError naming the bad item."""
    out = []
    for item in filter(None, text.split(",")):
        try:
            n, s = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"--compare: {item!r} is not NxSIZE (e.g. 256x64)") from None
        if n < 1 or s < 1:
            raise ValueError(f"--compare: {item!r}: N and SIZE must be positive")
        out.append((n, s))
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny sizes (the smoke test)")
    p.add_argument("--compare", help="part (a) scenes as NxSIZE,... (default 256x64,512x128)")
    p.add_argument("--res", help="part (b) avatar UV resolutions R, comma-separated (default 64,96,128)")
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    p.add_argument("--repeats", type=int, default=5, help="timed calls after the memory call")
    p.add_argument("--no-peer", action="store_true", help="skip litesplat")
    p.add_argument("--parts", default="compare,fps",
                   help="parts to run (compare, fps, compiled); others are kept from --out's results.json")
    p.add_argument("--compiled", action="store_true", help="add the compiled part (torch.compile, numba)")
    p.add_argument("--avatar", action="store_true",
                   help="add the avatar part: the model's frame (relight + render) through bench_frame")
    p.add_argument("--scene", choices=["face", "sphere"], default="face", help="part (b) surface")
    p.add_argument("--max-wait", type=float, default=10.0, help="seconds to wait for a quiet machine")
    p.add_argument("--child-timeout", type=float, default=600.0, help="seconds before a child is killed")
    p.add_argument("--out", default=str(HERE), help="folder of results.json and results.md")
    p.add_argument("--markdown", metavar="JSON", help="print the tables of a results file and exit")
    p.add_argument("--child", choices=["compare", "fps", "compiled"], help=argparse.SUPPRESS)
    p.add_argument("--variant", default="ours", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sizes", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.res = int(args.res) if args.res else None
        args.threads = int(args.threads)
        print(json.dumps(child(args)))
        return 0
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    torch.set_num_threads(1)
    try:
        base = TINY if args.tiny else FULL
        res = tuple(int(r) for r in args.res.split(",") if r) if args.res else base.avatar_res
        sizes = Sizes(compare=parse_pairs(args.compare) if args.compare else base.compare, avatar_res=res,
                      image=base.image, floor_tiles=base.floor_tiles, slab=base.slab, tile=base.tile)
        threads = [int(t) for t in args.threads.split(",") if t]
        parts = [q for q in args.parts.split(",") if q] + (["compiled"] if args.compiled else []) \
            + (["avatar"] if args.avatar else [])
        if bad := [q for q in parts if q not in PARTS]:
            raise ValueError(f"--parts: unknown {', '.join(bad)} (use {', '.join(PARTS)})")
    except ValueError as exc:
        raise SystemExit(f"bench_render: error: {exc}") from None
    if not threads or min(threads) < 1 or args.repeats < 1:
        raise SystemExit("bench_render: error: --threads and --repeats must be positive")
    env = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "versions": versions("litesplat", "keras", "numba"),
           "loadavg_start": os.getloadavg()}
    print(json.dumps(env), flush=True)
    settings = {"parts": parts, "tiny": args.tiny, "sizes": asdict(sizes), "threads": threads,
                "repeats": args.repeats,
                "peer": None if args.no_peer else PEER, "scene": args.scene, "avatar": args.avatar}
    t_start = time.perf_counter()
    variants = ["ours"] + ([] if args.no_peer else ["litesplat"])
    if "litesplat" in variants and env["versions"]["litesplat"] is None:
        print("note: litesplat is not installed (pip install -e '.[bench-avatar]'): the peer is skipped",
              flush=True)
        variants.remove("litesplat")
    new: dict[str, list] = {part: [] for part in parts}
    if "compare" in parts:
        for n, size in sizes.compare:
            for thr in threads:
                for variant in variants:
                    row = {"variant": variant, "n": n, "size": size, "threads": thr,
                           **run_child("compare", thr, args, variant=variant, n=n, size=size)}
                    msg = row["error"] if "error" in row else (
                        f"forward {_ms(row['forward']['median_s'])} (CPU "
                        f"{_ms(row['forward']['median_cpu_s'])}), "
                        f"forward+backward {_ms(row['forward_backward']['median_s'])}")
                    print(f"  compare {variant} N={n} {size}px {thr} thr: {msg}", flush=True)
                    new["compare"].append(row)
    sizes_json = json.dumps(asdict(sizes))
    if "fps" in parts:
        for res in sizes.avatar_res:
            for thr in threads:
                row = {"res": res, "threads": thr, **run_child("fps", thr, args, res=res, sizes=sizes_json)}
                print(f"  fps R={res} {thr} thr: " + (row["error"] if "error" in row else
                      f"{1 / row['forward']['median_s']:.2f} fps forward, "
                      f"{1 / row['forward_backward']['median_s']:.2f} fps forward+backward"), flush=True)
                new["fps"].append(row)
    if "avatar" in parts:
        for res in sizes.avatar_res:
            for thr in threads:
                row = {"res": res, "threads": thr,
                       **run_child("fps", thr, args, avatar=True, res=res, sizes=sizes_json)}
                print(f"  avatar R={res} {thr} thr: " + (row["error"] if "error" in row else
                      f"{1 / row['forward']['median_s']:.2f} fps forward, "
                      f"{1 / row['forward_backward']['median_s']:.2f} fps forward+backward"), flush=True)
                new["avatar"].append(row)
    if "compiled" in parts:
        for thr in threads:
            res = max(sizes.avatar_res)
            row = {"threads": thr, **run_child("compiled", thr, args, res=res, sizes=sizes_json)}
            print(f"  compiled {thr} thr: {row.get('error', 'done')}", flush=True)
            new["compiled"].append(row)
    out = Path(args.out)
    data = merge_results(out / "results.json", new, env, settings, parts)
    data["total_s"], data["loadavg_end"] = time.perf_counter() - t_start, os.getloadavg()
    for line in summary(data):
        print(line)
    table = markdown(data)
    print(table)
    from paperzoo.core.io import write_json, write_text

    write_json(out / "results.json", data)
    write_text(out / "results.md", table + "\n")
    print(f"-> {out / 'results.md'}")
    return 0


def merge_results(path: Path, new: dict[str, list], env: dict, settings: dict, parts: list[str]) -> dict:
    """The results of this run's ``parts``, with the other parts kept from ``path`` (an earlier run's
    results.json) when it exists, so parts can be re-run one at a time; ``runs`` says which run made which."""
    old: dict = {}
    if path.is_file() and set(parts) != set(PARTS):
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"bench_render: error: {path}: cannot read the earlier results ({exc})"
                             ) from None
    data = {"env": env, "settings": settings, "runs": dict(old.get("runs", {}))}
    for part in PARTS:
        if part in new:
            data[part] = new[part]
            data["runs"][part] = {"date": env["date"], "settings": settings}
        else:
            data[part] = old.get(part, [])
    return data


if __name__ == "__main__":
    sys.exit(main())
