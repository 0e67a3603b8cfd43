"""Visual question answering data: easy-VQA, a relational (Sort-of-CLEVR-style) generator, VQA v2 files.

Every source yields one :class:`VQAData`: the questions as raw text (the model tokenises them), the row
of the image table each question is about, soft answer scores over a fixed answer vocabulary, a question
type, and the image table itself: pixels (generated sets, easy-VQA), object boxes with their labels
(generated sets) or precomputed object features (VQA v2 bottom-up features).

* :func:`load_easy_vqa` reads the ``easy-vqa`` wheel (``pip install easy-vqa``; 64x64 shape images,
  38,575 train / 9,673 test questions, 13 answers) or a copy under ``<data root>/easy_vqa/``.
* :func:`make_relational_vqa` draws Sort-of-CLEVR-style scenes (Santoro et al. 2017): up to six objects of
  distinct colours at random non-overlapping positions, with exact boxes, and asks non-relational
  questions (shape, left/right, top/bottom of one object) and relational ones (the shape or colour of the
  object nearest to / farthest from it, how many objects share its shape).
* :func:`load_vqa_v2` reads the official VQA v2 question/annotation JSON and bottom-up-attention features
  (the BAN ``<split>36.hdf5`` + ``<split>36_imgid2idx.pkl`` layout or the original TSV).

Box convention everywhere: ``(x0, y0, x1, y1)`` in pixels, ``x`` the column; a generated object's box is
its tight pixel box, so the object covers pixel columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from paperzoo.data.roots import DataNotFoundError, locate

log = logging.getLogger(__name__)

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
"""Split name -> split id in the seed sequence of the generators: splits never share an image."""

COLORS: tuple[str, ...] = ("red", "green", "blue", "orange", "gray", "yellow")
"""Object colours of the generated scenes (the colour id is the index here)."""
COLOR_RGB: tuple[tuple[int, int, int], ...] = (
    (220, 30, 30), (30, 160, 50), (40, 70, 220), (245, 140, 20), (128, 128, 128), (235, 210, 20))
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
"""Object shapes of the generated scenes (the shape id is the index here)."""
BACKGROUND_RGB = (255, 255, 255)
"""The plain background of generated scenes (every object colour differs from it in some channel by > 30)."""

MAX_OBJECTS = len(COLORS)
RELATIONAL_QTYPES: tuple[str, ...] = ("non_relational", "relational")
NON_RELATIONAL_KINDS: tuple[str, ...] = ("shape", "horizontal", "vertical")
RELATIONAL_KINDS: tuple[str, ...] = ("nearest_shape", "farthest_shape", "count_same_shape", "nearest_color")
RELATIONAL_ANSWERS: tuple[str, ...] = (
    COLORS + SHAPES + ("left", "right", "top", "bottom") + tuple(str(n) for n in range(1, MAX_OBJECTS + 1)))
"""The answer vocabulary of :func:`make_relational_vqa`, in this fixed order: colours, shapes, positions,
counts 1..6, whatever the shapes, object count or split of a particular set."""

_QUESTION_TEXT = {
    "shape": "what is the shape of the {} object?",
    "horizontal": "is the {} object on the left or right?",
    "vertical": "is the {} object at the top or bottom?",
    "nearest_shape": "what is the shape of the object nearest to the {} object?",
    "farthest_shape": "what is the shape of the object farthest from the {} object?",
    "count_same_shape": "how many objects have the same shape as the {} object?",
    "nearest_color": "what color is the object nearest to the {} object?",
}
_TIE_MARGIN = 1.0  # pixels: nearest/farthest must win by this much, centres keep this far off the middle
_GENERATOR_TAG = {"relational": 1, "grounding": 2}


class VQAInputError(ValueError):
    """A bad argument to a VQA generator or loader, or a malformed data file."""


@dataclass
class VQAData:
    """Questions over an image table (see the module docstring for the box convention).

    ``answer_scores[q, a]`` is the soft score of ``answers[a]`` for question ``q`` (one-hot for generated
    sets and easy-VQA); ``qtype[q]`` indexes ``qtype_names``; ``image_index[q]`` is the image row. The image
    table holds pixels (``images``), and/or per-image object boxes padded to ``B`` with ``box_mask``
    marking real boxes, their labels (generated sets) and precomputed features (bottom-up).
    """

    questions: list[str]
    image_index: torch.Tensor
    answer_scores: torch.Tensor
    answers: list[str]
    qtype: torch.Tensor
    qtype_names: tuple[str, ...]
    images: torch.Tensor | None
    boxes: torch.Tensor | None
    box_mask: torch.Tensor | None
    box_labels: torch.Tensor | None
    features: torch.Tensor | None
    image_size: torch.Tensor | None
    label_names: tuple[tuple[str, ...], ...] = ()
    source: str = ""
    qkind: torch.Tensor | None = None
    """(Q,) long index into ``qkind_names``: the finer question kind (generated sets only)."""
    qkind_names: tuple[str, ...] = ()
    image_ids: tuple = ()
    """The dataset's own id of each image row (easy-VQA / VQA v2 image ids; generated: the image index)."""
    question_ids: tuple = ()
    """The dataset's own id of each question (VQA v2 question ids; else empty)."""

    def __post_init__(self) -> None:
        n_q = len(self.questions)
        if self.image_index.shape != (n_q,) or self.qtype.shape != (n_q,):
            raise VQAInputError(f"{self.source}: image_index/qtype must have shape ({n_q},)")
        if self.answer_scores.shape != (n_q, len(self.answers)):
            raise VQAInputError(f"{self.source}: answer_scores must have shape ({n_q}, {len(self.answers)})")
        if self.boxes is not None and (self.box_mask is None or self.boxes.shape[:2] != self.box_mask.shape):
            raise VQAInputError(f"{self.source}: boxes and box_mask disagree in shape")

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def num_images(self) -> int:
        """Rows of the image table."""
        for t in (self.images, self.boxes, self.features, self.image_size):
            if t is not None:
                return int(t.shape[0])
        return int(self.image_index.max()) + 1 if len(self) else 0

    def answer_index(self) -> torch.Tensor:
        """(Q,) long: the best-scored answer of each question (the label of one-hot sets)."""
        return self.answer_scores.argmax(dim=1)

    def subset(self, index: torch.Tensor | list[int]) -> VQAData:
        """The questions ``index`` (in that order) over the same image table."""
        idx = torch.as_tensor(index, dtype=torch.long)
        picked = {f.name: getattr(self, f.name) for f in fields(self)}
        picked.update(questions=[self.questions[i] for i in idx.tolist()], image_index=self.image_index[idx],
                      answer_scores=self.answer_scores[idx], qtype=self.qtype[idx],
                      qkind=None if self.qkind is None else self.qkind[idx],
                      question_ids=tuple(self.question_ids[i] for i in idx.tolist()) if self.question_ids else ())
        return VQAData(**picked)


