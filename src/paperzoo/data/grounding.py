"""Phrase grounding data: a synthetic referring-phrase set, Flickr30k Entities files, IoU and Recall@k.

A grounding example is a phrase about an image, its ground-truth box(es), and the image's box proposals
that a model attends over; the predicted box is the proposal with the highest attention (BAN, one glimpse)
and the metric is Recall@k: a phrase is a hit at k when one of its k best proposals overlaps one of its
ground-truth boxes with IoU >= 0.5 (Flickr30k Entities protocol; Plummer et al. 2015, BAN Sec. 5).

* :func:`make_grounding` draws scenes of 4-7 objects whose colours and shapes may repeat, so a phrase that
  names one object sometimes needs a relation or a superlative ("the circle left of the blue square",
  "the largest circle"). Every phrase matches exactly one object. Proposals are each object's exact box,
  jittered copies (some with IoU >= 0.5 with their object, some below) and background boxes, shuffled.
* :func:`load_flickr30k_entities` reads the official Sentences/Annotations files and bottom-up features.

Boxes are ``(x0, y0, x1, y1)`` in pixels, as in :mod:`paperzoo.data.vqa`.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paperzoo.data.roots import locate
from paperzoo.data.vqa import (
    COLORS,
    SHAPES,
    VQAInputError,
    _check_int,
    _check_split,
    box_centres,
    place_objects,
    render_scene,
    scene_rng,
)

log = logging.getLogger(__name__)

PHRASE_KINDS: tuple[str, ...] = ("attribute", "color_shape", "relation", "superlative")
"""Kinds of synthetic phrases: "the red object" / "the circle"; "the red square"; "the circle left of the
blue square"; "the largest circle" / "the smallest object"."""
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
MIN_OBJECTS, MAX_OBJECTS = 4, 7
_MARGIN = 1.0  # pixels: a relation holds or fails by at least this much for every candidate
_AREA_RATIO = 1.15  # a superlative's winner beats the runner-up's box area by this factor


@dataclass
class GroundingData:
    """Phrases with ground-truth boxes, over an image table of box proposals.

    ``target_boxes[p, :]`` are phrase ``p``'s ground-truth boxes padded to ``M`` (``target_mask``);
    ``boxes[i]`` are image ``i``'s proposals padded to ``B`` (``box_mask``). Synthetic sets also carry the
    objects themselves (``objects``, ``object_labels``, ``object_mask``) and ``target_object[p]``, the
    referent's row in ``objects[image_index[p]]``.
    """

    phrases: list[str]
    image_index: torch.Tensor
    target_boxes: torch.Tensor
    target_mask: torch.Tensor
    images: torch.Tensor | None
    boxes: torch.Tensor
    box_mask: torch.Tensor
    box_labels: torch.Tensor | None
    features: torch.Tensor | None
    image_size: torch.Tensor | None
    source: str = ""
    label_names: tuple[tuple[str, ...], ...] = ()
    kind: torch.Tensor | None = None
    """(P,) long index into ``kind_names`` (synthetic sets: PHRASE_KINDS; Flickr30k: the entity types)."""
    kind_names: tuple[str, ...] = ()
    objects: torch.Tensor | None = None
    """(I, O, 4) float32 boxes of the drawn objects (synthetic sets), padded."""
    object_mask: torch.Tensor | None = None
    object_labels: torch.Tensor | None = None
    """(I, O, 2) long (colour id, shape id) per object, -1 on padding."""
    target_object: torch.Tensor | None = None
    image_ids: tuple = ()
    sentences: list[str] = field(default_factory=list)
    """Flickr30k: the sentence each phrase comes from (annotations removed); else empty."""
    phrase_word: torch.Tensor | None = None
    """Flickr30k: (P,) long index of the phrase's first word in its sentence (whitespace words)."""

    def __post_init__(self) -> None:
        n = len(self.phrases)
        if self.image_index.shape != (n,) or self.target_boxes.shape[:1] != (n,) or self.target_boxes.shape[
                :2] != self.target_mask.shape:
            raise VQAInputError(f"{self.source}: image_index / target_boxes / target_mask disagree with "
                                f"{n} phrases")
        if self.boxes.shape[:2] != self.box_mask.shape:
            raise VQAInputError(f"{self.source}: boxes and box_mask disagree in shape")

    def __len__(self) -> int:
        return len(self.phrases)


