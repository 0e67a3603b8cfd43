import colorsys
import io
import itertools

import numpy as np
import pytest
import torch

from paperzoo.data import corruptions as C

NAMES = list(C.CORRUPTIONS)
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "fog"}


def natural_images(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Colour images with a natural-image (1/f amplitude) spectrum, in [0.02, 0.98]."""
    g = torch.Generator().manual_seed(seed)
    spectrum = torch.view_as_complex(torch.randn(n, 3, size, size, 2, generator=g))
    f = torch.fft.fftfreq(size)
    amplitude = 1.0 / torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).clamp_min(1.0 / size)
    img = torch.fft.ifft2(spectrum * amplitude).real
    img = (img - img.mean(dim=(2, 3), keepdim=True)) / img.std(dim=(1, 2, 3), keepdim=True)
    return (0.5 + 0.15 * img).clamp(0.02, 0.98)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return natural_images()


def distortion(images: torch.Tensor, name: str) -> list[float]:
    return [float((C.corrupt(images, name, s, seed=1) - images).abs().mean()) for s in C.SEVERITIES]


def test_registry_covers_the_required_corruptions():
    required = {"gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "gaussian_blur", "contrast",
                "brightness", "saturate", "pixelate", "jpeg_compression", "fog"}
    assert required <= set(C.CORRUPTIONS)
    assert set(C.CORRUPTIONS) <= set(C.CIFAR10C_BENCHMARK) | set(C.CIFAR10C_EXTRA)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "saturate"])
def test_distortion_grows_with_severity(images, name):
    d = distortion(images, name)
    assert all(a < b for a, b in itertools.pairwise(d)), f"{name}: {d}"
    assert d[0] > 0


def test_saturate_desaturates_then_oversaturates(images):
    """The reference table is (0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2): not monotone by design."""
    sat = [float(C.rgb_to_hsv(C.corrupt(images, "saturate", s))[:, 1].mean()) for s in C.SEVERITIES]
    clean = float(C.rgb_to_hsv(images)[:, 1].mean())
    assert sat[1] < sat[0] < clean < sat[2] < sat[3] < sat[4]
    d = distortion(images, "saturate")
    assert d[0] < d[1] and d[2] < d[3] < d[4]


@pytest.mark.parametrize("name", NAMES)
def test_range_shape_dtype_and_seed(images, name):
    small = images[:3]
    out = C.corrupt(small, name, 3, seed=7)
    assert out.shape == small.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, C.corrupt(small, name, 3, seed=7))
    assert torch.equal(out, C.CORRUPTIONS[name](small, severity=3, seed=torch.Generator().manual_seed(7)))
    if name in RANDOM:
        assert not torch.equal(out, C.corrupt(small, name, 3, seed=8))
    as_double = C.corrupt(small.double(), name, 3, seed=7)
    assert as_double.dtype == torch.float64 and torch.allclose(as_double.float(), out, atol=5e-3)
    u8 = (small * 255).round().to(torch.uint8)
    from_u8 = C.corrupt(u8, name, 3, seed=7)
    assert from_u8.dtype == torch.float32 and from_u8.shape == small.shape
    assert torch.equal(small, images[:3]), "the input must not be modified"


def test_contrast_and_brightness_known_values():
    grey = torch.full((2, 3, 8, 8), 0.5)
    assert torch.allclose(C.contrast(grey, 5), grey)
    for s, shift in zip(C.SEVERITIES, (0.05, 0.1, 0.15, 0.2, 0.3), strict=True):
        assert torch.allclose(C.brightness(grey, s), grey + shift, atol=1e-6)
    two = torch.full((1, 3, 4, 4), 0.2)
    two[..., 2:] = 0.8  # mean 0.5 per channel
    out = C.contrast(two, 1)  # factor 0.75
    assert torch.allclose(out[..., :2], torch.tensor(0.275))
    assert torch.allclose(out[..., 2:], torch.tensor(0.725))
    # brightness keeps hue and saturation: a colour scales by (V + c) / V
    colour = torch.tensor([0.2, 0.4, 0.6]).reshape(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert torch.allclose(C.brightness(colour, 5), colour * 0.9 / 0.6, atol=1e-6)
    assert torch.allclose(C.brightness(torch.ones(1, 3, 2, 2), 5), torch.ones(1, 3, 2, 2))  # already at V = 1


def test_blurs_keep_constant_images():
    flat = torch.full((2, 3, 16, 16), 0.3)
    for name in ("gaussian_blur", "defocus_blur", "zoom_blur", "pixelate"):
        for s in (1, 5):
            assert torch.allclose(C.corrupt(flat, name, s), flat, atol=1e-6), (name, s)


def test_defocus_kernel():
    for radius, alias in C.DEFOCUS_BLUR:
        k = C.defocus_kernel(radius, alias).float()
        assert abs(float(k.sum()) - 1) < 1e-12 and torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
        assert k.shape[0] % 2 == 1 and k.shape[0] <= 7
    box = C.defocus_kernel(1.5, 0.1).float()  # radius 1.5 covers the 3x3 block; sigma 0.1 barely smooths it
    assert torch.allclose(box[1:4, 1:4], torch.full((3, 3), 1 / 9), atol=1e-6)


def test_pixelate_matches_pillow_box_resize(images):
    from PIL import Image

    u8 = (images[:4] * 255).round().to(torch.uint8)
    for s in C.SEVERITIES:
        f = C.PIXELATE_FACTOR[s - 1]
        ref = []
        for img in u8.permute(0, 2, 3, 1).numpy():
            small = Image.fromarray(img).resize((int(32 * f), int(32 * f)), Image.BOX)
            ref.append(np.asarray(small.resize((32, 32), Image.BOX)))
        ref = torch.from_numpy(np.stack(ref)).permute(0, 3, 1, 2).float() / 255
        # Pillow rounds the shrunken image to uint8; we do not: at most one grey level apart
        assert float((C.pixelate(u8, s) - ref).abs().max()) <= 1 / 255 + 1e-6


def test_jpeg_matches_pillow_round_trip(images):
    from PIL import Image

    u8 = (images[:2] * 255).round().to(torch.uint8)
    out = C.jpeg_compression(u8, 5)
    buf = io.BytesIO()
    Image.fromarray(u8[1].permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=40)
    ref = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float() / 255
    assert torch.equal(out[1], ref)
    grey = C.jpeg_compression(u8[:, :1], 2)
    assert grey.shape == (2, 1, 32, 32)


def test_hsv_conversion():
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    hsv = C.rgb_to_hsv(x)
    assert torch.allclose(C.hsv_to_rgb(hsv), x, atol=1e-6)
    for r, g, b in [(0.2, 0.4, 0.6), (0.9, 0.1, 0.1), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0), (0.3, 0.8, 0.3)]:
        ours = C.rgb_to_hsv(torch.tensor([r, g, b]).reshape(1, 3, 1, 1)).flatten().tolist()
        assert np.allclose(ours, colorsys.rgb_to_hsv(r, g, b), atol=1e-6)


def test_plasma_fractal():
    maps = C.plasma_fractal(3, 16, 2.0, torch.Generator().manual_seed(0))
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float64
    assert maps.amin(dim=(1, 2)).tolist() == [0.0] * 3 and maps.amax(dim=(1, 2)).tolist() == [1.0] * 3
    assert not torch.equal(maps[0], maps[1])
    with pytest.raises(ValueError, match="power of two"):
        C.plasma_fractal(1, 24, 2.0)


def test_odd_sizes_and_grey_images():
    x = natural_images(2, size=20)[:, :1].contiguous()
    for name in NAMES:
        if name in ("brightness", "saturate"):
            with pytest.raises(ValueError, match="C = 3"):
                C.corrupt(x, name, 1)
            continue
        out = C.corrupt(x, name, 4, seed=0)
        assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(KeyError, match="unknown corruption 'rain'.*known: gaussian_noise"):
        C.corrupt(x, "rain", 1)
    with pytest.raises(KeyError, match="in the benchmark but not implemented"):
        C.corrupt(x, "glass_blur", 1)
    for bad in (0, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match="severity must be an integer in 1..5"):
            C.corrupt(x, "contrast", bad)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        C.contrast(x * 2, 1)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        C.contrast(torch.full((1, 3, 4, 4), float("nan")), 1)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        C.gaussian_noise(x[0], 1)
    with pytest.raises(TypeError, match="uint8 or floating"):
        C.contrast(x.long(), 1)
    with pytest.raises(TypeError, match="seed must be"):
        C.gaussian_noise(x, 1, seed=1.5)