def _check_split(split: str, allowed=SPLITS) -> None:
    if split not in allowed:
        raise VQAInputError(f"split must be one of {', '.join(allowed)}, got {split!r}")


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise VQAInputError(f"{name} must be an integer {bound}, got {value!r}")


def _one_hot(labels: list[int], n: int) -> torch.Tensor:
    scores = torch.zeros(len(labels), n, dtype=torch.float32)
    if labels:
        scores[torch.arange(len(labels)), torch.tensor(labels, dtype=torch.long)] = 1.0
    return scores


# ---------------------------------------------------------------------------------------------------------
# easy-VQA (the PyPI wheel ``easy-vqa``: pure data)

EASY_VQA_INSTALL = "pip install easy-vqa==1.0"
EASY_VQA_SPLITS = ("train", "test")
EASY_VQA_QTYPES: tuple[str, ...] = ("yes/no", "color", "shape")
EASY_VQA_SHAPES: tuple[str, ...] = ("circle", "rectangle", "triangle")
"""The shape answers of easy-VQA; ``yes``/``no`` are yes/no answers and every other answer is a colour."""


def easy_vqa_qtype(answer: str) -> int:
    """The question type (index into EASY_VQA_QTYPES) of an easy-VQA question, read from its answer.

    easy-VQA has three question families and each has its own answers: yes/no questions ("is there a red
    shape?") answer ``yes``/``no``, shape questions ("what shape is ...") one of EASY_VQA_SHAPES, colour
    questions ("what color is ...") a colour; so the answer vocabulary determines the type.
    """
    if answer in ("yes", "no"):
        return 0
    return 2 if answer in EASY_VQA_SHAPES else 1


def easy_vqa_dir(data_root: str | os.PathLike | None = None) -> Path:
    """The easy-VQA data folder (``answers.txt``, ``{train,test}/questions.json``, ``*/images/<id>.png``)."""
    from paperzoo.data.catalog import DATASETS

    try:
        return locate(DATASETS["easy_vqa"], data_root)
    except DataNotFoundError as exc:
        raise DataNotFoundError(f"{exc}\nOr install the wheel: `{EASY_VQA_INSTALL}`") from None


