import gzip
import io
import logging
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from paperzoo.data import vision
from paperzoo.data.roots import DataNotFoundError
from paperzoo.data.vision import CIFAR10_CLASSES, CifarFormatError, IdxFormatError


# ----------------------------------------------------------------------------------- helpers
def _idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, arr.ndim)
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_idx_root(root: Path, folder: str, n_train: int = 6, n_test: int = 3) -> dict[str, np.ndarray]:
    """A data root holding tiny gzip IDX files in the MNIST layout; returns the arrays written."""
    rng = np.random.default_rng(0)
    out = {}
    (root / folder).mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (root / folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (root / folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
        out[prefix] = (images, labels)
    return out


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No $PAPERZOO_DATA, and a user cache inside tmp_path."""
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def _smooth(n: int = 2, c: int = 1, size: int = 16) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    base = 0.5 + 0.25 * torch.sin(2 * xx + 1) * torch.cos(3 * yy)
    return base.expand(n, c, size, size).clone()


# ----------------------------------------------------------------------------------- IDX reader
def test_read_idx_raw_and_gzip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "raw").write_bytes(_idx_bytes(arr))
    (tmp_path / "gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    for name in ("raw", "gz"):
        out = vision.read_idx(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
        np.testing.assert_array_equal(out, arr)


def test_read_idx_wider_types_come_back_native(tmp_path):
    arr = np.array([[-2, 300], [7, -32000]], dtype=np.int16)
    (tmp_path / "i16").write_bytes(_idx_bytes(arr, 0x0B))
    out = vision.read_idx(tmp_path / "i16")
    assert out.dtype == np.int16 and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-5], "truncated: header says shape (2, 3, 4)"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:9], "truncated header"),
    (lambda b: b"\x00\x01" + b[2:], "bad IDX magic number"),
    (lambda b: b[:2] + b"\x07" + b[3:], "bad IDX magic number"),
    (lambda b: b[:2], "at least the 4-byte IDX magic"),
])
def test_read_idx_malformed(tmp_path, damage, message):
    good = _idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(damage(good))
    with pytest.raises(IdxFormatError, match="bad-idx3-ubyte") as err:
        vision.read_idx(path)
    assert message in str(err.value)


def test_read_idx_truncated_gzip(tmp_path):
    data = gzip.compress(_idx_bytes(np.arange(1000, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IdxFormatError, match=r"cut\.gz: corrupt or truncated gzip"):
        vision.read_idx(path)


# ------------------------------------------------------------------------------ MNIST loaders
def test_load_mnist_from_a_data_root(isolated):
    written = _write_idx_root(isolated / "root", "mnist")
    x, y = vision.load_mnist(isolated / "root", split="test")
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_allclose(x[:, 0].numpy() * 255, written["t10k"][0], atol=1e-4)
    np.testing.assert_array_equal(y.numpy(), written["t10k"][1])
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_fashion_mnist_folder_and_errors(isolated):
    _write_idx_root(isolated / "root", "fashion-mnist", n_train=4)
    x, y = vision.load_fashion_mnist(isolated / "root")
    assert x.shape == (4, 1, 28, 28) and y.shape == (4,)
    with pytest.raises(ValueError, match="split"):
        vision.load_fashion_mnist(isolated / "root", split="valid")
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte.gz"):
        vision.load_mnist(isolated / "root")


def test_image_label_count_mismatch_names_both_files(isolated):
    _write_idx_root(isolated / "root", "mnist")
    labels = isolated / "root" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(_idx_bytes(np.zeros(5, dtype=np.uint8))))
    with pytest.raises(IdxFormatError, match="3 images but .*t10k-labels-idx1-ubyte.gz has 5 labels"):
        vision.load_mnist(isolated / "root", split="test")


def test_real_mnist(data_root):
    x, y = vision.load_mnist(data_root, split="train")
    assert x.shape == (60_000, 1, 28, 28) and y.shape == (60_000,)
    assert int(y[0]) == 5
    assert torch.bincount(y).tolist()[:2] == [5923, 6742]
    xt, yt = vision.load_mnist(data_root, split="test")
    assert xt.shape == (10_000, 1, 28, 28) and int(yt[0]) == 7


def test_real_fashion_mnist(data_root):
    x, y = vision.load_fashion_mnist(data_root, split="train")
    xt, yt = vision.load_fashion_mnist(data_root, split="test")
    assert len(x) == 60_000 and len(xt) == 10_000
    assert torch.bincount(y).tolist() == [6000] * 10 and torch.bincount(yt).tolist() == [1000] * 10
    mean, std = vision.channel_stats(x)
    assert abs(float(mean) - vision.FASHION_MNIST_MEAN[0]) < 1e-4
    assert abs(float(std) - vision.FASHION_MNIST_STD[0]) < 1e-4


# --------------------------------------------------------------------------------- rotations
def test_rotate_90_resampled_matches_rot90_in_the_interior():
    x = torch.rand(3, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    out = vision.rotate(x, torch.full((3,), 90.0))  # per-image angles: the grid_sample path
    ref = torch.rot90(x, 1, dims=(-2, -1))
    assert torch.allclose(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)
    assert torch.allclose(vision.rotate(x, torch.full((3,), -270.0)), ref, atol=1e-5)


def test_rotate_exact_paths_and_identity():
    x = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(1))
    assert torch.equal(vision.rotate(x, 0), x)
    assert torch.equal(vision.rotate(x, 360.0), x)
    assert torch.equal(vision.rotate(x, 90), torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.allclose(vision.rotate(x, torch.tensor([360.0, 0.0])), x, atol=1e-5)
    wide = torch.rand(1, 1, 6, 10)
    assert torch.equal(vision.rotate(wide, 180), torch.rot90(wide, 2, dims=(-2, -1)))
    # 90 degrees on a non-square image resamples: the centre 6x6 block is the turned block
    turned = vision.rotate(wide, 90)
    assert torch.allclose(turned[..., :, 2:8], torch.rot90(wide[..., :, 2:8], 1, dims=(-2, -1)), atol=1e-5)
    assert float(turned[..., :, :2].abs().max()) < 1e-5  # outside the frame: zeros


def test_rotate_direction_and_round_trip():
    x = torch.zeros(1, 1, 11, 11)
    x[0, 0, 5, 8] = 1.0  # right of the centre
    up = vision.rotate(x, torch.tensor([90.0]))
    assert up[0, 0].argmax().item() == 2 * 11 + 5  # counter-clockwise: now above the centre
    smooth = _smooth()
    back = vision.rotate(vision.rotate(smooth, 30.0), -30.0)
    assert torch.allclose(back[..., 5:11, 5:11], smooth[..., 5:11, 5:11], atol=0.02)
    with pytest.raises(ValueError, match="degrees must be a scalar or have shape"):
        vision.rotate(smooth, torch.tensor([1.0, 2.0, 3.0]))


def test_rotated_mnist_helper():
    x = (torch.rand(5, 1, 28, 28) * 255).to(torch.uint8)
    y = torch.arange(5)
    shifted = vision.rotated_mnist(x, y, angles=(0, 45, 90), batch_size=2)
    assert list(shifted) == [0, 45, 90]
    for images, labels in shifted.values():
        assert images.shape == (5, 1, 28, 28) and images.dtype == torch.float32 and labels is y
    assert torch.equal(shifted[0][0], x.float() / 255)
    assert vision.ROTATED_MNIST_ANGLES == tuple(range(0, 181, 15))


# ----------------------------------------------------------------------------- normalisation
def test_channel_stats_and_normalize_round_trip():
    x = torch.stack([torch.full((4, 4), 0.25), torch.tensor([[0.0, 1.0] * 2] * 4)])[None].repeat(3, 1, 1, 1)
    mean, std = vision.channel_stats(x, batch_size=2)
    assert torch.allclose(mean, torch.tensor([0.25, 0.5])) and torch.allclose(std, torch.tensor([0.0, 0.5]))
    u8 = (torch.rand(4, 3, 5, 5) * 255).to(torch.uint8)
    z = vision.normalize(u8, vision.CIFAR10_MEAN, vision.CIFAR10_STD)
    assert torch.allclose(vision.denormalize(z, vision.CIFAR10_MEAN, vision.CIFAR10_STD), u8 / 255, atol=1e-6)
    zm, zs = vision.channel_stats(vision.normalize(u8, *vision.channel_stats(u8)))
    assert torch.allclose(zm, torch.zeros(3), atol=1e-5) and torch.allclose(zs, torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="2 values for 3 channels"):
        vision.normalize(u8, (0.5, 0.5), (1.0, 1.0))
    with pytest.raises(ValueError, match="std must be positive"):
        vision.normalize(u8, 0.5, 0.0)


# --------------------------------------------------------------------- CIFAR-10: python batches
def _write_cifar_batches(folder: Path, per_batch: int = 30) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, size=per_batch)],
                 b"batch_label": name.encode()}
        # the originals are Python 2 pickles (protocol 2); a Python 3 re-pickle may use any protocol
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2 if name != "test_batch" else 4))


def test_cifar_python_batches(isolated):
    folder = isolated / "root" / "cifar-10-batches-py"
    _write_cifar_batches(folder)
    x, y = vision.load_cifar10(isolated / "root", split="train")
    assert x.shape == (150, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    raw = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")
    assert torch.equal(x[0], torch.from_numpy(raw[b"data"][0].reshape(3, 32, 32)))  # channel-major rows
    xt, yt = vision.load_cifar10(isolated / "root", split="test", limit_per_class=2)
    test = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    labels = np.array(test[b"labels"])
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)]))  # batch order kept
    assert yt.tolist() == labels[keep].tolist()
    assert torch.equal(xt, torch.from_numpy(test[b"data"][keep].reshape(-1, 3, 32, 32)))


def test_cifar_pickle_that_runs_code_is_refused(isolated):
    folder = isolated / "root" / "cifar-10-batches-py"
    _write_cifar_batches(folder, per_batch=2)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(CifarFormatError, match=r"test_batch: not a readable .*\w+\.system is not allowed"):
        vision.load_cifar10(isolated / "root", split="test", source="pickle")


def test_cifar_pickle_wrong_fields(isolated):
    folder = isolated / "root" / "cifar-10-batches-py"
    _write_cifar_batches(folder, per_batch=2)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(CifarFormatError, match=r"test_batch: field b'data' must be uint8 \(N, 3072\)"):
        vision.read_cifar_batch(folder / "test_batch")


# ---------------------------------------------------------------------- CIFAR-10: JPEG tarball
def _jpeg(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _write_cifar_tar(path: Path, per_class: dict[str, int], extra: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for split, count in per_class.items():
            for c, cls in reversed(list(enumerate(CIFAR10_CLASSES))):  # members out of order on purpose
                for n in reversed(range(count)):
                    data = _jpeg((20 * c, 10 * n, 200))
                    info = tarfile.TarInfo(f"{split}/{cls}/{n:04d}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        for name in extra:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))


def test_cifar_jpeg_tar_decode_order_and_cache(isolated, monkeypatch, caplog):
    tar_path = isolated / "root" / "cifar10" / "cifar10-jpeg.tar.gz"
    _write_cifar_tar(tar_path, {"train": 3, "test": 2})
    x, y = vision.load_cifar10(isolated / "root", split="train", source="jpeg")
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [c for c in range(10) for _ in range(3)]
    # pixel (R, G, B) = (20 class, 10 n, 200) up to JPEG error
    expected = torch.tensor([[20 * c, 10 * n, 200] for c in range(10) for n in range(3)], dtype=torch.float32)
    assert (x.float().mean(dim=(2, 3)) - expected).abs().max() < 4
    cache_dir = isolated / "xdg" / "paperzoo" / "data" / "cifar10" / "decoded"
    st = tar_path.stat()
    cached = cache_dir / f"cifar10-jpeg-train-all-{st.st_size}-{st.st_mtime_ns}.npz"
    assert cached.is_file() and not list(cache_dir.glob("*.tmp"))

    def no_decoding(*args):
        raise AssertionError("decoded although the cache holds the split")

    monkeypatch.setattr(vision, "_decode_cifar_tar", no_decoding)
    x2, y2 = vision.load_cifar10(isolated / "root", split="train", source="jpeg")
    assert torch.equal(x, x2) and torch.equal(y, y2)
    # a limited request is served from the full split's cache
    x3, y3 = vision.load_cifar10(isolated / "root", split="train", source="jpeg", limit_per_class=1)
    assert torch.equal(x3, x[::3]) and y3.tolist() == list(range(10))
    monkeypatch.undo()
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "xdg"))

    # a corrupt cache is ignored (with a warning) and rebuilt
    cached.write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING, logger="paperzoo.data.vision"):
        x4, _ = vision.load_cifar10(isolated / "root", split="train", source="jpeg")
    assert torch.equal(x4, x) and "ignoring unreadable CIFAR-10 cache" in caplog.text
    with np.load(cached) as npz:
        assert npz["images"].shape == (30, 3, 32, 32)

    # a changed tarball misses the cache; the stale file is removed once the new one is written
    os.utime(tar_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    vision.load_cifar10(isolated / "root", split="train", source="jpeg")
    assert not cached.exists() and len(list(cache_dir.glob("cifar10-jpeg-train-all-*.npz"))) == 1


def test_cifar_jpeg_without_cache_and_limit(isolated):
    _write_cifar_tar(isolated / "root" / "cifar10" / "cifar10-jpeg.tar.gz", {"test": 3})
    x, y = vision.load_cifar10(isolated / "root", split="test", limit_per_class=2, source="jpeg", cache=False)
    assert x.shape == (20, 3, 32, 32) and torch.bincount(y).tolist() == [2] * 10
    assert not (isolated / "xdg").exists()
    with pytest.raises(CifarFormatError, match="no train/<class>/<n>.jpg members"):
        vision.load_cifar10(isolated / "root", split="train", source="jpeg", cache=False)


def test_cifar_jpeg_bad_member_and_truncated_tar(isolated):
    tar_path = isolated / "root" / "cifar10" / "cifar10-jpeg.tar.gz"
    _write_cifar_tar(tar_path, {"test": 1}, extra=("test/unicorn/0000.jpg",))
    with pytest.raises(CifarFormatError, match="unexpected member 'test/unicorn/0000.jpg'"):
        vision.load_cifar10(isolated / "root", split="test", source="jpeg", cache=False)
    _write_cifar_tar(tar_path, {"test": 1}, extra=("test/cat/0005.jpg",))  # 3 bytes: not a JPEG
    with pytest.raises(CifarFormatError, match="member test/cat/0005.jpg is not a readable JPEG"):
        vision.load_cifar10(isolated / "root", split="test", source="jpeg", cache=False)
    data = tar_path.read_bytes()
    tar_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CifarFormatError, match="corrupt or truncated tar.gz"):
        vision.load_cifar10(isolated / "root", split="test", source="jpeg", cache=False)


def test_cifar_missing_everywhere_lists_both_formats(isolated):
    with pytest.raises(DataNotFoundError) as err:
        vision.load_cifar10(isolated / "nowhere")
    assert "cifar10-jpeg.tar.gz" in str(err.value) and "data_batch_1" in str(err.value)


def _real_cifar_tar(data_root: Path) -> None:
    if not (data_root / "cifar10" / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip(f"{data_root / 'cifar10' / 'cifar10-jpeg.tar.gz'} missing")


def test_real_cifar10_test_subset_and_cache(data_root, monkeypatch, tmp_path):
    _real_cifar_tar(data_root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    x, y = vision.load_cifar10(data_root, split="test", limit_per_class=20, source="jpeg")
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [20] * 10 and y.tolist() == sorted(y.tolist())
    assert 0.3 < float(x.float().mean()) / 255 < 0.6
    cache_dir = tmp_path / "paperzoo" / "data" / "cifar10" / "decoded"
    files = list(cache_dir.glob("cifar10-jpeg-test-first20-*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(vision, "_decode_cifar_tar", lambda *a: pytest.fail("cache not used"))
    x2, y2 = vision.load_cifar10(data_root, split="test", limit_per_class=20, source="jpeg")
    assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.slow
def test_real_cifar10_full_test_split(data_root, monkeypatch, tmp_path):
    _real_cifar_tar(data_root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    x, y = vision.load_cifar10(data_root, split="test", source="jpeg")
    assert x.shape == (10_000, 3, 32, 32)
    assert torch.bincount(y).tolist() == [1000] * 10


def test_random_crop_flip_is_identity_without_padding_or_flips_and_keeps_content_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert torch.equal(vision.random_crop_flip(x, g, pad=0, flip=False), x)
    out = vision.random_crop_flip(x, g, pad=0, flip=True)
    for a, b in zip(out, x):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
    crops = vision.random_crop_flip(x, g, pad=2, flip=False)
    assert crops.shape == x.shape


def test_per_class_indices_takes_a_window_of_each_class_in_file_order():
    y = np.array([2, 0, 2, 1, 0, 2, 0, 1])
    assert vision.per_class_indices(y, 1).tolist() == [0, 1, 3]  # the first of each class
    assert vision.per_class_indices(y, 2, start=1).tolist() == [2, 4, 5, 6, 7]  # the 2nd and 3rd of each
    assert vision.per_class_indices(y, None).tolist() == list(range(8))
    t = vision.per_class_indices(torch.from_numpy(y), 1, start=2)
    assert isinstance(t, torch.Tensor) and t.tolist() == [5, 6]
