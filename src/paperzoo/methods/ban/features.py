"""Visual features for BAN: object features from box crops, and grid features.

The paper's BAN attends over bottom-up features: a Faster R-CNN, trained on Visual Genome objects and
attributes and then frozen, gives a 2048-d pooled feature for each of 10-100 boxes, and the official code
appends each box's normalised geometry (the "spatial features"). There is no detector here, so the
project plays both roles itself:

- **Object mode.** :func:`crop_boxes` cuts each ground-truth box out of its image with a RoIAlign-like
  bilinear crop-and-resize; :class:`ObjectEncoder`, a small CNN, maps each crop to a non-negative feature
  vector (like a detector's pooled features). :func:`pretrain_object_encoder` trains it with one linear
  head per label column (colour, shape, ...), the role Visual Genome object and attribute training plays
  for bottom-up features, and returns it frozen. :func:`encode_objects` then pre-extracts the features of
  every box of a data set, with :func:`box_geometry` appended.
- **Grid mode.** :class:`GridEncoder` is a CNN over the whole image whose ``grid x grid`` output cells are
  the "boxes" (their pixel boxes: :func:`grid_boxes`). It is a submodule of the VQA model and is trained
  end to end with it.

Input scaling: ``uint8`` images (0..255) are mapped to ``[-1, 1]`` (``x / 127.5 - 1``) inside
:func:`encode_objects`, :func:`pretrain_object_encoder` and :meth:`GridEncoder.forward`; float images
are assumed to be scaled already. :func:`crop_boxes` and :meth:`ObjectEncoder.forward` take float
tensors as they are.

Empty boxes: the BAN model (as the official code) treats a box whose feature row is all zero as padding
and masks it out of the attention. So padded boxes get all-zero rows here, and a real box or grid cell
never does: its geometry is non-zero, and without geometry (``spatial=False``) a row that happens to be
exactly zero (every ReLU unit off) gets :data:`NONZERO_EPS` added to each entry.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

#: Number of geometry entries :func:`box_geometry` appends: (x0, y0, x1, y1, w, h), normalised.
GEOMETRY_DIM = 6
#: Added to each entry of a real box's (or grid cell's) feature row that would otherwise be all zero,
#: so that the model's "all-zero row = padding" mask never drops it.
NONZERO_EPS = 1e-6


class FeatureInputError(ValueError):
    """Inconsistent images / boxes / masks / labels given to the feature extractors."""


def to_unit_range(images: Tensor) -> Tensor:
    """``uint8`` images (0..255) -> float32 in ``[-1, 1]``; float images are returned unchanged."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    if not images.is_floating_point():
        raise FeatureInputError(f"images: expected uint8 or a float dtype, got {images.dtype}")
    return images


def box_geometry(boxes: Tensor, width: float | Tensor, height: float | Tensor) -> Tensor:
    """Normalised box geometry ``(x0/W, y0/H, x1/W, y1/H, w/W, h/H)``, clamped to ``[0, 1]``.

    These are the six "spatial features" the official BAN code reads next to each bottom-up feature.
    ``boxes`` is ``(..., 4)`` xyxy in pixels; ``width`` / ``height`` are the image size in pixels, a
    number or a tensor broadcastable against ``boxes[..., 0]`` (e.g. ``(I, 1)`` for per-image sizes of
    ``(I, B, 4)`` boxes). Returns ``(..., 6)``; an all-zero (padded) box gives an all-zero row.
    """
    if boxes.shape[-1] != 4:
        raise FeatureInputError(f"boxes: expected (..., 4) xyxy, got shape {tuple(boxes.shape)}")
    boxes = boxes.float()
    x0, y0, x1, y1 = boxes.unbind(-1)
    geo = torch.stack([x0 / width, y0 / height, x1 / width, y1 / height,
                       (x1 - x0) / width, (y1 - y0) / height], dim=-1)
    return geo.clamp(0.0, 1.0)


