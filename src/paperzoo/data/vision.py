"""Image classification data for distribution-shift experiments: MNIST, Fashion-MNIST, CIFAR-10.

Everything here reads the canonical on-disk formats, offline, through the data roots of
:mod:`paperzoo.data.roots` (``--data-root``, ``$PAPERZOO_DATA``, the user cache, system folders).

Formats
-------
IDX (MNIST, Fashion-MNIST)
    ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``. A 4-byte magic number ``00 00 TT DD`` (``TT``
    the element type, ``DD`` the number of dimensions), then ``DD`` big-endian uint32 sizes, then the
    elements in C order, big-endian. :func:`read_idx` reads gzip-compressed or raw files.
CIFAR-10, JPEG tarball (the shared data root)
    ``cifar10/cifar10-jpeg.tar.gz`` holding ``{train,test}/<class>/<n>.jpg``. It is read straight from
    the tar stream (nothing is extracted to disk); the JPEGs are lossy re-encodings, so pixels are
    close to, but not bit-exact with, the canonical pickles. Decoding 60,000 JPEGs takes a while, so
    the decoded arrays are cached (see :func:`load_cifar10`).
CIFAR-10, canonical python batches
    ``cifar-10-batches-py/{data_batch_1..5,test_batch}`` from ``cifar-10-python.tar.gz``: Python
    pickles of ``{b"data": uint8 (10000, 3072), b"labels": [int]}``. Pickle can run code, so these
    files are read with an unpickler that accepts only the handful of numpy globals that this
    format needs and refuses everything else.

Tensors
-------
Loaders return ``(images, labels)``: images ``(N, C, H, W)`` (float32 in ``[0, 1]`` for the MNISTs,
uint8 for CIFAR-10, whose consumers usually normalise or corrupt it first) and int64 labels.
"""
from __future__ import annotations

import gzip
import io
import logging
import math
import os
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from paperzoo.core.io import atomic_path
from paperzoo.core.progress import progress
from paperzoo.data import catalog
from paperzoo.data.roots import DataNotFoundError, locate, user_cache

log = logging.getLogger(__name__)

SPLITS = ("train", "test")

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")

# Per-channel statistics of the TRAIN splits in [0, 1] units (population std over all pixels).
# MNIST and Fashion-MNIST are measured on the shared data root (bit-exact IDX files). The CIFAR-10
# values are those of the canonical pickles; the JPEG tarball's train split measures mean 0.4913 0.4821
# 0.4465, std 0.2452 0.2428 0.2606 (JPEG smooths a little): use channel_stats() for exact values.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

# Every shift angle of the rotated-MNIST benchmark (Ovadia et al. 2019), used by the subnetwork
# inference paper (Daxberger et al. 2021): 0 to 180 degrees in steps of 15.
ROTATED_MNIST_ANGLES = tuple(range(0, 181, 15))


class IdxFormatError(ValueError):
    """An IDX file is truncated or malformed; the message names the file and what was expected."""


class CifarFormatError(ValueError):
    """A CIFAR-10 file (tar member, pickle batch or cache) is malformed; the message names it."""


# ------------------------------------------------------------------------------------- IDX files
# element type byte -> big-endian numpy dtype (the IDX specification's table)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a numpy array.

    Parameters
    ----------
    path
        The file. Gzip is recognised by its magic bytes, not by the file name.

    Returns
    -------
    numpy.ndarray
        Shape taken from the header. Element type 0x08 (the MNIST images and labels) gives
        ``uint8``; the other IDX types (int8, int16, int32, float32, float64) are converted to native
        byte order. The array is read-only when it shares memory with the file buffer.

    Raises
    ------
    IdxFormatError
        Bad magic number, unknown element type, a truncated header or body, trailing bytes, or a
        corrupt gzip stream. The message names the file and what was expected.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as err:
            raise IdxFormatError(f"{path}: corrupt or truncated gzip stream ({err})") from None
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: {len(raw)} bytes, expected at least the 4-byte IDX magic number")
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or type_code not in _IDX_DTYPES:
        raise IdxFormatError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000TTDD with element type TT "
            f"in {{{', '.join(f'{t:02x}' for t in _IDX_DTYPES)}}} (08 = unsigned byte)")
    if ndim == 0:
        raise IdxFormatError(f"{path}: IDX header declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
                             f"the file has {len(raw)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize
    body = len(raw) - header
    if body != expected:
        what = "truncated" if body < expected else "trailing bytes"
        raise IdxFormatError(f"{path}: {what}: header says shape {shape} of {dtype.name} = {expected} data "
                             f"bytes after the {header}-byte header, found {body}")
    arr = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header).reshape(shape)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


