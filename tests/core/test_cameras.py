"""Shared pinhole cameras and image metrics."""
import math

import pytest
import torch

from paperzoo.core.cameras import Camera, look_at, orbit_cameras, pixel_centers
from paperzoo.core.metrics.image import psnr, ssim, ssim_loss


def test_look_at_projects_the_target_to_the_centre_and_up_to_up():
    cam = look_at((1.0, 2.0, 5.0), (0.0, 0.5, 0.0), width=64, height=48, fov_deg=40, dtype=torch.float64)
    uv, z = cam.project(torch.tensor([[0.0, 0.5, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(uv[0], torch.tensor([32.0, 24.0], dtype=torch.float64))
    assert z[0] == pytest.approx(math.sqrt(1 + 1.5 ** 2 + 25))
    above, _ = cam.project(torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
    assert above[0, 1] < 24.0                                         # world up is image up (smaller row)
    torch.testing.assert_close(cam.center, torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64))
    R = cam.R
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64))
    assert torch.det(R) == pytest.approx(1.0)
    # vertical field of view: the top edge of the image is fov/2 above the axis
    assert 0.5 * cam.height / cam.fy == pytest.approx(math.tan(math.radians(20)))


def test_rays_pass_through_their_pixel_centres():
    cam = look_at((0.3, -0.2, 3.0), (0, 0, 0), width=7, height=5, fov_deg=50, dtype=torch.float64)
    origin, d = cam.rays(dtype=torch.float64)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(5, 7, dtype=torch.float64))
    uv, z = cam.project(origin + 2.5 * d)
    torch.testing.assert_close(uv, pixel_centers(7, 5, dtype=torch.float64))
    assert torch.all(z > 0)


def test_orbit_dict_roundtrip_and_scaling():
    cams = orbit_cameras(3, radius=2.0, azimuth_range_deg=(-60, 60), endpoint=True, width=32, height=32)
    assert [round(float(c.center[0]), 4) for c in cams] == [round(-2 * math.sin(math.radians(60)), 4), 0.0,
                                                            round(2 * math.sin(math.radians(60)), 4)]
    back = Camera.from_dict(cams[0].to_dict())
    torch.testing.assert_close(back.R, cams[0].R)
    half = cams[0].scaled(0.5)
    assert (half.width, half.fx, half.cx) == (16, cams[0].fx / 2, cams[0].cx / 2)
    with pytest.raises(KeyError, match="lacks field"):
        Camera.from_dict({"R": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]})
    with pytest.raises(ValueError, match="parallel"):
        look_at((0, 5, 0), (0, 0, 0), up=(0, 1, 0))


def test_image_metrics_known_values():
    a = torch.zeros(1, 3, 16, 16)
    b = a + 0.1
    assert float(psnr(b, a)) == pytest.approx(20.0, abs=1e-4)        # MSE 0.01 -> 20 dB
    hwc = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0))
    assert float(ssim(hwc, hwc)) == pytest.approx(1.0, abs=1e-6)       # channel-last input accepted
    assert float(ssim_loss(hwc[None].permute(0, 3, 1, 2), hwc[None].permute(0, 3, 1, 2))) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
