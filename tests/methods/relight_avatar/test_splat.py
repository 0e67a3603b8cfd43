"""The tiled splatting renderer against the brute-force reference, known values and gradients."""
import math

import pytest
import torch

from paperzoo.core.cameras import look_at
from paperzoo.methods.relight_avatar import splat
from paperzoo.methods.relight_avatar.splat import project_gaussians, quat_to_rotmat, render, render_reference


def scene(n=60, dtype=torch.float64, seed=0, opacity=(0.05, 0.95), size=(0.02, 0.17)):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([1.5, 1.2, 1.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * (size[1] - size[0]) + size[0]
    op = torch.rand(n, generator=g, dtype=dtype) * (opacity[1] - opacity[0]) + opacity[0]
    col = torch.rand(n, 3, generator=g, dtype=dtype)
    return means, quats, scales, op, col


def camera(dtype=torch.float64, w=40, h=33):
    return look_at((0.3, -0.2, 4.0), (0, 0, 0), width=w, height=h, fov_deg=40, dtype=dtype)


@pytest.mark.parametrize("tile_size,slab,max_elements", [(16, 32, 1 << 22), (8, 4, 1 << 22), (8, 3, 300)])
def test_forward_equals_brute_force(tile_size, slab, max_elements):
    s = scene()
    cam = camera()
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    ours = render(*s, cam, background=bg, tile_size=tile_size, slab=slab, max_elements=max_elements)
    ref = render_reference(*s, cam, background=bg)
    assert ours.n_visible == 60 and ours.n_pairs > 0
    torch.testing.assert_close(ours.image, ref, atol=1e-10, rtol=0)
    # the accumulated opacity is consistent with the background term: image = colour + (1 - alpha) * background
    plain = render(*s, cam, tile_size=tile_size, slab=slab, max_elements=max_elements)
    torch.testing.assert_close(ours.image - plain.image, (1 - plain.alpha)[..., None] * bg, atol=1e-12, rtol=0)
    assert plain.alpha.max() > 0.5 and plain.alpha.min() < 0.01


def test_float32_within_1e5_of_float64_reference():
    s64 = scene()
    s32 = [x.float() for x in s64]
    ours = render(*s32, camera(torch.float32))
    ref = render_reference(*s64, camera())
    assert (ours.image.double() - ref).abs().max() < 1e-5


def test_early_termination_is_applied_and_matches():
    # a dense stack of nearly opaque Gaussians: most pixels terminate early
    s = scene(n=120, opacity=(0.9, 0.99), size=(0.15, 0.3), seed=3)
    cam = camera()
    ours = render(*s, cam, tile_size=8, slab=8)
    ref = render_reference(*s, cam)
    torch.testing.assert_close(ours.image, ref, atol=1e-10, rtol=0)
    # the rule matters on this scene: compositing without it gives a different image
    old = splat.T_MIN
    try:
        splat.T_MIN = 0.0
        no_stop = render(*s, cam, tile_size=8, slab=8)
    finally:
        splat.T_MIN = old
    assert (no_stop.image - ours.image).abs().max() > 1e-6
    assert (1 - ours.alpha).min() >= splat.T_MIN * (1 - 1e-9)


def test_gradients_equal_brute_force():
    s = [x.clone().requires_grad_(True) for x in scene(n=25, seed=1)]
    cam = camera()
    w = torch.rand(cam.height, cam.width, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (render(*s, cam, tile_size=8, slab=4).image * w).sum().backward()
    ours = [x.grad.clone() for x in s]
    for x in s:
        x.grad = None
    (render_reference(*s, cam) * w).sum().backward()
    for name, a, x in zip(("means", "quats", "scales", "opacities", "colors"), ours, s):
        torch.testing.assert_close(a, x.grad, atol=1e-9, rtol=1e-7, msg=name)
        assert a.abs().sum() > 0, name


def test_gradcheck_float64():
    s = [x.clone().requires_grad_(True) for x in scene(n=3, seed=2, size=(0.2, 0.35))]
    cam = camera(w=9, h=8)

    def f(*args):
        return render(*args, cam, tile_size=8, slab=2).image

    assert torch.autograd.gradcheck(f, s, eps=1e-6, atol=1e-5)


def test_isotropic_gaussian_known_value():
    # one isotropic Gaussian straight ahead: 2D variance (f s / z)^2 + 0.3, alpha at offset d known in closed form
    cam = look_at((0, 0, 5.0), (0, 0, 0), width=33, height=33, fov_deg=30, dtype=torch.float64)
    s, o = 0.05, 0.8
    out = render(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
                 torch.full((1, 3), s, dtype=torch.float64), torch.tensor([o], dtype=torch.float64),
                 torch.ones(1, 1, dtype=torch.float64), cam)
    var = (cam.fx * s / 5.0) ** 2 + 0.3
    # pixel (16, 16) has centre 16.5 = the projected mean; (17, 16) is 1 px to the right
    assert out.image[16, 16, 0].item() == pytest.approx(o, rel=1e-12)
    assert out.image[16, 17, 0].item() == pytest.approx(o * math.exp(-0.5 / var), rel=1e-12)
    # 3 px away alpha would be ~1e-3 < 1/255: skipped, exactly as the reference kernel does
    assert o * math.exp(-0.5 * 9 / var) < splat.ALPHA_MIN and out.image[16, 19, 0].item() == 0.0
    assert out.depth[16, 16].item() == pytest.approx(5.0, rel=1e-12)


def test_depth_order_and_culling():
    cam = look_at((0, 0, 5.0), (0, 0, 0), width=16, height=16, fov_deg=30, dtype=torch.float64)
    means = torch.tensor([[0, 0, -1.0], [0, 0, 1.0], [0, 0, 6.0]], dtype=torch.float64)  # far, near, behind camera
    quats = torch.tensor([[1.0, 0, 0, 0]] * 3, dtype=torch.float64)
    scales = torch.full((3, 3), 0.3, dtype=torch.float64)
    op = torch.tensor([0.9, 0.5, 0.9], dtype=torch.float64)
    col = torch.eye(3, dtype=torch.float64)
    out = render(means, quats, scales, op, col, cam)
    c = out.image[8, 8]
    alpha_near = min(0.99, 0.5 * math.exp(-0.5 * ((0.5) ** 2 + 0.5 ** 2) / ((cam.fx * 0.3 / 4) ** 2 + 0.3)))
    assert c[1].item() == pytest.approx(alpha_near, rel=1e-9)       # the near one is blended first
    assert c[0].item() < 0.9 * (1 - alpha_near) + 1e-12             # the far one is attenuated by it
    assert c[2].item() == 0.0                                       # behind the camera: culled
    assert out.n_visible == 2


def test_quaternion_rotation_and_projection_valid_flags():
    q = torch.tensor([[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]], dtype=torch.float64)  # 90 deg about z
    R = quat_to_rotmat(q * 3.0)  # unnormalised input is fine
    torch.testing.assert_close(R[0] @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1.0, 0], dtype=torch.float64))
    cam = camera()
    means = torch.tensor([[0, 0, 0], [50.0, 0, 0], [0, 0, 10.0]], dtype=torch.float64)
    p = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]] * 3, dtype=torch.float64),
                          torch.full((3, 3), 0.05, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64),
                          cam)
    assert p.valid.tolist() == [True, False, False]   # off screen; behind the camera