def load_easy_vqa(split: str, data_root: str | os.PathLike | None = None, limit: int | None = None) -> VQAData:
    """easy-VQA ``split`` ("train" or "test"): images as uint8, one-hot answers over ``answers.txt``.

    ``limit`` keeps the first ``limit`` questions and only their images, re-indexed in order of first use
    (``image_ids`` holds the original ids). Raises DataNotFoundError (where it looked, how to install) when
    the data is absent and a ValueError naming the file and row for a malformed question row.
    """
    _check_split(split, EASY_VQA_SPLITS)
    if limit is not None:
        _check_int("limit", limit, 1)
    folder = easy_vqa_dir(data_root)
    answers_path = folder / "answers.txt"
    answers = [line.strip() for line in answers_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(set(answers)) != len(answers):
        raise VQAInputError(f"{answers_path}: an answer is listed twice")
    answer_id = {a: k for k, a in enumerate(answers)}
    q_path = folder / split / "questions.json"
    try:
        rows = json.loads(q_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise VQAInputError(f"{q_path}: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise VQAInputError(f"{q_path}: expected a list of [question, answer, image_id] rows")
    if limit is not None:
        rows = rows[:limit]
    questions, labels, qtypes, image_rows = [], [], [], []
    row_of_image: dict[int, int] = {}
    for k, row in enumerate(rows):
        ok = (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and isinstance(row[1], str)
              and isinstance(row[2], int) and not isinstance(row[2], bool) and row[2] >= 0)
        if not ok:
            raise VQAInputError(f"{q_path}: row {k} is not [question, answer, image_id]: {row!r:.80}")
        question, answer, image_id = row
        if answer not in answer_id:
            raise VQAInputError(f"{q_path}: row {k}: answer {answer!r} is not in {answers_path.name}")
        questions.append(question)
        labels.append(answer_id[answer])
        qtypes.append(easy_vqa_qtype(answer))
        image_rows.append(row_of_image.setdefault(image_id, len(row_of_image)))
    image_ids = tuple(row_of_image)
    images = np.empty((len(image_ids), 64, 64, 3), dtype=np.uint8)
    for r, image_id in enumerate(image_ids):
        path = folder / split / "images" / f"{image_id}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image {image_id} of {q_path} is missing")
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if arr.shape != (64, 64, 3):
            if r == 0:
                images = np.empty((len(image_ids),) + arr.shape, dtype=np.uint8)
            if arr.shape != images.shape[1:]:
                raise VQAInputError(f"{path}: size {arr.shape[1]}x{arr.shape[0]} differs from the other images")
        images[r] = arr
    log.debug("easy-VQA %s: %d questions over %d images from %s", split, len(questions), len(image_ids), folder)
    n_img = len(image_ids)
    side = images.shape[1]
    return VQAData(
        questions=questions, image_index=torch.tensor(image_rows, dtype=torch.long),
        answer_scores=_one_hot(labels, len(answers)), answers=answers,
        qtype=torch.tensor(qtypes, dtype=torch.long), qtype_names=EASY_VQA_QTYPES,
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), boxes=None, box_mask=None,
        box_labels=None, features=None,
        image_size=torch.tensor([[float(side), float(side)]] * n_img, dtype=torch.float32).reshape(n_img, 2),
        source=f"easy-VQA {split} ({folder})", image_ids=image_ids)


# ---------------------------------------------------------------------------------------------------------
# Scene rendering shared by the relational VQA and grounding generators

def supersampling(size: int) -> int:
    """Supersampling factor for ``size``-pixel images: 2 to 4, a canvas of at least 128 pixels."""
    return min(4, max(2, -(-128 // size)))


def render_scene(objects: list[tuple[float, float, float, int, int]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw objects ``(cx, cy, extent, color id, shape id)`` on the plain background, antialiased.

    Returns the (S, S, 3) uint8 image and (n, 4) float32 tight pixel boxes: every pixel that any part of
    object ``k`` touches lies in box ``k`` and every edge row/column of the box holds such a pixel. Squares
    and circles span ``extent`` pixels; triangles point up with base and height ``extent``. Objects are
    drawn in order (later on top); the generators keep them apart.
    """
    ss = supersampling(size)
    canvas = size * ss
    rgb = Image.new("RGB", (canvas, canvas), BACKGROUND_RGB)
    ids = Image.new("L", (canvas, canvas), 0)
    d_rgb, d_ids = ImageDraw.Draw(rgb), ImageDraw.Draw(ids)
    for k, (cx, cy, extent, color, shape) in enumerate(objects):
        h = extent / 2.0
        x0, y0, x1, y1 = ((cx - h) * ss, (cy - h) * ss, (cx + h) * ss - 1, (cy + h) * ss - 1)
        fill = COLOR_RGB[color]
        for draw, value in ((d_rgb, fill), (d_ids, k + 1)):
            if SHAPES[shape] == "square":
                draw.rectangle([x0, y0, x1, y1], fill=value)
            elif SHAPES[shape] == "circle":
                draw.ellipse([x0, y0, x1, y1], fill=value)
            else:
                draw.polygon([(cx * ss, y0), (x0, y1), (x1, y1)], fill=value)
    img = np.asarray(rgb, dtype=np.float32).reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    id_map = np.asarray(ids)
    boxes = np.zeros((len(objects), 4), dtype=np.float32)
    for k in range(len(objects)):
        ys, xs = np.nonzero(id_map == k + 1)
        if len(xs) == 0:
            raise RuntimeError(f"object {k} is hidden or outside the image")
        boxes[k] = (xs.min() // ss, ys.min() // ss, xs.max() // ss + 1, ys.max() // ss + 1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), boxes


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """(n, 2) centres ``((x0 + x1) / 2, (y0 + y1) / 2)`` of (n, 4) boxes."""
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def scene_rng(kind: str, seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``split`` for the ``kind`` ("relational"/"grounding") set."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], _GENERATOR_TAG[kind], index]))


def place_objects(rng: np.random.Generator, extents: list[float], size: int, gap: float = 2.0,
                  tries: int = 200) -> list[tuple[float, float]] | None:
    """Random centres for objects of the given extents, fully inside the image and ``gap`` pixels apart
    (box to box); None when ``tries`` draws per object do not find room."""
    placed: list[tuple[float, float, float]] = []
    for e in extents:
        h = e / 2.0
        for _ in range(tries):
            cx, cy = rng.uniform(h + 1, size - h - 1, size=2)
            if all(abs(cx - px) >= h + ph + gap or abs(cy - py) >= h + ph + gap for px, py, ph in placed):
                placed.append((float(cx), float(cy), h))
                break
        else:
            return None
    return [(x, y) for x, y, _ in placed]


# ---------------------------------------------------------------------------------------------------------
# Relational VQA (Sort-of-CLEVR style)

def _relational_scene(rng: np.random.Generator, size: int, num_objects: int, shapes: tuple[int, ...]):
    extent = size * 10.0 / 64.0
    while True:
        centres = place_objects(rng, [extent] * num_objects, size)
        if centres is None:
            continue
        colors = rng.permutation(len(COLORS))[:num_objects]
        obj_shapes = rng.choice(shapes, size=num_objects)
        objects = [(cx, cy, extent, int(c), int(s)) for (cx, cy), c, s in zip(centres, colors, obj_shapes)]
        image, boxes = render_scene(objects, size)
        centre = box_centres(boxes)
        if np.all(np.abs(centre - size / 2.0) >= _TIE_MARGIN):  # left/right, top/bottom never ambiguous
            return image, boxes, np.stack([colors, obj_shapes], axis=1).astype(np.int64)


def relational_answer(kind: str, k: int, boxes: np.ndarray, labels: np.ndarray, size: int) -> str | None:
    """The answer to question ``kind`` about object ``k`` of a scene, or None when it is ambiguous (a
    nearest/farthest object that does not win by 1 pixel). Positions are box centres; left/top mean left
    of / above the image centre."""
    centre = box_centres(boxes)
    if kind == "shape":
        return SHAPES[labels[k, 1]]
    if kind == "horizontal":
        return "left" if centre[k, 0] < size / 2 else "right"
    if kind == "vertical":
        return "top" if centre[k, 1] < size / 2 else "bottom"
    if kind == "count_same_shape":
        return str(int(np.sum(labels[:, 1] == labels[k, 1])))
    dist = np.linalg.norm(centre - centre[k], axis=1)
    dist[k] = np.nan
    order = np.argsort(np.where(np.isnan(dist), np.inf, dist))[: len(dist) - 1]  # others, nearest first
    if len(order) < 2:
        return None
    if kind in ("nearest_shape", "nearest_color"):
        first, second = order[0], order[1]
    else:
        first, second = order[-1], order[-2]
    if abs(dist[first] - dist[second]) < _TIE_MARGIN:
        return None
    return SHAPES[labels[first, 1]] if kind != "nearest_color" else COLORS[labels[first, 0]]


def make_relational_vqa(split: str, num_images: int, questions_per_image: int = 10, size: int = 64,
                        seed: int = 0, num_objects: int = 6, shapes: tuple[str, ...] = ("square", "circle"),
                        ) -> VQAData:
    """Sort-of-CLEVR-style scenes with relational and non-relational questions in English.

    Each image holds ``num_objects`` (2..6) objects of distinct colours from COLORS, shapes drawn from
    ``shapes`` (a subset of SHAPES), at random non-overlapping positions over a white background, drawn
    antialiased. Questions alternate between ``non_relational`` (shape / left-or-right / top-or-bottom of
    the object of a named colour) and ``relational`` (the shape of the nearest / farthest object, how many
    objects share its shape, the colour of the nearest object), starting with a random type per image,
    the kinds of each type cycling from a random start, so the types are half each and the kinds balanced.
    Distances are between box centres; a question whose answer would hinge on less than a pixel is never
    asked. The answer vocabulary is RELATIONAL_ANSWERS for every set. ``box_labels`` holds
    ``(colour id, shape id)`` per object, ``qkind`` the question kind.

    Deterministic per ``(seed, split, image index)``: image ``i`` and its questions come from
    :func:`scene_rng` and do not depend on ``num_images``; train/val/test never share an image.
    """
    _check_split(split)
    _check_int("num_images", num_images, 1)
    _check_int("questions_per_image", questions_per_image, 1)
    _check_int("size", size, 32, 512)
    _check_int("seed", seed, 0)
    _check_int("num_objects", num_objects, 2, MAX_OBJECTS)
    if isinstance(shapes, str) or not shapes or any(s not in SHAPES for s in shapes) or len(set(shapes)) != len(
            shapes):
        raise VQAInputError(f"shapes must be distinct names from {', '.join(SHAPES)}, got {shapes!r}")
    shape_ids = tuple(SHAPES.index(s) for s in shapes)
    kinds = (NON_RELATIONAL_KINDS, RELATIONAL_KINDS)
    all_kinds = NON_RELATIONAL_KINDS + RELATIONAL_KINDS
    answer_id = {a: k for k, a in enumerate(RELATIONAL_ANSWERS)}
    images = np.empty((num_images, size, size, 3), dtype=np.uint8)
    boxes = np.empty((num_images, num_objects, 4), dtype=np.float32)
    labels = np.empty((num_images, num_objects, 2), dtype=np.int64)
    questions, image_index, answers, qtype, qkind = [], [], [], [], []
    for i in range(num_images):
        rng = scene_rng("relational", seed, split, i)
        images[i], boxes[i], labels[i] = _relational_scene(rng, size, num_objects, shape_ids)
        start_type = int(rng.integers(2))
        start_kind = [int(rng.integers(len(k))) for k in kinds]
        asked: set[tuple[str, int]] = set()
        asked_of_type = [0, 0]
        for j in range(questions_per_image):
            t = (start_type + j) % 2
            kind = kinds[t][(start_kind[t] + asked_of_type[t]) % len(kinds[t])]
            asked_of_type[t] += 1
            order = rng.permutation(num_objects)
            fresh = [k for k in order if (kind, int(k)) not in asked]
            choice = None
            for k in fresh + [k for k in order if (kind, int(k)) in asked]:
                answer = relational_answer(kind, int(k), boxes[i], labels[i], size)
                if answer is not None:
                    choice = (int(k), answer)
                    break
            if choice is None:  # every object ties for this kind: ask its non-relational counterpart instead
                t, kind = 0, NON_RELATIONAL_KINDS[0]
                choice = (int(order[0]), relational_answer(kind, int(order[0]), boxes[i], labels[i], size))
            k, answer = choice
            asked.add((kind, k))
            questions.append(_QUESTION_TEXT[kind].format(COLORS[labels[i, k, 0]]))
            image_index.append(i)
            answers.append(answer_id[answer])
            qtype.append(t)
            qkind.append(all_kinds.index(kind))
    log.debug("relational VQA %s: %d images, %d questions", split, num_images, len(questions))
    return VQAData(
        questions=questions, image_index=torch.tensor(image_index, dtype=torch.long),
        answer_scores=_one_hot(answers, len(RELATIONAL_ANSWERS)), answers=list(RELATIONAL_ANSWERS),
        qtype=torch.tensor(qtype, dtype=torch.long), qtype_names=RELATIONAL_QTYPES,
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), boxes=torch.from_numpy(boxes),
        box_mask=torch.ones(num_images, num_objects, dtype=torch.bool), box_labels=torch.from_numpy(labels),
        features=None, image_size=torch.full((num_images, 2), float(size)), label_names=(COLORS, SHAPES),
        source=f"relational VQA {split} (seed {seed})", qkind=torch.tensor(qkind, dtype=torch.long),
        qkind_names=all_kinds, image_ids=tuple(range(num_images)))


# ---------------------------------------------------------------------------------------------------------
# Bottom-up-attention object features (Anderson et al. 2018), in the layouts the official code ships

TSV_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
"""Columns of the original bottom-up-attention TSV (boxes and features are base64 float32 arrays)."""
H5PY_INSTALL = "pip install h5py"


class FeatureFileError(ValueError):
    """A bottom-up feature file disagrees with itself or with the questions (box counts, image ids)."""


@dataclass
class BottomUpFeatures:
    """Object features of some images, rows in the order asked for, boxes padded to ``B``."""

    image_ids: tuple
    features: torch.Tensor
    """(I, B, D) float32, zero on padding."""
    boxes: torch.Tensor
    """(I, B, 4) float32 x0, y0, x1, y1 in the image's pixels, zero on padding."""
    box_mask: torch.Tensor
    """(I, B) bool."""
    image_size: torch.Tensor | None
    """(I, 2) float32 (width, height), when the file says (TSV; hdf5 with spatial_features)."""
    source: str


def _stack_rows(path: Path, ids: list, rows: dict, sizes: dict | None) -> BottomUpFeatures:
    dims = {f.shape[1] for f, _ in rows.values()}
    if len(dims) > 1:
        raise FeatureFileError(f"{path}: feature rows have different widths {sorted(dims)}")
    dim = dims.pop() if dims else 0
    n_box = max((len(b) for _, b in rows.values()), default=0)
    feats = np.zeros((len(ids), n_box, dim), dtype=np.float32)
    boxes = np.zeros((len(ids), n_box, 4), dtype=np.float32)
    mask = np.zeros((len(ids), n_box), dtype=bool)
    for r, image_id in enumerate(ids):
        f, b = rows[image_id]
        feats[r, : len(f)], boxes[r, : len(b)], mask[r, : len(b)] = f, b, True
    size = None
    if sizes is not None:
        size = torch.tensor([sizes[i] for i in ids], dtype=torch.float32).reshape(len(ids), 2)
    return BottomUpFeatures(image_ids=tuple(ids), features=torch.from_numpy(feats), boxes=torch.from_numpy(boxes),
                            box_mask=torch.from_numpy(mask), image_size=size, source=str(path))


def _b64_floats(text: str, path: Path, image_id, column: str) -> np.ndarray:
    import base64
    import binascii

    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FeatureFileError(f"{path}: image id {image_id}: column {column} is not base64") from None
    if len(raw) % 4:
        raise FeatureFileError(f"{path}: image id {image_id}: column {column} is not a float32 array "
                               f"({len(raw)} bytes)")
    return np.frombuffer(raw, dtype=np.float32)


def read_bottom_up_tsv(path: str | os.PathLike, image_ids, feature_dim: int | None = None) -> BottomUpFeatures:
    """Rows ``image_ids`` (in that order) of a bottom-up-attention TSV (columns TSV_FIELDS, extra ones
    ignored). Each used row is checked: ``num_boxes`` must match the boxes and the features (``num_boxes``
    rows of ``feature_dim`` values, or of the width of the first row read), else a FeatureFileError naming
    the file and image id; so is an image id with no row."""
    import csv
    import sys

    path = Path(path)
    wanted = {_as_id(i) for i in image_ids}
    rows: dict = {}
    sizes: dict = {}
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="ascii", newline="") as fh:
        for lineno, fields_ in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if len(fields_) < len(TSV_FIELDS):
                raise FeatureFileError(f"{path}:{lineno}: {len(fields_)} columns, expected {', '.join(TSV_FIELDS)}")
            rec = dict(zip(TSV_FIELDS, fields_))
            image_id = _as_id(rec["image_id"])
            if image_id not in wanted or image_id in rows:
                continue
            try:
                n = int(rec["num_boxes"])
                sizes[image_id] = (float(rec["image_w"]), float(rec["image_h"]))
            except ValueError:
                raise FeatureFileError(f"{path}:{lineno}: image id {image_id}: num_boxes / image_w / image_h "
                                       f"are not numbers") from None
            boxes = _b64_floats(rec["boxes"], path, image_id, "boxes")
            feats = _b64_floats(rec["features"], path, image_id, "features")
            if n <= 0 or boxes.size != 4 * n:
                raise FeatureFileError(f"{path}: image id {image_id}: num_boxes is {n} but the boxes column holds "
                                       f"{boxes.size / 4:g} boxes")
            if feats.size % n or (feature_dim is not None and feats.size != n * feature_dim):
                raise FeatureFileError(f"{path}: image id {image_id}: {feats.size} feature values do not split "
                                       f"into num_boxes = {n} rows" + (
                                           f" of {feature_dim}" if feature_dim is not None else ""))
            if feature_dim is None:
                feature_dim = feats.size // n
            rows[image_id] = (feats.reshape(n, -1), boxes.reshape(n, 4))
    ids = [_as_id(i) for i in image_ids]
    missing = [i for i in ids if i not in rows]
    if missing:
        raise FeatureFileError(f"{path}: image id {missing[0]} has no feature row ({len(missing)} missing)")
    return _stack_rows(path, ids, rows, sizes)


def _as_id(value):
    """Image ids as ints where they are integral (JSON/TSV/pickle disagree on int vs str)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def read_bottom_up_hdf5(path: str | os.PathLike, imgid2idx_path: str | os.PathLike, image_ids) -> BottomUpFeatures:
    """Rows ``image_ids`` of a BAN / bottom-up-attention-vqa feature file: ``image_features`` and
    ``image_bb`` (fixed ``(N, 36, D)`` / ``(N, 36, 4)``, or adaptive ``(total, D)`` / ``(total, 4)`` with
    ``pos_boxes`` (N, 2) row ranges), optional ``spatial_features``; ``imgid2idx_path`` is the pickled
    image id -> row dict (a pickle: load only files you trust). Box-count disagreements and image ids
    without a row raise a FeatureFileError naming the file and image id."""
    import pickle

    try:
        import h5py
    except ImportError:
        raise ImportError(f"reading {path} needs h5py: `{H5PY_INSTALL}` (or use the bottom-up TSV)") from None
    path, imgid2idx_path = Path(path), Path(imgid2idx_path)
    for p in (path, imgid2idx_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist")
    try:
        with open(imgid2idx_path, "rb") as fh:
            index = {_as_id(k): int(v) for k, v in pickle.load(fh).items()}
    except Exception as exc:  # noqa: BLE001 -- unpickling fails in many ways; all mean a bad file
        raise FeatureFileError(f"{imgid2idx_path}: not a pickled image id -> row dict ({exc})") from None
    ids = [_as_id(i) for i in image_ids]
    missing = [i for i in ids if i not in index]
    if missing:
        raise FeatureFileError(f"{imgid2idx_path}: image id {missing[0]} has no feature row "
                               f"({len(missing)} missing)")
    rows: dict = {}
    sizes: dict | None = {}
    try:
        hf = h5py.File(path, "r")
    except OSError as exc:
        raise FeatureFileError(f"{path}: not an HDF5 file ({exc})") from None
    with hf:
        for name in ("image_features", "image_bb"):
            if name not in hf:
                raise FeatureFileError(f"{path}: no dataset {name!r} (has {', '.join(hf.keys())})")
        feats, bb = hf["image_features"], hf["image_bb"]
        spatial = hf.get("spatial_features")
        pos = np.asarray(hf["pos_boxes"]) if "pos_boxes" in hf else None
        n_rows = len(pos) if pos is not None else feats.shape[0]
        for image_id in ids:
            row = index[image_id]
            if not 0 <= row < n_rows:
                raise FeatureFileError(f"{path}: image id {image_id}: row {row} is outside the file's "
                                       f"{n_rows} rows")
            if pos is not None:
                start, stop = (int(v) for v in pos[row])
                if not 0 <= start < stop <= min(feats.shape[0], bb.shape[0]):
                    raise FeatureFileError(f"{path}: image id {image_id}: pos_boxes [{start}, {stop}) outside "
                                           f"image_features ({feats.shape[0]}) / image_bb ({bb.shape[0]}) rows")
                f, b = np.asarray(feats[start:stop]), np.asarray(bb[start:stop])
                s = None if spatial is None else np.asarray(spatial[start:stop])
            else:
                f, b = np.asarray(feats[row]), np.asarray(bb[row])
                s = None if spatial is None else np.asarray(spatial[row])
            if f.ndim != 2 or b.ndim != 2 or b.shape[1] != 4 or len(f) != len(b):
                raise FeatureFileError(f"{path}: image id {image_id}: image_features has {len(f)} boxes but "
                                       f"image_bb has {len(b)}")
            rows[image_id] = (f.astype(np.float32), b.astype(np.float32))
            if s is not None and sizes is not None and s.ndim == 2 and s.shape[1] >= 6:
                ok = np.nonzero((s[:, 4] > 0) & (s[:, 5] > 0))[0]
                if len(ok):
                    k = ok[0]  # spatial columns: x0/w, y0/h, x1/w, y1/h, box w/w, box h/h
                    sizes[image_id] = (float((b[k, 2] - b[k, 0]) / s[k, 4]), float((b[k, 3] - b[k, 1]) / s[k, 5]))
                    continue
            sizes = None
    return _stack_rows(path, ids, rows, sizes)


def read_bottom_up(folder: Path, split: str, image_ids, features: str = "auto",
                   features_path: str | os.PathLike | None = None) -> BottomUpFeatures:
    """Features of ``image_ids`` from the first layout present in ``folder`` (or ``features_path``):
    ``hdf5`` = ``<split>36.hdf5`` + ``<split>36_imgid2idx.pkl`` (fixed 36 boxes) or ``<split>.hdf5`` +
    ``<split>_imgid2idx.pkl`` (adaptive 10-100 boxes); ``tsv`` = ``<split>36.tsv``, ``<split>.tsv`` or the
    bottom-up release's ``trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv``."""
    if features not in ("auto", "hdf5", "tsv"):
        raise VQAInputError(f"features must be 'auto', 'hdf5', 'tsv' or None, got {features!r}")
    if features_path is not None:
        p = Path(features_path)
        if p.suffix in (".hdf5", ".h5"):
            return read_bottom_up_hdf5(p, p.with_name(p.stem + "_imgid2idx.pkl"), image_ids)
        return read_bottom_up_tsv(p, image_ids)
    h5 = [(folder / f"{split}{s}.hdf5", folder / f"{split}{s}_imgid2idx.pkl") for s in ("36", "")]
    tsv = [folder / f"{split}36.tsv", folder / f"{split}.tsv",
           folder / "trainval_36" / "trainval_resnet101_faster_rcnn_genome_36.tsv",
           folder / "trainval_resnet101_faster_rcnn_genome_36.tsv"]
    if features in ("auto", "hdf5"):
        for data, index in h5:
            if data.is_file() and index.is_file():
                return read_bottom_up_hdf5(data, index, image_ids)
    if features in ("auto", "tsv"):
        for p in tsv:
            if p.is_file():
                return read_bottom_up_tsv(p, image_ids)
    tried = ([f"{d.name} + {i.name}" for d, i in h5] if features != "tsv" else []) + (
        [str(p.relative_to(folder)) for p in tsv] if features != "hdf5" else [])
    raise DataNotFoundError(f"no bottom-up features for split {split!r} in {folder}: tried {'; '.join(tried)}")


# ---------------------------------------------------------------------------------------------------------
# VQA v2 (official JSON files)

VQA_V2_QTYPES: tuple[str, ...] = ("yes/no", "number", "other")
VQA_V2_SPLITS = ("train", "val")
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = ("a", "an", "the")
_CONTRACTIONS = {w.replace("'", ""): w for w in (
    "aren't", "can't", "couldn't", "didn't", "doesn't", "don't", "hadn't", "hasn't", "haven't", "he's", "i'd",
    "i'm", "i've", "isn't", "it'd", "it'll", "let's", "shouldn't", "that's", "there's", "they're", "they've",
    "wasn't", "weren't", "what's", "where's", "who's", "won't", "wouldn't", "you'd", "you're", "you've")}


def normalize_answer(answer: str) -> str:
    """An answer string normalised as the official VQA evaluation does before comparing (a subset).

    Lowercase; newlines/tabs to spaces; the punctuation ``;/[]"{}()=+\\_-><@`,?!`` is deleted where it
    touches a space or the answer has a digit-comma-digit, else replaced by a space; a period not followed
    by a digit is deleted; number words zero..ten (and "none") become digits; the articles a/an/the are
    dropped; common apostrophe-less contractions get their apostrophe back ("dont" -> "don't"); finally
    commas are removed and spaces collapsed (as the BAN/bottom-up answer preprocessing does).
    """
    import re

    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    comma_digits = re.search(r"(\d)(,)(\d)", text) is not None
    for p in _PUNCT:
        if f"{p} " in text or f" {p}" in text or comma_digits:
            text = text.replace(p, "")
        else:
            text = text.replace(p, " ")
    text = re.sub(r"(?<!\d)\.(?!\d)", "", text)
    words = []
    for w in text.split():
        w = _NUMBER_WORDS.get(w, w)
        if w in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words).replace(",", "")


def answer_score(count: int) -> float:
    """Soft score of an answer given by ``count`` of the 10 annotators (BAN / bottom-up rule):
    0 -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1."""
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0


def _read_json(path: Path, key: str) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VQAInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get(key), list):
        raise VQAInputError(f"{path}: expected an object with a {key!r} list")
    return obj[key]


def _field(path: Path, key: str, k: int, item, name: str, kind):
    if not isinstance(item, dict) or name not in item or not isinstance(item[name], kind) or isinstance(
            item[name], bool):
        raise VQAInputError(f"{path}: {key}[{k}] has no {kind.__name__} field {name!r}")
    return item[name]


def vqa_v2_files(split: str) -> tuple[str, str]:
    """The official question and annotation file names of ``split`` ("train" or "val")."""
    return f"v2_OpenEnded_mscoco_{split}2014_questions.json", f"v2_mscoco_{split}2014_annotations.json"


def vqa_v2_dir(split: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``split``'s VQA v2 question and annotation files."""
    import dataclasses

    from paperzoo.data.catalog import DATASETS

    return locate(dataclasses.replace(DATASETS["vqa_v2"], files=vqa_v2_files(split)), data_root)


def _read_annotations(path: Path) -> dict:
    out = {}
    for k, item in enumerate(_read_json(path, "annotations")):
        qid = _field(path, "annotations", k, item, "question_id", int)
        image_id = _field(path, "annotations", k, item, "image_id", int)
        given = _field(path, "annotations", k, item, "answers", list)
        mc = _field(path, "annotations", k, item, "multiple_choice_answer", str)
        atype = _field(path, "annotations", k, item, "answer_type", str)
        if atype not in VQA_V2_QTYPES:
            raise VQAInputError(f"{path}: annotations[{k}]: answer_type {atype!r} is not one of "
                                f"{', '.join(VQA_V2_QTYPES)}")
        texts = []
        for a in given:
            if not isinstance(a, dict) or not isinstance(a.get("answer"), str):
                raise VQAInputError(f"{path}: annotations[{k}]: an answer without an 'answer' string")
            texts.append(normalize_answer(a["answer"]))
        if qid in out:
            raise VQAInputError(f"{path}: question id {qid} is annotated twice")
        out[qid] = (image_id, texts, normalize_answer(mc), atype)
    return out


def vqa_v2_answer_vocab(annotations, min_count: int = 9) -> list[str]:
    """The answer vocabulary of the official BAN / bottom-up code: normalised multiple-choice answers that
    are the answer of at least ``min_count`` questions, most frequent first (ties alphabetically).

    ``annotations`` is an annotation file or its parsed form, or a list of them; the official code counts
    over train + val (its ``trainval_ans2label``: 3,129 answers)."""
    sources = annotations if isinstance(annotations, (list, tuple)) else [annotations]
    counts: dict[str, int] = {}
    for source in sources:
        parsed = source if isinstance(source, dict) else _read_annotations(Path(source))
        for _, _, mc, _ in parsed.values():
            counts[mc] = counts.get(mc, 0) + 1
    return sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))


def load_vqa_v2(split: str, data_root: str | os.PathLike | None = None, features: str | None = "auto",
                answers: list[str] | None = None, min_answer_count: int = 9, limit: int | None = None,
                features_path: str | os.PathLike | None = None) -> VQAData:
    """VQA v2 ``split`` ("train"/"val") from the official JSON files, with bottom-up object features.

    Questions come sorted by question id (as the official code orders them); ``limit`` keeps the first
    ``limit`` and only their images. Soft scores: :func:`answer_score` of how many of the 10 annotators
    gave each (normalised, :func:`normalize_answer`) answer. The answer vocabulary is ``answers`` if given,
    else :func:`vqa_v2_answer_vocab` (``min_answer_count``) of the train and val annotations found in the
    folder, as the official code builds it, so train and val agree. ``qtype`` is the ``answer_type``.
    ``features``: "auto" / "hdf5" / "tsv" (see :func:`read_bottom_up`) or None for questions only.

    Raises DataNotFoundError when the files are absent and a ValueError naming the file and the question
    or image id when the questions and annotations disagree, an image has no feature row, or a feature
    row's box count disagrees with its boxes.
    """
    _check_split(split, VQA_V2_SPLITS)
    if limit is not None:
        _check_int("limit", limit, 1)
    folder = vqa_v2_dir(split, data_root)
    q_path, a_path = (folder / name for name in vqa_v2_files(split))
    rows = []
    for k, item in enumerate(_read_json(q_path, "questions")):
        rows.append((_field(q_path, "questions", k, item, "question_id", int),
                     _field(q_path, "questions", k, item, "image_id", int),
                     _field(q_path, "questions", k, item, "question", str)))
    annotations = _read_annotations(a_path)
    qids = {r[0] for r in rows}
    if len(qids) != len(rows):
        raise VQAInputError(f"{q_path}: a question id appears twice")
    for qid, image_id, _ in rows:
        if qid not in annotations:
            raise VQAInputError(f"{q_path}: question id {qid} has no annotation in {a_path}")
        if annotations[qid][0] != image_id:
            raise VQAInputError(f"{q_path}: question id {qid} is about image {image_id} but {a_path} says "
                                f"image {annotations[qid][0]}")
    extra = sorted(set(annotations) - qids)
    if extra:
        raise VQAInputError(f"{a_path}: question id {extra[0]} is annotated but not in {q_path}")
    if answers is None:  # train + val annotations, as the official trainval_ans2label
        sources = [annotations if s == split else folder / vqa_v2_files(s)[1] for s in VQA_V2_SPLITS]
        sources = [a for a in sources if isinstance(a, dict) or a.is_file()]
        vocab = vqa_v2_answer_vocab(sources, min_answer_count)
    else:
        vocab = list(answers)
        if len(set(vocab)) != len(vocab):
            raise VQAInputError("answers: the vocabulary lists an answer twice")
    answer_id = {a: k for k, a in enumerate(vocab)}
    rows.sort()
    if limit is not None:
        rows = rows[:limit]
    scores = torch.zeros(len(rows), len(vocab), dtype=torch.float32)
    row_of_image: dict[int, int] = {}
    image_rows, qtypes = [], []
    for q, (qid, image_id, _) in enumerate(rows):
        _, texts, _, atype = annotations[qid]
        for a in set(texts):
            if a in answer_id:
                scores[q, answer_id[a]] = answer_score(texts.count(a))
        qtypes.append(VQA_V2_QTYPES.index(atype))
        image_rows.append(row_of_image.setdefault(image_id, len(row_of_image)))
    image_ids = tuple(row_of_image)
    feats = None
    if features is not None:
        feats = read_bottom_up(folder, split, image_ids, features, features_path)
    log.info("VQA v2 %s: %d questions, %d images, %d answers (%.1f%% of questions have a scored answer)",
             split, len(rows), len(image_ids), len(vocab),
             100.0 * float((scores.sum(1) > 0).float().mean()) if len(rows) else 0.0)
    return VQAData(
        questions=[r[2] for r in rows], image_index=torch.tensor(image_rows, dtype=torch.long),
        answer_scores=scores, answers=vocab, qtype=torch.tensor(qtypes, dtype=torch.long),
        qtype_names=VQA_V2_QTYPES, images=None, boxes=None if feats is None else feats.boxes,
        box_mask=None if feats is None else feats.box_mask, box_labels=None,
        features=None if feats is None else feats.features, image_size=None if feats is None else feats.image_size,
        source=f"VQA v2 {split} ({folder})", image_ids=image_ids, question_ids=tuple(r[0] for r in rows))