# ---------------------------------------------------------------------------------------------------------
# Box geometry and the metric

def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(..., N, 4)`` and ``(..., M, 4)`` xyxy boxes: ``(..., N, M)``.

    Leading dimensions broadcast. Degenerate boxes (zero or negative extent) have area 0 and IoU 0.
    """
    a = torch.as_tensor(a, dtype=torch.float32)
    b = torch.as_tensor(b, dtype=torch.float32)
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"boxes must end in 4 coordinates, got {tuple(a.shape)} and {tuple(b.shape)}")
    aa, bb = a.unsqueeze(-2), b.unsqueeze(-3)
    w = (torch.minimum(aa[..., 2], bb[..., 2]) - torch.maximum(aa[..., 0], bb[..., 0])).clamp(min=0)
    h = (torch.minimum(aa[..., 3], bb[..., 3]) - torch.maximum(aa[..., 1], bb[..., 1])).clamp(min=0)
    inter = w * h
    area_a = ((a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)).unsqueeze(-1)
    area_b = ((b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)).unsqueeze(-2)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def proposal_hits(data: GroundingData, iou: float = 0.5) -> torch.Tensor:
    """(P, B) bool: proposal ``b`` of phrase ``p``'s image is a real box with IoU >= ``iou`` with one of
    ``p``'s ground-truth boxes."""
    props = data.boxes[data.image_index]  # (P, B, 4)
    overlap = box_iou(props, data.target_boxes)  # (P, B, M)
    ok = (overlap >= iou) & data.target_mask.unsqueeze(1)
    return ok.any(dim=-1) & data.box_mask[data.image_index]


def recall_at_k(scores: torch.Tensor, data: GroundingData, ks=(1, 5, 10), iou: float = 0.5) -> dict[int, float]:
    """Recall@k of attention ``scores`` (P, B) over each phrase's image proposals.

    A phrase is a hit at ``k`` when one of its ``k`` highest-scored real proposals (padding is ignored,
    whatever its score) has IoU >= ``iou`` with one of its ground-truth boxes. Ties are broken by proposal
    order. Returns ``{k: fraction of phrases hit}``; :func:`recall_upper_bound` is the ceiling that the
    proposals allow.
    """
    scores = torch.as_tensor(scores).detach().float()
    n_props = data.boxes.shape[1]
    if scores.shape != (len(data), n_props):
        raise ValueError(f"scores must have shape (phrases, proposals) = ({len(data)}, {n_props}), "
                         f"got {tuple(scores.shape)}")
    valid = data.box_mask[data.image_index]
    if torch.isnan(scores[valid]).any():
        raise ValueError("scores contain NaN on real proposals")
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    if len(data) == 0:
        return {int(k): float("nan") for k in ks}
    hits = proposal_hits(data, iou)
    masked = scores.masked_fill(~valid, float("-inf"))
    order = torch.sort(masked, dim=1, descending=True, stable=True).indices
    ranked_hits = torch.gather(hits, 1, order)  # padding sorts last and never hits
    first_hit = torch.cumsum(ranked_hits.long(), dim=1) > 0
    out = {}
    for k in ks:
        col = min(int(k), n_props) - 1
        out[int(k)] = float(first_hit[:, col].float().mean()) if n_props else 0.0
    return out


def recall_upper_bound(data: GroundingData, iou: float = 0.5) -> float:
    """The fraction of phrases that any proposal can hit (IoU >= ``iou``): the ceiling of Recall@k."""
    if len(data) == 0:
        return float("nan")
    return float(proposal_hits(data, iou).any(dim=1).float().mean())


