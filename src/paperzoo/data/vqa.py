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