def test_bad_shapes_raise_one_clear_error():
    s = list(scene(n=4))
    s[2] = s[2][:, :2]
    with pytest.raises(ValueError, match="scales must have shape"):
        render(*s, camera())


def test_render_batch_equals_single_renders_with_gradients():
    sets = [scene(n=30, seed=k) for k in range(3)]
    cams = [camera(), look_at((-0.5, 0.3, 3.5), (0, 0, 0), width=40, height=33, fov_deg=40, dtype=torch.float64),
            camera()]
    stacked = [torch.stack([s[i] for s in sets]).requires_grad_(True) for i in range(5)]
    out = splat.render_batch(*stacked, cams, tile_size=8, slab=4)
    w = torch.rand(out.image.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (out.image * w).sum().backward()
    for k in range(3):
        single = [stacked[i].detach()[k].clone().requires_grad_(True) for i in range(5)]
        ref = render(*single, cams[k], tile_size=8, slab=4)
        torch.testing.assert_close(out.image[k], ref.image, atol=1e-12, rtol=0)
        torch.testing.assert_close(out.alpha[k], ref.alpha, atol=1e-12, rtol=0)
        (ref.image * w[k]).sum().backward()
        for i in range(5):
            torch.testing.assert_close(stacked[i].grad[k], single[i].grad, atol=1e-10, rtol=1e-8)
    with pytest.raises(ValueError, match="share one image size"):
        splat.render_batch(*stacked, [camera(), camera(w=20, h=20), camera()])