# ---------------------------------------------------------------------------------------------------------
# Synthetic referring phrases

def _describe(color: int | None, shape: int | None) -> str:
    if color is None:
        return SHAPES[shape]
    return f"{COLORS[color]} {SHAPES[shape] if shape is not None else 'object'}"


def _matches(labels: np.ndarray, color: int | None, shape: int | None) -> np.ndarray:
    ok = np.ones(len(labels), dtype=bool)
    if color is not None:
        ok &= labels[:, 0] == color
    if shape is not None:
        ok &= labels[:, 1] == shape
    return ok


_REL_AXIS = {"left of": (0, 1.0), "right of": (0, -1.0), "above": (1, 1.0), "below": (1, -1.0)}
"""relation -> (axis, sign): "j <rel> anchor" holds when sign * (anchor centre - j centre) on axis > 0."""


def referring_candidates(boxes: np.ndarray, labels: np.ndarray) -> list[tuple[str, int, int, bool]]:
    """Every phrase that refers to exactly one object of a scene: ``(phrase, kind id, target, needed)``.

    ``needed`` marks relational/superlative phrases whose target's colour+shape alone is not unique (the
    relation is then needed to single it out). Relations compare box centres and superlatives box areas;
    a phrase is listed only if it holds or fails for every candidate by at least one pixel (relations) or
    15% of area (superlatives), so rounding cannot change its referent.
    """
    n = len(labels)
    out: list[tuple[str, int, int, bool]] = []
    centre = box_centres(boxes)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    combo_unique = [int(_matches(labels, labels[k, 0], labels[k, 1]).sum()) == 1 for k in range(n)]
    for k in range(n):
        c, s = int(labels[k, 0]), int(labels[k, 1])
        if _matches(labels, c, None).sum() == 1:
            out.append((f"the {COLORS[c]} object", 0, k, False))
        if _matches(labels, None, s).sum() == 1:
            out.append((f"the {SHAPES[s]}", 0, k, False))
        if combo_unique[k]:
            out.append((f"the {COLORS[c]} {SHAPES[s]}", 1, k, False))
    for anchor in range(n):
        if not combo_unique[anchor]:
            continue
        anchor_text = _describe(int(labels[anchor, 0]), int(labels[anchor, 1]))
        others = np.arange(n) != anchor
        for desc in ((False, True), (True, True), (True, False)):  # "circle", "red circle", "red object"
            described = {(int(labels[k, 0]) if desc[0] else None, int(labels[k, 1]) if desc[1] else None)
                         for k in np.nonzero(others)[0]}
            for color, shape in sorted(described, key=str):
                pool = np.nonzero(_matches(labels, color, shape) & others)[0]
                for rel in RELATIONS:
                    axis, sign = _REL_AXIS[rel]
                    d = sign * (centre[anchor, axis] - centre[pool, axis])
                    if np.abs(d).min() < _MARGIN:
                        continue
                    holding = pool[d > 0]
                    if len(holding) == 1:
                        text = f"the {_describe(color, shape)} {rel} the {anchor_text}"
                        out.append((text, 2, int(holding[0]), len(pool) > 1))
    for shape in [None] + sorted({int(s) for s in labels[:, 1]}):
        pool = np.nonzero(_matches(labels, None, shape))[0]
        if len(pool) < 2:
            continue
        ranked = pool[np.argsort(area[pool])]
        for word, first, second in (("largest", ranked[-1], ranked[-2]), ("smallest", ranked[0], ranked[1])):
            big, small = max(area[first], area[second]), min(area[first], area[second])
            if big >= _AREA_RATIO * small:
                noun = SHAPES[shape] if shape is not None else "object"
                needed = not combo_unique[int(first)]
                out.append((f"the {word} {noun}", 3, int(first), needed))
    return out