def crop_boxes(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Bilinear crop-and-resize of each box to ``size x size`` (RoIAlign-like, one sample per bin).

    ``images`` is ``(N, C, H, W)`` float, ``boxes`` ``(N, B, 4)`` xyxy in pixels with the pixel-edge
    convention: a box ``[x0, x1)`` covers pixel columns ``x0 .. x1 - 1`` (so ``(0, 0, W, H)`` is the
    whole image). Output pixel ``j`` of a crop samples the image at ``x0 + (j + 0.5) (x1 - x0) / size``
    (a pixel edge coordinate), bilinearly, clamping to the border outside the image. This is
    ``F.affine_grid`` of the scale-and-shift ``theta`` of each box followed by ``F.grid_sample`` with
    ``align_corners=False``; the grid is built directly so that all boxes of an image are sampled in one
    call without copying the image per box. A box of exactly ``size`` pixels returns those pixels, and
    the whole-image box returns ``F.interpolate(images, size, mode="bilinear")``. Differentiable in
    ``images`` and ``boxes``; a padded (all-zero) box gives a finite crop (the corner pixel).

    Returns ``(N, B, C, size, size)``.
    """
    if images.dim() != 4 or not images.is_floating_point():
        raise FeatureInputError(f"images: expected (N, C, H, W) float, got {tuple(images.shape)} "
                                f"{images.dtype}")
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != images.shape[0]:
        raise FeatureInputError(f"boxes: expected (N={images.shape[0]}, B, 4), got {tuple(boxes.shape)}")
    if size < 1:
        raise FeatureInputError(f"size: expected >= 1, got {size}")
    n, c, h, w = images.shape
    nb = boxes.shape[1]
    boxes = boxes.to(images.dtype)
    # Output sample centres in [-1, 1] (align_corners=False), then box edges -> normalised coordinates.
    t = (torch.arange(size, dtype=images.dtype, device=images.device) * 2 + 1) / size - 1
    x0, y0, x1, y1 = boxes.unbind(-1)                                     # (N, B) each
    gx = ((x0 + x1) / w - 1).unsqueeze(-1) + ((x1 - x0) / w).unsqueeze(-1) * t   # (N, B, size)
    gy = ((y0 + y1) / h - 1).unsqueeze(-1) + ((y1 - y0) / h).unsqueeze(-1) * t
    grid = torch.stack(torch.broadcast_tensors(gx.unsqueeze(-2), gy.unsqueeze(-1)), dim=-1)  # (N,B,s,s,2)
    out = F.grid_sample(images, grid.reshape(n, nb * size, size, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)      # (N, C, B*s, s)
    return out.reshape(n, c, nb, size, size).transpose(1, 2)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 'same' conv, He-initialised with zero bias (no batch norm: crops are encoded one by one)."""
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class ObjectEncoder(nn.Module):
    """Small CNN mapping a box crop to a non-negative feature vector (a detector's pooled feature).

    ``conv(3, w, stride 2)-ReLU, conv(w, 2w, stride 2)-ReLU, conv(2w, 2w)-ReLU`` (3x3 convs), global
    average pooling, ``Linear(2w, dim)``, ReLU. Strided convs rather than conv + max-pool: on the CPUs we
    target they train about twice as fast at the same held-out colour / shape accuracy. No batch
    normalisation, so a crop's feature does not depend on the other crops in the batch. Input: ``(M, 3, s, s)`` float crops scaled to ``[-1, 1]``; any ``s`` works, the
    pretraining and :func:`encode_objects` use ``crop_size``.
    """

    def __init__(self, dim: int = 128, width: int = 32, crop_size: int = 24):
        super().__init__()
        if min(dim, width, crop_size) < 1:
            raise FeatureInputError(f"ObjectEncoder: dim, width, crop_size must be >= 1, got "
                                    f"{dim}, {width}, {crop_size}")
        self.dim, self.width, self.crop_size = dim, width, crop_size
        w = width
        self.features = nn.Sequential(
            _conv(3, w, stride=2), nn.ReLU(inplace=True),
            _conv(w, 2 * w, stride=2), nn.ReLU(inplace=True),
            _conv(2 * w, 2 * w), nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(2 * w, dim)

    def forward(self, crops: Tensor) -> Tensor:
        """``(M, 3, s, s)`` float crops -> ``(M, dim)`` non-negative features."""
        x = self.features(crops).mean(dim=(-2, -1))
        return F.relu(self.fc(x))


def _keep_rows_nonzero(x: Tensor, real: Tensor | None = None) -> Tensor:
    """Add :data:`NONZERO_EPS` to every entry of the rows (last dim) of ``x`` that are all zero, among
    the rows where ``real`` is true (all rows when ``real`` is None). Differentiable."""
    zero = x.abs().sum(-1, keepdim=True) == 0
    if real is not None:
        zero = zero & real.unsqueeze(-1)
    return x + zero.to(x.dtype) * NONZERO_EPS


def _check_boxes(images: Tensor, boxes: Tensor, box_mask: Tensor) -> None:
    """One clear error for inconsistent shapes or a degenerate / non-finite real box."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise FeatureInputError(f"images: expected (I, 3, H, W), got {tuple(images.shape)}")
    num = images.shape[0]
    if boxes.dim() != 3 or boxes.shape[0] != num or boxes.shape[-1] != 4:
        raise FeatureInputError(f"boxes: expected (I={num}, B, 4) xyxy pixels, got {tuple(boxes.shape)}")
    if box_mask.shape != boxes.shape[:2] or box_mask.dtype != torch.bool:
        raise FeatureInputError(f"box_mask: expected bool {tuple(boxes.shape[:2])} like boxes, got "
                                f"{box_mask.dtype} {tuple(box_mask.shape)}")
    real = boxes[box_mask]
    bad = ~torch.isfinite(real).all(-1) | (real[:, 2] <= real[:, 0]) | (real[:, 3] <= real[:, 1])
    if bad.any():
        i, b = box_mask.nonzero()[bad.nonzero()[0, 0]].tolist()
        raise FeatureInputError(f"boxes[{i}, {b}] = {boxes[i, b].tolist()}: a real box (box_mask true) needs "
                                f"finite xyxy with x1 > x0 and y1 > y0")


def _crop_rows(images: Tensor, boxes: Tensor, image_idx: Tensor, box_idx: Tensor, size: int) -> Tensor:
    """Crops ``(M, 3, size, size)`` of boxes ``boxes[image_idx, box_idx]`` from scaled images."""
    imgs = to_unit_range(images[image_idx])
    return crop_boxes(imgs, boxes[image_idx, box_idx].unsqueeze(1).to(imgs.dtype), size)[:, 0]


def head_targets(labels: Tensor, num_labels: Sequence[int]) -> Tensor:
    """Training targets of the label heads for real boxes' ``labels`` ``(M, K)``: a box whose labels are
    all ``-1`` is a background proposal and gets class ``num_labels[k]`` (the extra "background" class)
    in every head; a ``-1`` in only some columns stays ``-1`` (unannotated, ignored by the loss)."""
    targets = labels.clone()
    background = (labels == -1).all(-1)
    targets[background] = torch.as_tensor(list(num_labels), dtype=labels.dtype, device=labels.device)
    return targets


def pretrain_object_encoder(images: Tensor, boxes: Tensor, box_mask: Tensor, box_labels: Tensor,
                            num_labels: Sequence[int], *, dim: int = 128, width: int = 32, crop_size: int = 24,
                            epochs: int = 3, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
                            max_boxes: int | None = None) -> tuple[ObjectEncoder, dict[str, float]]:
    """Train an :class:`ObjectEncoder` to classify its boxes' labels; return it frozen with train stats.

    The role of bottom-up features' Visual Genome object / attribute training. ``images`` is
    ``(I, 3, S, S)`` uint8 (or float in ``[-1, 1]``), ``boxes`` ``(I, B, 4)`` xyxy pixels, ``box_mask``
    ``(I, B)`` bool (false = padding row, skipped), ``box_labels`` ``(I, B, K)`` long with
    ``num_labels[k]`` classes in column ``k`` (e.g. colour, shape). Each column gets a linear head with
    ``num_labels[k] + 1`` outputs, the last being "background": a real box whose labels are all ``-1`` is
    a background proposal and is trained towards it in every head, as a detector's classifier is. A real
    box with only some columns ``-1`` has those columns unannotated (ignored, ``ignore_index=-1``). Loss:
    the sum of the heads' cross-entropies; Adam(``lr``), ``epochs`` passes in random order over the real
    boxes (at most ``max_boxes`` of them, a seeded random subset), cropped on the fly.

    Deterministic for a ``seed`` (on one device and thread count); the caller's global torch RNG state
    is left untouched. Returns ``(encoder in eval mode with requires_grad off, stats)``, stats holding
    ``loss`` (mean over the last epoch), ``acc_<k>`` (head ``k``'s accuracy over the last epoch's
    annotated boxes), ``num_boxes`` and ``seconds``.
    """
    _check_boxes(images, boxes, box_mask)
    num_labels = [int(k) for k in num_labels]
    if box_labels.shape != (*boxes.shape[:2], len(num_labels)) or box_labels.dtype != torch.long:
        raise FeatureInputError(f"box_labels: expected long {(*boxes.shape[:2], len(num_labels))} "
                                f"(one column per num_labels entry), got {box_labels.dtype} "
                                f"{tuple(box_labels.shape)}")
    for k, n_k in enumerate(num_labels):
        col = box_labels[..., k][box_mask]
        if n_k < 1:
            raise FeatureInputError(f"num_labels[{k}]: expected >= 1 classes, got {n_k}")
        if col.numel() and (col.min() < -1 or col.max() >= n_k):
            raise FeatureInputError(f"box_labels[..., {k}]: values must lie in -1 .. num_labels[{k}]-1 = "
                                    f"{n_k - 1}, got range {col.min().item()} .. {col.max().item()}")
    if epochs < 1 or batch_size < 1:
        raise FeatureInputError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")

    image_idx, box_idx = box_mask.nonzero(as_tuple=True)
    gen = torch.Generator().manual_seed(seed + 1)
    if max_boxes is not None and image_idx.numel() > max_boxes:
        keep = torch.randperm(image_idx.numel(), generator=gen)[:max_boxes].sort().values
        image_idx, box_idx = image_idx[keep], box_idx[keep]
    if image_idx.numel() == 0:
        raise FeatureInputError("box_mask: no real boxes to train the object encoder on")
    targets = head_targets(box_labels[image_idx, box_idx], num_labels)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ObjectEncoder(dim, width, crop_size)
        heads = nn.ModuleList(nn.Linear(dim, n_k + 1) for n_k in num_labels)
    params = [*encoder.parameters(), *heads.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    num, start = image_idx.numel(), time.perf_counter()
    encoder.train()
    for epoch in range(epochs):
        order = torch.randperm(num, generator=gen)
        loss_sum = 0.0
        correct = torch.zeros(len(num_labels))
        counted = torch.zeros(len(num_labels))
        for lo in range(0, num, batch_size):
            sel = order[lo:lo + batch_size]
            feats = encoder(_crop_rows(images, boxes, image_idx[sel], box_idx[sel], crop_size))
            y = targets[sel]
            loss = feats.new_zeros(())
            for k, head in enumerate(heads):
                logits = head(feats)
                loss = loss + F.cross_entropy(logits, y[:, k], ignore_index=-1)
                annotated = y[:, k] != -1
                correct[k] += (logits.argmax(-1) == y[:, k])[annotated].sum()
                counted[k] += annotated.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * sel.numel()
        acc = (correct / counted.clamp_min(1)).tolist()
        log.info("object encoder epoch %d/%d: loss %.4f, head accuracy %s", epoch + 1, epochs,
                 loss_sum / num, " ".join(f"{a:.3f}" for a in acc))
    encoder.eval().requires_grad_(False)
    stats = {"loss": loss_sum / num, **{f"acc_{k}": a for k, a in enumerate(acc)},
             "num_boxes": float(num), "seconds": time.perf_counter() - start}
    return encoder, stats


@torch.no_grad()
def encode_objects(encoder: ObjectEncoder, images: Tensor, boxes: Tensor, box_mask: Tensor, *,
                   batch_size: int = 256, spatial: bool = True) -> Tensor:
    """Pre-extract the features of every real box: ``(I, B, dim + 6)`` (``(I, B, dim)`` without spatial).

    Each real box is cropped (:func:`crop_boxes`, ``encoder.crop_size``) from its image (uint8 scaled to
    ``[-1, 1]``, or float already scaled) and encoded in batches of ``batch_size`` boxes with the
    encoder in eval mode, so a box's feature does not depend on the other boxes; with ``spatial`` its
    :func:`box_geometry` is appended. Padded boxes (``box_mask`` false) get all-zero rows, and real rows
    are never all zero (the model masks boxes by detecting all-zero rows, as the official code does).
    """
    _check_boxes(images, boxes, box_mask)
    if batch_size < 1:
        raise FeatureInputError(f"batch_size: expected >= 1, got {batch_size}")
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    num, nb = box_mask.shape
    out = torch.zeros(num, nb, encoder.dim + (GEOMETRY_DIM if spatial else 0))
    image_idx, box_idx = box_mask.nonzero(as_tuple=True)
    for lo in range(0, image_idx.numel(), batch_size):
        ii, bb = image_idx[lo:lo + batch_size], box_idx[lo:lo + batch_size]
        crops = _crop_rows(images, boxes, ii, bb, encoder.crop_size).to(device)
        out[ii, bb, :encoder.dim] = encoder(crops).float().cpu()
    if spatial:
        geo = box_geometry(boxes, images.shape[-1], images.shape[-2])
        out[..., encoder.dim:] = geo * box_mask.unsqueeze(-1)
    encoder.train(was_training)
    return _keep_rows_nonzero(out, box_mask)


def grid_boxes(image_size: int, grid: int) -> Tensor:
    """Pixel boxes (xyxy, pixel edges) of a ``grid x grid`` tiling of a square image, row-major:
    cell ``r * grid + c`` is row ``r`` (y), column ``c`` (x). Returns ``(grid * grid, 4)`` float32."""
    if image_size < 1 or grid < 1:
        raise FeatureInputError(f"grid_boxes: image_size and grid must be >= 1, got {image_size}, {grid}")
    edges = torch.arange(grid + 1, dtype=torch.float64) * (image_size / grid)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    return torch.stack([edges[cols], edges[rows], edges[cols + 1], edges[rows + 1]], dim=-1).float()


class GridEncoder(nn.Module):
    """CNN over the whole image whose ``grid x grid`` output cells are the attended "boxes".

    Stride-2 ``conv3x3-ReLU`` stages (widths ``w, 2w, 4w, 4w, ...``) halve the image while it stays at
    least ``grid`` wide, an adaptive average pool brings it to exactly ``grid x grid`` (a no-op when
    ``image_size / grid`` is a power of two), then a 1x1 conv to ``dim`` and a ReLU. Cells are read
    row-major (as :func:`grid_boxes`); with ``spatial`` each cell's :func:`box_geometry` is appended, so
    ``out_dim = dim + 6``. Meant to be a submodule of the VQA model, trained end to end with it.
    Input: ``(N, 3, image_size, image_size)`` uint8 (scaled to ``[-1, 1]``) or float already scaled.
    """

    def __init__(self, dim: int = 128, width: int = 32, image_size: int = 64, grid: int = 8,
                 spatial: bool = True):
        super().__init__()
        if min(dim, width, grid) < 1 or image_size < grid:
            raise FeatureInputError(f"GridEncoder: need dim, width, grid >= 1 and image_size >= grid, got "
                                    f"dim={dim} width={width} image_size={image_size} grid={grid}")
        self.dim, self.image_size, self.grid, self.spatial = dim, image_size, grid, spatial
        layers: list[nn.Module] = []
        cin, cout, side = 3, width, image_size
        while side // 2 >= grid:
            layers += [_conv(cin, cout, stride=2), nn.ReLU(inplace=True)]
            cin, cout, side = cout, min(2 * cout, 4 * width), (side + 1) // 2
        if not layers:                       # grid == image_size: one full-resolution conv
            layers += [_conv(cin, cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(grid))
        self.proj = nn.Conv2d(cin, dim, 1)
        geo = box_geometry(grid_boxes(image_size, grid), image_size, image_size)
        self.register_buffer("cell_geometry", geo, persistent=False)

    @property
    def out_dim(self) -> int:
        """Feature size of each cell: ``dim`` (+ 6 geometry entries when ``spatial``)."""
        return self.dim + (GEOMETRY_DIM if self.spatial else 0)

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 3, S, S)`` uint8 or scaled float images -> ``(N, grid * grid, out_dim)`` cell features."""
        if images.dim() != 4 or images.shape[1:] != (3, self.image_size, self.image_size):
            raise FeatureInputError(f"GridEncoder: expected images (N, 3, {self.image_size}, "
                                    f"{self.image_size}), got {tuple(images.shape)}")
        x = to_unit_range(images).to(self.proj.weight.dtype)
        cells = F.relu(self.proj(self.features(x))).flatten(2).transpose(1, 2)   # (N, grid*grid, dim)
        if self.spatial:
            return torch.cat([cells, self.cell_geometry.expand(cells.shape[0], -1, -1)], dim=-1)
        return _keep_rows_nonzero(cells)
