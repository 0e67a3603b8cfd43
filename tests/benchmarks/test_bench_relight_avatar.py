"""Smoke test of benchmarks/relight_avatar/bench_render.py (its tiny mode) and checks that its parts compute
what they say: the comparison scene's sort orders, the floor's compositing, the avatar hook. The litesplat
and numba checks import Keras / JIT-compile (~10 s each) and are marked slow:
``pytest -m slow tests/benchmarks``."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "relight_avatar"))
import bench_render as bench

HAS_LITESPLAT = all(importlib.util.find_spec(m) is not None for m in ("litesplat", "keras"))
HAS_NUMBA = importlib.util.find_spec("numba") is not None


def test_tiny_run_writes_every_part_and_the_floor_verdict(tmp_path, capsys):
    rc = bench.main(["--tiny", "--no-peer", "--threads", "1", "--repeats", "1", "--max-wait", "0", "--scene",
                     "sphere", "--out", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ours is" in printed and "of the floor" in printed and "fps forward" in printed
    data = json.loads((tmp_path / "results.json").read_text())
    (ours,) = data["compare"]
    assert "error" not in ours, ours
    assert ours["variant"] == "ours" and (ours["n"], ours["size"]) == bench.TINY.compare[0]
    assert ours["pairs"] > 0 and ours["forward"]["median_s"] > 0
    assert ours["forward_backward"]["median_cpu_s"] > 0
    (fps,) = data["fps"]
    assert "error" not in fps, fps
    n = bench.n_gaussians(bench.TINY.avatar_res[0])
    assert fps["n"] == n and fps["source"] == "sphere"
    assert fps["param_bytes"] == n * 14 * 4  # means 3 + quats 4 + scales 3 + opacity 1 + RGB 3 floats
    assert fps["pairs"] > 0 and fps["forward_backward"]["peak_delta_mib"] >= 0
    for key in ("forward", "forward_backward"):
        assert len(fps["floor"][key]) == 2
        pairs = bench.TINY.floor_tiles * bench.TINY.slab * bench.TINY.tile ** 2
        assert all(f["pairs"] == pairs and f["pairs_per_s"] > 0 for f in fps["floor"][key])
    md = (tmp_path / "results.md").read_text()
    assert md.strip() == bench.markdown(data) and "| 12 | 86 | sphere | 1 |" in md
    # a later run of one part keeps the other part's rows
    merged = bench.merge_results(tmp_path / "results.json", {"compiled": []}, data["env"], data["settings"],
                                 ["compiled"])
    assert merged["fps"] == data["fps"] and merged["compare"] == data["compare"]


def test_compare_scene_sorts_by_depth_and_by_distance_alike():
    scene = bench.compare_scene(64, 32)
    assert torch.equal(scene.camera.R, torch.eye(3)) and torch.equal(scene.camera.t, torch.zeros(3))
    depth = torch.argsort(scene.means[:, 2], stable=True)
    dist = torch.argsort(scene.means.norm(dim=1), stable=True)
    assert torch.equal(depth, dist)
    assert torch.all(scene.quats[:, 1:] == 0) and torch.all(scene.scales[:, 2] < 1e-2 * scene.scales[:, 0])
    rotated = bench.compare_scene(64, 32, rotated=True)
    assert torch.equal(rotated.means, scene.means) and not torch.all(rotated.quats[:, 1:] == 0)


def test_dense_uncut_sort_step_is_zero_on_the_compare_scene_and_ours_equals_the_reference():
    torch.set_num_threads(1)
    scene = bench.compare_scene(24, 32)
    lite_like = bench.dense_uncut(scene, order="distance")
    a = bench.agreement(scene, lite_like)
    assert a["sort"]["max_abs"] == 0 and a["convention"]["max_abs"] == 0
    assert a["ours_vs_reference"]["max_abs"] < 1e-5
    assert a["dilation"]["max_abs"] > 1e-3  # the 0.3 px^2 low-pass is visible at these sizes
    assert a["ours_vs_litesplat"]["max_abs"] <= a["dilation"]["max_abs"] + a["cuts"]["max_abs"] + 1e-6


def test_floor_composite_is_front_to_back_compositing():
    x = bench.floor_inputs(2, 5, 4, channels=2)
    px, py, mx, my, a, b, c, o, col = x
    got = bench.floor_composite(*x)
    want = torch.zeros(2, 16, 2)
    for t in range(2):
        for p in range(16):
            T = 1.0
            for k in range(5):
                dx, dy = px[t, 0, p] - mx[t, k, 0], py[t, 0, p] - my[t, k, 0]
                power = -0.5 * (a[t, k, 0] * dx * dx + c[t, k, 0] * dy * dy) - b[t, k, 0] * dx * dy
                alpha = min(0.99, float(o[t, k, 0] * torch.exp(power)))
                want[t, p] += alpha * T * col[t, k]
                T *= 1 - alpha
    torch.testing.assert_close(got, want)
    assert got.abs().sum() > 0


def test_tangent_quats_turn_z_onto_the_normal():
    from paperzoo.methods.relight_avatar.splat import quat_to_rotmat

    n = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    n[0] = torch.tensor([0.0, 0.0, -1.0])
    n[1] = torch.tensor([0.0, 0.0, 1.0])
    n = n / n.norm(dim=1, keepdim=True)
    torch.testing.assert_close(quat_to_rotmat(bench._tangent_quats(n))[:, :, 2], n, atol=1e-6, rtol=0)


def test_avatar_hook_contract(monkeypatch):
    fake = types.ModuleType("paperzoo.methods.relight_avatar.model")
    monkeypatch.setitem(sys.modules, "paperzoo.methods.relight_avatar.model", fake)
    with pytest.raises(RuntimeError, match="no bench_frame"):
        bench.load_avatar_hook()
    from paperzoo.methods.relight_avatar.splat import render

    calls = []

    def bench_frame(resolution, image_size):
        scene = bench.sphere_scene(bench.n_gaussians(resolution), image_size)
        params = [p.clone().requires_grad_() for p in scene.params()]
        calls.append((resolution, image_size))
        return params, lambda: render(*params, scene.camera)

    fake.bench_frame = bench_frame
    sizes = json.dumps({**bench.asdict(bench.TINY), "floor_tiles": 1})
    args = argparse.Namespace(sizes=sizes, res=8, avatar=True, repeats=1, scene="sphere", threads=1)
    row = bench.child_fps(args)
    assert calls == [(8, bench.TINY.image)]
    assert row["source"] == "avatar-model" and row["n"] == bench.n_gaussians(8) and row["pairs"] > 0
    assert row["param_bytes"] == bench.n_gaussians(8) * 14 * 4


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(SystemExit, match="--compare: '64' is not NxSIZE"):
        bench.main(["--compare", "64", "--out", "/nonexistent"])
    with pytest.raises(SystemExit, match="--parts: unknown nope"):
        bench.main(["--parts", "fps,nope", "--out", "/nonexistent"])
    assert bench.n_gaussians(64) == 2458 and bench.n_gaussians(128) == 9830


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LITESPLAT, reason="pip install -e '.[bench-avatar]'")
def test_litesplat_converted_renders_our_dense_uncut_model_with_gradients():
    torch.set_num_threads(1)
    scene = bench.compare_scene(24, 32)
    lite = bench.Litesplat(scene)
    image = lite.render()
    torch.testing.assert_close(image, bench.dense_uncut(scene, order="distance"), atol=1e-5, rtol=0)
    image.sum().backward()
    positions, rotations, scales, opacities, colors = lite.params()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (positions, scales, opacities, colors))
    # litesplat multiplies the camera and Gaussian rotations elementwise: with R = I only the rotation's
    # diagonal counts, which is flat at the identity quaternion, so the rotation gradient is exactly zero
    assert rotations.grad is not None and rotations.grad.abs().max() == 0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NUMBA, reason="pip install numba")
def test_numba_compositor_equals_ours():
    from paperzoo.methods.relight_avatar.splat import render

    torch.set_num_threads(1)
    scene = bench.sphere_scene(400, 48)
    image, pairs = bench.numba_composite(scene)
    with torch.no_grad():
        ours = render(*scene.params(), scene.camera)
    torch.testing.assert_close(image, ours.image, atol=1e-5, rtol=0)
    assert 0 < pairs <= ours.n_pairs