def _grounding_scene(rng: np.random.Generator, size: int):
    while True:
        n = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
        extents = list(rng.uniform(0.12, 0.26, size=n) * size)
        centres = place_objects(rng, extents, size)
        if centres is None:
            continue
        colors = rng.integers(len(COLORS), size=n)
        shapes = rng.integers(len(SHAPES), size=n)
        objects = [(cx, cy, float(e), int(c), int(s)) for (cx, cy), e, c, s in zip(centres, extents, colors, shapes)]
        image, boxes = render_scene(objects, size)
        labels = np.stack([colors, shapes], axis=1).astype(np.int64)
        candidates = referring_candidates(boxes, labels)
        if candidates:
            return image, boxes, labels, candidates


def _iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`box_iou` for small numpy arrays (n, 4) x (m, 4) (no torch call overhead while generating)."""
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _jitter(rng: np.random.Generator, box: np.ndarray, size: int, low: float, high: float, tries: int = 100):
    """A random box whose IoU with ``box`` lies in [low, high), inside the image; None if not found."""
    w, h = box[2] - box[0], box[3] - box[1]
    spread = 0.25 if low >= 0.5 else 0.6
    for _ in range(tries):
        cx = (box[0] + box[2]) / 2 + rng.normal(0, spread) * w
        cy = (box[1] + box[3]) / 2 + rng.normal(0, spread) * h
        nw, nh = w * np.exp(rng.normal(0, spread)), h * np.exp(rng.normal(0, spread))
        cand = np.clip(np.array([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], dtype=np.float32), 0, size)
        if cand[2] - cand[0] < 1 or cand[3] - cand[1] < 1:
            continue
        iou = float(_iou_np(cand[None], box[None])[0, 0])
        if low <= iou < high:
            return cand
    return None


def make_proposals(rng: np.random.Generator, boxes: np.ndarray, size: int, num_proposals: int) -> np.ndarray:
    """(n, 4) float32 shuffled proposals for a scene with object ``boxes``, ``n <= num_proposals``.

    Every object's exact box; then, object by object in turn, a jittered copy with IoU in [0.5, 0.9) with
    its object and one with IoU in [0.1, 0.5); then 2-5 background boxes (IoU < 0.1 with every object),
    all while room is left. Images with few objects therefore get fewer proposals (padding, as with the
    adaptive 10-100 bottom-up boxes).
    """
    out = [b for b in boxes]
    extra: list[np.ndarray] = []
    for low, high in ((0.5, 0.9), (0.1, 0.5)):
        for box in boxes:
            cand = _jitter(rng, box, size, low, high)
            if cand is not None:
                extra.append(cand)
    for _ in range(int(rng.integers(2, 6))):
        for _ in range(100):
            w, h = rng.uniform(0.1, 0.35, size=2) * size
            x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
            cand = np.array([x0, y0, x0 + w, y0 + h], dtype=np.float32)
            if _iou_np(cand[None], boxes).max() < 0.1:
                extra.append(cand)
                break
    out += extra[: max(0, num_proposals - len(out))]
    props = np.stack(out).astype(np.float32)
    return props[rng.permutation(len(props))]


def _choose_phrases(rng: np.random.Generator, candidates, count: int) -> list[tuple[str, int, int]]:
    by_kind: dict[int, list] = {k: [c for c in candidates if c[1] == k] for k in range(len(PHRASE_KINDS))}
    start = int(rng.integers(len(PHRASE_KINDS)))
    chosen: list[tuple[str, int, int]] = []
    used_phrases: set[str] = set()
    used_targets: set[int] = set()
    for j in range(count):
        for step in range(len(PHRASE_KINDS)):
            pool = by_kind[(start + j + step) % len(PHRASE_KINDS)]
            if pool:
                break
        # prefer: a phrase not yet used, whose relation/superlative is needed, about a new object
        ranked = sorted(range(len(pool)), key=lambda i: (
            pool[i][0] in used_phrases, not pool[i][3], pool[i][2] in used_targets, rng.random()))
        phrase, kind, target, _ = pool[ranked[0]]
        used_phrases.add(phrase)
        used_targets.add(target)
        chosen.append((phrase, kind, target))
    return chosen


def make_grounding(split: str, num_images: int, phrases_per_image: int = 4, size: int = 64, seed: int = 0,
                   num_proposals: int = 24) -> GroundingData:
    """Synthetic referring-phrase grounding: scenes of 4-7 objects, phrases that each name one object.

    Colours (COLORS) and shapes (SHAPES) may repeat and object sizes vary (12-26% of the image side), so
    phrases are of four kinds (PHRASE_KINDS), taken in turn from a random start per image: a unique colour
    or shape ("the red object", "the circle"), a unique colour+shape ("the red square"), a relation to a
    uniquely described anchor ("the circle left of the blue square", "the green object above the yellow
    triangle", on box centres), and superlatives by box area ("the largest circle", "the smallest
    object"), preferring relations and superlatives that are needed (the target's colour+shape alone is
    ambiguous) and objects not yet named. Each phrase matches exactly one object (checked by
    :func:`referring_candidates`). ``target_boxes`` are the referents' exact boxes (M = 1).

    Proposals (:func:`make_proposals`) are padded to ``num_proposals`` (>= 7); ``box_labels`` gives each
    proposal the (colour, shape) of the object it overlaps with IoU >= 0.5, else -1 (for pretraining an
    object encoder). Deterministic per ``(seed, split, image index)``; splits never share an image.
    """
    _check_split(split)
    _check_int("num_images", num_images, 1)
    _check_int("phrases_per_image", phrases_per_image, 1)
    _check_int("size", size, 32, 512)
    _check_int("seed", seed, 0)
    _check_int("num_proposals", num_proposals, MAX_OBJECTS)
    images = np.empty((num_images, size, size, 3), dtype=np.uint8)
    objects = np.zeros((num_images, MAX_OBJECTS, 4), dtype=np.float32)
    object_labels = np.full((num_images, MAX_OBJECTS, 2), -1, dtype=np.int64)
    proposals = np.zeros((num_images, num_proposals, 4), dtype=np.float32)
    box_mask = np.zeros((num_images, num_proposals), dtype=bool)
    box_labels = np.full((num_images, num_proposals, 2), -1, dtype=np.int64)
    phrases, image_index, kinds, targets = [], [], [], []
    for i in range(num_images):
        rng = scene_rng("grounding", seed, split, i)
        images[i], boxes, labels, candidates = _grounding_scene(rng, size)
        n = len(boxes)
        objects[i, :n], object_labels[i, :n] = boxes, labels
        props = make_proposals(rng, boxes, size, num_proposals)
        proposals[i, : len(props)] = props
        box_mask[i, : len(props)] = True
        overlap = _iou_np(props, boxes)
        best = overlap.argmax(axis=1)
        covered = overlap[np.arange(len(props)), best] >= 0.5
        box_labels[i, : len(props)][covered] = labels[best[covered]]
        for phrase, kind, target in _choose_phrases(rng, candidates, phrases_per_image):
            phrases.append(phrase)
            image_index.append(i)
            kinds.append(kind)
            targets.append(target)
    idx = torch.tensor(image_index, dtype=torch.long)
    tgt = torch.tensor(targets, dtype=torch.long)
    obj = torch.from_numpy(objects)
    log.debug("grounding %s: %d images, %d phrases", split, num_images, len(phrases))
    return GroundingData(
        phrases=phrases, image_index=idx, target_boxes=obj[idx, tgt].unsqueeze(1),
        target_mask=torch.ones(len(phrases), 1, dtype=torch.bool),
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), boxes=torch.from_numpy(proposals),
        box_mask=torch.from_numpy(box_mask), box_labels=torch.from_numpy(box_labels), features=None,
        image_size=torch.full((num_images, 2), float(size)), source=f"synthetic grounding {split} (seed {seed})",
        label_names=(COLORS, SHAPES), kind=torch.tensor(kinds, dtype=torch.long), kind_names=PHRASE_KINDS,
        objects=obj, object_mask=torch.from_numpy(object_labels[..., 0] >= 0),
        object_labels=torch.from_numpy(object_labels), target_object=tgt, image_ids=tuple(range(num_images)))


# ---------------------------------------------------------------------------------------------------------
# Flickr30k Entities (official annotation files + bottom-up features)

FLICKR_SPLITS = ("train", "val", "test")
ENTITY_TYPES: tuple[str, ...] = ("people", "clothing", "bodyparts", "animals", "vehicles", "instruments", "scene",
                                 "other", "notvisual")
"""Flickr30k Entities phrase types (``kind`` indexes this; a phrase with several types gets the first)."""
_ENTITY = re.compile(r"\[/EN#(\d+)((?:/[^\s\]/]+)+) ([^\[\]]*)\]")


def flickr30k_dir(data_root: str | os.PathLike | None = None) -> Path:
    """The Flickr30k Entities folder (split lists ``train.txt``/``val.txt``/``test.txt`` and, in it or in
    its ``Flickr30kEntities/`` subfolder as BAN lays it out, ``Sentences/`` and ``Annotations/``)."""
    from paperzoo.data.catalog import DATASETS

    return locate(DATASETS["flickr30k_entities"], data_root)


def parse_flickr_annotation(path: Path) -> tuple[dict[int, list[list[float]]], tuple[float, float] | None]:
    """``Annotations/<id>.xml``: entity id -> its boxes ``[xmin, ymin, xmax, ymax]`` (an object element can
    name several entities; ``nobndbox``/scene objects have no box), and the image (width, height)."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise VQAInputError(f"{path}: not valid XML ({exc})") from None
    boxes: dict[int, list[list[float]]] = {}
    for k, obj in enumerate(root.findall("object")):
        box = obj.find("bndbox")
        if box is None or len(box) == 0:
            continue
        try:
            coords = [float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
            names = [int(n.text) for n in obj.findall("name")]
        except (TypeError, ValueError):
            raise VQAInputError(f"{path}: object {k} has a bndbox or name that is not a number") from None
        if coords[2] < coords[0] or coords[3] < coords[1]:
            raise VQAInputError(f"{path}: object {k} has xmax < xmin or ymax < ymin")
        for name in names:
            boxes.setdefault(name, []).append(coords)
    size = None
    try:
        size = (float(root.findtext("size/width")), float(root.findtext("size/height")))
    except (TypeError, ValueError):
        pass
    return boxes, size


def parse_flickr_sentence(line: str, where: str = "") -> tuple[str, list[tuple[int, str, str, int]]]:
    """One ``Sentences/<id>.txt`` line: the plain sentence and its phrases ``(entity id, first type, text,
    index of the phrase's first word in the sentence)``; ``[/EN#18/people A man] with ...`` gives
    ``("A man with ...", [(18, "people", "A man", 0)])``."""
    phrases = []
    words: list[str] = []
    pos = 0
    gaps = []
    for m in _ENTITY.finditer(line):
        gaps.append(line[pos:m.start()])
        words += gaps[-1].split()
        phrases.append((int(m.group(1)), m.group(2).split("/")[1], m.group(3).strip(), len(words)))
        words += m.group(3).split()
        pos = m.end()
    gaps.append(line[pos:])
    words += gaps[-1].split()
    if any("[/EN#" in gap or "]" in gap for gap in gaps):
        raise VQAInputError(f"{where}: a malformed [/EN#<id>/<type> <phrase>] annotation")
    return " ".join(words), phrases


def load_flickr30k_entities(split: str, data_root: str | os.PathLike | None = None, features: str = "auto",
                            limit: int | None = None, features_path: str | os.PathLike | None = None,
                            ) -> GroundingData:
    """Flickr30k Entities ``split`` ("train"/"val"/"test"): every annotated phrase of every sentence, with
    its ground-truth boxes (all boxes of its entity; a hit on any counts, as in BAN's evaluation) and the
    image's bottom-up proposals and features (:func:`paperzoo.data.vqa.read_bottom_up`: BAN's
    ``<split>36.hdf5`` / adaptive ``<split>.hdf5`` with the ``_imgid2idx.pkl``, or a TSV).

    ``limit`` keeps the first ``limit`` images of the split list. Phrases whose entity has no box
    (``notvisual``, scene-only, ``nobndbox``) are skipped, as in the official protocol, and counted in an
    INFO log line. ``kind`` indexes ENTITY_TYPES; ``sentences``/``phrase_word`` give each phrase's sentence
    (annotations removed) and the index of its first word there. Boxes are the files' pixel coordinates.
    """
    from paperzoo.data.vqa import read_bottom_up

    _check_split(split, FLICKR_SPLITS)
    if limit is not None:
        _check_int("limit", limit, 1)
    folder = flickr30k_dir(data_root)
    list_path = folder / f"{split}.txt"
    ids = []
    for lineno, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            if not line.strip().isdigit():
                raise VQAInputError(f"{list_path}:{lineno}: not an image id: {line.strip()!r:.40}")
            ids.append(int(line.strip()))
    if limit is not None:
        ids = ids[:limit]
    base = folder / "Flickr30kEntities" if (folder / "Flickr30kEntities" / "Sentences").is_dir() else folder
    phrases, image_index, kinds, targets, sentences, first_word = [], [], [], [], [], []
    sizes = []
    skipped = total = 0
    for row, image_id in enumerate(ids):
        s_path, a_path = base / "Sentences" / f"{image_id}.txt", base / "Annotations" / f"{image_id}.xml"
        for p in (s_path, a_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p} does not exist (image {image_id} of {list_path})")
        boxes, size = parse_flickr_annotation(a_path)
        sizes.append(size)
        for lineno, line in enumerate(s_path.read_text(encoding="utf-8").splitlines(), 1):
            sentence, found = parse_flickr_sentence(line, f"{s_path}:{lineno}")
            for entity, etype, text, word in found:
                total += 1
                if entity not in boxes:
                    skipped += 1
                    continue
                if etype not in ENTITY_TYPES:
                    raise VQAInputError(f"{s_path}:{lineno}: unknown entity type {etype!r}")
                phrases.append(text)
                image_index.append(row)
                kinds.append(ENTITY_TYPES.index(etype))
                targets.append(boxes[entity])
                sentences.append(sentence)
                first_word.append(word)
    log.info("Flickr30k Entities %s: %d phrases over %d images; skipped %d of %d phrases without a box",
             split, len(phrases), len(ids), skipped, total)
    m = max((len(t) for t in targets), default=1)
    target_boxes = torch.zeros(len(phrases), m, 4)
    target_mask = torch.zeros(len(phrases), m, dtype=torch.bool)
    for p, t in enumerate(targets):
        target_boxes[p, : len(t)] = torch.tensor(t)
        target_mask[p, : len(t)] = True
    feats = read_bottom_up(folder, split, ids, features, features_path)
    image_size = feats.image_size
    if all(s is not None for s in sizes):
        image_size = torch.tensor(sizes, dtype=torch.float32).reshape(len(ids), 2)
    return GroundingData(
        phrases=phrases, image_index=torch.tensor(image_index, dtype=torch.long), target_boxes=target_boxes,
        target_mask=target_mask, images=None, boxes=feats.boxes, box_mask=feats.box_mask, box_labels=None,
        features=feats.features, image_size=image_size, source=f"Flickr30k Entities {split} ({folder})",
        kind=torch.tensor(kinds, dtype=torch.long), kind_names=ENTITY_TYPES, image_ids=tuple(ids),
        sentences=sentences, phrase_word=torch.tensor(first_word, dtype=torch.long))
