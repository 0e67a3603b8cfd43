"""Interpretable CNN configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paperzoo.api import Preset
from paperzoo.core.config import check

#: The two networks every run trains side by side on the same batches: the ordinary CNN and the same
#: architecture with its top layer made interpretable.
VARIANTS = ("ordinary", "interpretable")


@dataclass(frozen=True)
class InterpCNNConfig:
    """An ordinary and an interpretable CNN of the same backbone, trained on the same batches, compared
    on classification accuracy and (part dataset) the location instability of their top-layer filters."""

    dataset: Literal["parts", "cifar10"] = "parts"
    """``parts``: the generated part-annotated images (``paperzoo.data.parts``: bodies from the anny
    model and drawn objects, with landmarks); ``cifar10``: real images, accuracy only (no parts)."""
    backbone: Literal["vgg", "resnet"] = "vgg"
    """``vgg``: conv stack plus an extra top conv layer (interpretable); ``resnet``: residual stages whose
    last block is the interpretable layer."""
    variants: tuple[str, ...] = VARIANTS
    """Which of ``ordinary`` / ``interpretable`` to train (both: the comparison; the last is the
    headline)."""
    width: int = 16
    """Channels of the first stage (doubled per stage)."""
    top_filters: int = 64
    """Filters of the top (interpretable) layer."""
    filter_loss_weight: float = 0.003
    """lambda: the training loss is cross-entropy + lambda * sum over top-layer filters of -MI (the
    paper's sum of filter losses). 0.003 was chosen on the part dataset's validation split among 0, 0.003,
    0.1 and 10 (README: Results)."""
    beta: float = 4.0
    """Template slope (paper: 4): a mask keeps positions within L1 distance n / beta of the peak."""
    categories: tuple[str, ...] = ()
    """Part dataset: the object categories (empty = all of ``paperzoo.data.parts.CATEGORIES``)."""
    image_size: int = 64
    """Part dataset: image side in pixels (the top maps are image_size / 8 on a side)."""
    clutter: float = 1.0
    """Part dataset: background clutter (0 = plain background)."""
    train_per_class: int = 500
    """Training images per category (CIFAR-10: the first ones per class; 0 = all)."""
    val_per_class: int = 50
    """Validation images per category (part dataset; CIFAR-10 holds out the last training images)."""
    test_per_class: int = 200
    """Test images per category (CIFAR-10: the first ones per class of the test set; 0 = all)."""
    data_seed: int = 0
    """Seed of the generated part images (fixed across training seeds, so seeds vary only training)."""
    epochs: int = 12
    """Training epochs (cosine-annealed learning rate)."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """``adam`` (AdamW: decoupled weight decay) or ``sgd`` (with momentum). From scratch and without batch
    normalisation, Adam trains these networks in far fewer epochs (README: deviations)."""
    lr: float = 1e-3
    """Peak learning rate."""
    momentum: float = 0.9
    """SGD momentum (``optimizer=sgd``)."""
    weight_decay: float = 5e-4
    """Weight decay."""
    batch_size: int = 64
    """Mini-batch size; the filter loss's p(x | T) is normalised over a batch's images."""
    augment: bool = False
    """Random crops (4-pixel padding) and horizontal flips during training (the CIFAR-10 presets)."""
    top_k: int = 100
    """Location instability: top-K images per filter (the official code's 100)."""
    seed: int = 0
    """Seed of initialisation and batch order (both networks start from their own seeded init)."""
    num_threads: int = 0
    """torch intra-op threads (0 = torch's default)."""

    def __post_init__(self) -> None:
        check(len(self.variants) >= 1, "InterpCNNConfig", "variants", "name at least one variant")
        for v in self.variants:
            check(v in VARIANTS, "InterpCNNConfig", "variants", f"unknown variant {v!r}: use {', '.join(VARIANTS)}")
        check(len(set(self.variants)) == len(self.variants), "InterpCNNConfig", "variants", "names a variant twice")
        for name in ("width", "top_filters", "epochs", "batch_size", "image_size"):
            check(getattr(self, name) >= 1, "InterpCNNConfig", name, "must be >= 1")
        check(self.image_size % 8 == 0 and self.image_size >= 16, "InterpCNNConfig", "image_size",
              "must be a multiple of 8, at least 16 (the backbones downsample by 8)")
        for name in ("train_per_class", "val_per_class", "test_per_class", "num_threads"):
            check(getattr(self, name) >= 0, "InterpCNNConfig", name, "must be >= 0")
        check(self.dataset != "parts" or min(self.train_per_class, self.val_per_class, self.test_per_class) >= 1,
              "InterpCNNConfig", "train_per_class", "the part dataset needs >= 1 image per class in every split")
        check(self.lr > 0, "InterpCNNConfig", "lr", "must be > 0")
        check(0 <= self.momentum < 1, "InterpCNNConfig", "momentum", "must be in [0, 1)")
        check(self.weight_decay >= 0, "InterpCNNConfig", "weight_decay", "must be >= 0")
        check(self.filter_loss_weight >= 0, "InterpCNNConfig", "filter_loss_weight", "must be >= 0")
        check(self.beta > 0, "InterpCNNConfig", "beta", "must be > 0")
        check(self.clutter >= 0, "InterpCNNConfig", "clutter", "must be >= 0")
        check(self.top_k >= 2, "InterpCNNConfig", "top_k", "must be >= 2")

    @property
    def headline_variant(self) -> str:
        return self.variants[-1]


def _parts(backbone: str) -> Preset:
    cfg = InterpCNNConfig(dataset="parts", backbone=backbone)
    return Preset(
        f"paper_parts_{backbone}", cfg,
        f"part dataset, {backbone} backbone: ordinary vs interpretable CNN, location instability of the top "
        f"filters and accuracy; the README's table sweeps seeds 0-2",
        dataset="parts")


PRESETS = {
    "tiny": Preset(
        "tiny",
        InterpCNNConfig(dataset="parts", width=4, top_filters=8, image_size=32, train_per_class=6, val_per_class=2,
                        test_per_class=4, epochs=2, batch_size=8, top_k=3, categories=("person", "car")),
        "seconds-long smoke run: two categories, 32-pixel images, a tiny VGG, both variants", dataset="parts"),
    "quick": Preset(
        "quick",
        InterpCNNConfig(dataset="parts", backbone="vgg", train_per_class=300, test_per_class=150, epochs=8),
        "part dataset, VGG backbone, 300 training images per category: the ordinary vs interpretable "
        "comparison in a few minutes", dataset="parts"),
    "paper_parts_vgg": _parts("vgg"),
    "paper_parts_resnet": _parts("resnet"),
    "paper_cifar10": Preset(
        "paper_cifar10",
        InterpCNNConfig(dataset="cifar10", backbone="vgg", train_per_class=1000, test_per_class=0, val_per_class=0,
                        epochs=10, augment=True),
        "CIFAR-10 (1,000 training images per class, all 10,000 test images), VGG backbone: the accuracy cost "
        "of the interpretable layer on real images",
        dataset="cifar10"),
}