# ------------------------------------------------------------------------------- MNIST family
_IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _load_idx_pair(name: str, split: str,
                   data_root: str | os.PathLike | None) -> tuple[torch.Tensor, torch.Tensor]:
    _check_split(split)
    folder = locate(catalog.get(name), data_root)
    image_file, label_file = (folder / f for f in _IDX_FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(f"{image_file}: expected uint8 images (N, H, W), "
                             f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IdxFormatError(f"{label_file}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise IdxFormatError(f"{image_file} has {len(images)} images but {label_file} "
                             f"has {len(labels)} labels")
    if labels.size and int(labels.max()) > 9:
        raise IdxFormatError(f"{label_file}: label {int(labels.max())} outside the 10 classes 0..9")
    x = torch.from_numpy(images.copy()).unsqueeze(1).to(torch.float32).div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    log.debug("loaded %s %s: %s images from %s", name, split, len(y), folder)
    return x, y


def load_mnist(data_root: str | os.PathLike | None = None,
               split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits: images float32 ``(N, 1, 28, 28)`` in ``[0, 1]`` and int64 labels ``(N,)``.

    Parameters
    ----------
    data_root
        Explicit data root; the folder searched is ``<root>/mnist`` (then ``$PAPERZOO_DATA`` and the
        user cache, see :mod:`paperzoo.data.roots`).
    split
        ``"train"`` (60,000 images) or ``"test"`` (10,000, the ``t10k`` files).
    """
    return _load_idx_pair("mnist", split, data_root)


def load_fashion_mnist(data_root: str | os.PathLike | None = None,
                       split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST (Xiao et al. 2017), same format and tensors as :func:`load_mnist`.

    Searched in ``<root>/fashion-mnist`` and Debian's ``/usr/share/datasets/fashion-mnist``
    (package ``dataset-fashion-mnist``). Class names: :data:`FASHION_MNIST_CLASSES`.
    """
    return _load_idx_pair("fashion_mnist", split, data_root)


# --------------------------------------------------------------------------------- rotations
def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images scaled to float32 ``[0, 1]``; floating images returned unchanged."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    return images


def _check_batch(images: torch.Tensor, what: str = "images") -> None:
    if images.dim() != 4:
        raise ValueError(f"{what} must have shape (N, C, H, W), got {tuple(images.shape)}")


def rotate(images: torch.Tensor, degrees: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Rotate a batch of images counter-clockwise about their centres, bilinearly, zeros outside.

    Parameters
    ----------
    images
        ``(N, C, H, W)``; uint8 is converted to float32 in ``[0, 1]`` first.
    degrees
        One angle for the whole batch, or one per image (shape ``(N,)``). Positive angles turn the
        picture counter-clockwise as displayed (row 0 at the top), like ``torch.rot90(x, 1, (-2, -1))``.

    Returns
    -------
    torch.Tensor
        Float images of the same shape. Pixels whose source falls outside the frame are 0.

    Notes
    -----
    A single angle that is a multiple of 90 degrees (any multiple of 180 for non-square images)
    is applied with :func:`torch.rot90`, so it is exact; any other angle resamples. The sampling
    grid rotates pixel-centre coordinates measured in pixels (not the ``[-1, 1]`` normalised
    coordinates, which would shear non-square images), i.e. ``theta = S^-1 R S`` with
    ``S = diag(W/2, H/2)``, so for square images the resampling path also maps the pixel grid onto
    itself at multiples of 90 degrees (agreeing with ``torch.rot90`` up to float rounding).
    """
    _check_batch(images)
    x = as_float_images(images)
    n, _, h, w = x.shape
    angles = torch.as_tensor(degrees, dtype=torch.float64, device="cpu")
    if angles.dim() == 0:
        turns = float(angles) / 90.0
        if turns == round(turns) and (h == w or round(turns) % 2 == 0):
            return torch.rot90(x, round(turns) % 4, dims=(-2, -1)).clone()
        angles = angles.expand(n)
    if angles.shape != (n,):
        raise ValueError(f"degrees must be a scalar or have shape ({n},), got {tuple(angles.shape)}")
    rad = torch.deg2rad(angles)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Output pixel p = (x right, y down), in pixels about the centre, samples the input at R p with
    # R = [[cos, -sin], [sin, cos]]: with y pointing down, that turns the picture counter-clockwise.
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * h / w
    theta[:, 1, 0] = sin * w / h
    theta[:, 1, 1] = cos
    work = torch.float64 if x.dtype == torch.float64 else torch.float32  # half precision: grid in float32
    grid = F.affine_grid(theta.to(device=x.device, dtype=work), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def rotated_mnist(images: torch.Tensor, labels: torch.Tensor,
                  angles: Iterable[float] = ROTATED_MNIST_ANGLES,
                  batch_size: int = 4096) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """The rotated-MNIST shift benchmark: every image rotated by each angle.

    Parameters
    ----------
    images, labels
        Usually the MNIST test split, ``(N, 1, 28, 28)`` and ``(N,)``.
    angles
        Degrees, counter-clockwise; default 0, 15, ..., 180 (13 shifts).
    batch_size
        Images rotated at once (bounds the memory of the sampling grid).

    Returns
    -------
    dict
        ``angle -> (rotated images, labels)``; the labels tensor is shared, not copied. Each entry
        holds a full float copy of the images (31 MB per angle for the 10,000 test digits).
    """
    _check_batch(images)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    out: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
    for angle in angles:
        chunks = [rotate(images[i:i + batch_size], float(angle)) for i in range(0, len(images), batch_size)]
        out[angle] = (torch.cat(chunks) if chunks else as_float_images(images).clone(), labels)
    return out


# ------------------------------------------------------------------------------- normalisation
def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """The standard CIFAR augmentation of a batch ``(N, C, H, W)``: a random ``H x W`` crop of each image
    after ``pad`` pixels of zero padding, and a horizontal flip with probability 1/2 (``flip``)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(x.size(1))[None, :, None, None], rows, cols]
    if flip:
        flips = torch.rand(n, generator=generator) < 0.5
        out[flips] = out[flips].flip(-1)
    return out


def channel_stats(images: torch.Tensor, batch_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) standard deviation over ``N, H, W``.

    uint8 images are measured in ``[0, 1]`` units. Sums are accumulated in float64, a batch at a time,
    so a 50,000-image uint8 tensor needs no float copy of itself.

    Returns
    -------
    (mean, std)
        float32 tensors of shape ``(C,)``.
    """
    _check_batch(images)
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), batch_size):
        chunk = as_float_images(images[i:i + batch_size]).to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        total_sq += chunk.square().sum(dim=(0, 2, 3)).cpu()
    count = images.shape[0] * images.shape[2] * images.shape[3]
    if count == 0:
        raise ValueError("channel_stats of an empty batch")
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return mean.float(), std.float()


def _per_channel(values: Sequence[float] | torch.Tensor, x: torch.Tensor, what: str) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=x.dtype, device=x.device).reshape(-1)
    if v.numel() not in (1, x.shape[1]):
        raise ValueError(f"{what} has {v.numel()} values for {x.shape[1]} channels")
    return v.reshape(1, -1, 1, 1)


def normalize(images: torch.Tensor, mean: Sequence[float] | torch.Tensor,
              std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel; uint8 images are first scaled to ``[0, 1]``.

    ``mean``/``std`` hold one value per channel (or one for all), e.g. :data:`CIFAR10_MEAN`,
    :data:`CIFAR10_STD`.
    """
    _check_batch(images)
    x = as_float_images(images)
    s = _per_channel(std, x, "std")
    if bool((s <= 0).any()):
        raise ValueError(f"std must be positive, got {std}")
    return (x - _per_channel(mean, x, "mean")) / s


def denormalize(images: torch.Tensor, mean: Sequence[float] | torch.Tensor,
                std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`: ``x * std + mean`` per channel."""
    _check_batch(images)
    return images * _per_channel(std, images, "std") + _per_channel(mean, images, "mean")


# ------------------------------------------------------------------------------------ CIFAR-10
_CACHE_VERSION = 1
_CIFAR_PY_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def load_cifar10(data_root: str | os.PathLike | None = None, split: str = "train",
                 limit_per_class: int | None = None, source: str = "auto",
                 cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10: images uint8 ``(N, 3, 32, 32)`` and int64 labels in :data:`CIFAR10_CLASSES` order.

    Parameters
    ----------
    data_root
        Explicit data root (see :mod:`paperzoo.data.roots`).
    split
        ``"train"`` (50,000) or ``"test"`` (10,000).
    limit_per_class
        Keep only the first ``limit_per_class`` images of each class (file order: the number in
        ``<n>.jpg`` for the tarball, batch order for the pickles). ``None`` keeps all.
    source
        ``"pickle"``: the canonical ``cifar-10-batches-py`` folder (lossless; catalog entry
        ``cifar10_python``); ``"jpeg"``: ``cifar10/cifar10-jpeg.tar.gz`` (catalog ``cifar10``);
        ``"auto"``: the pickles if found in any root, else the tarball.
    cache
        JPEG only: read and write the decoded-array cache (below).

    Returns
    -------
    (images, labels)
        From the tarball the images are grouped by class (class order, then ``<n>``); from the
        pickles they keep the batches' order.

    Notes
    -----
    Cache: decoding the tarball's JPEGs is slow (seconds to a minute), so the decoded arrays are
    stored as a compressed ``.npz`` in ``<user cache>/cifar10/decoded/``, one file per split and
    ``limit_per_class``, named after the tarball's size and modification time; a changed tarball
    therefore misses the cache, and its stale files are removed after the new one is written. A full
    split's cache also serves limited requests. Files are written atomically (temporary file, then
    rename). A cache that cannot be read or has the wrong shapes is logged, ignored and rebuilt.
    """
    _check_split(split)
    if limit_per_class is not None and limit_per_class < 1:
        raise ValueError(f"limit_per_class must be positive or None, got {limit_per_class}")
    if source not in ("auto", "pickle", "jpeg"):
        raise ValueError(f"source must be 'auto', 'pickle' or 'jpeg', got {source!r}")
    if source in ("auto", "pickle"):
        try:
            folder = locate(catalog.get("cifar10_python"), data_root)
        except DataNotFoundError as err:
            if source == "pickle":
                raise
            pickle_error = err
        else:
            return _load_cifar_pickles(folder, split, limit_per_class)
    try:
        tar_path = locate(catalog.get("cifar10"), data_root) / "cifar10-jpeg.tar.gz"
    except DataNotFoundError as err:
        if source == "auto":
            raise DataNotFoundError(f"{err}\n\nNor the canonical python batches:\n{pickle_error}") from None
        raise
    return _load_cifar_jpeg(tar_path, split, limit_per_class, cache)


def per_class_indices(labels, count: int | None, start: int = 0):
    """Indices of the occurrences ``start`` .. ``start + count - 1`` of each label (all from ``start`` on
    when ``count`` is None), in their original order: ``per_class_indices(y, 100)`` keeps the first 100
    images of every class, ``per_class_indices(y, 10, start=100)`` the next 10. ``labels`` is a 1-D numpy
    array or torch tensor; the indices come back as the same kind."""
    as_torch = isinstance(labels, torch.Tensor)
    y = labels.cpu().numpy() if as_torch else np.asarray(labels)
    order = np.argsort(y, kind="stable")
    sorted_labels = y[order]
    rank = np.arange(len(y)) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    keep = rank >= start
    if count is not None:
        keep &= rank < start + count
    out = np.sort(order[keep])
    return torch.from_numpy(out) if as_torch else out


# --- canonical python batches
class _CifarUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR-10 batches: only numpy's array reconstruction globals are allowed
    (plus ``_codecs.encode``, with which Python 3 writes bytes into a protocol-2 pickle)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One canonical CIFAR-10 python batch: uint8 ``(N, 3, 32, 32)`` and int64 labels ``(N,)``.

    The file is a Python-2 pickle of a dict with ``b"data"`` (uint8 ``(N, 3072)``, channel-major
    rows: 1024 red, 1024 green, 1024 blue values) and ``b"labels"`` (N ints). It is unpickled with
    a restricted unpickler (numpy array globals only), so a tampered file cannot run code.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            batch = _CifarUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise CifarFormatError(f"{path}: not a readable CIFAR-10 python batch ({err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise CifarFormatError(f"{path}: expected a dict with b'data' and b'labels', got {keys}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CifarFormatError(f"{path}: field b'data' must be uint8 (N, 3072), "
                               f"got {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise CifarFormatError(f"{path}: field b'labels' has {labels.size} entries for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CifarFormatError(f"{path}: field b'labels' has values outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar_pickles(folder: Path, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_cifar_batch(folder / name) for name in _CIFAR_PY_FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    keep = per_class_indices(labels, limit)
    log.debug("loaded CIFAR-10 %s from python batches in %s", split, folder)
    return torch.from_numpy(np.ascontiguousarray(images[keep])), torch.from_numpy(labels[keep])


# --- JPEG tarball
def _cache_paths(tar_path: Path, split: str, limit: int | None) -> tuple[Path, Path, str]:
    """(this request's cache file, the full split's cache file, stale-file glob prefix)."""
    st = tar_path.stat()
    folder = user_cache() / "cifar10" / "decoded"
    key = f"{st.st_size}-{st.st_mtime_ns}"
    tag = "all" if limit is None else f"first{limit}"
    return (folder / f"cifar10-jpeg-{split}-{tag}-{key}.npz",
            folder / f"cifar10-jpeg-{split}-all-{key}.npz",
            f"cifar10-jpeg-{split}-{tag}-")


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            version = int(npz["version"])
            images, labels = npz["images"], npz["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        log.warning("ignoring unreadable CIFAR-10 cache %s (%s: %s); rebuilding",
                    path, type(err).__name__, err)
        return None
    if (version != _CACHE_VERSION or images.dtype != np.uint8 or images.ndim != 4
            or images.shape[1:] != (3, 32, 32) or labels.dtype != np.int64 or labels.shape != (len(images),)):
        log.warning("ignoring CIFAR-10 cache %s with unexpected contents (version %s, images %s %s, labels "
                    "%s %s); rebuilding",
                    path, version, images.dtype, images.shape, labels.dtype, labels.shape)
        return None
    return images, labels


def _write_cache(path: Path, stale_prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, images=images, labels=labels, version=np.int64(_CACHE_VERSION))
        for old in path.parent.glob(f"{stale_prefix}*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not write the CIFAR-10 cache %s (%s); continuing without it", path, err)


def _decode_cifar_tar(tar_path: Path, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``<split>/<class>/<n>.jpg`` members straight from the gzip stream, sorted by (class, n)."""
    from PIL import Image  # Pillow ships with matplotlib

    class_index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    found: dict[tuple[int, int], tuple[str, bytes]] = {}  # (class, n) -> (member name, JPEG bytes)
    try:
        with tarfile.open(tar_path, "r|gz") as tar:
            for member in progress(tar, desc=f"CIFAR-10 {split} (reading {tar_path.name})", unit=" files"):
                parts = member.name.strip("/").split("/")
                if not member.isfile() or len(parts) != 3 or parts[0] != split:
                    continue
                cls, file = parts[1], parts[2]
                stem, _, ext = file.rpartition(".")
                if cls not in class_index or ext.lower() not in ("jpg", "jpeg") or not stem.isdigit():
                    raise CifarFormatError(
                        f"{tar_path}: unexpected member {member.name!r}; expected {split}/<class>/<n>.jpg "
                        f"with <class> one of {', '.join(CIFAR10_CLASSES)}")
                found[(class_index[cls], int(stem))] = member.name, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise CifarFormatError(
            f"{tar_path}: corrupt or truncated tar.gz ({type(err).__name__}: {err})") from None
    if not found:
        raise CifarFormatError(f"{tar_path}: no {split}/<class>/<n>.jpg members; expected the layout "
                               f"{{train,test}}/<class>/<n>.jpg")
    keys = sorted(found)  # by class, then by the number in <n>.jpg (which need not start at 0)
    if limit is not None:
        keep = per_class_indices(np.array([k[0] for k in keys], dtype=np.int64), limit)
        keys = [keys[i] for i in keep]
    images = np.empty((len(keys), 3, 32, 32), dtype=np.uint8)
    for i, key in enumerate(progress(keys, desc=f"CIFAR-10 {split} (decoding)", unit=" img")):
        name, data = found[key]
        try:
            with Image.open(io.BytesIO(data)) as img:
                arr = np.asarray(img.convert("RGB"))
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
            # Pillow's errors for unreadable images: UnidentifiedImageError (an OSError), "image file is
            # truncated" (OSError), and SyntaxError/ValueError from some decoders
            raise CifarFormatError(f"{tar_path}: member {name} is not a readable JPEG ({err})") from None
        if arr.shape != (32, 32, 3):
            raise CifarFormatError(
                f"{tar_path}: member {name} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32")
        images[i] = arr.transpose(2, 0, 1)
    labels = np.fromiter((k[0] for k in keys), dtype=np.int64, count=len(keys))
    return images, labels


def _load_cifar_jpeg(tar_path: Path, split: str, limit: int | None,
                     cache: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if cache:
        path, full_path, stale = _cache_paths(tar_path, split, limit)
        hit = _read_cache(path)
        if hit is None and limit is not None:
            full = _read_cache(full_path)
            if full is not None:
                keep = per_class_indices(full[1], limit)
                hit = np.ascontiguousarray(full[0][keep]), full[1][keep]
        if hit is not None:
            log.debug("CIFAR-10 %s from cache %s", split, path)
            return torch.from_numpy(hit[0]), torch.from_numpy(hit[1])
    images, labels = _decode_cifar_tar(tar_path, split, limit)
    if cache:
        _write_cache(path, stale, images, labels)
    return torch.from_numpy(images), torch.from_numpy(labels)
